"""Subscribe tokens for private channels: HMAC-signed, naming channels and an expiry.

A token is ``<payload>.<signature>``, both unpadded base64url: the payload is
JSON ``{"ch": [channel, ...], "exp": unix_seconds}`` and the signature is
HMAC-SHA256 of the payload text under the server's ``--subscribe-secret``.
``"*"`` in ``ch`` grants every channel. Tokens are checked locally on each
request: no upstream call, no state.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time

from .protocol import valid_channel

__all__ = ["TokenError", "make_token", "parse_ttl", "verify_token"]

_TTL = re.compile(r"(\d+(?:\.\d+)?)([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_TOKEN_LENGTH = 4096


class TokenError(Exception):
    """Why a token does not open a channel (answered as 403; never contains the token)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode(), payload.encode("ascii"), hashlib.sha256).digest())


def parse_ttl(text: str) -> float:
    """``"30d"``, ``"12h"``, ``"15m"``, ``"90s"`` or plain seconds; raises ValueError."""
    match = _TTL.fullmatch(text.strip().lower())
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"ttl {text!r} is not a duration like 30d, 12h, 15m or 90s")
    return float(match.group(1)) * _UNITS[match.group(2)]


def make_token(
    secret: str, channels: list[str], ttl: float, now: float | None = None
) -> str:
    """A token granting ``channels`` (``"*"``: all) for ``ttl`` seconds from ``now``."""
    if not secret:
        raise ValueError("a subscribe secret is needed to make tokens")
    if not channels:
        raise ValueError("name at least one channel (or '*')")
    for channel in channels:
        if channel != "*" and not valid_channel(channel):
            raise ValueError(f"invalid channel name {channel!r}")
    expires = int((time.time() if now is None else now) + ttl)
    payload = _b64(json.dumps({"ch": channels, "exp": expires}, separators=(",", ":")).encode())
    return f"{payload}.{_sign(secret, payload)}"


def verify_token(secret: str, token: str | None, channel: str, now: float | None = None) -> None:
    """Raise :class:`TokenError` unless ``token`` is valid, unexpired and grants ``channel``."""
    if not token:
        raise TokenError(f"channel {channel!r} is private: a token is required (?token=...)")
    payload, dot, signature = token.partition(".")
    if not dot or len(token) > MAX_TOKEN_LENGTH or not payload.isascii():
        raise TokenError("the token is malformed")
    expected = _sign(secret, payload).encode()
    if not hmac.compare_digest(expected, signature.encode("utf-8", "replace")):
        raise TokenError("the token's signature is invalid")
    try:
        claims = json.loads(_unb64(payload))
        channels, expires = claims["ch"], claims["exp"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise TokenError("the token is malformed") from None
    if not isinstance(channels, list) or not isinstance(expires, (int, float)):
        raise TokenError("the token is malformed")
    if (time.time() if now is None else now) >= expires:
        raise TokenError("the token has expired")
    if channel not in channels and "*" not in channels:
        raise TokenError(f"the token does not grant channel {channel!r}")
