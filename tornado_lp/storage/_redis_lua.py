"""The Lua scripts of the Redis backend: each is one atomic step on the server.

Keys (``P`` is the prefix, ``tornado_lp:`` by default):

* ``P epoch``: the store's epoch, 16 hex digits. Every script creates it if it
  is missing, so all processes agree on it and a wiped store (``FLUSHALL``)
  gets a new one, which clients see as ``reset``.
* ``P seqs``: a hash, channel name -> newest seq ever given. ``HLEN`` is the
  channel count; the seq survives trimming, so cursors stay meaningful. If a
  channel's entry is lost while its stream is not (eviction, a stray ``DEL``),
  the scripts continue from the stream's newest ID rather than fail.
* ``P s:<channel>``: a Stream of the retained messages. An entry's ID is
  ``<seq>-0`` (our seq is the ID's first part, so Redis orders and trims by
  it) and its fields are ``t`` (time, integer microseconds from the server's
  ``TIME``, never going back within a channel) and ``b`` (the body).

Entries are contiguous: an append adds the next seq at the end and trimming
(``MAXLEN`` for ``--max-messages``, ``MINID`` for ``--max-age``) removes from
the oldest end only, so the oldest retained seq is ``newest - XLEN + 1``.

Numbers handed to ``redis.call`` go through ``string.format('%d')``: Lua
numbers are doubles, and Redis would otherwise format large ones as ``1e+15``.
"""

from __future__ import annotations

__all__ = ["APPEND", "EPOCH", "READ"]

# Shared by every script: the epoch (created if missing) and the age trim.
_PRELUDE = """
local function get_epoch(key, candidate)
  local epoch = redis.call('GET', key)
  if not epoch then
    epoch = candidate
    redis.call('SET', key, epoch)
  end
  return epoch
end

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- Drop entries whose time is older than cutoff (times never decrease along
-- the stream, so expired entries are a run at the oldest end).
local function trim_age(stream, cutoff)
  while true do
    local batch = redis.call('XRANGE', stream, '-', '+', 'COUNT', 16)
    local n = #batch
    if n == 0 then return end
    for i = 1, n do
      if tonumber(batch[i][2][2]) >= cutoff then
        if i > 1 then redis.call('XTRIM', stream, 'MINID', batch[i][1]) end
        return
      end
    end
    local last = tonumber(string.match(batch[n][1], '^(%d+)'))
    redis.call('XTRIM', stream, 'MINID', string.format('%d-0', last + 1))
    if n < 16 then return end
  end
end
"""

#: Get or create the epoch. KEYS: epoch. ARGV: candidate epoch.
EPOCH = _PRELUDE + """
return get_epoch(KEYS[1], ARGV[1])
"""

#: Store one message, trim, and announce it.
#: KEYS: epoch, seqs, stream. ARGV: channel, body, max_messages, max_age (us,
#: 0 = off), max_channels, candidate epoch, notify channel.
#: Returns {epoch, seq, ts_us}, or {epoch, 0} when the channel limit refuses it.
APPEND = _PRELUDE + """
local epoch = get_epoch(KEYS[1], ARGV[6])
local channel = ARGV[1]
if redis.call('HEXISTS', KEYS[2], channel) == 0
    and redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[5]) then
  return {epoch, 0}
end
local now = now_us()
local seq = redis.call('HINCRBY', KEYS[2], channel, 1)
local newest = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
if newest[1] then
  local previous = tonumber(newest[1][2][2])
  if previous > now then now = previous end
  -- The seqs hash lost this channel (evicted, deleted by hand) but its stream
  -- did not: continue after the stream's newest entry instead of failing.
  local top = tonumber(string.match(newest[1][1], '^(%d+)'))
  if seq <= top then
    seq = top + 1
    redis.call('HSET', KEYS[2], channel, string.format('%d', seq))
  end
end
local ts = string.format('%d', now)
redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[3], string.format('%d-0', seq), 't', ts, 'b', ARGV[2])
local max_age = tonumber(ARGV[4])
if max_age > 0 then trim_age(KEYS[3], now - max_age) end
redis.call('PUBLISH', ARGV[7], channel)
return {epoch, seq, ts}
"""

#: One consistent slice of a channel.
#: KEYS: epoch, seqs, stream. ARGV: channel, first ID to return ('' = the
#: newest `limit`), limit, max_age (us, 0 = off), candidate epoch.
#: Returns {epoch, newest seq, retained count, entries}; entries oldest first
#: from XRANGE, newest first from XREVRANGE.
READ = _PRELUDE + """
local epoch = get_epoch(KEYS[1], ARGV[5])
local newest = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or 0)
local max_age = tonumber(ARGV[4])
if max_age > 0 then trim_age(KEYS[3], now_us() - max_age) end
local retained = redis.call('XLEN', KEYS[3])
if newest < retained then  -- the seqs hash lost this channel (see APPEND)
  local top = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
  newest = tonumber(string.match(top[1][1], '^(%d+)'))
end
local entries
if ARGV[2] == '' then
  entries = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', ARGV[3])
else
  entries = redis.call('XRANGE', KEYS[3], ARGV[2], '+', 'COUNT', ARGV[3])
end
return {epoch, newest, retained, entries}
"""
