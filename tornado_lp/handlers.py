"""HTTP handlers of the JSON API: poll, publish, channel info, health, displays, metrics.

Every error, including Tornado's own (404, 405), is answered as ``{"error": "..."}``
(see :class:`~tornado_lp.base.JSONHandler`).
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

import tornado.web

from . import protocol
from .base import CLIENT_GONE, ApiError, JSONHandler
from .displays import valid_display
from .publishing import PublishRefused, PublishRequest, publish, read_publish, retract
from .storage import Message, StorageError, StorageUnavailable

__all__ = [
    "ChannelInfoHandler",
    "DisplaysHandler",
    "DisplaysPageHandler",
    "EventsHandler",
    "HealthHandler",
    "MetricsHandler",
    "MultiPollHandler",
    "NotFoundHandler",
    "PollHandler",
    "PublishHandler",
    "RetractHandler",
]

log = logging.getLogger("tornado_lp.handlers")


class NotFoundHandler(JSONHandler):
    """Default handler: every unknown path is a JSON 404."""

    def prepare(self) -> None:
        raise tornado.web.HTTPError(404, "no such path: %s", self.request.path[:200])


class _LeanRoute(JSONHandler):
    """The methods other than GET of a route whose GETs take the lean path (lean.py).

    Only the CORS preflight (``OPTIONS``) and the JSON 405 reach it.
    """

    def get(self) -> None:  # routed to the lean path; here only to be listed in Allow
        raise tornado.web.HTTPError(500, "a GET reached the handler of a lean route")


class MultiPollHandler(_LeanRoute):
    """``GET /poll?channel=a,b``: multiplexed long-poll (tornado_lp/muxpoll.py)."""


class EventsHandler(_LeanRoute):
    """``GET /events?channel=a,b``: Server-Sent Events (tornado_lp/sse.py)."""


class PollHandler(JSONHandler):
    """``GET /channels/{channel}/poll``: see docs/PROTOCOL.md."""

    _outcome = "error"
    _delivered = 0
    _display: str | None = None

    async def get(self, channel: str) -> None:
        channel = self.channel_or_400(channel)
        self.check_subscriber(channel)
        # strip=False: Tornado turns control characters into spaces and strips them,
        # which would take display=%05lobby-1 as "lobby-1"; the protocol refuses it.
        arg = functools.partial(self.get_query_argument, strip=False)
        try:
            cursor = arg("cursor", None)
            protocol.parse_cursor(cursor)
            timeout = protocol.parse_timeout(arg("timeout", None), self.config.poll_timeout_max)
            limit = protocol.parse_limit(arg("limit", None))
        except protocol.ProtocolError as error:
            raise ApiError(400, str(error)) from None
        display = arg("display", None)
        if display is not None:
            if not valid_display(display):
                raise ApiError(400, "display must be 1-64 characters of A-Z a-z 0-9 _ . : -")
            self._display = display
            self.ctx.fleet.display_opened(
                display, (channel,), self.request.remote_ip or "",
                self.request.headers.get("User-Agent", ""), timeout,
            )
        result = await self.held_poll(channel, cursor, timeout, limit)
        if result is not None:
            self._delivered = len(result.messages)
            self._outcome = (
                "reset" if result.reset else "missed" if result.missed
                else "messages" if result.messages else "timeout"
            )
            self.finish(result.encode())

    def on_finish(self) -> None:
        if self._display is not None:
            self.ctx.fleet.display_closed(self._display)
        status = self.get_status()
        if status == CLIENT_GONE:
            return  # not answered: no outcome
        if status != 200:
            self._outcome = "error"
        self.ctx.metrics.poll_answered(self._outcome, self._delivered)


@tornado.web.stream_request_body
class PublishHandler(JSONHandler):
    """``POST /channels/{channel}/messages``: text/plain or JSON ``{"body": ...}``.

    The body size is judged from ``Content-Length`` in ``prepare()``, before
    the body is read, so an oversized publish gets our 413 instead of
    Tornado's bare 400 and a dropped connection.
    """

    def prepare(self) -> None:
        self._chunks: list[bytes] = []
        self._size = 0
        if self.request.method == "OPTIONS":
            return  # a CORS preflight carries no credentials
        self.authorize_publisher()
        limit = self.config.max_message_bytes
        length = self.request.headers.get("Content-Length")
        if length is not None:
            if not length.isdigit():
                raise ApiError(400, "Content-Length must be a number")
            if int(length) > limit:
                raise ApiError(
                    413, f"message too large: {length} bytes, the limit is {limit} bytes"
                )

    def data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size <= self.config.max_message_bytes:
            self._chunks.append(chunk)

    async def post(self, channel: str) -> None:
        channel = self.channel_or_400(channel)
        if self._size > self.config.max_message_bytes:
            raise ApiError(
                413, f"message too large: the limit is {self.config.max_message_bytes} bytes"
            )
        try:
            request = read_publish(b"".join(self._chunks), self.request.headers.get("Content-Type"))
        except PublishRefused as refused:
            raise ApiError(refused.status, refused.message) from None
        message = await self.publish(channel, request)
        self.set_status(201)
        self.finish(message.encoded)

    async def publish(self, channel: str, request: PublishRequest) -> Message:
        """Publish through the hub, mapping storage failures to HTTP errors."""
        try:
            return await publish(self.hub, self.ctx.metrics, channel, request)
        except PublishRefused as refused:
            raise ApiError(refused.status, refused.message) from None


class RetractHandler(JSONHandler):
    """``DELETE /channels/{channel}/messages/{id}``: retract one message (its tombstone, 200)."""

    async def delete(self, channel: str, message_id: str) -> None:
        self.authorize_publisher()
        channel = self.channel_or_400(channel)
        try:
            tombstone = await retract(self.hub, self.ctx.metrics, channel, message_id)
        except PublishRefused as refused:
            raise ApiError(refused.status, refused.message) from None
        self.finish(tombstone.encoded)


class ChannelInfoHandler(JSONHandler):
    """``GET /channels/{channel}``: retained count, newest id, held readers in the fleet."""

    async def get(self, channel: str) -> None:
        channel = self.channel_or_400(channel)
        self.check_subscriber(channel)
        try:
            await self.hub.open()
            chunk = await self.hub.storage.read(channel, None, 1)
        except StorageUnavailable as error:
            self.ctx.metrics.storage_error()
            raise ApiError(503, f"storage unavailable: {error}") from None
        retained = chunk.last_seq - chunk.first_seq + 1
        self.write_json(200, {
            "channel": channel,
            "retained": retained,
            "last_id": (
                protocol.format_cursor(chunk.epoch or self.hub.storage.epoch, chunk.last_seq)
                if chunk.last_seq else None
            ),
            "waiters": await self._waiters(channel),
        })

    async def _waiters(self, channel: str) -> int:
        try:
            return await self.ctx.fleet.waiters(channel)
        except StorageUnavailable as error:
            self.ctx.metrics.storage_error()
            raise ApiError(503, f"storage unavailable: {error}") from None


class HealthHandler(JSONHandler):
    """``GET /healthz``: 200 when the storage answers, else 503."""

    async def get(self) -> None:
        try:
            await self.hub.open()
            await self.hub.storage.ping()
        except StorageError as error:
            raise ApiError(503, f"storage unavailable: {error}") from None
        self.write_json(200, {"status": "ok"})


async def _fleet_displays(handler: JSONHandler) -> tuple[float, list[dict[str, Any]]]:
    """The fleet's displays, or a JSON 503 when the shared store is down."""
    try:
        return await handler.ctx.fleet.displays()
    except StorageUnavailable as error:
        handler.ctx.metrics.storage_error()
        raise ApiError(503, f"storage unavailable: {error}") from None


class DisplaysHandler(JSONHandler):
    """``GET /displays``: every display of the fleet seen in the last 24 h, with its state."""

    async def get(self) -> None:
        _now, displays = await _fleet_displays(self)
        self.write_json(200, {"displays": displays, "count": len(displays),
                              "server_time": round(time.time(), 3)})


class DisplaysPageHandler(JSONHandler):
    """``GET /displays.html``: the same list for people, refreshed every 10 s."""

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")

    async def get(self) -> None:
        _now, displays = await _fleet_displays(self)
        live = sum(1 for d in displays if d["state"] == "live")
        self.render("displays.html", displays=displays, live=live)


class MetricsHandler(JSONHandler):
    """``GET /metrics``: Prometheus text format."""

    def get(self) -> None:
        metrics = self.ctx.metrics
        if not metrics.available:
            raise ApiError(404, "metrics need prometheus-client: pip install 'tornado_lp[metrics]'")
        body, content_type = metrics.exposition()
        self.set_header("Content-Type", content_type)
        self.finish(body)
