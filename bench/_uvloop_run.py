"""Run ``python -m tornado_lp`` on uvloop's event loop (for ``--lp-variant uvloop``).

tornado_lp's ``main()`` calls ``asyncio.run``, which takes its loop from the
event loop policy; Tornado runs on any asyncio loop.
"""

import asyncio
import runpy

import uvloop

asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
runpy.run_module("tornado_lp", run_name="__main__", alter_sys=True)
