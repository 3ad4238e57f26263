"""Storage backends, chosen by URL.

``memory://`` is built in. Other schemes import their backend only when asked
for, so optional drivers load only when used.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .base import (
    PRIORITIES,
    ChannelLimitError,
    Limits,
    Message,
    NotRetained,
    Slice,
    Storage,
    StorageConfigError,
    StorageError,
    StorageUnavailable,
)
from .fleet import FleetStore, MemoryFleetStore, Sighting
from .memory import MemoryStorage

__all__ = [
    "PRIORITIES",
    "ChannelLimitError",
    "FleetStore",
    "Limits",
    "MemoryFleetStore",
    "MemoryStorage",
    "Message",
    "NotRetained",
    "Sighting",
    "Slice",
    "Storage",
    "StorageConfigError",
    "StorageError",
    "StorageUnavailable",
    "storage_from_url",
]

SCHEMES = (
    "memory://, sqlite:///relative.db, sqlite:////absolute.db, redis://, rediss://, unix://, "
    "redis+sentinel://"
)


def storage_from_url(
    url: str,
    limits: Limits | None = None,
    *,
    redis_prefix: str = "tornado_lp:",
    redis_connect_timeout: float = 10.0,
) -> Storage:
    """Make (not open) the backend that ``url`` names.

    ``redis_*`` apply to ``redis://``, ``rediss://``, ``unix://`` (a Redis
    socket) and ``redis+sentinel://`` (a master found through Sentinel).
    Raises :class:`StorageConfigError` for an unknown scheme, a malformed URL
    or a backend whose driver is not installed.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        return MemoryStorage(limits)
    if scheme == "sqlite":
        from .sqlite import SqliteStorage

        return SqliteStorage.from_url(url, limits)
    if scheme in {"redis", "rediss", "unix", "redis+sentinel"}:
        try:
            from .redis_store import RedisStorage
        except ImportError as error:
            raise StorageConfigError(
                f"{scheme}:// needs the redis driver ({error}): "
                "pip install 'tornado_lp[redis]'"
            ) from None
        return RedisStorage(
            url, limits, prefix=redis_prefix, connect_timeout=redis_connect_timeout
        )
    raise StorageConfigError(
        f"unknown storage scheme {scheme!r} in {url!r}: use one of {SCHEMES}"
    )
