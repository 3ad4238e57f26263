"""The hub: per-channel wake-ups over a :class:`~tornado_lp.storage.Storage`.

Publishing appends to storage, then wakes the channel's held polls. A poll
reads storage; if nothing is newer it waits on the channel's
:class:`tornado.locks.Condition` and reads again when woken.

No lost wake-up: every channel has a ``version`` bumped by each wake. A poll
notes the version *before* it reads; if the version moved while the read was
in flight (a publish landed between the read and the wait), it reads again
instead of waiting. With asynchronous stores (SQLite on a thread, Redis over
the network) that gap is real.

A store that fails while a poll is held (a lost Redis connection) does not
fail that poll: it keeps waiting and is answered normally at its deadline,
re-reading on the next wake-up. Only a poll's first read answers 503.

Channel state (the Condition) is made on demand and dropped when the last
held poll leaves. Cancelled waits are purged from the Condition at once, not
left until the next publish (see :class:`_ChannelCondition`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from tornado.ioloop import IOLoop
from tornado.locks import Condition

from .protocol import format_cursor, parse_cursor, valid_channel
from .storage import Message, Slice, Storage, StorageUnavailable

__all__ = ["Hold", "Hub", "Overloaded", "PollResult"]

log = logging.getLogger("tornado_lp.hub")


class Overloaded(Exception):
    """A poll cannot be held now: the process holds ``max_waiters`` polls, or is shutting down."""


class _ChannelCondition(Condition):
    """A Condition that forgets cancelled waiters.

    Tornado's Condition keeps a cancelled ``wait()`` future in its waiter deque
    until the next ``notify``; on a quiet channel that thousands of screens
    poll and drop, that is a leak. ``forget()`` counts cancellations and sweeps
    the deque once they are at least half of it: amortised O(1) per waiter.
    """

    def __init__(self) -> None:
        super().__init__()
        self._abandoned = 0

    def forget(self) -> None:
        self._abandoned += 1
        if self._abandoned * 2 >= len(self._waiters):
            self._waiters = deque(w for w in self._waiters if not w.done())
            self._abandoned = 0

    @property
    def pending(self) -> int:
        """Futures still in the waiter deque (for tests and metrics)."""
        return len(self._waiters)


_ReadKey = tuple[str, int | None, int, bool]
_Read = tuple[Slice, "PollResult | None"]


class _ChannelState:
    """One channel's held polls: the Condition, the wake version, and shared reads.

    ``reads`` maps (epoch, after, limit, reset) to the read made at ``reads_version``:
    the thousand polls a publish wakes mostly hold the same cursor, so they
    share one storage read and one encoded answer instead of making one each.
    """

    __slots__ = ("cond", "holds", "reads", "reads_version", "version")

    def __init__(self) -> None:
        self.cond = _ChannelCondition()
        self.version = 0
        self.holds = 0
        self.reads: dict[_ReadKey, asyncio.Future[_Read]] = {}
        self.reads_version = 0


class Hold:
    """One held poll, from the handler's side: :meth:`cancel` ends it (client gone)."""

    __slots__ = ("cancelled", "future")

    def __init__(self) -> None:
        self.future: asyncio.Future[bool] | None = None
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        if self.future is not None and not self.future.done():
            self.future.cancel()


class PollResult:
    """A poll answer. ``encode()`` gives its JSON body, computed once and shared."""

    __slots__ = ("_encoded", "cursor", "messages", "missed", "more", "reset")

    def __init__(
        self,
        messages: list[Message],
        cursor: str,
        more: bool = False,
        missed: bool = False,
        reset: bool = False,
    ) -> None:
        self.messages = messages
        self.cursor = cursor
        self.more = more
        self.missed = missed
        self.reset = reset
        self._encoded: bytes | None = None

    def encode(self) -> bytes:
        if self._encoded is None:
            body = ",".join(m.encoded for m in self.messages)
            self._encoded = (
                f'{{"messages":[{body}],"cursor":"{self.cursor}",'
                f'"more":{_JSON_BOOL[self.more]},"missed":{_JSON_BOOL[self.missed]},'
                f'"reset":{_JSON_BOOL[self.reset]}}}'
            ).encode()
        return self._encoded

    def __repr__(self) -> str:
        return (f"PollResult({len(self.messages)} messages, cursor={self.cursor!r}, "
                f"more={self.more}, missed={self.missed}, reset={self.reset})")


_JSON_BOOL = {True: "true", False: "false"}


