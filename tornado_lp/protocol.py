"""Wire-level rules shared by every handler: channel names, cursors, query parameters.

A cursor is ``<epoch>-<seq>``: ``epoch`` is 16 lowercase hex digits naming the
store, ``seq`` the message's position in its channel (1 for the first message,
0 for "before the first"). Clients treat it as opaque.

A *stream cursor* stands for a position in each of several channels (the
multiplexed poll, Server-Sent Events, WebSocket): ``<epoch>`` followed, per
channel with a known position, by ``~<tag><seq>``, where ``tag`` is 10 hex
digits naming the channel (:func:`channel_tag`). ``~<tag>`` without a seq marks
a position from another epoch (the reader gets ``reset`` for that channel).
Only ``[0-9a-f~]``: usable unchanged as an SSE ``id:``, a ``Last-Event-ID``
header and in a query string; 16 channels take under 500 characters.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from typing import NamedTuple

__all__ = [
    "DEFAULT_LIMIT",
    "DEFAULT_TIMEOUT",
    "MAX_CHANNELS",
    "MAX_EXPIRY",
    "MAX_LIMIT",
    "PRIORITIES",
    "Cursor",
    "ProtocolError",
    "channel_tag",
    "check_message_fields",
    "format_cursor",
    "format_stream_cursor",
    "new_epoch",
    "parse_channels",
    "parse_cursor",
    "parse_limit",
    "parse_stream_cursor",
    "parse_timeout",
    "valid_channel",
]

DEFAULT_TIMEOUT = 25.0
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000

MAX_CHANNELS = 16  # channels of one stream, multiplexed poll or WebSocket
MAX_EXPIRY = 30 * 24 * 3600.0  # a message may be set to expire at most 30 days ahead
PRIORITIES = ("normal", "alert")

_KEY = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")

_CHANNEL = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_CURSOR = re.compile(r"([0-9a-f]{16})-(0|[1-9][0-9]{0,17})")
_STREAM_CURSOR = re.compile(r"[0-9a-f]{16}(?:~[0-9a-f]{10}(?:0|[1-9][0-9]{0,17})?){0,64}")
_STREAM_ENTRY = re.compile(r"~([0-9a-f]{10})([0-9]*)")


class ProtocolError(ValueError):
    """A request parameter breaks the protocol; the message names it (answered as 400)."""


class Cursor(NamedTuple):
    epoch: str
    seq: int


def new_epoch() -> str:
    """A fresh random store epoch."""
    return secrets.token_hex(8)


def valid_channel(name: str) -> bool:
    """True if ``name`` is 1-64 characters of ``[A-Za-z0-9_.-]``."""
    return _CHANNEL.fullmatch(name) is not None


def format_cursor(epoch: str, seq: int) -> str:
    return f"{epoch}-{seq}"


def parse_cursor(text: str | None) -> Cursor | None:
    """Parse a client's cursor; ``None`` or empty means "no cursor"."""
    if not text:
        return None
    match = _CURSOR.fullmatch(text)
    if match is None:
        raise ProtocolError(
            f"cursor {text[:80]!r} is malformed: send back a cursor the server gave"
        )
    return Cursor(match.group(1), int(match.group(2)))


def parse_timeout(text: str | None, maximum: float) -> float:
    """Seconds to hold: a finite number >= 0, capped at ``maximum``."""
    if text is None:
        return min(DEFAULT_TIMEOUT, maximum)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value >= 0:  # also refuses NaN
        raise ProtocolError(f"timeout must be a number >= 0 (seconds), got {text[:40]!r}")
    return min(value, maximum)


def parse_limit(text: str | None) -> int:
    """Most messages in one answer: an integer 1..1000."""
    if text is None:
        return DEFAULT_LIMIT
    value = int(text) if text.isascii() and text.isdigit() and len(text) <= 4 else 0
    if not 1 <= value <= MAX_LIMIT:
        raise ProtocolError(f"limit must be an integer from 1 to {MAX_LIMIT}, got {text[:40]!r}")
    return value


