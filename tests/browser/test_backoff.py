"""A server that fails instantly is not hammered: backoff, jitter, cap, Retry-After.

The failing server is a tiny Tornado app in a thread of the test process. It
serves the real ticker page (as rendered by a real tornado_lp server) and the
real static files, and answers every poll of channel ``down`` with 500 and of
channel ``busy`` with 503 + ``Retry-After: 4``, noting when each poll came.
This is the one time-based browser test: the rule is about requests per time.
"""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from itertools import pairwise

import tornado.web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from .conftest import REPO, LiveServer, PageWatch, snapshot, wait_status

RETRY_AFTER = 4


class FailingServer(threading.Thread):
    def __init__(self, page_html: str) -> None:
        super().__init__(daemon=True)
        self.page_html = page_html
        self.polls: dict[str, list[float]] = defaultdict(list)
        self.port = 0
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_event: asyncio.Event | None = None

    def run(self) -> None:
        asyncio.run(self.serve())

    async def serve(self) -> None:
        outer = self

        class Page(tornado.web.RequestHandler):
            def get(self) -> None:
                self.finish(outer.page_html)

        class Poll(tornado.web.RequestHandler):
            def get(self, channel: str) -> None:
                outer.polls[channel].append(time.monotonic())
                if channel == "busy":
                    self.set_status(503)
                    self.set_header("Retry-After", str(RETRY_AFTER))
                    self.finish({"error": "storage unavailable"})
                else:
                    self.set_status(500)
                    self.finish({"error": "internal server error"})

        app = tornado.web.Application(
            [(r"/", Page), (r"/channels/([^/]+)/poll", Poll)],
            static_path=str(REPO / "static"),
        )
        server = HTTPServer(app)
        sockets = bind_sockets(0, "127.0.0.1")
        server.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]
        self.loop = asyncio.get_running_loop()
        self.stop_event = asyncio.Event()
        self.ready.set()
        await self.stop_event.wait()
        server.stop()
        await server.close_all_connections()

    def stop(self) -> None:
        assert self.loop is not None and self.stop_event is not None
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.join(10)


def test_instant_errors_are_retried_with_backoff_and_retry_after(
    serve: Callable[..., LiveServer], open_page: Callable[..., PageWatch]
) -> None:
    real = serve()
    with urllib.request.urlopen(real.url + "?channel=down,busy", timeout=10) as response:
        page_html = response.read().decode()

    failing = FailingServer(page_html)
    failing.start()
    assert failing.ready.wait(10)
    try:
        watch = open_page()
        watch.allow_network_errors()  # every poll fails, by design
        started = time.monotonic()
        watch.page.goto(f"http://127.0.0.1:{failing.port}/")
        wait_status(watch.page, "reconnecting", timeout=5000)
        watch.page.wait_for_timeout(10_000)
        elapsed = time.monotonic() - started
        state = snapshot(watch.page)
        status_text = watch.page.inner_text("#status-text")
    finally:
        failing.stop()

    down = failing.polls["down"]
    busy = failing.polls["busy"]
    # 500s: doubling from 1 s (+-20 %) gives polls near 0, 1, 3, 7 s (and 15):
    # four in 10 s, never more than five however the jitter falls.
    assert 3 <= len(down) <= 5, (len(down), elapsed)
    gaps = [b - a for a, b in pairwise(down)]
    assert all(later > earlier for earlier, later in pairwise(gaps)), gaps
    assert gaps[0] >= 0.75, gaps  # never sooner than the first backoff step
    # 503 + Retry-After: 4 s between polls, whatever the backoff says.
    assert 2 <= len(busy) <= 3, (len(busy), elapsed)
    assert all(b - a >= RETRY_AFTER - 0.1 for a, b in pairwise(busy)), busy
    assert {p["state"] for p in state["pollers"]} <= {"WAITING", "CONNECTING"}
    assert status_text.startswith("reconnecting (attempt ")
    watch.assert_clean()
