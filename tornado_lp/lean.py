"""Requests answered without a RequestHandler: the readers a fleet makes all day long.

A plain poll, a multiplexed poll and an SSE stream are answered by a
:class:`LeanExchange`: an :class:`~tornado.httputil.HTTPMessageDelegate` that
is also the hub's :class:`~tornado_lp.subscription.Subscriber`, so a held
request is one object, woken by a plain call, writing the shared encoded
answer straight to the connection. Building, clearing and finishing a
RequestHandler is most of what a poll used to cost (docs/BENCHMARKS.md).

:class:`LeanRouter` is the route target: GET requests get the lean exchange
its factory makes; every other method goes to a RequestHandler class (for the
CORS preflight and the JSON 405).
"""

from __future__ import annotations

import email.utils
import http.client
import time
from collections.abc import Callable
from typing import Any

from tornado import httputil
from tornado.escape import json_encode
from tornado.routing import Router
from tornado.web import Application, RequestHandler

from .base import CORS_EXPOSED, JSON_TYPE, Context
from .logs import log_access
from .subscription import Position, Subscriber

__all__ = ["LeanExchange", "LeanRouter", "http_date", "printable"]

_OK = httputil.ResponseStartLine("", 200, "OK")


class LeanRouter(Router):
    """Route target: ``lean(router, request, path_args)`` for a GET, else ``handler_class``.

    ``lean`` may return ``None`` to send the request to ``handler_class`` too
    (the single-channel poll does, for anything unusual).
    """

    #: Set by make_app() once the Application exists.
    application: Application

    def __init__(
        self,
        ctx: Context,
        json_log: bool,
        handler_class: type[RequestHandler],
        lean: Callable[[LeanRouter, httputil.HTTPServerRequest, list[bytes]],
                       httputil.HTTPMessageDelegate | None],
    ) -> None:
        self.ctx = ctx
        self.json_log = json_log
        self.handler_class = handler_class  # also what the route documents (tests/test_openapi.py)
        self.lean = lean

    def find_handler(self, request: httputil.HTTPServerRequest, **kwargs: Any) -> Any:
        path_args = kwargs.get("path_args") or []
        if request.method == "GET":
            delegate = self.lean(self, request, path_args)
            if delegate is not None:
                return delegate
        return self.application.get_handler_delegate(
            request, self.handler_class, kwargs.get("target_kwargs"),
            path_args, kwargs.get("path_kwargs"),
        )


def printable(raw: bytes) -> str:
    """ASCII without control characters, as every valid parameter value is; else ValueError."""
    text = raw.decode("ascii")
    if not text.isprintable():
        raise ValueError(text)
    return text


class _Date:
    """The ``Date`` header, formatted once per second."""

    second = -1
    text = ""


def http_date(now: float) -> str:
    second = int(now)
    if second != _Date.second:
        _Date.second, _Date.text = second, email.utils.formatdate(second, usegmt=True)
    return _Date.text


class LeanExchange(Subscriber, httputil.HTTPMessageDelegate):
    """A request answered by a reader: JSON errors, CORS, the access log line, client-gone.

    Subclasses implement :meth:`start` (called once the request is read) and
    the :class:`Subscriber` methods.
    """

    __slots__ = ("ctx", "json_log", "request")

    def __init__(
        self,
        router: LeanRouter,
        request: httputil.HTTPServerRequest,
        positions: list[Position],
        limit: int,
        timeout: float | None,
    ) -> None:
        super().__init__(positions, limit, timeout)
        self.ctx = router.ctx
        self.json_log = router.json_log
        self.request = request

    # -- HTTPMessageDelegate ------------------------------------------------

    def finish(self) -> None:
        self.start()

    def start(self) -> None:
        """The request is read: subscribe, or answer an error."""
        raise NotImplementedError

    def on_connection_close(self) -> None:
        if not self.done:
            self.ctx.hub.unsubscribe(self)
            self.log(499)  # nginx's "client closed request"
        self.closed()

    def closed(self) -> None:
        """The connection closed (after an answer, or with the client gone)."""

    def watch_close(self, on: bool) -> None:
        # HTTP1Connection has it (RequestHandler uses it too); the interface does not.
        setter = getattr(self.request.connection, "set_close_callback", None)
        if setter is not None:
            setter(self.on_connection_close if on else None)

    @property
    def gone(self) -> bool:
        """True if the client's connection is closed."""
        stream = getattr(self.request.connection, "stream", None)
        return stream is not None and stream.closed()

    # -- writing -------------------------------------------------------------

    def headers(self, status: int, content_type: str, length: int | None) -> httputil.HTTPHeaders:
        """The answer's headers: type, no caching, Date, CORS; X-Server-Time on 200s."""
        now = time.time()
        headers = httputil.HTTPHeaders()
        headers["Content-Type"] = content_type
        headers["Cache-Control"] = "no-store"
        headers["Date"] = http_date(now)
        if length is not None:
            headers["Content-Length"] = str(length)
        if status == 200:
            headers["X-Server-Time"] = f"{now:.3f}"
        origins = self.ctx.settings.cors_origins
        if origins:
            headers["Vary"] = "Origin"
            origin = self.request.headers.get("Origin")
            if origin in origins:
                headers["Access-Control-Allow-Origin"] = origin
                headers["Access-Control-Expose-Headers"] = CORS_EXPOSED
        return headers

    def respond(self, status: int, body: bytes, retry_after: int | None = None) -> None:
        """Write a whole JSON answer and finish the request."""
        connection = self.request.connection
        assert connection is not None
        self.watch_close(False)
        headers = self.headers(status, JSON_TYPE, len(body))
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        start = _OK if status == 200 else httputil.ResponseStartLine(
            "", status, http.client.responses.get(status, "Unknown"))
        connection.write_headers(start, headers, body)
        connection.finish()
        self.log(status)

    def refuse(self, status: int, message: str, retry_after: int | None = None) -> None:
        """Answer ``{"error": message}``."""
        self.respond(status, json_encode({"error": message}).encode(), retry_after)

    def log(self, status: int) -> None:
        request = self.request
        log_access(self.json_log, status, request.method or "GET", request.path,
                   request.query, request.remote_ip, request.request_time())
