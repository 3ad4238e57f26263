"""HTTP handlers of the JSON API: poll, publish, channel info, health, errors.

Every handler gets its collaborators through ``initialize()``; every error,
including Tornado's own (404, 405), is answered as ``{"error": "..."}``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import tornado.web
from tornado.escape import json_encode

from . import protocol
from .auth import PublishDenied, check_publisher
from .hub import Hold, Hub, PollResult
from .storage import ChannelLimitError, StorageError, StorageUnavailable

__all__ = [
    "ChannelInfoHandler",
    "HealthHandler",
    "JSONHandler",
    "NotFoundHandler",
    "PollHandler",
    "PublishHandler",
]

log = logging.getLogger("tornado_lp.handlers")

JSON_TYPE = "application/json; charset=utf-8"


class Config:
    """Per-application settings the handlers need (no global state)."""

    __slots__ = ("max_message_bytes", "poll_timeout_max", "publish_token")

    def __init__(
        self,
        *,
        max_message_bytes: int = 65536,
        poll_timeout_max: float = 60.0,
        publish_token: str | None = None,
    ) -> None:
        self.max_message_bytes = max_message_bytes
        self.poll_timeout_max = poll_timeout_max
        self.publish_token = publish_token


class JSONHandler(tornado.web.RequestHandler):
    """Base: JSON errors, no caching, no ETag hashing, held polls that end with the client."""

    hub: Hub
    config: Config
    _hold: Hold | None = None

    def initialize(self, hub: Hub, config: Config) -> None:
        self.hub = hub
        self.config = config

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", JSON_TYPE)
        self.set_header("Cache-Control", "no-store")

    def compute_etag(self) -> None:
        return None

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        # An HTTPError is an answer, not a fault: the access log line says enough.
        if not isinstance(value, tornado.web.HTTPError):
            super().log_exception(typ, value, tb)

    def write_json(self, status: int, payload: dict[str, Any]) -> None:
        self.set_status(status)
        self.finish(json_encode(payload))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", JSON_TYPE)
        self.set_header("Cache-Control", "no-store")
        message = self._reason
        exc_info = kwargs.get("exc_info")
        if exc_info is not None:
            error = exc_info[1]
            if isinstance(error, tornado.web.HTTPError) and error.log_message:
                message = error.log_message % error.args if error.args else error.log_message
            elif status_code >= 500:
                message = "internal server error"
        if status_code == 405:
            allowed = [m for m in self.SUPPORTED_METHODS
                       if getattr(type(self), m.lower()) is not getattr(
                           tornado.web.RequestHandler, m.lower())]
            self.set_header("Allow", ", ".join(allowed))
            message = f"method {self.request.method} is not allowed here"
        self.finish(json_encode({"error": message}))

    async def held_poll(
        self, channel: str, cursor: str | None, timeout: float, limit: int
    ) -> PollResult | None:
        """Poll the hub; ``None`` when the client went away (nothing to write)."""
        self._hold = Hold()
        try:
            result = await self.hub.poll(channel, cursor, timeout, limit, self._hold)
        except StorageUnavailable as error:
            raise tornado.web.HTTPError(503, "storage unavailable: %s", error) from None
        if result is None or self.request.connection.stream.closed():  # type: ignore[union-attr]
            return None
        return result

    def on_connection_close(self) -> None:
        if self._hold is not None:
            self._hold.cancel()

    def channel_or_400(self, name: str) -> str:
        if not protocol.valid_channel(name):
            raise tornado.web.HTTPError(
                400, "invalid channel name %r: use 1-64 characters of A-Z a-z 0-9 _ . -",
                name[:80],
            )
        return name


class NotFoundHandler(JSONHandler):
    """Default handler: every unknown path is a JSON 404."""

    def prepare(self) -> None:
        raise tornado.web.HTTPError(404, "no such path: %s", self.request.path[:200])


class PollHandler(JSONHandler):
    """``GET /channels/{channel}/poll``: see docs/PROTOCOL.md."""

    async def get(self, channel: str) -> None:
        channel = self.channel_or_400(channel)
        arg = self.get_query_argument
        try:
            cursor = arg("cursor", None)
            protocol.parse_cursor(cursor)
            timeout = protocol.parse_timeout(arg("timeout", None), self.config.poll_timeout_max)
            limit = protocol.parse_limit(arg("limit", None))
        except protocol.ProtocolError as error:
            raise tornado.web.HTTPError(400, "%s", error) from None
        result = await self.held_poll(channel, cursor, timeout, limit)
        if result is not None:
            self.finish(result.encode())


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
        self.authorize()
        limit = self.config.max_message_bytes
        length = self.request.headers.get("Content-Length")
        if length is not None:
            if not length.isdigit():
                raise tornado.web.HTTPError(400, "Content-Length must be a number")
            if int(length) > limit:
                raise tornado.web.HTTPError(
                    413, "message too large: %s bytes, the limit is %d bytes", length, limit
                )

    def authorize(self) -> None:
        try:
            check_publisher(
                self.config.publish_token,
                self.request.headers.get("Authorization"),
                self.request.remote_ip,
            )
        except PublishDenied as denied:
            if denied.status == 401:
                self.set_header("WWW-Authenticate", 'Bearer realm="tornado_lp"')
            raise tornado.web.HTTPError(denied.status, "%s", denied.message) from None

    def data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size <= self.config.max_message_bytes:
            self._chunks.append(chunk)

    async def post(self, channel: str) -> None:
        channel = self.channel_or_400(channel)
        if self._size > self.config.max_message_bytes:
            raise tornado.web.HTTPError(
                413, "message too large: the limit is %d bytes", self.config.max_message_bytes
            )
        body = self.message_body(b"".join(self._chunks))
        message = await publish(self.hub, channel, body)
        self.set_status(201)
        self.finish(message.encoded)

    def message_body(self, raw: bytes) -> str:
        """The message text from the request body, or a 400 naming the problem."""
        if not raw:
            raise tornado.web.HTTPError(400, "empty body: send the message text")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise tornado.web.HTTPError(400, "body is not valid UTF-8") from None
        content_type = self.request.headers.get("Content-Type", "text/plain")
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type == "application/json":
            try:
                document = json.loads(text)
            except ValueError:
                raise tornado.web.HTTPError(400, "body is not valid JSON") from None
            if not isinstance(document, dict) or not isinstance(document.get("body"), str):
                raise tornado.web.HTTPError(
                    400, 'JSON body must be an object with a string "body"'
                )
            text = document["body"]
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise tornado.web.HTTPError(
                    400, "body is not valid UTF-8: it escapes a lone surrogate (\\ud800-\\udfff)"
                ) from None
        if not text:
            raise tornado.web.HTTPError(400, "empty message: the body has no text")
        return text


async def publish(hub: Hub, channel: str, body: str) -> Any:
    """Publish through the hub, mapping storage failures to HTTP errors."""
    try:
        return await hub.publish(channel, body)
    except ChannelLimitError as error:
        raise tornado.web.HTTPError(507, "%s", error) from None
    except StorageUnavailable as error:
        raise tornado.web.HTTPError(503, "storage unavailable: %s", error) from None
    except StorageError as error:
        log.error("publish to %s failed: %s", channel, error)
        raise tornado.web.HTTPError(503, "storage error: %s", error) from None


class ChannelInfoHandler(JSONHandler):
    """``GET /channels/{channel}``: retained count, newest id, held polls here."""

    async def get(self, channel: str) -> None:
        channel = self.channel_or_400(channel)
        try:
            await self.hub.open()
            chunk = await self.hub.storage.read(channel, None, 1)
        except StorageUnavailable as error:
            raise tornado.web.HTTPError(503, "storage unavailable: %s", error) from None
        retained = chunk.last_seq - chunk.first_seq + 1
        self.write_json(200, {
            "channel": channel,
            "retained": retained,
            "last_id": (
                protocol.format_cursor(chunk.epoch or self.hub.storage.epoch, chunk.last_seq)
                if chunk.last_seq else None
            ),
            "waiters": self.hub.waiters(channel),
        })


class HealthHandler(JSONHandler):
    """``GET /healthz``: 200 when the storage answers, else 503."""

    async def get(self) -> None:
        try:
            await self.hub.open()
            await self.hub.storage.ping()
        except StorageError as error:
            raise tornado.web.HTTPError(503, "storage unavailable: %s", error) from None
        self.write_json(200, {"status": "ok"})
