"""The fleet store on Redis: every process and machine of a deployment writes here.

Keys (under the store's prefix):

* ``fleet:d:<name>``: one hash per display: ``channel``, ``address``,
  ``user_agent``, ``hold``, ``last_poll``, ``last_seen``, ``process`` (the one
  that saw it last) and ``h:<process>`` (the time each process holding a
  reader for it last said so); it expires 24 h after the display was last seen.
* ``fleet:seen``: a sorted set of display names by last seen, kept to
  ``--max-displays`` (the least recently seen and their hashes are dropped).
* ``fleet:live``: a sorted set of display names by the time they stop being
  live (``/metrics`` counts it).
* ``fleet:procs`` and ``fleet:p:<process>``: the processes, and each one's held
  readers per channel, in a hash with a TTL the process refreshes: a process
  that died drops out within the TTL; one that stops cleanly at once.

Times are Redis's (``TIME`` in the scripts), so machines whose clocks differ
agree on every state. A display is held while some process refreshed its
``h:`` field within ``held_ttl`` seconds. Like the message scripts, these name
keys they build: Redis Cluster is not supported (Sentinel is).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import redis.asyncio as aioredis

from .fleet import FORGET_AFTER, GONE_AFTER, FleetStore, Sighting

__all__ = ["RedisFleetStore"]

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

# KEYS: seen, live. ARGV: display key prefix, max displays, forget after, process,
# held ttl, stale after, then 7 per display: name, channel, address, user agent,
# hold, held (1/0), poll (1/0).
RECORD = _NOW + """
local dprefix, most, forget = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local proc, held_ttl, stale = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local own = 'h:' .. proc
for i = 7, #ARGV, 7 do
  local name = ARGV[i]
  local key = dprefix .. name
  local hold = tonumber(ARGV[i + 4])
  redis.call('HSET', key, 'channel', ARGV[i + 1], 'address', ARGV[i + 2],
             'user_agent', ARGV[i + 3], 'hold', ARGV[i + 4], 'last_seen', now,
             'process', proc)
  if ARGV[i + 6] == '1' or redis.call('HEXISTS', key, 'last_poll') == 0 then
    redis.call('HSET', key, 'last_poll', now)
  end
  local window = stale
  if window <= 0 then window = 2 * math.max(hold, 1) end
  local live_until = now + window
  if ARGV[i + 5] == '1' then
    redis.call('HSET', key, own, now)
    live_until = math.max(live_until, now + held_ttl)
  else
    redis.call('HDEL', key, own)
  end
  local fields = redis.call('HGETALL', key)
  for j = 1, #fields, 2 do
    local field = fields[j]
    if string.sub(field, 1, 2) == 'h:' and field ~= own then
      local seen = tonumber(fields[j + 1])
      if seen + held_ttl > now then
        live_until = math.max(live_until, seen + held_ttl)
      else
        redis.call('HDEL', key, field)
      end
    end
  end
  redis.call('EXPIRE', key, math.ceil(forget))
  redis.call('ZADD', KEYS[1], now, name)
  redis.call('ZADD', KEYS[2], live_until, name)
