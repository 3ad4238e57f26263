"""``redis+sentinel://`` URLs: a master found, and followed, through Redis Sentinel.

``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service_name[/db]``:
the Sentinels (port 26379 by default), the name they monitor the master
under, and the database (0 by default). The password is the master's (and
its replicas'); the Sentinels are asked without one.

The client comes from redis-py's :class:`redis.asyncio.sentinel.Sentinel`
(``master_for``): every new connection, the pub/sub one included, asks the
Sentinels for the master's address first, so after a failover the next
connection goes to the promoted replica by itself. Commands on a connection
to the old master fail (it is dead, or demoted: redis-py turns ``READONLY``
into a lost connection) and are answered 503; nothing is retried.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel

from .base import StorageConfigError

__all__ = ["DEFAULT_PORT", "SCHEME", "SentinelAddress", "connect", "parse"]

SCHEME = "redis+sentinel"
DEFAULT_PORT = 26379


@dataclass(frozen=True)
class SentinelAddress:
    """What a ``redis+sentinel://`` URL names."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def parse(url: str, shown: str) -> SentinelAddress:
    """Parse ``url``; ``shown`` is the URL without its password, for errors.

    Raises :class:`StorageConfigError` naming what is wrong.
    """

    def bad(why: str) -> StorageConfigError:
        return StorageConfigError(
            f"bad Sentinel URL {shown!r}: {why} (use {SCHEME}://[:password@]"
            f"host:port[,host:port...]/service_name[/db])"
        )

    scheme, sep, rest = url.partition("://")
    if scheme.lower() != SCHEME or not sep:
        raise bad(f"it does not start with {SCHEME}://")
    rest, _, query = rest.partition("?")
    if query:
        raise bad("it takes no query options")
    netloc, _, path = rest.partition("/")
    userinfo, at, hostlist = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = tuple(_host(entry, bad) for entry in hostlist.split(",")) if hostlist else ()
    if not sentinels:
        raise bad("it names no Sentinel host")
    parts = path.split("/") if path else []
    if parts and parts[-1] == "":
        parts.pop()  # one trailing slash
    if not parts or not parts[0]:
        raise bad("it names no service (the master's name in the Sentinel configuration)")
    if len(parts) > 2:
        raise bad("the path is /service_name or /service_name/db")
    db = 0
    if len(parts) == 2:
        if not parts[1].isdigit():
            raise bad(f"the database must be a number, got {parts[1]!r}")
        db = int(parts[1])
    return SentinelAddress(sentinels, unquote(parts[0]), db, username, password)


def _host(entry: str, bad: Callable[[str], StorageConfigError]) -> tuple[str, int]:
    if not entry:
        raise bad("a Sentinel host is empty (two commas, or a trailing one)")
    if entry.startswith("["):  # [ipv6]:port
        host, close, after = entry[1:].partition("]")
        if not close or (after and not after.startswith(":")):
            raise bad(f"bad IPv6 host {entry!r}")
        port_text = after[1:] if after else ""
    else:
        host, _, port_text = entry.partition(":")
    if not host:
        raise bad(f"no host name in {entry!r}")
    if not port_text:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise bad(f"the port of {entry!r} is not a number from 1 to 65535")
    return host, int(port_text)


def connect(address: SentinelAddress, **connection: Any) -> tuple[aioredis.Redis, Sentinel]:
    """A client of the master ``address`` names, and the Sentinel manager behind it.

    ``connection``: redis-py connection options for the master's connections
    (timeouts, retry, protocol, ``redis_connect_func``); the Sentinels get the
    same timeouts, retry and protocol, but no password and no connect hook.
    """
    sentinel_options = {
        key: value for key, value in connection.items()
        if key.startswith("socket_") or key in {"retry", "protocol"}
    }
    manager = Sentinel(  # type: ignore[no-untyped-call]
        list(address.sentinels),
        sentinel_kwargs=sentinel_options,
        db=address.db,
        username=address.username,
        password=address.password,
        **connection,
    )
    master: aioredis.Redis = manager.master_for(address.service)
    return master, manager
