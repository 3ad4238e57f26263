"""Benchmark for tornado_lp beside the seed, Nchan and Tornado's own floors (issues 7, 11, 12).

Run ``python -m bench --quick`` (small sizes) or ``python -m bench`` (full sizes,
medians of 3 runs, every target of issues 11 and 12 judged). Modules:

* ``client``: the asyncio HTTP/1.1 keep-alive load generator.
* ``sse``: the asyncio Server-Sent-Events client (dechunker, event parser).
* ``targets``: the servers (tornado_lp, the seed, the floors, Nchan), started and stopped here.
* ``scenarios``: fanout, burst, hold, publish; ``streams``: sse-fanout, sse-hold, sse-16ch.
* ``report``: the markdown table, JSON lines, issue-7 checks and the plot.
* ``judge``: the targets of issues 11 and 12, from one run's rows.
* ``seed_gevent``: the seed's gevent server, ported to Python 3 (needs the ``bench`` extra).
* ``floor``: the bare Tornado RequestHandler server; ``sse_floor``: its stream counterpart.
"""
