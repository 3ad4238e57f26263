"""What a publish request says, and publishing it: shared by the lean path and PublishHandler.

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

from .hub import Hub
from .metrics import Metrics
from .storage import ChannelLimitError, Message, StorageError, StorageUnavailable

__all__ = ["PublishRefused", "PublishRequest", "publish", "read_publish"]

log = logging.getLogger("tornado_lp.handlers")


class PublishRefused(Exception):
    """A publish answered with ``status`` and ``{"error": message}``; nothing was stored."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class PublishRequest:
    """The message a publish asks for."""

    body: str


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
        text = document["body"]
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise PublishRefused(
                400, "body is not valid UTF-8: it escapes a lone surrogate (\\ud800-\\udfff)"
            ) from None
    if not text:
        raise PublishRefused(400, "empty message: the body has no text")
    return PublishRequest(text)


async def publish(hub: Hub, metrics: Metrics, channel: str, request: PublishRequest) -> Message:
    """Store ``request`` on ``channel`` through the hub; storage failures are refusals."""
    started = time.perf_counter()
    try:
        message = await hub.publish(channel, request.body)
    except ChannelLimitError as error:
        raise PublishRefused(507, str(error)) from None
    except StorageError as error:
        metrics.storage_error()
        if not isinstance(error, StorageUnavailable):
            log.error("publish to %s failed: %s", channel, error)
        raise PublishRefused(503, f"storage unavailable: {error}") from None
    metrics.published(time.perf_counter() - started)
    return message
