"""The Tornado Application ``make_app()`` returns, with the lean routes dispatched first.

A fleet's requests are nearly all GETs of ``/channels/{ch}/poll``, ``/poll``
and ``/events``. :class:`Application` looks at the request line of every
request before Tornado's routing does: those GETs go straight to their lean
exchange (:mod:`tornado_lp.lean`) with a :class:`~tornado_lp.lean.LeanRequest`,
skipping the rule table (three static-file rules come first) and the
HTTPServerRequest (which parses the host, the arguments and deep-copies them).
Everything else — and anything unusual about those paths, such as a
percent-encoded channel name — takes the normal routing, where the same
routes are :class:`~tornado_lp.lean.LeanRouter` targets, so the answer is
the same either way.

It can also watch for request heads that do not arrive in time (slow or idle
clients), instead of Tornado's timer per request read (``header_timeout``,
which costs a tenth of a plain poll): :attr:`Application.head_timeout`, with
Tornado's own turned off on the server (``server.conn_params.header_timeout =
None``, as ``python -m tornado_lp`` does). A connection waiting for its next
request head longer than that (checked every quarter of it) is closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import tornado.web
from tornado import httputil

from .lean import LeanRequest, LeanRouter

__all__ = ["Application"]

_POLL_PREFIX = "/channels/"
_POLL_SUFFIX = "/poll"


class Application(tornado.web.Application):
    """A :class:`tornado.web.Application` that answers the lean routes before routing."""

    #: The single-channel poll's router (``None``: it takes the normal path).
    lean_poll: LeanRouter | None = None
    #: Exact paths answered lean: ``/poll``, ``/events``.
    lean_paths: dict[str, LeanRouter]
    #: Seconds a connection may wait for a request head (``None``: not watched here).
    head_timeout: float | None = None
    _heads: _HeadWatch | None = None

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        front = _FrontDelegate(self, server_conn, request_conn)
        if self.head_timeout is not None:
            if self._heads is None:
                self._heads = _HeadWatch(self.head_timeout)
            front.heads = self._heads
            self._heads.add(front)
        return front

    def lean_delegate(
        self,
        start_line: httputil.RequestStartLine,
        headers: httputil.HTTPHeaders,
        connection: httputil.HTTPConnection,
    ) -> httputil.HTTPMessageDelegate | None:
        """The lean exchange for a GET of a lean path, or ``None`` to route it normally."""
        path = start_line.path.partition("?")[0]
        router = self.lean_paths.get(path)
        if router is not None:
            return router.lean(router, LeanRequest(start_line, headers, connection), [])
        router = self.lean_poll
        if router is not None and path.startswith(_POLL_PREFIX) and path.endswith(_POLL_SUFFIX):
            channel = path[len(_POLL_PREFIX):-len(_POLL_SUFFIX)]
            if channel and "/" not in channel and "%" not in channel:
                request = LeanRequest(start_line, headers, connection)
                return router.lean(router, request, [channel.encode("latin-1")])
        return None


class _HeadWatch:
    """Connections waiting for a request head, oldest first; late ones are closed."""

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

    __slots__ = ("app", "delegate", "heads", "request_conn", "server_conn")

    def __init__(
        self, app: Application, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> None:
        self.app = app
        self.server_conn = server_conn
        self.request_conn = request_conn
        self.delegate: httputil.HTTPMessageDelegate | None = None
        self.heads: _HeadWatch | None = None

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        assert isinstance(start_line, httputil.RequestStartLine)
        if self.heads is not None:
            self.heads.discard(self)
        if start_line.method == "GET":
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
        assert self.delegate is not None
        self.delegate.finish()

    def on_connection_close(self) -> None:
        if self.heads is not None:
            self.heads.discard(self)
        if self.delegate is not None:
            self.delegate.on_connection_close()
