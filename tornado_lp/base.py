"""What every JSON handler shares: settings, JSON errors, CORS, tokens, held polls.

Handlers get their collaborators through ``initialize(ctx=...)``; one
:class:`Context` per application, so two apps in a process share nothing.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

import tornado.web
from tornado.escape import json_encode

from . import protocol
from .auth import PublishDenied, check_publisher
from .fleet import Fleet
from .heartbeats import Heartbeats
from .hub import Hold, Hub, Overloaded, PollResult
from .logs import redacted_uri
from .metrics import Metrics
from .storage import StorageUnavailable
from .tokens import TokenError, verify_token

__all__ = ["CLIENT_GONE", "ApiError", "Context", "JSONHandler", "Settings"]

log = logging.getLogger("tornado_lp.handlers")

JSON_TYPE = "application/json; charset=utf-8"
CORS_EXPOSED = "Retry-After, X-Server-Time"
CLIENT_GONE = 499


class ApiError(tornado.web.HTTPError):
    """An HTTP error answered as ``{"error": message}``, with extra response headers.

    (Tornado clears headers set before an error is raised; these survive.)
    """

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, "%s", message)
        self.headers = headers or {}


@dataclass(frozen=True)
class Settings:
    """Per-application settings the handlers read."""

    max_message_bytes: int = 65536
    poll_timeout_max: float = 60.0
    publish_token: str | None = None
    subscribe_secret: str | None = None
    cors_origins: frozenset[str] = field(default_factory=frozenset)
    #: Streams (SSE): seconds between heartbeats, seconds before a stream is
    #: closed for the client to reconnect (jittered ±10 %), and the most
    #: unsent bytes a stream may have before it is cut off.
    heartbeat: float = 15.0
    stream_max_age: float = 600.0
    stream_max_buffer: int = 256 * 1024


@dataclass
class Context:
    """Everything one application's handlers share."""

    hub: Hub
    settings: Settings
    metrics: Metrics
    fleet: Fleet
    heartbeats: Heartbeats


class JSONHandler(tornado.web.RequestHandler):
    """Base: JSON errors, no caching, no ETag hashing, CORS, held polls that end with the client."""

    ctx: Context
    hub: Hub
    config: Settings
    _hold: Hold | None = None

    def initialize(self, ctx: Context) -> None:
        self.ctx = ctx
        self.hub = ctx.hub
        self.config = ctx.settings
        self._set_cors_headers()

    def set_default_headers(self) -> None:
        # Runs in __init__ (before initialize) and again when an error clears the headers.
        self.set_header("Content-Type", JSON_TYPE)
        self.set_header("Cache-Control", "no-store")
        if hasattr(self, "ctx"):
            self._set_cors_headers()

    def _set_cors_headers(self) -> None:
        origins = self.config.cors_origins
        if origins:
            self.set_header("Vary", "Origin")
            origin = self.request.headers.get("Origin")
            if origin in origins:
                self.set_header("Access-Control-Allow-Origin", origin)
                self.set_header("Access-Control-Expose-Headers", CORS_EXPOSED)

    def options(self, *args: str) -> None:
        """CORS preflight: allowed origins learn the methods and headers they may use."""
        if self.request.headers.get("Origin") in self.config.cors_origins:
            self.set_header("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
            self.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type")
            self.set_header("Access-Control-Max-Age", "600")
        self.set_status(204)
        self.finish()

    def compute_etag(self) -> None:
        return None

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        # An HTTPError is an answer, not a fault: the access log line says enough.
        # Tornado's own message would include the full URI, tokens and all.
        if not isinstance(value, tornado.web.HTTPError):
            request = self.request
            log.error("uncaught exception in %s %s", request.method,
                      redacted_uri(request.path, request.query), exc_info=(typ, value, tb))

    def write_json(self, status: int, payload: dict[str, Any]) -> None:
        self.set_status(status)
        self.finish(json_encode(payload))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        message = self._reason
        exc_info = kwargs.get("exc_info")
        if exc_info is not None:
            error = exc_info[1]
            if isinstance(error, ApiError):
                for name, value in error.headers.items():
                    self.set_header(name, value)
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
        self.set_header("Content-Type", JSON_TYPE)  # also for pages, whose default is HTML
        self.finish(json_encode({"error": message}))

    def authorize_publisher(self) -> None:
        """Publishing and retracting: the bearer token, or loopback without one (401/403)."""
        try:
            check_publisher(
                self.config.publish_token,
                self.request.headers.get("Authorization"),
                self.request.remote_ip,
            )
        except PublishDenied as denied:
            headers = {}
            if denied.status == 401:
                headers["WWW-Authenticate"] = 'Bearer realm="tornado_lp"'
            raise ApiError(denied.status, denied.message, headers) from None

    def check_subscriber(self, channel: str) -> None:
        """With ``--subscribe-secret``, require a ``token`` argument that grants ``channel``."""
        secret = self.config.subscribe_secret
        if secret is None:
            return
        try:
            verify_token(secret, self.get_argument("token", None), channel)
        except TokenError as error:
            raise ApiError(403, str(error)) from None

    def channel_or_400(self, name: str) -> str:
        if not protocol.valid_channel(name):
            raise ApiError(
                400, f"invalid channel name {name[:80]!r}: use 1-64 characters of "
                "A-Z a-z 0-9 _ . -"
            )
        return name

    async def held_poll(
        self, channel: str, cursor: str | None, timeout: float, limit: int
    ) -> PollResult | None:
        """Poll the hub; ``None`` when the client went away (nothing to write).

        Sets ``X-Server-Time`` so clients can tell how stale they are.
        """
        self._hold = Hold()
        try:
            result = await self.hub.poll(channel, cursor, timeout, limit, self._hold)
        except StorageUnavailable as error:
            self.ctx.metrics.storage_error()
            raise ApiError(503, f"storage unavailable: {error}") from None
        except Overloaded as error:
            # Jittered, so a fleet of screens does not come back in one wave.
            low, high = (1, 5) if self.hub.closing else (2, 15)
            raise ApiError(
                503, f"{error}: retry later", {"Retry-After": str(random.randint(low, high))}
            ) from None
        if result is None or self.request.connection.stream.closed():  # type: ignore[union-attr]
            # Nothing is written; the access log shows nginx's "client closed request".
            self.set_status(CLIENT_GONE, "Client Closed Request")
            return None
        self.set_header("X-Server-Time", f"{time.time():.3f}")
        return result

    def on_connection_close(self) -> None:
        if self._hold is not None:
            self._hold.cancel()
