"""The floor: what one HTTP round trip through a Tornado RequestHandler costs.

A bare ``RequestHandler`` whose ``get()`` writes a fixed JSON body the size of
a one-message tornado_lp poll answer, written as a Tornado user would write it:
nothing overridden (ETag, logging and header formatting all stay on).

Run ``python -m bench.floor --port 0``; it prints ``http://127.0.0.1:PORT/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

import tornado.web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

__all__ = ["FLOOR_BODY", "FloorHandler", "main", "make_app"]

#: One message in a poll answer, shaped as docs/PROTOCOL.md describes it.
_MESSAGE = {
    "id": "5f0c9a3e1b2d4c6a-42",
    "channel": "bench-fanout-0",
    "body": "42:1234567890123456",
    "ts": 1790000000.123456,
}
FLOOR_BODY: bytes = json.dumps(
    {
        "messages": [_MESSAGE],
        "cursor": _MESSAGE["id"],
        "more": False,
        "missed": False,
        "reset": False,
    },
    separators=(",", ":"),  # compact, as tornado_lp answers
).encode()


class FloorHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.write(FLOOR_BODY)


def make_app() -> tornado.web.Application:
    return tornado.web.Application([(r"/.*", FloorHandler)])


async def main(port: int) -> None:
    sockets = bind_sockets(port, "127.0.0.1")
    server = HTTPServer(make_app())
    server.add_sockets(sockets)
    bound = sockets[0].getsockname()[1]
    print(f"floor listening on http://127.0.0.1:{bound}/", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(main(parser.parse_args().port))
