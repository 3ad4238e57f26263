"""The client's exceptions, named after the problem (re-exported by :mod:`tornado_lp.client`).

::

    ClientError                  anything the client could not do
     ├── StatusError             the server answered an error status (.status, .error)
     │    ├── BadRequest         400: a bad channel name, cursor, body, ...
     │    ├── Unauthorized       401: no or wrong publish token
     │    ├── Forbidden          403: not allowed (publish from afar, subscribe token)
     │    ├── NotFound           404: no such path (a wrong --url?)
     │    ├── PayloadTooLarge    413: the body is over --max-message-bytes
     │    ├── TooManyChannels    507: the store holds --max-channels channels
     │    ├── ServerUnavailable  503: overloaded, shutting down, storage down (.retry_after)
     │    └── ServerError        any other 5xx
     ├── Unreachable             no answer: connection refused, DNS, timeout, dropped
     └── UnexpectedAnswer        an answer that is not what the protocol promises
"""

from __future__ import annotations

import email.utils
import json
import time

__all__ = [
    "BadRequest",
    "ClientError",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "ServerError",
    "ServerUnavailable",
    "StatusError",
    "TooManyChannels",
    "Unauthorized",
    "UnexpectedAnswer",
    "Unreachable",
    "error_text",
    "parse_retry_after",
    "status_error",
]

#: Longest Retry-After honoured, in seconds: a longer one (a misconfigured proxy) is cut.
MAX_RETRY_AFTER = 600.0


class ClientError(Exception):
    """Base of every client error; ``str()`` says what went wrong."""


class StatusError(ClientError):
    """The server answered ``status`` with ``{"error": error}`` (or with other text).

    ``retry_after`` is the ``Retry-After`` header in seconds, when there was one.
    """

    def __init__(self, status: int, error: str, retry_after: float | None = None) -> None:
        super().__init__(f"{error} (HTTP {status})")
        self.status = status
        self.error = error
        self.retry_after = retry_after


class BadRequest(StatusError):
    """400: the request broke the protocol; ``error`` names the parameter."""


class Unauthorized(StatusError):
    """401: the publish token is missing or wrong."""


class Forbidden(StatusError):
    """403: not allowed (a publish from afar without a token, a missing or bad subscribe token)."""


class NotFound(StatusError):
    """404: no such path on this server (is the URL right?)."""


class PayloadTooLarge(StatusError):
    """413: the message is larger than the server's --max-message-bytes."""


class TooManyChannels(StatusError):
    """507: publishing would create a channel beyond the server's --max-channels."""


class ServerUnavailable(StatusError):
    """503: overloaded, shutting down or its storage is down; try again after ``retry_after``."""


class ServerError(StatusError):
    """Any other 5xx (for instance a proxy's 502 or 504)."""


class Unreachable(ClientError):
    """No answer at all: connection refused, unknown host, timeout, connection dropped."""


class UnexpectedAnswer(ClientError):
    """An answer the protocol does not allow (not JSON, a missing key): a wrong URL or a proxy."""


_BY_STATUS: dict[int, type[StatusError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    413: PayloadTooLarge,
    503: ServerUnavailable,
    507: TooManyChannels,
}


def error_text(body: bytes, reason: str) -> str:
    """The server's ``error`` text from an error answer's body, else the reason phrase."""
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    error = document.get("error") if isinstance(document, dict) else None
    if isinstance(error, str):
        return error
    text = body.decode("utf-8", "replace").strip()
    return text[:200] if text and len(text) < 200 and "<" not in text else reason


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` (delta-seconds or an HTTP date) in seconds, at most 600; else None."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def status_error(status: int, body: bytes, reason: str, retry_after: str | None) -> StatusError:
    """The exception for an error answer: the class its status names, with the server's text."""
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else StatusError)
    return cls(status, error_text(body, reason), parse_retry_after(retry_after))
