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
from tornado.escape import json_encode, parse_qs_bytes
from tornado.http1connection import HTTP1Connection
from tornado.iostream import IOStream
from tornado.routing import Router
from tornado.web import Application, RequestHandler

from .answers import Answer
from .base import CORS_EXPOSED, JSON_TYPE, Context
from .logs import log_access
from .subscription import Position, Subscriber

__all__ = [
    "LeanExchange", "LeanRequest", "LeanResponder", "LeanRouter", "http_date", "printable",
    "send_now",
]



class LeanRequest:
    """What a lean exchange needs of a request, without building an HTTPServerRequest.

    Tornado's request object parses the body arguments, the host and copies the
    query arguments; a GET that a lean exchange answers needs none of that.
    ``query_arguments`` is parsed on each use (each exchange reads it once, at
    its start), so a held request or an open stream does not keep the parsed
    arguments: memory per held reader is what a fleet pays for.
    """

    __slots__ = ("_start_time", "connection", "headers", "method", "path",
                 "query", "remote_ip", "version")

    def __init__(
        self,
        start_line: httputil.RequestStartLine,
        headers: httputil.HTTPHeaders,
        connection: httputil.HTTPConnection,
    ) -> None:
        self.method, uri, self.version = start_line
        self.path, _, self.query = uri.partition("?")
        self.headers = headers
        self.connection = connection
        self.remote_ip: str | None = getattr(getattr(connection, "context", None),
                                             "remote_ip", None)
        self._start_time = time.time()

    @property
    def query_arguments(self) -> dict[str, list[bytes]]:
        return parse_qs_bytes(self.query, keep_blank_values=True)

    @property
    def uri(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path

    def request_time(self) -> float:
        return time.time() - self._start_time


#: The request a lean exchange answers: Tornado's, or the lighter one above.
AnyRequest = httputil.HTTPServerRequest | LeanRequest


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
        lean: Callable[[LeanRouter, AnyRequest, list[bytes]],
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


def send_now(stream: IOStream, data: bytes) -> int:
    """Hand ``data`` to the socket at once if nothing is queued before it; bytes taken.

    For an answer or an event of a few hundred bytes that is the whole of it,
    and it skips the stream's write machinery (a future, a buffer, a handler
    round). The caller writes whatever was not taken through the stream, which
    keeps the order and handles a full socket or a broken peer.
    """
    if stream.writing() or stream.closed():
        return 0
    try:
        sent: int = stream.socket.send(data)
    except OSError:
        return 0  # would block, or a broken peer: the stream's writer handles it
    return sent


class LeanResponder(httputil.HTTPMessageDelegate):
    """Answers written straight to the connection: JSON, errors, CORS, the access log line."""

    ctx: Context
    json_log: bool
    request: AnyRequest

    def on_connection_close(self) -> None:
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
        """The answer's headers (see :meth:`_fields`) for Tornado's writer."""
        fields = httputil.HTTPHeaders()
        for field, value in self._fields(status, length, {}, content_type):
            fields.add(field, value)
        return fields

    def respond_shared(self, answer: Answer, name: str, body: Callable[[Answer], bytes]) -> None:
        """Write ``body(answer)`` as a 200, the whole response encoded once per shared answer.

        Readers that got the same answer in the same turn get the same bytes:
        status line, headers (the same ``Date`` and ``X-Server-Time``) and body.
        Requests that need their own headers (an ``Origin``, a connection that
        closes after the answer) are encoded alone.
        """
        if "Origin" in self.request.headers or not self._keeps_alive():
            self.respond(200, body(answer))
            return
        data = answer.memo(name, lambda shared: self._encoded(200, body(shared), {}))
        self._finish(200, data)

    def respond(
        self, status: int, body: bytes, retry_after: int | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        """Write a whole JSON answer and finish the request."""
        headers = dict(extra or {})
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        if self._keeps_alive():
            self._finish(status, self._encoded(status, body, headers))
            return
        # The connection closes after this answer: Tornado's writer says so in the headers.
        connection = self.request.connection
        assert connection is not None
        self.watch_close(False)
        start = httputil.ResponseStartLine("", status, http.client.responses.get(status, "Unknown"))
        fields = httputil.HTTPHeaders()
        for field, value in self._fields(status, len(body), headers):
            fields.add(field, value)
        connection.write_headers(start, fields, body)
        connection.finish()
        self.log(status)

    def _keeps_alive(self) -> bool:
        """True if the connection stays open after the answer, so it can be written as it is."""
        request = self.request
        connection = request.connection
        return (request.version == "HTTP/1.1" and isinstance(connection, HTTP1Connection)
                and not connection.params.no_keep_alive
                and "close" not in request.headers.get("Connection", "").lower())

    def _fields(
        self, status: int, length: int | None, extra: dict[str, str],
        content_type: str = JSON_TYPE,
    ) -> list[tuple[str, str]]:
        """The answer's headers: type, no caching, Date, length, CORS; X-Server-Time on 200s."""
        now = time.time()
        fields = [("Content-Type", content_type), ("Cache-Control", "no-store"),
                  ("Date", http_date(now))]
        if length is not None:
            fields.append(("Content-Length", str(length)))
        if status == 200:
            fields.append(("X-Server-Time", f"{now:.3f}"))
        origins = self.ctx.settings.cors_origins
        if origins:
            fields.append(("Vary", "Origin"))
            origin = self.request.headers.get("Origin")
            if origin in origins:  # one of ours: a checked origin, no CR or LF
                fields.append(("Access-Control-Allow-Origin", origin))
                fields.append(("Access-Control-Expose-Headers", CORS_EXPOSED))
        fields.extend(extra.items())
        return fields

    def _encoded(self, status: int, body: bytes, extra: dict[str, str]) -> bytes:
        """The whole response, status line to body."""
        lines = [f"HTTP/1.1 {status} {http.client.responses.get(status, 'Unknown')}"]
        lines.extend(f"{field}: {value}" for field, value in self._fields(status, len(body), extra))
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    def _finish(self, status: int, data: bytes) -> None:
        connection = self.request.connection
        assert connection is not None
        self.watch_close(False)
        stream = getattr(connection, "stream", None)
        sent = send_now(stream, data) if stream is not None else 0
        if sent < len(data):
            # A pre-encoded response: Tornado's documented shortcut.
            connection.write(data if not sent else data[sent:])
        connection.finish()
        self.log(status)

    def refuse(
        self, status: int, message: str, retry_after: int | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        """Answer ``{"error": message}``."""
        self.respond(status, json_encode({"error": message}).encode(), retry_after, extra)

    def log(self, status: int) -> None:
        request = self.request
        log_access(self.json_log, status, request.method or "GET", request.path,
                   request.query, request.remote_ip, request.request_time())


class LeanExchange(Subscriber, LeanResponder):
    """A request answered by a hub reader: it is held, woken and answered as one object.

    Subclasses implement :meth:`start` (called once the request is read) and
    the :class:`Subscriber` methods.
    """

    __slots__ = ("ctx", "json_log", "request")

    def __init__(
        self,
        router: LeanRouter,
        request: AnyRequest,
        positions: list[Position],
        limit: int,
        timeout: float | None,
    ) -> None:
        super().__init__(positions, limit, timeout)
        self.ctx = router.ctx
        self.json_log = router.json_log
        self.request = request

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
