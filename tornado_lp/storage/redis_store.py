"""Redis storage: many processes and machines serving the same channels.

Each channel is a Redis Stream; appends, retractions and reads are single Lua
scripts (see :mod:`._redis_lua`), so a slice is consistent and a failed publish
stores nothing. Every append and retraction also ``PUBLISH``-es the channel
name on ``<prefix>notify``.

One pub/sub connection per process listens there and calls the hub's
``wake(channel)`` (registered through :meth:`RedisStorage.watch`); after it
reconnects it calls ``wake(None)`` so that held polls re-read what was
published while notices could not arrive. It answers a heartbeat, so a
silently dead connection is noticed within seconds.

Every new connection first runs the server guard (:mod:`._redis_guard`),
which gives the store a new epoch when Redis restarted or failed over and may
have lost acknowledged messages. ``redis+sentinel://`` URLs find, and follow,
the master through Redis Sentinel (:mod:`._redis_sentinel`).

Outages: commands fail at once (no client-side retries that could store a
message twice) and become :class:`StorageUnavailable`; one log line when Redis
is lost, one when it is back. The module is named ``redis_store`` so that it
cannot shadow the ``redis`` package.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    NoPermissionError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..protocol import new_epoch
from . import _redis_lua, _redis_sentinel
from ._redis_fleet import RedisFleetStore
from ._redis_guard import ROTATED, ReplicaError, ServerGuard, Verdict
from .base import (
    ChannelLimitError,
    Limits,
    Message,
    Slice,
    Storage,
    StorageConfigError,
    StorageUnavailable,
    check_fields,
    not_retained,
)
from .fleet import GONE_AFTER

__all__ = ["DEFAULT_PREFIX", "RedisStorage"]

log = logging.getLogger("tornado_lp.storage.redis")

DEFAULT_PREFIX = "tornado_lp:"
MIN_VERSION = (6, 2)  # XTRIM MINID
COMMAND_TIMEOUT = 5.0  # seconds a command may take before Redis counts as lost
HEARTBEAT = 2.0  # seconds of pub/sub silence before we PING it
CONCURRENT_COMMANDS = 64  # data connections per process, at most
RECONNECT_MAX = 0.5  # seconds between attempts to subscribe again (before jitter)
_LOST = (RedisConnectionError, RedisTimeoutError, OSError)


class RedisStorage(Storage):
    """Messages in Redis Streams, shared by every process that uses the same URL and prefix."""

    shared = True
    #: Seconds a command may take before Redis counts as lost.
    command_timeout = COMMAND_TIMEOUT
    #: Seconds of silence on the subscription before it is pinged; no answer
    #: within ``2 * heartbeat + command_timeout`` counts as a lost connection.
    heartbeat = HEARTBEAT

    def __init__(
        self,
        url: str,
        limits: Limits | None = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        connect_timeout: float = 10.0,
    ) -> None:
        super().__init__(limits)
        self.url = url
        self.prefix = prefix
        self.connect_timeout = connect_timeout
        self.description = f"{_redact(url)} (prefix {prefix!r})"
        self.epoch = ""
        self._guard = ServerGuard(prefix, self._checked, _redact(url))
        self._client, self._sentinel = self._make_client(url)
        self._epoch_key = prefix + "epoch"
        self._seqs_key = prefix + "seqs"
        self._notify = prefix + "notify"
        self._append = self._client.register_script(_redis_lua.APPEND)
        self._read = self._client.register_script(_redis_lua.READ)
        self._retract = self._client.register_script(_redis_lua.RETRACT)
        self._get_epoch = self._client.register_script(_redis_lua.EPOCH)
        self._max_age_us = (
            max(1, round(limits.max_age * 1e6)) if limits and limits.max_age else 0
        )
        self._watchers: list[Callable[[str | None], None]] = []
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._opened = False
        self._opening = asyncio.Lock()
        self._closed = False
        self._lost_since: float | None = None
        self._commands = asyncio.Semaphore(CONCURRENT_COMMANDS)

    def _make_client(self, url: str) -> tuple[aioredis.Redis, Sentinel | None]:
        """The client for ``url``: every connection it opens runs the server guard first."""
        options: dict[str, Any] = {
            "protocol": 2,  # the replies parsed here; redis-py 5 defaults to it, 8 to RESP3
            "retry": Retry(NoBackoff(), 0),
            "socket_timeout": self.command_timeout,
            "socket_connect_timeout": self.command_timeout,
            "redis_connect_func": self._guard.on_connect,
        }
        if urlsplit(url).scheme.lower() == _redis_sentinel.SCHEME:
            return _redis_sentinel.connect(_redis_sentinel.parse(url, _redact(url)), **options)
        _check_url(url)
        try:
            return aioredis.Redis.from_url(url, **options), None
        except ValueError as error:
            raise StorageConfigError(f"bad redis URL {_redact(url)!r}: {error}") from None

    def _stream_key(self, channel: str) -> str:
        return f"{self.prefix}s:{channel}"

    def _keys(self, channel: str) -> list[str]:
        """The KEYS of the APPEND, READ and RETRACT scripts (:data:`._redis_lua.KEY_NAMES`)."""
        prefix = self.prefix
        return [
            f"{prefix}{name}{channel}" if name.endswith(":") else prefix + name
            for name in _redis_lua.KEY_NAMES
        ]

    # -- lifecycle -------------------------------------------------------

    async def open(self) -> None:
        """Connect (retrying for ``connect_timeout`` seconds), check Redis, subscribe."""
        async with self._opening:
            if not self._opened:
                await self._open()
                self._opened = True

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.connect_timeout
        delay = 0.05
        while True:
            try:
                await self._check_server()
                break
            except StorageConfigError:
                await self._close_clients()
                raise
            except (AuthenticationError, NoPermissionError, ResponseError) as error:
                await self._close_clients()
                raise StorageConfigError(f"redis at {_redact(self.url)} refused: {error}") from None
            except _LOST as error:
                if isinstance(error, ReplicaError) and self._sentinel is None:
                    await self._close_clients()
                    raise StorageConfigError(
                        f"{error}: --storage must name the master "
                        f"(or the Sentinels, with {_redis_sentinel.SCHEME}://)"
                    ) from None
                remaining = deadline - loop.time()
                if remaining <= 0:
                    await self._close_clients()
                    raise StorageConfigError(
                        f"cannot reach redis at {_redact(self.url)} within "
                        f"{self.connect_timeout:g} s (--redis-connect-timeout): {error}"
                    ) from None
                await asyncio.sleep(min(delay, remaining))
                delay = min(delay * 2, 1.0)
        self._listener = asyncio.ensure_future(self._listen())
        try:
            await asyncio.wait_for(
                self._subscribed.wait(), max(deadline - loop.time(), self.command_timeout)
            )
        except TimeoutError:
            await self.close()
            raise StorageConfigError(
                f"cannot subscribe to {self._notify!r} on redis at {_redact(self.url)}"
            ) from None

    async def _check_server(self) -> None:
        info = await self._client.info("server")
        version_text = str(info.get("redis_version", "0"))
        version = tuple(int(part) for part in version_text.split(".")[:2] if part.isdigit())
        if version < MIN_VERSION:
            raise StorageConfigError(
                f"redis at {_redact(self.url)} is version {version_text}; "
                f"tornado_lp needs Redis {'.'.join(map(str, MIN_VERSION))} or newer"
            )
        try:
            config = await self._client.config_get("maxmemory-policy")
        except ResponseError:  # CONFIG is often disabled on managed Redis
            config = {}
        policy = " ".join(_text(value) for value in config.values())
        if policy.startswith("allkeys-"):
            log.warning(
                "redis maxmemory-policy is %s: Redis may evict message streams and the "
                "epoch; set maxmemory-policy noeviction (see docs/DEPLOY.md)",
                policy,
            )
        self._set_epoch(_text(await self._get_epoch([self._epoch_key], [new_epoch()])))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            self._listener.cancel()
            try:
                await self._listener
            except asyncio.CancelledError:
                pass
        await self._close_clients()

    async def _close_clients(self) -> None:
        await self._client.aclose()
        if self._sentinel is not None:
            for sentinel in self._sentinel.sentinels:  # Sentinel.aclose() is redis-py 6+
                await sentinel.aclose()

    def watch(self, wake: Callable[[str | None], None]) -> None:
        self._watchers.append(wake)

    def fleet_store(
        self, max_displays: int = 10_000, *, stale_after: float = 0.0,
        gone_after: float = GONE_AFTER,
    ) -> RedisFleetStore:
        """The fleet on this Redis, under the same prefix (:mod:`._redis_fleet`)."""
        return RedisFleetStore(self._client, self._run, self.prefix, max_displays,
                               stale_after=stale_after, gone_after=gone_after)

    # -- storage operations ----------------------------------------------

    async def append(
        self,
        channel: str,
        body: str,
        *,
        expires: float | None = None,
        priority: str = "normal",
        key: str | None = None,
    ) -> Message:
        if expires is not None or priority != "normal" or key is not None:
            expires = check_fields(expires, priority, key)
        limits = self.limits
        reply = await self._run(
            self._append,
            self._keys(channel),
            [channel, body, limits.max_messages,
             self._max_age_us, limits.max_channels, new_epoch(), self._notify,
             "" if expires is None else repr(expires), "1" if priority == "alert" else "",
             key or ""],
        )
        epoch = self._set_epoch(_text(reply[0]))
        seq = int(reply[1])
        if seq == 0:
            raise ChannelLimitError(
                f"channel limit reached: the store already holds "
                f"{limits.max_channels} channels (--max-channels)"
            )
        return Message(
            epoch, channel, seq, body, int(reply[2]) / 1e6,
            expires=expires, priority=priority, key=key,
        )

    async def retract(self, channel: str, seq: int) -> Message:
        reply = await self._run(
            self._retract,
            self._keys(channel),
            [channel, seq, self.limits.max_messages, self._max_age_us, new_epoch(),
             self._notify],
        )
        epoch = self._set_epoch(_text(reply[0]))
        tombstone = int(reply[1])
        if tombstone == 0:
            raise not_retained(_text(reply[2]), channel, seq)
        return Message(epoch, channel, tombstone, None, int(reply[2]) / 1e6, retract=seq)

    async def read(self, channel: str, after: int | None, limit: int) -> Slice:
        start = "" if after is None else f"{after + 1}-0"
        reply = await self._run(
            self._read,
            self._keys(channel),
            [channel, start, limit, self._max_age_us, new_epoch()],
        )
        epoch = self._set_epoch(_text(reply[0]))
        last_seq = int(reply[1])
        if after is not None:
            messages = [_message(epoch, channel, entry) for entry in reply[3]]
            if len(reply) > 4:
                end = int(reply[4])
            else:  # no holes: the answer ends at its last entry, or covers everything
                end = messages[-1].seq if len(messages) == limit and messages else last_seq
        else:  # newest first, and the alert to show before them, if any
            entries = [*reply[4:], *reversed(reply[3])]
            messages = [_message(epoch, channel, entry) for entry in entries]
            end = last_seq
        return Slice(messages, last_seq, int(reply[2]), epoch, end)

    async def channel_count(self) -> int:
        return int(await self._run(self._client.hlen, self._seqs_key))

    async def ping(self) -> None:
        await self._run(self._client.ping)
        if not self._subscribed.is_set():
            raise StorageUnavailable(
                f"the subscription to redis at {_redact(self.url)} is reconnecting"
            )

    # -- errors and outages ----------------------------------------------

    async def _run(self, command: Callable[..., Any], *args: Any) -> Any:
        """Run one Redis command or script, mapping failures to :class:`StorageUnavailable`."""
        try:
            async with self._commands:
                result = await command(*args)
        except _LOST as error:
            self._lost(error)
            raise StorageUnavailable(f"redis at {_redact(self.url)} is unreachable") from None
        except RedisError as error:  # OOM, READONLY replica, MISCONF (failed save), ...
            log.error("redis at %s refused a command: %s", _redact(self.url), error)
            raise StorageUnavailable(f"redis refused: {error}") from None
        self._back()
        return result

    def _lost(self, error: BaseException) -> None:
        if self._lost_since is None and not self._closed:
            self._lost_since = asyncio.get_running_loop().time()
            log.warning(
                "redis at %s is unreachable (%s): publishes answer 503, held polls wait",
                _redact(self.url), error or type(error).__name__,
            )

    def _back(self) -> None:
        if self._lost_since is not None:
            outage = asyncio.get_running_loop().time() - self._lost_since
            self._lost_since = None
            log.warning("redis at %s is reachable again after %.1f s", _redact(self.url), outage)

    def _set_epoch(self, epoch: str) -> str:
        if epoch != self.epoch:
            if self.epoch:
                log.warning(
                    "the redis store has a new epoch (%s -> %s: it was wiped, or another "
                    "process found that Redis may have lost messages): clients will get reset",
                    self.epoch, epoch,
                )
            self.epoch = epoch
        return epoch

    def _checked(self, found: Verdict) -> None:
        """The server guard checked a new connection (see :mod:`._redis_guard`)."""
        where = _redact(self.url)
        if found.verdict in ROTATED:
            if found.previous:
                why = (f"is not the server this store last ran on (run_id {found.previous[:8]} "
                       f"-> {found.run_id[:8]}: Redis restarted, or another server took over)")
            else:
                why = "holds no record of the server this store ran on"
            log.warning(
                "redis at %s %s and nothing proves it kept every acknowledged message: "
                "new epoch %s, clients will get reset", where, why, found.epoch,
            )
        elif found.verdict == "kept":
            log.warning(
                "redis at %s restarted (run_id %s -> %s) with appendonly yes and appendfsync "
                "always: nothing acknowledged was lost, cursors stay valid",
                where, found.previous[:8], found.run_id[:8],
            )
        if found.verdict in ROTATED:
            self.epoch = found.epoch  # announced above: no second line
        self._set_epoch(found.epoch)

    # -- notices from other processes ----------------------------------------

    def _wake(self, channel: str | None) -> None:
        for wake in self._watchers:
            wake(channel)

    async def _listen(self) -> None:
        """Keep one subscription to the notify channel; wake the hub for each notice."""
        loop = asyncio.get_running_loop()
        delay = 0.05
        reconnecting = False
        while True:
            pubsub: PubSub = self._client.pubsub()
            try:
                await pubsub.subscribe(self._notify)
                while not self._subscribed.is_set():
                    reply = await pubsub.get_message(timeout=self.command_timeout)
                    if reply is None:
                        raise RedisTimeoutError("no answer to SUBSCRIBE")
                    if reply["type"] == "subscribe":
                        self._subscribed.set()
                if reconnecting:
                    # Notices published while we were away are lost: re-check everything.
                    self._back()
                    self._wake(None)
                reconnecting, delay = False, 0.05
                heard = loop.time()
                pinged = False
                beat = self.heartbeat
                while True:
                    reply = await pubsub.get_message(timeout=beat)
                    now = loop.time()
                    if reply is not None:
                        heard, pinged = now, False
                        if reply["type"] == "message":
                            self._wake(_text(reply["data"]))
                    elif not pinged and now - heard >= beat:
                        await pubsub.ping()
                        pinged = True
                    elif now - heard >= 2 * beat + self.command_timeout:
                        raise RedisTimeoutError("no answer to PING on the subscription")
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if not isinstance(error, (*_LOST, RedisError)):
                    # A bug, not an outage: say where, then keep the subscription going.
                    log.exception("the redis subscription failed")
                self._subscribed.clear()
                self._lost(error)
                reconnecting = True
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, RECONNECT_MAX)


def _message(epoch: str, channel: str, entry: Any) -> Message:
    """A Message from a stream entry (fields as :mod:`._redis_lua` describes)."""
    entry_id, fields = entry
    seq = int(entry_id.split(b"-", 1)[0])
    if len(fields) == 4 and fields[2] == b"b":  # a plain message: t, b
        return Message(epoch, channel, seq, fields[3].decode("utf-8"), int(fields[1]) / 1e6)
    values = dict(zip(fields[::2], fields[1::2], strict=True))
    ts = int(values[b"t"]) / 1e6
    retract = values.get(b"r")
    if retract is not None:
        return Message(epoch, channel, seq, None, ts, retract=int(retract))
    expires = values.get(b"e")
    key = values.get(b"k")
    return Message(
        epoch, channel, seq, values[b"b"].decode("utf-8"), ts,
        expires=None if expires is None else float(expires),
        priority="alert" if values.get(b"p") == b"a" else "normal",
        key=None if key is None else key.decode("utf-8"),
    )


def _check_url(url: str) -> None:
    """Refuse what redis-py would silently misread (a non-numeric database, a bad port)."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - parsing it is the check
    except ValueError:
        raise StorageConfigError(
            f"bad redis URL {_redact(url)!r}: the port is not a number"
        ) from None
    if parts.scheme != "unix" and parts.path.strip("/") and not parts.path.strip("/").isdigit():
        raise StorageConfigError(
            f"bad redis URL {_redact(url)!r}: the path must be a database number (/0)"
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _redact(url: str) -> str:
    """``url`` without its password (``:pw@`` or ``?password=pw``), for logs and errors."""
    parts = urlsplit(url)
    if parts.password is not None:
        netloc = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{netloc}")
    if "password=" in parts.query:
        parts = parts._replace(query=re.sub(r"(^|&)password=[^&]*", r"\1password=***",
                                            parts.query))
    return parts.geturl()
