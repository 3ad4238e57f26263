"""The server check every new Redis connection runs before any other command.

A Redis that restarted from an older snapshot or a truncated AOF, or a replica
promoted before it had every write, holds *less* than it acknowledged, under
the same epoch key. Seqs would then be given out again, and a cursor's id
would name a second, different message. To prevent that, each connection first
runs :data:`GUARD`, one Lua script that compares the server's identity (its
``run_id`` and replication id, read with ``INFO``) with a record under the
prefix, and rotates the epoch when the server changed and nothing proves the
data survived. Clients then get ``reset``.

Every command after a restart or failover runs on a new connection (the old
ones break with the old server), so the check runs before any command of ours
reaches the new server; the script is atomic, so processes racing on one
restart rotate once. Keys (``P`` is the prefix):

* ``P server``: a hash ``run_id``, ``replid``, ``durable`` ("1" when the server
  ran with ``appendonly yes`` and ``appendfsync always``), replicated.
* ``P server:self``: the ``run_id`` of the last check on *this* server,
  written to its AOF only (``redis.set_repl(redis.REPL_AOF)``), never to
  replicas by the replication stream.

The verdicts (see docs/STORAGE.md for what clients see):

``same``      the server is the one recorded (a new connection, nothing else).
``new``       no epoch (a new or wiped store): one was created.
``adopted``   the record was removed (``FLUSHALL``, ``DEL``) from a server this
              process has followed without a restart since: recorded again.
``kept``      a restart of the recorded master with ``appendfsync always``
              before and after, never promoted: nothing acknowledged was lost.
``changed``   another server, or a restart that may have lost writes: rotated.
``unknown``   an epoch but no record (the first start of this version): rotated.
``replica``   the server is a replica: nothing written, the connection refused.

The script writes only when something changed, so it also runs on a Redis
that is out of memory (``noeviction`` refuses writes, not reads).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from ..protocol import new_epoch

__all__ = ["GUARD", "ROTATED", "ReplicaError", "ServerGuard", "Verdict"]

#: Verdicts that gave the store a new epoch because data may have been lost.
ROTATED = frozenset({"changed", "unknown"})

#: KEYS: epoch, server record, self. ARGV: candidate epoch, appendfsync
#: ('' if CONFIG GET is refused), run_id and replid this process checked last
#: ('' if none). Returns {epoch, verdict, recorded run_id, run_id, role/replid}.
GUARD = """
local function field(text, name)
  return string.match(text, '\\n' .. name .. ':([^\\r\\n]*)')
end
local repl = redis.call('INFO', 'replication')
local run_id = field(redis.call('INFO', 'server'), 'run_id')
local role = field(repl, 'role')
if role ~= 'master' then
  return {'', 'replica', '', run_id, role or '?'}
end
local replid = field(repl, 'master_replid')
local promoted = field(repl, 'second_repl_offset') ~= '-1'
local aof = field(redis.call('INFO', 'persistence'), 'aof_enabled') == '1'
local durable = (aof and ARGV[2] == 'always') and '1' or '0'
local epoch = redis.call('GET', KEYS[1])
local rec = redis.call('HMGET', KEYS[2], 'run_id', 'replid', 'durable')
local verdict
if not epoch then
  verdict = 'new'
elseif rec[1] == run_id and (rec[2] == replid or not promoted) then
  verdict = 'same'
elseif not rec[1] and ARGV[3] == run_id and ARGV[4] == replid then
  verdict = 'adopted'
elseif rec[1] and not promoted and durable == '1' and rec[3] == '1'
    and redis.call('GET', KEYS[3]) == rec[1] then
  verdict = 'kept'
elseif rec[1] then
  verdict = 'changed'
else
  verdict = 'unknown'
end
if verdict ~= 'same' and verdict ~= 'adopted' and verdict ~= 'kept' then
  epoch = ARGV[1]
  redis.call('SET', KEYS[1], epoch)
end
if rec[1] ~= run_id or rec[2] ~= replid or rec[3] ~= durable then
  redis.call('HSET', KEYS[2], 'run_id', run_id, 'replid', replid, 'durable', durable)
end
if redis.call('GET', KEYS[3]) ~= run_id then
  redis.set_repl(redis.REPL_AOF)
  redis.call('SET', KEYS[3], run_id)
  redis.set_repl(redis.REPL_ALL)
end
return {epoch, verdict, rec[1] or '', run_id, replid}
"""


class ReplicaError(RedisConnectionError):
    """The server is a replica: it cannot take writes, so it cannot serve the store."""


@dataclass(frozen=True)
class Verdict:
    """What one check found. ``previous``: the recorded run_id ('' if none)."""

    epoch: str
    verdict: str
    previous: str
    run_id: str


class ServerGuard:
    """Runs :data:`GUARD` on each new connection (redis-py's ``redis_connect_func``).

    ``report`` is called with every :class:`Verdict`; ``where`` names the
    server in errors (without secrets).
    """

    def __init__(self, prefix: str, report: Callable[[Verdict], None], where: str) -> None:
        self.keys = (prefix + "epoch", prefix + "server", prefix + "server:self")
        self.report = report
        self.where = where
        self._checked = ("", "")  # run_id, replid of the last server checked

    async def on_connect(self, connection: AbstractConnection) -> None:
        """Handshake (AUTH, SELECT), then check the server; raises :class:`ReplicaError`.

        A connection that the server closes meanwhile raises redis-py's
        ``ConnectionError``, as a lost connection does anywhere else.
        """
        try:
            await connection.on_connect()
            appendfsync = await _appendfsync(connection)
            reply = await _command(
                connection, "EVAL", GUARD, len(self.keys), *self.keys,
                new_epoch(), appendfsync, *self._checked,
            )
        except (OSError, RuntimeError) as error:
            # A server dying as we connect: uvloop raises RuntimeError ("the handler is
            # closed") for a write on a transport the peer has already reset.
            raise RedisConnectionError(
                f"redis at {self.where} closed the connection during the check: {error}"
            ) from None
        epoch, verdict, previous, run_id, extra = (_text(part) for part in reply)
        if verdict == "replica":
            raise ReplicaError(
                f"redis at {self.where} is a replica (role {extra}), not a master"
            )
        self._checked = (run_id, extra)
        self.report(Verdict(epoch, verdict, previous, run_id))


async def _appendfsync(connection: AbstractConnection) -> str:
    """The server's ``appendfsync`` ('' when CONFIG is disabled, as on managed Redis)."""
    try:
        reply = await _command(connection, "CONFIG", "GET", "appendfsync")
    except ResponseError:
        return ""
    values = list(reply.values()) if isinstance(reply, dict) else list(reply)[1::2]
    return _text(values[0]).lower() if values else ""


async def _command(connection: AbstractConnection, *args: Any) -> Any:
    await connection.send_command(*args)
    return await connection.read_response()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
