"""The parameters of a read of several channels: ``/poll``, ``/events`` and ``/ws``.

:func:`parse_read_request` checks them all before anything is held or a
stream starts, so every problem is an ordinary JSON 4xx naming the parameter
(:class:`ReadRefused`), and a stream only ever starts with 200.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from . import protocol
from .base import Settings
from .displays import valid_display
from .subscription import Position, positions_from
from .tokens import TokenError, verify_token

__all__ = ["ReadRefused", "ReadRequest", "parse_read_request"]

_KNOWN = frozenset({"channel", "cursor", "limit", "timeout", "token", "display"})


class ReadRefused(Exception):
    """A read that cannot be served as asked: ``status`` and a message naming the problem."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ReadRequest:
    """A checked read of ``channels`` from ``cursor`` (a stream cursor, or ``None``)."""

    channels: tuple[str, ...]
    cursor: str | None
    limit: int
    timeout: float
    display: str | None

    def positions(self) -> list[Position]:
        return positions_from(self.channels, self.cursor)


def parse_read_request(
    arguments: Mapping[str, list[bytes]],
    settings: Settings,
    *,
    last_event_id: str | None = None,
) -> ReadRequest:
    """Check a multi-channel read's query ``arguments``; raise :class:`ReadRefused` if bad.

    ``last_event_id``: the SSE ``Last-Event-ID`` header, which wins over ``cursor``.
    ``timeout`` is read for every endpoint (streams ignore it). Unknown
    parameters are ignored, as cache-busters are.
    """
    values: dict[str, list[str]] = {}
    for name in _KNOWN.intersection(arguments):
        try:
            values[name] = [_printable(raw) for raw in arguments[name]]
        except ValueError:
            raise ReadRefused(
                400, f"{name} must be printable ASCII (percent-encoded in the URL)"
            ) from None
    try:
        channels = protocol.parse_channels(values.get("channel", []))
        cursor = last_event_id if last_event_id else _last(values, "cursor")
        protocol.parse_stream_cursor(cursor, channels)
        limit = protocol.parse_limit(_last(values, "limit"))
        timeout = protocol.parse_timeout(_last(values, "timeout"), settings.poll_timeout_max)
    except protocol.ProtocolError as error:
        raise ReadRefused(400, str(error)) from None
    display = _last(values, "display")
    if display is not None and not valid_display(display):
        raise ReadRefused(400, "display must be 1-64 characters of A-Z a-z 0-9 _ . : -")
    if settings.subscribe_secret is not None:
        token = _last(values, "token")
        try:
            for channel in channels:
                verify_token(settings.subscribe_secret, token, channel)
        except TokenError as error:
            raise ReadRefused(403, str(error)) from None
    return ReadRequest(channels, cursor or None, limit, timeout, display)


def _last(values: dict[str, list[str]], name: str) -> str | None:
    given = values.get(name)
    return given[-1] if given else None


def _printable(raw: bytes) -> str:
    text = raw.decode("ascii", errors="strict") if raw.isascii() else ""
    if len(text) != len(raw) or not text.isprintable():
        raise ValueError(raw)
    return text
