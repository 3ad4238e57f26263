"""The Lua scripts of the Redis backend: each is one atomic step on the server.

Keys (``P`` is the prefix, ``tornado_lp:`` by default):

* ``P epoch``: the store's epoch, 16 hex digits. Every script creates it if it
  is missing, so all processes agree on it and a wiped store (``FLUSHALL``)
  gets a new one, which clients see as ``reset``.
* ``P seqs``: a hash, channel name -> newest seq ever given. ``HLEN`` is the
  channel count; the seq survives trimming, so cursors stay meaningful. If a
  channel's entry is lost while its stream is not (eviction, a stray ``DEL``),
  the scripts continue from the stream's newest ID rather than fail.
* ``P firsts``: a hash, channel name -> ``"<first_seq>:<below>"``, for
  channels that may have holes. ``first_seq`` is ``Slice.first_seq``: one
  more than the newest seq a reader could still see when trimming removed
  it; ``below`` is where the ``--max-messages`` window starts (every seq
  below it is trimmed). A channel gets its record with its first expiring
  message or retraction, before it can have a hole; until then (and for
  channels an older release wrote) its entries are contiguous and
  ``first_seq`` is ``newest - XLEN + 1``, as it always was. So plain
  channels pay one ``HGET`` for all of this.
* ``P s:<channel>``: a Stream of the retained entries. An entry's ID is
  ``<seq>-0`` (our seq is the ID's first part, so Redis orders and trims by
  it) and its fields are ``t`` (time, integer microseconds from the server's
  ``TIME``, never going back within a channel), then ``b`` (the body) for a
  message or ``r`` (the retracted seq) for a tombstone, then, when set, ``e``
  (expiry, Unix seconds as Python wrote the float), ``p`` (``a``: an alert)
  and ``k`` (the key). A plain message is exactly ``t``, ``b``.
* Per channel, only once it uses them: ``P k:<channel>`` (sorted set, key ->
  newest seq with that key), ``P a:<channel>`` (sorted set of alert seqs),
  ``P e:<channel>`` (sorted set, seq scored by its expiry, until the entry is
  deleted), and the holes: ``P x:<channel>`` (retracted seqs) and
  ``P d:<channel>`` (seqs deleted because they expired). Members of ``k:``,
  ``a:``, ``x:`` and ``d:`` below ``first_seq`` are pruned when the set is
  written; a member of ``e:`` leaves when its entry is deleted or retracted.

Trimming removes entries from the oldest end only: by ``--max-messages`` as a
window of seqs (``XADD ... MINID newest - max + 1``) and by ``--max-age``
(``XTRIM MINID``). Expired entries (a bounded batch per script call, from
``e:``) and retracted messages are deleted with ``XDEL``: holes, which never
move ``first_seq``. When the window passes a seq of a channel with a record,
whether it was a hole is read from the hole sets, not from the stream (inside
Lua a range read of a stream costs more than the rest of the append).

Cost: Lua creates a script's local functions on every call, so the helpers
only channels with holes, keys or alerts need are made by ``lib()`` when a
script first needs them; a plain append or read defines a handful.

Numbers handed to ``redis.call`` go through ``string.format('%d')``: Lua
numbers are doubles, and Redis would otherwise format large ones as ``1e+15``.
"""

from __future__ import annotations

__all__ = ["APPEND", "EPOCH", "KEY_NAMES", "READ", "RETRACT"]

# Shared by every script: the epoch (created if missing), the trim record, and
# lib(), which makes the helpers for holes, keys and alerts on first use.
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

local function seq_of(id)
  return tonumber(string.match(id, '^(%d+)'))
end

-- The channel's trim record (first_seq, the window's start), or nil for a
-- channel that never had an expiring message or a retraction.
local function get_record(firsts, channel)
  local record = redis.call('HGET', firsts, channel)
  if not record then return nil, nil end
  local first, below = string.match(record, '^(%d+):(%d+)$')
  return tonumber(first), tonumber(below)
end

local function set_record(firsts, channel, first, below)
  redis.call('HSET', firsts, channel, string.format('%d:%d', first, below))