def parse_channels(values: Iterable[str]) -> tuple[str, ...]:
    """The channels of a stream from its ``channel`` arguments (each comma-separated).

    1 to :data:`MAX_CHANNELS` distinct valid names, in the order given; else
    :class:`ProtocolError` naming ``channel``.
    """
    names = [name for value in values for name in value.split(",")]
    if not names or names == [""]:
        raise ProtocolError("channel is missing: name 1 to 16 channels, comma-separated")
    if len(names) > MAX_CHANNELS:
        raise ProtocolError(
            f"channel names {len(names)} channels; at most {MAX_CHANNELS} per request"
        )
    for name in names:
        if not valid_channel(name):
            raise ProtocolError(
                f"channel {name[:80]!r} is not a valid channel name: use 1-64 characters "
                "of A-Z a-z 0-9 _ . -"
            )
    if len(set(names)) != len(names):
        twice = next(name for name in names if names.count(name) > 1)
        raise ProtocolError(f"channel lists {twice!r} twice")
    return tuple(names)


@functools.lru_cache(maxsize=65536)
def channel_tag(name: str) -> str:
    """10 hex digits naming ``name`` inside a stream cursor (40 bits of BLAKE2s)."""
    return hashlib.blake2s(name.encode(), digest_size=5).hexdigest()


#: A channel's position in a stream cursor: a seq in the cursor's epoch, or
#: ``None`` for a position from another epoch.
StreamPositions = Mapping[str, "int | None"]


def parse_stream_cursor(
    text: str | None, channels: Iterable[str]
) -> tuple[str, dict[str, int | None]] | None:
    """``(epoch, {channel: seq or None})`` for the ``channels`` the cursor names.

    ``None`` or empty means no cursor. Entries for other channels are ignored
    (the reader changed its channel list); a channel the cursor does not name
    is absent from the result (it gets its backlog). Raises
    :class:`ProtocolError` naming ``cursor`` for anything the server never gives.
    """
    if not text:
        return None
    if _STREAM_CURSOR.fullmatch(text) is None:
        raise ProtocolError(
            f"cursor {text[:80]!r} is malformed: send back the cursor (or SSE id) the "
            "server gave for these channels"
        )
    by_tag = _tags(tuple(channels))
    positions: dict[str, int | None] = {}
    for tag, seq in _STREAM_ENTRY.findall(text, 16):
        channel = by_tag.get(tag)
        if channel is not None:
            positions[channel] = int(seq) if seq else None
    return text[:16], positions


def format_stream_cursor(epoch: str, positions: StreamPositions) -> str:
    """The stream cursor for ``positions`` ({channel: seq in ``epoch``, or None})."""
    by_tag = _tags(tuple(positions))
    entries = sorted(
        (tag, "" if positions[channel] is None else str(positions[channel]))
        for tag, channel in by_tag.items()
    )
    return epoch + "".join(f"~{tag}{seq}" for tag, seq in entries)


@functools.lru_cache(maxsize=4096)
def _tags(channels: tuple[str, ...]) -> dict[str, str]:
    """{tag: channel}, leaving out channels whose tags collide (they get their backlog)."""
    by_tag: dict[str, str] = {}
    collided = set()
    for channel in channels:
        tag = channel_tag(channel)
        if tag in by_tag and by_tag[tag] != channel:
            collided.add(tag)
        by_tag[tag] = channel
    for tag in collided:
        del by_tag[tag]
    return by_tag


def check_message_fields(expires: float | None, priority: str, key: str | None) -> None:
    """Refuse a message's optional fields as the protocol does (ProtocolError naming it).

    ``expires``: absolute Unix seconds, at most :data:`MAX_EXPIRY` ahead (one
    already past is stored and simply never shown); ``priority``: one of
    :data:`PRIORITIES`; ``key``: 1-64 of ``[A-Za-z0-9_.:-]``.
    """
    if expires is not None:
        if (isinstance(expires, bool) or not isinstance(expires, (int, float))
                or not math.isfinite(expires)):
            raise ProtocolError(f"expires must be Unix seconds, got {expires!r}")
        if expires > time.time() + MAX_EXPIRY + 1:
            raise ProtocolError("expiry must be at most 30 days ahead (2592000 seconds)")
    if priority not in PRIORITIES:
        raise ProtocolError(
            f"priority must be \"normal\" or \"alert\", got {str(priority)[:40]!r}"
        )
    if key is not None and (not isinstance(key, str) or _KEY.fullmatch(key) is None):
        raise ProtocolError("key must be 1-64 characters of A-Z a-z 0-9 _ . : -")
