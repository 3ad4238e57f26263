"""Wire-level rules shared by every handler: channel names, cursors, query parameters.

A cursor is ``<epoch>-<seq>``: ``epoch`` is 16 lowercase hex digits naming the
store, ``seq`` the message's position in its channel (1 for the first message,
0 for "before the first"). Clients treat it as opaque.
"""

from __future__ import annotations

import math
import re
import secrets
from typing import NamedTuple

__all__ = [
    "DEFAULT_LIMIT",
    "DEFAULT_TIMEOUT",
    "MAX_LIMIT",
    "Cursor",
    "ProtocolError",
    "format_cursor",
    "new_epoch",
    "parse_cursor",
    "parse_limit",
    "parse_timeout",
    "valid_channel",
]

DEFAULT_TIMEOUT = 25.0
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000

_CHANNEL = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_CURSOR = re.compile(r"([0-9a-f]{16})-(0|[1-9][0-9]{0,17})")


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