end

-- The newest seq: the seqs hash, or the stream's newest ID if the hash lost it.
-- Also returns XLEN.
local function newest_seq(seqs, stream, channel)
  local newest = tonumber(redis.call('HGET', seqs, channel) or 0)
  local length = redis.call('XLEN', stream)
  if newest < length then
    local top = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
    newest = seq_of(top[1][1])
  end
  return newest, length
end

local function lifecycle()
  local L = {}

  -- A field of an entry after t and b/r (the optional ones).
  function L.field(fields, name)
    for i = 5, #fields, 2 do
      if fields[i] == name then return fields[i + 1] end
    end
    return nil
  end

  -- What a reader with a cursor may see (retracted entries are deleted, not kept).
  function L.visible(fields, now)
    if #fields == 4 then return true end  -- a plain message or a tombstone: no expiry
    local e = L.field(fields, 'e')
    return not e or tonumber(e) * 1000000 > now
  end

  -- What a first paint may show: a message, not expired, the newest with its key.
  function L.current(fields, seq, now, keys)
    if fields[3] ~= 'b' then return false end  -- a tombstone
    if #fields == 4 then return true end
    local e = L.field(fields, 'e')
    if e and tonumber(e) * 1000000 <= now then return false end
    local k = L.field(fields, 'k')
    if k then
      local newest = redis.call('ZSCORE', keys, k)
      if not newest or tonumber(newest) ~= seq then return false end
    end
    return true
  end

  -- Drop entries whose time is older than cutoff (times never decrease along
  -- the stream, so they are a run at the oldest end). Returns first_seq (nil
  -- for a channel without record) raised past the newest dropped entry a
  -- reader could still see.
  function L.trim_age(stream, first, cutoff, now)
    while true do
      local batch = redis.call('XRANGE', stream, '-', '+', 'COUNT', 16)
      local n = #batch
      if n == 0 then return first end
      for i = 1, n do
        if tonumber(batch[i][2][2]) >= cutoff then
          if i > 1 then redis.call('XTRIM', stream, 'MINID', batch[i][1]) end
          return first
        end
        if first and L.visible(batch[i][2], now) then
          first = math.max(first, seq_of(batch[i][1]) + 1)
        end
      end
      redis.call('XTRIM', stream, 'MINID', string.format('%d-0', seq_of(batch[n][1]) + 1))
      if n < 16 then return first end
    end
  end

  -- Forget members of a per-channel sorted set scored below first_seq.
  function L.prune(set, first)
    redis.call('ZREMRANGEBYSCORE', set, '-inf', string.format('(%d', first))
  end

  -- Delete a bounded batch of entries whose expiry has passed: holes.
  function L.delete_expired(stream, expiring, deleted, now, first)
    local due = redis.call('ZRANGEBYSCORE', expiring, '-inf',
                           string.format('%.6f', now / 1000000), 'LIMIT', 0, 16)
    if #due == 0 then return end
    for i = 1, #due do
      redis.call('XDEL', stream, due[i] .. '-0')
      redis.call('ZADD', deleted, due[i], due[i])
    end
    redis.call('ZREM', expiring, unpack(due))
    L.prune(deleted, first)
  end

  -- Whether seq s is a hole (retracted, or expired) at `now`.
  function L.hole(s, now, retracted, deleted, expiring)
    local member = string.format('%d', s)
    if redis.call('ZSCORE', retracted, member) or redis.call('ZSCORE', deleted, member) then
      return true
    end
    local expires = redis.call('ZSCORE', expiring, member)
    return expires ~= false and expires ~= nil and tonumber(expires) * 1000000 <= now
  end

  -- The window moves from `below` to `window`: first_seq passes the newest seq
  -- it passes that a reader could still see. Usually one seq, and while no hole
  -- set exists no lookup at all.
  function L.pass_window(first, below, window, now, retracted, deleted, expiring)
    local holes = redis.call('EXISTS', retracted, deleted, expiring) > 0
    for s = window - 1, below, -1 do
      if not holes or not L.hole(s, now, retracted, deleted, expiring) then
        return math.max(first, s + 1)
      end
    end
    return first
  end

  -- The record of a channel that is about to be able to have holes (made if missing).
  function L.ensure_record(K, channel)
    local first, below = get_record(K[4], channel)
    if first then return first, below end
    local newest, length = newest_seq(K[2], K[3], channel)
    first = newest - length + 1
    set_record(K[4], channel, first, first)
    return first, first
  end

  return L
