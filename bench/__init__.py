"""Benchmark for tornado_lp beside Nchan and Tornado's own floor (issue 7).

Run ``python -m bench --quick`` (under two minutes) or ``python -m bench``
(full sizes, medians of 3 runs). Modules:

* ``client``: the asyncio HTTP/1.1 keep-alive load generator.
* ``targets``: the servers (tornado_lp, the floor, Nchan), started and stopped here.
* ``scenarios``: fanout, burst, hold, publish.
* ``report``: the markdown table, JSON lines, issue-7 checks and the plot.
* ``floor``: the bare Tornado RequestHandler server.
"""
