"""A server that fails instantly is not hammered: backoff, jitter, cap, Retry-After.

The failing server is a tiny Tornado app in a thread of the test process. It
serves the real ticker page (as rendered by a real tornado_lp server) and the
real static files, and answers the stream (``/events``) and the long-poll
(``/poll``) by channel: ``down`` with 500, ``busy`` with 503 +
``Retry-After: 4``, and ``flap`` with a stream that opens and ends at once
and empty 200 polls. It notes when each request came. This is the one
time-based browser test: the rule is about requests per time.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from itertools import pairwise

import tornado.web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from .conftest import REPO, LiveServer, PageWatch, connection, wait_status

RETRY_AFTER = 4
CHANNELS = ("down", "busy", "flap")


class FailingServer(threading.Thread):
    def __init__(self, pages: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.pages = pages
        self.requests: dict[str, list[tuple[float, str]]] = defaultdict(list)
        self.port = 0
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_event: asyncio.Event | None = None

    def run(self) -> None:
        asyncio.run(self.serve())

    async def serve(self) -> None:
        outer = self

        class Page(tornado.web.RequestHandler):
            def get(self, channel: str) -> None:
                self.finish(outer.pages[channel])

        class Read(tornado.web.RequestHandler):
            def get(self) -> None:
                channel = self.get_query_argument("channel")
                outer.requests[channel].append((time.monotonic(), self.request.path))
                if channel == "busy":
                    self.set_status(503)
                    self.set_header("Retry-After", str(RETRY_AFTER))
                    self.finish({"error": "storage unavailable"})
                elif channel == "flap" and self.request.path == "/events":
                    self.set_header("Content-Type", "text/event-stream")
                    self.finish("retry: 1000\n\n")  # opens, then ends at once
                elif channel == "flap":
                    cursor = self.get_query_argument("cursor")
                    flags = {"more": False, "missed": False, "reset": False}
                    self.finish(json.dumps({
                        "messages": [], "cursor": cursor, **flags,
                        "channels": {"flap": {"cursor": None, **flags}},
                    }))
                else:
                    self.set_status(500)
                    self.finish({"error": "internal server error"})

        app = tornado.web.Application(
            [(r"/page/(\w+)", Page), (r"/events", Read), (r"/poll", Read)],
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
    pages = {}
    for channel in CHANNELS:
        with urllib.request.urlopen(f"{real.url}?channel={channel}", timeout=10) as response:
            pages[channel] = response.read().decode()

    failing = FailingServer(pages)
    failing.start()
    assert failing.ready.wait(10)
    try:
        watches = {channel: open_page() for channel in CHANNELS}
        for watch in watches.values():
            watch.allow_network_errors()  # every read fails, by design
        started = time.monotonic()
        for channel, watch in watches.items():
            watch.page.goto(f"http://127.0.0.1:{failing.port}/page/{channel}")
        wait_status(watches["busy"].page, "reconnecting", timeout=5000)
        watches["busy"].page.wait_for_timeout(10_000)
        elapsed = time.monotonic() - started
        states = {channel: connection(watch.page) for channel, watch in watches.items()}
        texts = {c: watch.page.inner_text("#status-text") for c, watch in watches.items()}
    finally:
        failing.stop()

    down = failing.requests["down"]
    # The stream fails, and each later attempt is one /poll?timeout=0 probe (it
    # sees the status EventSource cannot): the next stream would only open after
    # a probe got a 200. 500s: doubling from 1 s (+-20 %) gives requests near
    # 0, 1, 3, 7 s (and 15): four in 10 s, never more than five.
    assert [path for _, path in down] == ["/events"] + ["/poll"] * (len(down) - 1)
    assert 3 <= len(down) <= 5, (len(down), elapsed)
    gaps = [b - a for (a, _), (b, _) in pairwise(down)]
    assert all(later > earlier for earlier, later in pairwise(gaps)), gaps
    assert gaps[0] >= 0.75, gaps  # never sooner than the first backoff step

    busy = failing.requests["busy"]
    # 503 + Retry-After: the stream cannot see it, its probe does: after the
    # first probe, 4 s between requests, whatever the backoff says.
    assert [path for _, path in busy] == ["/events"] + ["/poll"] * (len(busy) - 1)
    assert 3 <= len(busy) <= 4, (len(busy), elapsed)
    busy_gaps = [b - a for (a, _), (b, _) in pairwise(busy)]
    assert busy_gaps[0] >= 0.75, busy_gaps
    assert all(gap >= RETRY_AFTER - 0.1 for gap in busy_gaps[1:]), busy_gaps

    # A stream that opens and ends at once, with polls that succeed: a
    # successful probe does not reset the backoff (only a stream that stays
    # open does), so the streams come ever further apart.
    flap = [t for t, path in failing.requests["flap"] if path == "/events"]
    assert 3 <= len(flap) <= 5, (failing.requests["flap"], elapsed)
    flap_gaps = [b - a for a, b in pairwise(flap)]
    assert all(later > earlier for earlier, later in pairwise(flap_gaps)), flap_gaps
    assert len(failing.requests["flap"]) <= 2 * len(flap)  # one probe per stream at most

    for channel in ("down", "busy"):
        assert states[channel]["state"] in {"WAITING", "CONNECTING"}, states
        assert states[channel]["transport"] == "sse"  # an error is no reason to fall back
        assert texts[channel].startswith("reconnecting (attempt "), texts
    for watch in watches.values():
        watch.assert_clean()