class Hub:
    """Publish and poll over one storage. Owns no global state."""

    def __init__(self, storage: Storage, max_waiters: int = 50_000) -> None:
        if max_waiters < 1:
            raise ValueError("max_waiters must be at least 1")
        self.storage = storage
        self.max_waiters = max_waiters
        self._held = 0
        self._channels: dict[str, _ChannelState] = {}
        self._opened = False
        self._closing = False
        self.storage.watch(self.wake)

    # -- lifecycle -------------------------------------------------------

    async def open(self) -> None:
        """Open the storage (idempotent). Called lazily by every operation."""
        if not self._opened:
            await self.storage.open()
            self._opened = True

    @property
    def closing(self) -> bool:
        return self._closing

    async def close(self) -> None:
        """Answer every held poll (empty), then close the storage."""
        self._closing = True
        self.wake(None)
        # Let woken polls write their answers before the store goes away.
        for _ in range(100):
            if not self._channels:
                break
            await asyncio.sleep(0.01)
        await self.storage.close()

    # -- publishing ------------------------------------------------------

    async def publish(self, channel: str, body: str) -> Message:
        """Store a message, then wake the channel's held polls.

        Raises ValueError for an invalid channel name or a body that is empty
        or not valid Unicode (a lone surrogate could never be encoded in an answer).
        """
        if not valid_channel(channel):
            raise ValueError(f"invalid channel name {channel[:80]!r}")
        if not body:
            raise ValueError("empty message")
        try:
            body.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("the message is not valid Unicode text") from None
        if not self._opened:
            await self.open()
        message = await self.storage.append(channel, body)
        self.wake(channel)
        return message

    def wake(self, channel: str | None) -> None:
        """Release every poll held on ``channel`` (``None``: on every channel) to re-read storage.

        Storage backends shared between processes call this for publishes made
        elsewhere, and with ``None`` after a reconnect, when notices may have been lost.
        """
        if channel is None:
            states = list(self._channels.values())
        else:
            one = self._channels.get(channel)
            states = [one] if one is not None else []
        for state in states:
            state.version += 1
            state.cond.notify_all()

    # -- polling ---------------------------------------------------------

    def waiters(self, channel: str) -> int:
        """Polls currently held on ``channel`` in this process."""
        state = self._channels.get(channel)
        return state.holds if state is not None else 0

    def total_waiters(self) -> int:
        """Polls currently held in this process, on all channels."""
        return self._held

    def condition_backlog(self, channel: str) -> int:
        """Futures in the channel Condition's waiter list (0 if no state)."""
        state = self._channels.get(channel)
        return state.cond.pending if state is not None else 0

    async def poll(
        self,
        channel: str,
        cursor: str | None,
        timeout: float,
        limit: int,
        hold: Hold | None = None,
    ) -> PollResult | None:
        """Answer a poll, holding up to ``timeout`` seconds when nothing is newer.

        ``cursor`` must already be well-formed (see :func:`parse_cursor`).
        Returns ``None`` only when ``hold`` was cancelled. Raises
        :class:`Overloaded` when a poll that may need holding arrives while
        ``max_waiters`` polls are held or the hub is closing.
        """
        if not self._opened:
            await self.open()
        parsed = parse_cursor(cursor)
        storage = self.storage
        # `after` counts in `epoch`. A cursor from another epoch is detected
        # after the read, against the epoch the slice was taken in: a shared
        # store's epoch can change under a running process (Redis FLUSHALL).
        after: int | None = None
        epoch = storage.epoch
        if parsed is not None:
            after, epoch = parsed.seq, parsed.epoch
        if timeout <= 0:
            return await self._read_once(channel, after, epoch, limit)
        if self._closing:
            raise Overloaded("the server is shutting down")
        if self._held >= self.max_waiters:
            raise Overloaded(f"too many held polls ({self.max_waiters}, --max-waiters)")

        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = _ChannelState()
        state.holds += 1
        self._held += 1
        deadline = IOLoop.current().time() + timeout
        reset = False
        holding = False  # True once a read found nothing newer than `after`
        try:
            while True:
                version = state.version
                try:
                    chunk, result = await self._shared_read(
                        state, channel, epoch, after, limit, reset
                    )
                except StorageUnavailable:
                    # A poll already holding is not failed by a store that is
                    # down for a while: it keeps waiting, re-reads on the next
                    # wake-up (a shared store wakes everyone after reconnecting)
                    # and is answered normally at its deadline.
                    if not holding or after is None:
                        raise
                    if hold is not None and hold.cancelled:
                        return None
                    if self._closing or IOLoop.current().time() >= deadline:
                        return PollResult([], format_cursor(epoch, after), reset=reset)
                    if not await self._wait(state, deadline, hold):
                        return None
                    continue
                if hold is not None and hold.cancelled:
                    return None
                chunk_epoch = chunk.epoch or storage.epoch
                if after is not None and (chunk_epoch != epoch or after > chunk.last_seq):
                    reset, after = True, None
                    continue
                epoch = chunk_epoch
                if result is not None:
                    return result
                if after is None:
                    after = chunk.last_seq
                holding = True
                if self._closing or IOLoop.current().time() >= deadline:
                    return PollResult([], format_cursor(epoch, after), reset=reset)
                if state.version != version:
                    continue
                if not await self._wait(state, deadline, hold):
                    return None
        finally:
            self._held -= 1
            state.holds -= 1
            if state.holds == 0 and self._channels.get(channel) is state:
                del self._channels[channel]

    @staticmethod
    async def _wait(state: _ChannelState, deadline: float, hold: Hold | None) -> bool:
        """Wait for a wake-up or the deadline; ``False`` if ``hold`` was cancelled meanwhile."""
        future = state.cond.wait(deadline)
        if hold is not None:
            hold.future = future  # type: ignore[assignment]
        try:
            await future
        except asyncio.CancelledError:
            state.cond.forget()
            if hold is not None and hold.cancelled:
                return False
            raise
        return True

    async def _shared_read(
        self,
        state: _ChannelState,
        channel: str,
        epoch: str,
        after: int | None,
        limit: int,
        reset: bool,
    ) -> _Read:
        """Read storage and build the answer once per key and wake version.

        The first poll to ask reads; polls asking for the same key while that
        read is in flight, or after it, at the same version, get its result.
        The answer is ``None`` when there is nothing to answer yet, and also
        when the cursor does not fit the slice (another epoch, or past the
        newest message): the caller then starts over without a cursor.
        """
        if state.reads_version != state.version:
            state.reads.clear()
            state.reads_version = state.version
        key = ("" if after is None else epoch, after, limit, reset)
        shared = state.reads.get(key)
        if shared is not None:
            return shared.result() if shared.done() else await shared
        shared = state.reads[key] = asyncio.get_running_loop().create_future()
        try:
            chunk = await self.storage.read(channel, after, limit)
        except BaseException as error:
            if state.reads.get(key) is shared:
                del state.reads[key]
            if isinstance(error, Exception):
                shared.set_exception(error)
                shared.exception()  # retrieved: no "never retrieved" warning if nobody shared it
            else:
                shared.cancel()
            raise
        chunk_epoch = chunk.epoch or self.storage.epoch
        result = None
        if after is None or (chunk_epoch == epoch and after <= chunk.last_seq):
            result = _result(chunk_epoch, chunk.messages, chunk.last_seq,
                             chunk.first_seq, after, reset)
        answer = (chunk, result)
        shared.set_result(answer)
        return answer

    async def _read_once(
        self, channel: str, after: int | None, epoch: str, limit: int
    ) -> PollResult:
        storage = self.storage
        reset = False
        chunk = await storage.read(channel, after, limit)
        chunk_epoch = chunk.epoch or storage.epoch
        if after is not None and (chunk_epoch != epoch or after > chunk.last_seq):
            reset, after = True, None
            chunk = await storage.read(channel, None, limit)
            chunk_epoch = chunk.epoch or storage.epoch
        result = _result(chunk_epoch, chunk.messages, chunk.last_seq,
                         chunk.first_seq, after, reset)
        if result is not None:
            return result
        return PollResult([], format_cursor(chunk_epoch, chunk.last_seq), reset=reset)


def _result(
    epoch: str,
    messages: list[Message],
    last_seq: int,
    first_seq: int,
    after: int | None,
    reset: bool,
) -> PollResult | None:
    """The answer for a read, or ``None`` if there is nothing to answer yet."""
    if after is None:
        if not messages:
            return None
        return PollResult(messages, messages[-1].id, more=False, missed=False, reset=reset)
    if after >= last_seq:
        return None
    # Something newer than the cursor exists; anything before first_seq is gone.
    missed = first_seq > after + 1
    if not messages:
        return PollResult([], format_cursor(epoch, last_seq), missed=missed, reset=reset)
    return PollResult(
        messages,
        messages[-1].id,
        more=messages[-1].seq < last_seq,
        missed=missed,
        reset=reset,
    )


