"""``GET /ws?channel=a,b``: a WebSocket carrying every channel of a screen, server to client.

Tornado's :class:`~tornado.websocket.WebSocketHandler`; the reading is the
hub's, through a :class:`_SocketReader`. One JSON text frame per answer, in the
shape of a multiplexed poll answer (:meth:`Answer.encode
<tornado_lp.answers.Answer.encode>`, shared by every socket that got the same
answer): the first at once (the backlog, or no messages), then one per
wake-up with news. Heartbeats are Tornado's pings.

Everything is checked before the upgrade, so a bad channel, cursor, token or
origin is an ordinary JSON 4xx. A WebSocket is not covered by CORS, so the
``Origin`` must be the page's own or a ``--cors-origin``: a page elsewhere
cannot open one.
"""

from __future__ import annotations

import random
from typing import Any
from urllib.parse import urlsplit

import tornado.websocket
from tornado.iostream import StreamBufferFullError

from .answers import Answer
from .base import ApiError, JSONHandler
from .hub import Overloaded
from .readrequest import ReadRefused, ReadRequest, parse_read_request
from .sse import STREAM_HOLD
from .storage import StorageUnavailable
from .subscription import Position, Subscriber

__all__ = ["StreamSocketHandler"]

CLOSE_NORMAL = 1000  # --stream-max-age: reconnect
CLOSE_GOING_AWAY = 1001  # the server is shutting down
CLOSE_INTERNAL = 1011  # the storage is unavailable
CLOSE_TRY_AGAIN = 1013  # too many readers


class _SocketReader(Subscriber):
    """The hub's side of one socket."""

    once = False
    __slots__ = ("socket",)

    def __init__(
        self, socket: StreamSocketHandler, positions: list[Position], limit: int, timeout: float
    ) -> None:
        super().__init__(positions, limit, timeout)
        self.socket = socket

    def on_held(self) -> None:
        self.socket.send(self.idle_answer())

    def deliver(self, answer: Answer) -> None:
        self.socket.send(answer)

    def expire(self) -> None:
        self.socket.close(CLOSE_NORMAL, "stream max age: reconnect")

    def shutdown(self) -> None:
        self.socket.close(CLOSE_GOING_AWAY, "the server is shutting down")

    def fail(self, error: StorageUnavailable) -> None:
        self.socket.ctx.metrics.storage_error()
        self.socket.close(CLOSE_INTERNAL, "storage unavailable")


class StreamSocketHandler(JSONHandler, tornado.websocket.WebSocketHandler):
    """``/ws``: see the module docstring and docs/PROTOCOL.md."""

    _read: ReadRequest | None = None
    _reader: _SocketReader | None = None
    _display: str | None = None

    async def get(self, *args: Any, **kwargs: Any) -> None:
        headers = self.request.headers
        if headers.get("Upgrade", "").lower() != "websocket":
            raise ApiError(400, 'this is a WebSocket endpoint: send "Upgrade: websocket"')
        if "upgrade" not in headers.get("Connection", "").lower() or not headers.get(
            "Sec-WebSocket-Key"
        ):
            raise ApiError(400, "a WebSocket handshake needs Connection: Upgrade and "
                           "Sec-WebSocket-Key")
        origin = self.request.headers.get("Origin")
        if origin is not None and not self._origin_allowed(origin):
            raise ApiError(403, f"WebSocket origin {origin[:100]!r} is not allowed: only the "
                           "server's own pages and --cors-origin origins may connect")
        try:
            self._read = parse_read_request(self.request.query_arguments, self.config)
        except ReadRefused as refused:
            raise ApiError(refused.status, refused.message) from None
        hub = self.hub
        if hub.closing or hub.total_waiters() >= hub.max_waiters:
            low, high = (1, 5) if hub.closing else (2, 15)
            raise ApiError(503, "too many held readers (--max-waiters): retry later"
                           if not hub.closing else "the server is shutting down: retry later",
                           {"Retry-After": str(random.randint(low, high))})
        await super().get(*args, **kwargs)

    def _origin_allowed(self, origin: str) -> bool:
        host = self.request.headers.get("Host", "")
        return urlsplit(origin).netloc.lower() == host.lower() or origin in self.config.cors_origins

    def check_origin(self, origin: str) -> bool:
        return self._origin_allowed(origin)

    def open(self, *args: str, **kwargs: str) -> None:
        read = self._read
        assert read is not None
        stream = self.ws_connection.stream if self.ws_connection is not None else None
        if stream is not None:
            stream.max_write_buffer_size = self.config.stream_max_buffer
        age = self.config.stream_max_age * random.uniform(0.9, 1.1)
        reader = _SocketReader(self, read.positions(), read.limit, age)
        try:
            self.hub.subscribe(reader)
        except Overloaded:
            self.close(CLOSE_TRY_AGAIN, "too many held readers: retry later")
            return
        self._reader = reader
        self.ctx.metrics.stream_opened("ws")
        if read.display is not None:
            self._display = read.display
            self.ctx.fleet.display_opened(
                read.display, read.channels, self.request.remote_ip or "",
                self.request.headers.get("User-Agent", ""), STREAM_HOLD,
            )

    def send(self, answer: Answer) -> None:
        """Write one answer as a text frame; a client that stopped reading is cut off."""
        if self.ws_connection is None or self.ws_connection.is_closing():
            return
        try:
            self.write_message(answer.encode())
        except tornado.websocket.WebSocketClosedError:
            return
        except StreamBufferFullError:
            self.close(CLOSE_TRY_AGAIN, "too far behind: reconnect")
            return
        self.ctx.metrics.streamed(len(answer.messages))

    def on_message(self, message: str | bytes) -> None:
        pass  # server to client only; anything the client sends is ignored

    def on_connection_close(self) -> None:
        # JSONHandler's (it cancels a held poll) comes first in the MRO and would
        # hide WebSocketHandler's, the one that calls on_close(): a client that
        # went away would stay subscribed until --stream-max-age.
        tornado.websocket.WebSocketHandler.on_connection_close(self)

    def on_close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            self.hub.unsubscribe(reader)
            self.ctx.metrics.stream_closed("ws")
        if self._display is not None:
            self.ctx.fleet.display_closed(self._display)
            self._display = None
