"""Storage backends, chosen by URL.

``memory://`` is built in. Other schemes import their backend only when asked
for, so optional drivers load only when used.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .base import (
    ChannelLimitError,
    Limits,
    Message,
    Slice,
    Storage,
    StorageConfigError,
    StorageError,
    StorageUnavailable,
)
from .memory import MemoryStorage

__all__ = [
    "ChannelLimitError",
    "Limits",
    "MemoryStorage",
    "Message",
    "Slice",
    "Storage",
    "StorageConfigError",
    "StorageError",
    "StorageUnavailable",
    "storage_from_url",
]

SCHEMES = "memory://, sqlite:///relative.db, sqlite:////absolute.db"


def storage_from_url(url: str, limits: Limits | None = None) -> Storage:
    """Make (not open) the backend that ``url`` names.

    Raises :class:`StorageConfigError` for an unknown scheme or a malformed URL.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        return MemoryStorage(limits)
    if scheme == "sqlite":
        from .sqlite import SqliteStorage

        return SqliteStorage.from_url(url, limits)
    raise StorageConfigError(
        f"unknown storage scheme {scheme!r} in {url!r}: use one of {SCHEMES}"
    )