end

local made = nil
local function lib()
  if not made then made = lifecycle() end
  return made
end
"""

# Only the scripts that add entries need this.
_WRITES = """
-- Add an entry with the next seq (times kept monotonic), trim by count and
-- age, update the trim record if the channel has one (first, below; nil if
-- not). K: the script's KEYS. Returns seq, ts (a string), first.
local function add_entry(K, channel, fields, max_messages, max_age, now, first, below)
  local seq = redis.call('HINCRBY', K[2], channel, 1)
  local newest = redis.call('XREVRANGE', K[3], '+', '-', 'COUNT', 1)
  if newest[1] then
    local previous = tonumber(newest[1][2][2])
    if previous > now then now = previous end
    -- The seqs hash lost this channel (evicted, deleted by hand) but its stream
    -- did not: continue after the stream's newest entry instead of failing.
    local top = seq_of(newest[1][1])
    if seq <= top then
      seq = top + 1
      redis.call('HSET', K[2], channel, string.format('%d', seq))
    end
  end
  local ts = string.format('%d', now)
  fields[2] = ts
  local id = string.format('%d-0', seq)
  local window = seq - max_messages + 1
  local dirty = false
  if window > 1 then
    if first and window > below then
      first = lib().pass_window(first, below, window, now, K[7], K[9], K[8])
      below, dirty = window, true
    end
    redis.call('XADD', K[3], 'MINID', string.format('%d-0', window), id, unpack(fields))
  else
    redis.call('XADD', K[3], id, unpack(fields))
  end
  if max_age > 0 then
    local raised = lib().trim_age(K[3], first, now - max_age, now)
    if raised ~= first then first, dirty = raised, true end
  end
  if dirty then set_record(K[4], channel, first, below) end
  return seq, ts, first
end
"""

#: The KEYS of APPEND, READ and RETRACT, after the prefix (a name ending in ``:``
#: is followed by the channel): epoch, seqs, stream, firsts, keys, alerts,
#: retracted, expiring, deleted (see the module docstring).
KEY_NAMES = ("epoch", "seqs", "s:", "firsts", "k:", "a:", "x:", "e:", "d:")

#: Get or create the epoch. KEYS: epoch. ARGV: candidate epoch.
EPOCH = _PRELUDE + """
return get_epoch(KEYS[1], ARGV[1])
"""

#: Store one message, trim, and announce it. KEYS: :data:`KEY_NAMES`.
#: ARGV: channel, body, max_messages, max_age (us, 0 = off), max_channels,
#: candidate epoch, notify channel, expires ('' = none), alert ('1' or ''),
#: key ('' = none).
#: Returns {epoch, seq, ts_us}, or {epoch, 0} when the channel limit refuses it.
APPEND = _PRELUDE + _WRITES + """
local epoch = get_epoch(KEYS[1], ARGV[6])
local channel = ARGV[1]
if redis.call('HEXISTS', KEYS[2], channel) == 0
    and redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[5]) then
  return {epoch, 0}
end
local now = now_us()
local first, below
if ARGV[8] ~= '' then
  first, below = lib().ensure_record(KEYS, channel)  -- before this message can become a hole
else
  first, below = get_record(KEYS[4], channel)