end
local dropped = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - forget)
local extra = redis.call('ZCARD', KEYS[1]) - #dropped - most
if extra > 0 then
  for _, name in ipairs(redis.call('ZRANGE', KEYS[1], #dropped, #dropped + extra - 1)) do
    dropped[#dropped + 1] = name
  end
end
for _, name in ipairs(dropped) do
  redis.call('DEL', dprefix .. name)
  redis.call('ZREM', KEYS[1], name)
  redis.call('ZREM', KEYS[2], name)
end
return #dropped
"""

# KEYS: seen. ARGV: display key prefix, max displays, held ttl.
# Returns now, then per display: name, and its fields (flat), with held as 'held'.
LIST = _NOW + """
local out = {tostring(now)}
for _, name in ipairs(redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)) do
  local fields = redis.call('HGETALL', ARGV[1] .. name)
  if #fields > 0 then
    local row = {name}
    local held = '0'
    for j = 1, #fields, 2 do
      local field = fields[j]
      if string.sub(field, 1, 2) == 'h:' then
        if tonumber(fields[j + 1]) + tonumber(ARGV[3]) > now then held = '1' end
      else
        row[#row + 1] = field
        row[#row + 1] = fields[j + 1]
      end
    end
    row[#row + 1] = 'held'
    row[#row + 1] = held
    out[#out + 1] = row
  end
end
return out
"""

# KEYS: live.
LIVE = _NOW + """
return redis.call('ZCOUNT', KEYS[1], '(' .. tostring(now), '+inf')
"""

# KEYS: procs. ARGV: process key prefix, channel, process to leave out.
READERS = """
local total = 0
for _, proc in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if proc ~= ARGV[3] then
    local key = ARGV[1] .. proc
    if redis.call('EXISTS', key) == 0 then
      redis.call('SREM', KEYS[1], proc)
    else
      total = total + tonumber(redis.call('HGET', key, ARGV[2]) or '0')
    end
  end
end
return total
"""

# KEYS: procs, this process's key. ARGV: ttl, then channel, count pairs.
REPORT = """
redis.call('SADD', KEYS[1], ARGV[2])
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], '', 0)
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[2], ARGV[1])
return 1
"""

# KEYS: procs, this process's key. ARGV: the process.
LEAVE = """
redis.call('SREM', KEYS[1], ARGV[1])
return redis.call('DEL', KEYS[2])
"""

#: Displays per RECORD call.
BATCH = 200

Run = Callable[..., Awaitable[Any]]


class RedisFleetStore(FleetStore):
    """:class:`~.fleet.FleetStore` on the Redis of a :class:`~.redis_store.RedisStorage`.

    ``run`` runs one command the way the storage does (failures become
    StorageUnavailable). ``held_ttl``: seconds a held display stays held
    without a refresh; ``readers_ttl``: seconds a process's reader counts
    last without one.
    """

    shared = True

    def __init__(
        self, client: aioredis.Redis, run: Run, prefix: str, max_displays: int = 10_000, *,
        stale_after: float = 0.0, gone_after: float = GONE_AFTER,
        held_ttl: float = 3.0, readers_ttl: int = 5,
    ) -> None:
        super().__init__(max_displays, stale_after=stale_after, gone_after=gone_after)
        self._run = run
        self.held_ttl = held_ttl
        self.readers_ttl = readers_ttl
        self._display_prefix = prefix + "fleet:d:"
        self._seen = prefix + "fleet:seen"
        self._live = prefix + "fleet:live"
        self._procs = prefix + "fleet:procs"
        self._proc_prefix = prefix + "fleet:p:"
        self._record = client.register_script(RECORD)
        self._list = client.register_script(LIST)
        self._count_live = client.register_script(LIVE)
        self._count_readers = client.register_script(READERS)
        self._report = client.register_script(REPORT)
        self._leave = client.register_script(LEAVE)
        self._pending: dict[tuple[str, str], Sighting] = {}

    def note(self, process: str, sighting: Sighting) -> None:
        key = (process, sighting.name)
        before = self._pending.get(key)
        if before is not None and before.poll and not sighting.poll:
            sighting = Sighting(**{**vars(sighting), "poll": True})
        self._pending[key] = sighting

    async def flush(self) -> None:
        while self._pending:
            batch: dict[tuple[str, str], Sighting] = {}
            process = next(iter(self._pending))[0]
            for key in list(self._pending):
                if key[0] == process and len(batch) < BATCH:
                    batch[key] = self._pending.pop(key)
            args: list[Any] = [self._display_prefix, self.max_displays, FORGET_AFTER, process,
                               self.held_ttl, self.stale_after]
            for s in batch.values():
                args += [s.name, s.channel, s.address, s.user_agent[:256], repr(float(s.hold)),
                         "1" if s.held else "0", "1" if s.poll else "0"]
            try:
                await self._run(self._record, [self._seen, self._live], args)
            except BaseException:
                for key, sighting in batch.items():  # not sent: keep them, unless newer came
                    self._pending.setdefault(key, sighting)
                raise

    async def displays(self) -> tuple[float, list[dict[str, Any]]]:
        reply = await self._run(
            self._list, [self._seen], [self._display_prefix, self.max_displays, self.held_ttl]
        )
        now = float(reply[0])
        rows = []
        for item in reply[1:]:
            name = _text(item[0])
            fields = {_text(k): _text(v) for k, v in zip(item[1::2], item[2::2], strict=True)}
            rows.append({
                "display": name,
                "channel": fields.get("channel", ""),
                "address": fields.get("address", ""),
                "user_agent": fields.get("user_agent", ""),
                "last_poll": float(fields.get("last_poll", 0)),
                "last_seen": float(fields.get("last_seen", 0)),
                "hold": float(fields.get("hold", 0)),
                "held": fields.get("held") == "1",
                "process": fields.get("process", ""),
            })
        return now, rows

    async def live_count(self) -> int:
        return int(await self._run(self._count_live, [self._live], []))

    async def report_readers(self, process: str, counts: Mapping[str, int]) -> None:
        args: list[Any] = [self.readers_ttl, process]
        for channel, count in counts.items():
            args += [channel, count]
        # ARGV[2] is the process (for SADD); the pairs start at ARGV[3].
        await self._run(self._report, [self._procs, self._proc_prefix + process], args)

    async def readers(self, channel: str, exclude: str = "") -> int:
        return int(await self._run(
            self._count_readers, [self._procs], [self._proc_prefix, channel, exclude]
        ))

    async def leave(self, process: str) -> None:
        await self._run(self._leave, [self._procs, self._proc_prefix + process], [process])


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
