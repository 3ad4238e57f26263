"""A lean path for plain polls, the request a fleet of screens makes all day long.

Most polls are ``GET /channels/{ch}/poll?cursor=…&timeout=…&limit=…`` and
nothing else. :class:`PollRouter` (the route's target) answers those with
:class:`_FastPoll`, an :class:`~tornado.httputil.HTTPMessageDelegate` that
writes the shared encoded answer straight to the connection: no
:class:`~tornado.web.RequestHandler` to build, clear and finish, which is most
of what a poll costs (docs/BENCHMARKS.md). Anything else — another method, a
``display`` or ``token`` parameter, an ``Origin`` when CORS is on, private
channels, any parameter the protocol refuses — goes to :class:`PollHandler`,
which gives the same answers with the full machinery (and every 400).
"""

from __future__ import annotations

import asyncio
import email.utils
import http.client
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from tornado import httputil
from tornado.escape import json_encode
from tornado.routing import Router
from tornado.web import Application

from . import protocol
from .base import CLIENT_GONE, JSON_TYPE, Context
from .handlers import PollHandler
from .hub import Hold, Overloaded
from .logs import log_access
from .storage import StorageUnavailable

__all__ = ["PollRouter"]

log = logging.getLogger("tornado_lp.handlers")

_PLAIN_PARAMETERS = frozenset({"cursor", "timeout", "limit"})
_OK = httputil.ResponseStartLine("", 200, "OK")


class PollRouter(Router):
    """Route target for ``/channels/{ch}/poll``: the lean path when it can, else PollHandler."""

    handler_class = PollHandler  # what the route documents (tests/test_openapi.py)

    #: Set by make_app() once the Application exists.
    application: Application

    def __init__(self, ctx: Context, json_log: bool) -> None:
        self.ctx = ctx
        self.json_log = json_log

    def find_handler(self, request: httputil.HTTPServerRequest, **kwargs: Any) -> Any:
        fast = self._plain_poll(request, kwargs.get("path_args") or [])
        if fast is not None:
            return fast
        return self.application.get_handler_delegate(
            request, PollHandler, kwargs.get("target_kwargs"),
            kwargs.get("path_args"), kwargs.get("path_kwargs"),
        )

    def _plain_poll(
        self, request: httputil.HTTPServerRequest, path_args: list[bytes]
    ) -> _FastPoll | None:
        settings = self.ctx.settings
        if request.method != "GET" or len(path_args) != 1 or settings.subscribe_secret:
            return None
        if settings.cors_origins and "Origin" in request.headers:
            return None
        arguments = request.query_arguments
        if not _PLAIN_PARAMETERS.issuperset(arguments):
            return None
        try:
            channel = path_args[0].decode("ascii")
            values = {name: _printable(raw[-1]) for name, raw in arguments.items()}
            cursor = values.get("cursor")
            protocol.parse_cursor(cursor)
            timeout = protocol.parse_timeout(values.get("timeout"), settings.poll_timeout_max)
            limit = protocol.parse_limit(values.get("limit"))
        except (UnicodeDecodeError, ValueError):
            return None  # PollHandler answers with the 400 that names the problem
        if not protocol.valid_channel(channel):
            return None
        return _FastPoll(self, request, channel, cursor, timeout, limit)


def _printable(raw: bytes) -> str:
    """ASCII without control characters, as every valid value is; else ValueError."""
    text = raw.decode("ascii")
    if not text.isprintable():
        raise ValueError(text)
    return text


class _Date:
    """The ``Date`` header, formatted once per second."""

    second = -1
    text = ""

    @classmethod
    def now(cls, now: float) -> str:
        second = int(now)
        if second != cls.second:
            cls.second, cls.text = second, email.utils.formatdate(second, usegmt=True)
        return cls.text


class _FastPoll(httputil.HTTPMessageDelegate):
    """One plain poll: hold in the hub, then write the shared answer."""

    def __init__(
        self,
        router: PollRouter,
        request: httputil.HTTPServerRequest,
        channel: str,
        cursor: str | None,
        timeout: float,
        limit: int,
    ) -> None:
        self.router = router
        self.request = request
        self.channel = channel
        self.cursor = cursor
        self.timeout = timeout
        self.limit = limit
        self.hold = Hold()

    def finish(self) -> None:
        # The request is read: hold it, noticing a client that goes away meanwhile.
        self._set_close_callback(self.on_connection_close)
        self._task = asyncio.ensure_future(self._answer())

    def _set_close_callback(self, callback: Callable[[], None] | None) -> None:
        # HTTP1Connection has it (RequestHandler uses it too); the interface does not.
        setter = getattr(self.request.connection, "set_close_callback", None)
        if setter is not None:
            setter(callback)

    def on_connection_close(self) -> None:
        self.hold.cancel()

    async def _answer(self) -> None:
        ctx = self.router.ctx
        try:
            result = await ctx.hub.poll(
                self.channel, self.cursor, self.timeout, self.limit, self.hold
            )
        except StorageUnavailable as error:
            ctx.metrics.storage_error()
            self._error(503, f"storage unavailable: {error}")
            return
        except Overloaded as error:
            low, high = (1, 5) if ctx.hub.closing else (2, 15)
            self._error(503, f"{error}: retry later", random.randint(low, high))
            return
        except Exception:
            log.exception("poll of %s failed", self.channel)
            self._error(500, "internal server error")
            return
        stream = getattr(self.request.connection, "stream", None)
        if result is None or (stream is not None and stream.closed()):
            self._log(CLIENT_GONE)
            return
        self._write(200, result.encode(), None)
        outcome = ("reset" if result.reset else "missed" if result.missed
                   else "messages" if result.messages else "timeout")
        ctx.metrics.poll_answered(outcome, len(result.messages))

    def _error(self, status: int, message: str, retry_after: int | None = None) -> None:
        self._write(status, json_encode({"error": message}).encode(), retry_after)
        self.router.ctx.metrics.poll_answered("error", 0)

    def _write(self, status: int, body: bytes, retry_after: int | None) -> None:
        connection = self.request.connection
        assert connection is not None
        self._set_close_callback(None)
        now = time.time()
        headers = httputil.HTTPHeaders()
        headers["Content-Type"] = JSON_TYPE
        headers["Cache-Control"] = "no-store"
        headers["Date"] = _Date.now(now)
        headers["Content-Length"] = str(len(body))
        if status == 200:
            headers["X-Server-Time"] = f"{now:.3f}"
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        if self.router.ctx.settings.cors_origins:
            headers["Vary"] = "Origin"
        start = _OK if status == 200 else httputil.ResponseStartLine(
            "", status, http.client.responses.get(status, "Unknown"))
        connection.write_headers(start, headers, body)
        connection.finish()
        self._log(status)

    def _log(self, status: int) -> None:
        request = self.request
        log_access(self.router.json_log, status, request.method or "GET", request.path,
                   request.query, request.remote_ip, request.request_time())