end
if first then lib().delete_expired(KEYS[3], KEYS[8], KEYS[9], now, first) end
local fields = {'t', '', 'b', ARGV[2]}
if ARGV[8] ~= '' then
  fields[#fields + 1] = 'e'
  fields[#fields + 1] = ARGV[8]
end
if ARGV[9] ~= '' then
  fields[#fields + 1] = 'p'
  fields[#fields + 1] = 'a'
end
if ARGV[10] ~= '' then
  fields[#fields + 1] = 'k'
  fields[#fields + 1] = ARGV[10]
end
local seq, ts
seq, ts, first = add_entry(KEYS, channel, fields, tonumber(ARGV[3]), tonumber(ARGV[4]), now,
                           first, below)
if #fields > 4 then
  local member = string.format('%d', seq)
  local oldest = first or seq - redis.call('XLEN', KEYS[3]) + 1
  if ARGV[8] ~= '' then redis.call('ZADD', KEYS[8], ARGV[8], member) end
  if ARGV[9] ~= '' then
    redis.call('ZADD', KEYS[6], member, member)
    lib().prune(KEYS[6], oldest)
  end
  if ARGV[10] ~= '' then
    redis.call('ZADD', KEYS[5], member, ARGV[10])
    lib().prune(KEYS[5], oldest)
  end
end
redis.call('PUBLISH', ARGV[7], channel)
return {epoch, seq, ts}
"""

#: One consistent slice of a channel. KEYS: :data:`KEY_NAMES`.
#: ARGV: channel, first ID to return ('' = first paint), limit, max_age (us,
#: 0 = off), candidate epoch.
#: Returns {epoch, newest seq, first_seq, entries} and maybe a fifth element.
#: After a cursor: entries oldest first; the fifth is the end (see Slice.end),
#: sent only by a channel that can have holes (without, the end is the last
#: entry's seq when there are `limit` entries, else the newest seq). First
#: paint: entries newest first; the fifth is the alert shown before them.
READ = _PRELUDE + """
local epoch = get_epoch(KEYS[1], ARGV[5])
local channel = ARGV[1]
local stream = KEYS[3]
local first, below = get_record(KEYS[4], channel)
local record = first ~= nil  -- without one, nothing can be hidden: no clock needed
local max_age = tonumber(ARGV[4])
local now = 0
if record or max_age > 0 then now = now_us() end
if record then lib().delete_expired(stream, KEYS[8], KEYS[9], now, first) end
if max_age > 0 then
  local raised = lib().trim_age(stream, first, now - max_age, now)
  if raised ~= first then
    first = raised
    set_record(KEYS[4], channel, first, below)
  end
end
local newest, length = newest_seq(KEYS[2], stream, channel)
if not first then first = newest - length + 1 end
local limit = tonumber(ARGV[3])
if ARGV[2] ~= '' and not record then
  -- A reader with a cursor, no holes: every entry after the cursor is visible,
  -- so the answer ends at its last entry (the caller works that out).
  local batch = redis.call('XRANGE', stream, ARGV[2], '+', 'COUNT', limit)
  local expiring = false
  for i = 1, #batch do
    local fields = batch[i][2]
    if #fields > 4 and lib().field(fields, 'e') then  -- only if the trim record was lost
      expiring = true
      break
    end
  end
  if not expiring then return {epoch, newest, first, batch} end
end
if ARGV[2] ~= '' then
  -- A reader with a cursor: the visible entries after it. To know where the
  -- answer ends, a channel with holes looks on for one more visible entry.
  if now == 0 then now = now_us() end
  local visible = lib().visible
  local out, low, count = {}, ARGV[2], limit
  while true do
    local batch = redis.call('XRANGE', stream, low, '+', 'COUNT', count)
    local n = #batch
    for i = 1, n do
      if visible(batch[i][2], now) then
        if #out == limit then return {epoch, newest, first, out, seq_of(out[limit][1])} end
        out[#out + 1] = batch[i]
      end
    end
    if n < count or seq_of(batch[n][1]) == newest then break end
    low = '(' .. batch[n][1]
    count = math.max(16, limit - #out)
  end
  return {epoch, newest, first, out, newest}
end
-- First paint: the newest `limit` current messages, newest first.
local count = limit
local batch = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', count)
local plain = true
for i = 1, #batch do
  local fields = batch[i][2]
  if #fields ~= 4 or fields[3] ~= 'b' then
    plain = false
    break
  end
end
local out, alert = batch, false
if not plain then
  if now == 0 then now = now_us() end
  local current, field = lib().current, lib().field
  out = {}
  while true do
    for i = 1, #batch do
      local entry = batch[i]
      if current(entry[2], seq_of(entry[1]), now, KEYS[5]) then
        out[#out + 1] = entry
        if field(entry[2], 'p') == 'a' then alert = true end
        if #out == limit then break end
      end
    end
    if #out == limit or #batch < count then break end
    count = math.max(16, limit - #out)
    batch = redis.call('XREVRANGE', stream, '(' .. batch[#batch][1], '-', 'COUNT', count)
  end
end
if #out < limit or limit < 1 or alert or redis.call('EXISTS', KEYS[6]) == 0 then
  return {epoch, newest, first, out}
end
-- The channel's newest current alert, when it is older than all of those.
if now == 0 then now = now_us() end
local current = lib().current
local high = string.format('(%d', seq_of(out[#out][1]))
while true do
  local seqs = redis.call('ZREVRANGEBYSCORE', KEYS[6], high, '-inf', 'LIMIT', 0, 16)
  for i = 1, #seqs do
    local seq = tonumber(seqs[i])
    if seq < first then return {epoch, newest, first, out} end
    local entry = redis.call('XRANGE', stream, seqs[i] .. '-0', seqs[i] .. '-0')
    if entry[1] and current(entry[1][2], seq, now, KEYS[5]) then
      return {epoch, newest, first, out, entry[1]}
    end
  end
  if #seqs < 16 then return {epoch, newest, first, out} end
  high = '(' .. seqs[#seqs]
end
"""

#: Retract one message: delete it, remember it, append its tombstone, announce.
#: KEYS: :data:`KEY_NAMES`. ARGV: channel, seq to retract, max_messages,
#: max_age (us, 0 = off), candidate epoch, notify channel.
#: Returns {epoch, tombstone seq, ts_us}, or {epoch, 0, reason} and changes nothing
#: (reason: unknown, trimmed, expired, tombstone, retracted).
RETRACT = _PRELUDE + _WRITES + """
local epoch = get_epoch(KEYS[1], ARGV[5])
local channel = ARGV[1]
local stream = KEYS[3]
local target = tonumber(ARGV[2])
local newest = newest_seq(KEYS[2], stream, channel)
if target < 1 or target > newest then return {epoch, 0, 'unknown'} end
local now = now_us()
local L = lib()
local first, below = L.ensure_record(KEYS, channel)  -- before the first hole
L.delete_expired(stream, KEYS[8], KEYS[9], now, first)
local max_messages, max_age = tonumber(ARGV[3]), tonumber(ARGV[4])
if max_age > 0 then
  local raised = L.trim_age(stream, first, now - max_age, now)
  if raised ~= first then
    first = raised
    set_record(KEYS[4], channel, first, below)
  end
end
if target < first or target < below or target <= newest - max_messages then
  return {epoch, 0, 'trimmed'}
end
local id = string.format('%d-0', target)
local entry = redis.call('XRANGE', stream, id, id)
if not entry[1] then
  -- Inside the window an entry goes only by retraction or expiry (or by age
  -- trimming once it was a hole already).
  if redis.call('ZSCORE', KEYS[7], ARGV[2]) then return {epoch, 0, 'retracted'} end
  return {epoch, 0, 'expired'}
end
local fields = entry[1][2]
if fields[3] ~= 'b' then return {epoch, 0, 'tombstone'} end
if not L.visible(fields, now) then return {epoch, 0, 'expired'} end
redis.call('XDEL', stream, id)
redis.call('ZREM', KEYS[8], ARGV[2])
redis.call('ZADD', KEYS[7], target, ARGV[2])
local seq, ts
seq, ts, first = add_entry(KEYS, channel, {'t', '', 'r', string.format('%d', target)},
                           max_messages, max_age, now, first, below)
L.prune(KEYS[7], first)
redis.call('PUBLISH', ARGV[6], channel)
return {epoch, seq, ts}
"""
