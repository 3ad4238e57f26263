"""The Tornado Application ``make_app()`` returns, with the lean routes dispatched first.

A fleet's requests are nearly all GETs of ``/channels/{ch}/poll``, ``/poll``
and ``/events``, and publishes (``POST /channels/{ch}/messages``).
:class:`Application` looks at the request line of every
request before Tornado's routing does: those GETs go straight to their lean
exchange (:mod:`tornado_lp.lean`) with a :class:`~tornado_lp.lean.LeanRequest`,
skipping the rule table (three static-file rules come first) and the
HTTPServerRequest (which parses the host, the arguments and deep-copies them).
Everything else — and anything unusual about those paths, such as a
percent-encoded channel name — takes the normal routing, where the same
routes are :class:`~tornado_lp.lean.LeanRouter` targets, so the answer is
the same either way.

It can also watch for request heads and bodies that do not arrive in time
(slow or idle clients), instead of Tornado's timer per request read
(``header_timeout``, ``body_timeout``; one costs a tenth of a plain poll):
:attr:`Application.head_timeout` and :attr:`Application.body_timeout`, with
Tornado's own turned off on the server (``server.conn_params.header_timeout =
None`` and ``body_timeout = None``, as ``python -m tornado_lp`` does). A
connection waiting longer than that for its next request head, or for the
rest of a body (checked every quarter of the timeout), is closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import tornado.web
from tornado import httputil

from .base import Context
from .fastpublish import lean_publish
from .lean import LeanRequest, LeanRouter

__all__ = ["Application"]

_LEAN_METHODS = frozenset({"GET", "POST"})
_CHANNELS = "/channels/"
_POLL = "/poll"
_MESSAGES = "/messages"


class Application(tornado.web.Application):
    """A :class:`tornado.web.Application` that answers the lean routes before routing."""

    #: The single-channel poll's router (``None``: it takes the normal path).
    lean_poll: LeanRouter | None = None
    #: Publishes answered lean: ``(ctx, json_log)`` (``None``: PublishHandler only).
    lean_publish: tuple[Context, bool] | None = None
    #: Exact paths answered lean: ``/poll``, ``/events``.
    lean_paths: dict[str, LeanRouter]
    #: Seconds a connection may wait for a request head, and a request take to send
    #: its body (``None``: not watched here).
    head_timeout: float | None = None
    body_timeout: float | None = None
    _heads: _Watch | None = None
    _bodies: _Watch | None = None

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        front = _FrontDelegate(self, server_conn, request_conn)
        if self.head_timeout is not None:
            if self._heads is None:
                self._heads = _Watch(self.head_timeout)
            front.watch = self._heads
            self._heads.add(front)
        return front

    def watch_body(self, front: _FrontDelegate) -> None:
        """Watch ``front``'s request until its body is in (if bodies are watched)."""
        if self.body_timeout is not None:
            if self._bodies is None:
                self._bodies = _Watch(self.body_timeout)
            front.watch = self._bodies
            self._bodies.add(front)

    def lean_delegate(
        self,
        start_line: httputil.RequestStartLine,
        headers: httputil.HTTPHeaders,
        connection: httputil.HTTPConnection,
    ) -> httputil.HTTPMessageDelegate | None:
        """The lean exchange for a GET of a lean path, or ``None`` to route it normally."""
        path = start_line.path.partition("?")[0]
        if start_line.method == "POST":
            if (self.lean_publish is None or not path.startswith(_CHANNELS)
                    or not path.endswith(_MESSAGES)):
                return None
            channel = path[len(_CHANNELS):-len(_MESSAGES)]
            if not channel or "/" in channel or "%" in channel:
                return None
            ctx, json_log = self.lean_publish
            return lean_publish(ctx, json_log, LeanRequest(start_line, headers, connection),
                                channel)
        router = self.lean_paths.get(path)
        if router is not None:
            return router.lean(router, LeanRequest(start_line, headers, connection), [])
        router = self.lean_poll
        if router is not None and path.startswith(_CHANNELS) and path.endswith(_POLL):
            channel = path[len(_CHANNELS):-len(_POLL)]
            if channel and "/" not in channel and "%" not in channel:
                request = LeanRequest(start_line, headers, connection)
                return router.lean(router, request, [channel.encode("latin-1")])
        return None


class _Watch:
    """Requests waiting for their head (or body), oldest first; late ones are closed."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.waiting: dict[_FrontDelegate, float] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(self, front: _FrontDelegate) -> None:
        loop = asyncio.get_running_loop()
        self.waiting[front] = loop.time()
        if self._timer is None:
            self._timer = loop.call_later(self.timeout / 4, self._sweep)

    def discard(self, front: _FrontDelegate) -> None:
        self.waiting.pop(front, None)

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        cutoff = loop.time() - self.timeout
        late = []
        for front, since in self.waiting.items():  # insertion order is time order
            if since > cutoff:
                break
            late.append(front)
        for front in late:
            del self.waiting[front]
            close = getattr(front.request_conn, "close", None)  # HTTP1Connection has it
            if close is not None:
                close()
        self._timer = loop.call_later(self.timeout / 4, self._sweep) if self.waiting else None


class _FrontDelegate(httputil.HTTPMessageDelegate):
    """Tornado's routing delegate, with the lean routes looked at first."""

    __slots__ = ("app", "delegate", "request_conn", "server_conn", "watch")

    def __init__(
        self, app: Application, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> None:
        self.app = app
        self.server_conn = server_conn
        self.request_conn = request_conn
        self.delegate: httputil.HTTPMessageDelegate | None = None
        self.watch: _Watch | None = None

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        assert isinstance(start_line, httputil.RequestStartLine)
        if self.watch is not None:
            self.watch.discard(self)
            self.watch = None
        if "Content-Length" in headers or "Transfer-Encoding" in headers:
            self.app.watch_body(self)
        if start_line.method in _LEAN_METHODS:
            lean = self.app.lean_delegate(start_line, headers, self.request_conn)
            if lean is not None:
                self.delegate = lean
                return lean.headers_received(start_line, headers)
        request = httputil.HTTPServerRequest(
            connection=self.request_conn, server_connection=self.server_conn,
            start_line=start_line, headers=headers,
        )
        self.delegate = self.app.find_handler(request)
        return self.delegate.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        assert self.delegate is not None
        return self.delegate.data_received(chunk)

    def finish(self) -> None:
        if self.watch is not None:
            self.watch.discard(self)
            self.watch = None
        assert self.delegate is not None
        self.delegate.finish()

    def on_connection_close(self) -> None:
        if self.watch is not None:
            self.watch.discard(self)
        if self.delegate is not None:
            self.delegate.on_connection_close()
