"""What a publish says, publishing it, and retracting: shared by the lean path and handlers.

:func:`read_publish` turns a request body into a :class:`PublishRequest` or
raises :class:`PublishRefused` (a 4xx naming the problem). :func:`publish`
stores it through the hub and turns storage failures into 507/503. Nothing
is stored unless both succeed.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from . import protocol
from .hub import Hub
from .metrics import Metrics
from .storage import ChannelLimitError, Message, NotRetained, StorageError, StorageUnavailable

__all__ = ["PublishRefused", "PublishRequest", "publish", "read_publish", "retract"]

log = logging.getLogger("tornado_lp.handlers")


class PublishRefused(Exception):
    """A publish answered with ``status`` and ``{"error": message}``; nothing was stored."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class PublishRequest:
    """The message a publish asks for (``expires``: absolute Unix seconds)."""

    body: str
    expires: float | None = None
    priority: str = "normal"
    key: str | None = None


_FIELDS = ("body", "expires_in", "expires_at", "priority", "key")


def _seconds(document: dict[str, object], name: str) -> float | None:
    value = document.get(name)
    if value is None and name not in document:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise PublishRefused(400, f"{name} must be a number of seconds, got {value!r:.40}")
    return float(value)


def _fields(document: dict[str, object]) -> tuple[float | None, str, str | None]:
    """``expires``, ``priority``, ``key`` of a JSON publish, checked."""
    unknown = [name for name in document if name not in _FIELDS]
    if unknown:
        raise PublishRefused(
            400, f"unknown field {unknown[0][:40]!r}: a publish takes {', '.join(_FIELDS)}"
        )
    expires_in = _seconds(document, "expires_in")
    expires_at = _seconds(document, "expires_at")
    if expires_in is not None and expires_at is not None:
        raise PublishRefused(400, "give expires_in or expires_at, not both")
    if expires_in is not None:
        if not 0 < expires_in <= protocol.MAX_EXPIRY:
            raise PublishRefused(
                400, f"expires_in must be more than 0 and at most {protocol.MAX_EXPIRY:.0f} "
                f"seconds (30 days), got {expires_in:g}")
        expires: float | None = time.time() + expires_in
    else:
        expires = expires_at
        if expires is not None and not expires > time.time():
            raise PublishRefused(400, f"expires_at must be in the future, got {expires:g}")
    priority = document.get("priority", "normal")
    if not isinstance(priority, str):
        raise PublishRefused(400, 'priority must be "normal" or "alert"')
    given = document.get("key")
    if "key" in document and not isinstance(given, str):
        raise PublishRefused(400, "key must be 1-64 characters of A-Z a-z 0-9 _ . : -")
    key = given if isinstance(given, str) else None
    try:
        protocol.check_message_fields(expires, priority, key)
    except protocol.ProtocolError as error:
        name = "expires_at" if "expires_at" in document else "expires_in"
        message = str(error).replace("expiry", name)
        raise PublishRefused(400, message) from None
    return expires, priority, key


def read_publish(raw: bytes, content_type: str | None) -> PublishRequest:
    """The publish in a request body: JSON ``{"body": ...}`` or the text itself."""
    if not raw:
        raise PublishRefused(400, "empty body: send the message text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PublishRefused(400, "body is not valid UTF-8") from None
    media_type = (content_type or "text/plain").split(";", 1)[0].strip().lower()
    if media_type == "application/json":
        try:
            document = json.loads(text)
        except ValueError:
            raise PublishRefused(400, "body is not valid JSON") from None
        except RecursionError:
            raise PublishRefused(400, "body is not valid JSON: nested too deep") from None
        if not isinstance(document, dict) or not isinstance(document.get("body"), str):
            raise PublishRefused(400, 'JSON body must be an object with a string "body"')
        expires, priority, key = _fields(document)
        text = document["body"]
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise PublishRefused(
                400, "body is not valid UTF-8: it escapes a lone surrogate (\\ud800-\\udfff)"
            ) from None
        if not text:
            raise PublishRefused(400, "empty message: the body has no text")
        return PublishRequest(text, expires, priority, key)
    if not text:
        raise PublishRefused(400, "empty message: the body has no text")
    return PublishRequest(text)


async def publish(hub: Hub, metrics: Metrics, channel: str, request: PublishRequest) -> Message:
    """Store ``request`` on ``channel`` through the hub; storage failures are refusals."""
    started = time.perf_counter()
    try:
        message = await hub.publish(channel, request.body, expires=request.expires,
                                    priority=request.priority, key=request.key)
    except ChannelLimitError as error:
        raise PublishRefused(507, str(error)) from None
    except ValueError as error:  # an expiry that passed between reading and storing
        raise PublishRefused(400, str(error)) from None
    except StorageError as error:
        metrics.storage_error()
        if not isinstance(error, StorageUnavailable):
            log.error("publish to %s failed: %s", channel, error)
        raise PublishRefused(503, f"storage unavailable: {error}") from None
    metrics.published(time.perf_counter() - started)
    return message


async def retract(hub: Hub, metrics: Metrics, channel: str, message_id: str) -> Message:
    """Retract the message ``message_id`` of ``channel``; its tombstone, or a refusal.

    400 for an id that is not one the server gives; 404 for one it does not
    retain (another store's, trimmed, expired, already retracted, a tombstone).
    """
    try:
        cursor = protocol.parse_cursor(message_id)
    except protocol.ProtocolError:
        raise PublishRefused(
            400, f"message id {message_id[:80]!r} is malformed: use the id a publish answered"
        ) from None
    if cursor is None:
        raise PublishRefused(400, "message id is missing: use the id a publish answered")
    await hub.open()
    if cursor.epoch != hub.storage.epoch:
        raise PublishRefused(
            404, f"message {message_id} is not retained: its id is from another store "
            "(or from before the store was wiped)")
    if cursor.seq == 0:  # the position before the first message: no message has it
        raise PublishRefused(404, f"message {message_id} is not retained: no message has seq 0")
    try:
        return await hub.retract(channel, cursor.seq)
    except NotRetained as error:
        raise PublishRefused(404, str(error)) from None
    except StorageError as error:
        metrics.storage_error()
        if not isinstance(error, StorageUnavailable):
            log.error("retract on %s failed: %s", channel, error)
        raise PublishRefused(503, f"storage unavailable: {error}") from None
