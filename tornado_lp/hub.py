"""The hub: publishing, and the one subscription core every transport reads through.

Publishing appends to storage, then wakes the channel. Reading is done per
channel, not per reader: each channel with readers has one *pump*, a task that
awaits the channel's :class:`tornado.locks.Condition`, reads storage once per
distinct position among the channel's readers (a thousand screens at the same
cursor share one read and one encoded answer), and hands every reader what it
found (:meth:`Subscriber._offer <tornado_lp.subscription.Subscriber._offer>`).
A reader is any :class:`~tornado_lp.subscription.Subscriber`: a single or a
multiplexed poll, an SSE stream, a WebSocket, the seed's ``/update``.

Wake-ups coalesce: publishes that land while a pump is reading or writing are
answered by its next round, together; and a channel that answered news less
than :data:`BATCH_WINDOW` (2 ms) ago waits out the rest of it before its next
round, so a burst is answered in batches, while a quiet channel answers at once.

No lost wake-up: every channel has a
``version`` bumped by each wake; the pump notes it before a round and starts
another round if it moved meanwhile. With asynchronous stores (SQLite on a
thread, Redis over the network) that gap is real.

Deadlines are one heap for the process (:mod:`tornado_lp.deadlines`), not a
timer per held reader. A store that fails while a reader is held does not fail
it: it keeps waiting and re-reads on the next wake-up (a shared store wakes
everything after reconnecting). Only a reader's first read fails it (503).
Channel state is made on demand and dropped when the last reader leaves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from tornado.locks import Condition

from .answers import Answer, PollResult
from .deadlines import Deadlines
from .protocol import check_message_fields, parse_cursor, valid_channel
from .storage import Message, Slice, Storage, StorageError, StorageUnavailable
from .subscription import Position, Subscriber, position_from_cursor

__all__ = ["Hold", "Hub", "Overloaded", "PollResult"]

log = logging.getLogger("tornado_lp.hub")


#: Seconds a channel that just answered news waits before its next round, so that
#: a burst is answered in batches; a quiet channel answers at once. The window
#: doubles, up to BATCH_WINDOW_MAX, with every round whose answers carried
#: several messages (publishes outpacing answers), and is back to BATCH_WINDOW
#: after a round that carried one each.
BATCH_WINDOW = 0.002
BATCH_WINDOW_MAX = 0.05


class Overloaded(Exception):
    """A reader cannot be held now: the process holds ``max_waiters``, or is shutting down."""


class _Channel:
    """One channel's readers and its pump.

    ``readers`` maps each reader to its position here. ``fresh``: readers to
    read in the next round whatever the version (new ones, and streams whose
    last answer was cut at their limit). ``version`` counts wakes;
    ``read_version`` is the version the last round started at.
    """

    __slots__ = ("cond", "fresh", "latest", "name", "pump", "quiet_at", "read_version",
                 "readers", "version", "window")

    def __init__(self, name: str) -> None:
        self.name = name
        self.cond = Condition()
        self.readers: dict[Subscriber, Position] = {}
        self.fresh: list[Subscriber] = []
        self.version = 0
        self.read_version = 0
        self.quiet_at = 0.0  # loop time before which the next round waits (busy channel)
        self.window = 0.0  # the window the channel's next news round opens
        self.pump: asyncio.Task[None] | None = None
        #: The newest entry this process stored on the channel while it had
        #: readers: a reader just before it is answered without a storage read.
        self.latest: tuple[str, Message] | None = None  # (its epoch, it)


class Hold:
    """One held :meth:`Hub.poll`, from the caller's side: :meth:`cancel` ends it (client gone)."""

    __slots__ = ("cancelled", "reader")

    def __init__(self) -> None:
        self.cancelled = False
        self.reader: _FutureReader | None = None

    def cancel(self) -> None:
        self.cancelled = True
        if self.reader is not None:
            self.reader.cancel()


class Hub:
    """Publish and read over one storage. Owns no global state."""

    def __init__(
        self,
        storage: Storage,
        max_waiters: int = 50_000,
        batch_window: float = BATCH_WINDOW,
        batch_window_max: float = BATCH_WINDOW_MAX,
    ) -> None:
        if max_waiters < 1:
            raise ValueError("max_waiters must be at least 1")
        if not 0 <= batch_window <= batch_window_max:
            raise ValueError("batch windows must be seconds with 0 <= batch_window <= max")
        self.storage = storage
        self.max_waiters = max_waiters
        self.batch_window = batch_window
        self.batch_window_max = batch_window_max
        self._held = 0
        self._channels: dict[str, _Channel] = {}
        self._deadlines = Deadlines()
        self._answers: dict[tuple[object, ...], Answer] = {}
        self._to_flush: list[Subscriber] = []
        #: channel -> (end of its window, its window), while it has no state
        self._busy: dict[str, tuple[float, float]] = {}
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
        """Answer every reader (polls empty, streams closed), then close the storage."""
        self._closing = True
        readers = {reader: None for channel in self._channels.values()
                   for reader in channel.readers}
        for reader in readers:
            if reader.done:
                continue
            if reader.held:
                self.unsubscribe(reader)
                reader.shutdown()
            else:
                reader._expired = True  # answered as soon as its first reads are in
        # Let readers still in their first read get their answers before the store goes.
        for _ in range(100):
            if not self._channels:
                break
            await asyncio.sleep(0.01)
        self._deadlines.clear()
        await self.storage.close()

    # -- publishing ------------------------------------------------------

    async def publish(
        self,
        channel: str,
        body: str,
        *,
        expires: float | None = None,
        priority: str = "normal",
        key: str | None = None,
    ) -> Message:
        """Store a message, then wake the channel's readers.

        ``expires``: Unix seconds after which no reader sees it; ``priority``:
        ``"normal"`` or ``"alert"``; ``key``: it replaces the channel's earlier
        message with the same key for readers without a cursor (see
        docs/PROTOCOL.md). Raises ValueError for an invalid channel name, a
        body that is empty or not valid Unicode (a lone surrogate could never
        be encoded in an answer) or a field the protocol refuses
        (:func:`~tornado_lp.protocol.check_message_fields`).
        """
        if not valid_channel(channel):
            raise ValueError(f"invalid channel name {channel[:80]!r}")
        if not body:
            raise ValueError("empty message")
        try:
            body.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("the message is not valid Unicode text") from None
        check_message_fields(expires, priority, key)
        if not self._opened:
            await self.open()
        if expires is None and priority == "normal" and key is None:
            message = await self.storage.append(channel, body)
        else:
            message = await self.storage.append(
                channel, body, expires=expires, priority=priority, key=key
            )
        self.wake(channel)
        return message

    async def retract(self, channel: str, seq: int) -> Message:
        """Retract message ``seq`` of ``channel``: store its tombstone, wake the readers.

        Returns the tombstone. Raises :class:`~tornado_lp.storage.NotRetained`
        when there is no such message to retract, ValueError for a bad channel.
        """
        if not valid_channel(channel):
            raise ValueError(f"invalid channel name {channel[:80]!r}")
        if not self._opened:
            await self.open()
        tombstone = await self.storage.retract(channel, seq)
        self._stored(tombstone)
        return tombstone

    def _stored(self, message: Message) -> None:
        """Wake the readers of ``message``'s channel, handing them the entry itself.

        Readers whose cursor is just before it then get it without a storage
        read: on a store with a worker thread or a network hop that read is
        what an idle channel's answer would otherwise wait for.
        """
        state = self._channels.get(message.channel)
        if state is not None:
            epoch = message.id.rpartition("-")[0]
            latest = state.latest
            if latest is None or latest[1].seq < message.seq or latest[0] != epoch:
                state.latest = (epoch, message)
        self.wake(message.channel)

    def wake(self, channel: str | None) -> None:
        """Make the readers of ``channel`` (``None``: of every channel) re-read storage.

        Storage backends shared between processes call this for publishes made
        elsewhere, and with ``None`` after a reconnect, when notices may have been lost.
        """
        if channel is None:
            states: Iterable[_Channel] = list(self._channels.values())
        else:
            one = self._channels.get(channel)
            if one is None:
                return
            states = (one,)
        for state in states:
            state.version += 1
            state.cond.notify_all()

    # -- reading: the subscription core ------------------------------------

    def subscribe(self, reader: Subscriber) -> None:
        """Start feeding ``reader``: its first reads now, then news as it comes.

        Raises :class:`Overloaded` for a reader that may be held (``timeout``
        not 0) while ``max_waiters`` are held or the hub is closing.
        """
        if reader.timeout != 0:
            if self._closing:
                raise Overloaded("the server is shutting down")
            if self._held >= self.max_waiters:
                raise Overloaded(f"too many held readers ({self.max_waiters}, --max-waiters)")
            self._held += 1
        reader.hub = self
        channels = self._channels
        for position in reader.positions:
            state = channels.get(position.channel)
            if state is None:
                state = channels[position.channel] = _Channel(position.channel)
                busy = self._busy.pop(position.channel, None)
                if busy is not None:
                    state.quiet_at, state.window = busy
            state.readers[reader] = position
            state.fresh.append(reader)
            self._run(state)
        if reader.timeout:
            loop = asyncio.get_running_loop()
            reader._deadline = self._deadlines.at(loop.time() + reader.timeout,
                                                  reader._on_deadline)

    def unsubscribe(self, reader: Subscriber) -> None:
        """Forget ``reader`` at once (answered, or its client went away); idempotent."""
        if reader.done:
            return
        reader.done = True
        if reader.timeout != 0:
            self._held -= 1
        if reader._deadline is not None:
            self._deadlines.cancel(reader._deadline)
            reader._deadline = None
        channels = self._channels
        for position in reader.positions:
            state = channels.get(position.channel)
            if state is not None and state.readers.pop(reader, None) is not None:
                if not state.readers:
                    del channels[position.channel]
                    if state.quiet_at:
                        self._note_busy(state)
                    state.cond.notify_all()  # its pump ends

    def _note_busy(self, state: _Channel) -> None:
        """Remember a busy channel's window across the moment it has no readers.

        A fanout answers every reader at once, so the channel state goes, and
        the re-polls that follow make a new one: without this, the window that
        batches a burst would never apply. Entries past their moment are dropped.
        """
        now = asyncio.get_running_loop().time()
        if state.quiet_at > now:
            busy = self._busy
            busy[state.name] = (state.quiet_at, state.window)
            if len(busy) > 1024:
                for name in [name for name, (until, _) in busy.items() if until <= now]:
                    del busy[name]

    def reread(self, reader: Subscriber, channel: str) -> None:
        """Read ``channel`` again for ``reader`` at once (its last answer was cut at its limit)."""
        state = self._channels.get(channel)
        if state is not None and reader in state.readers:
            state.fresh.append(reader)
            self._run(state)

    def answer(
        self,
        reader: Subscriber,
        parts: tuple[PollResult, ...],
        before: list[tuple[str, int | None]] | None = None,
    ) -> Answer:
        """The :class:`Answer` for ``reader`` now, shared with every reader that has the
        same positions and parts in this turn of the event loop.

        A reader whose positions are still those its last answer left is named
        by that answer (readers that shared it and get the same parts end at
        the same positions), so a reader of 16 channels is not keyed by all 16;
        the parts and that answer are kept alive by the memo, so no identity
        is reused while it stands.
        """
        shared = reader._shared
        key: tuple[object, ...]
        if shared is not None:
            key = (shared, *parts)
        else:
            key = (tuple((p.channel, p.epoch, p.seq, p.reset) for p in reader.positions),
                   *parts)
        memo = self._answers
        answer = memo.get(key)
        if answer is None:
            if not memo:
                asyncio.get_running_loop().call_soon(memo.clear)
            positions = tuple((p.channel, p.epoch, p.seq, p.reset) for p in reader.positions)
            answer = memo[key] = Answer(parts, positions, dict(before) if before else {},
                                        self.storage.epoch)
        return answer

    def flush_soon(self, reader: Subscriber) -> None:
        """Flush ``reader`` once the rounds of this turn are done (one callback for all
        the readers of several channels that news reached in this turn)."""
        pending = self._to_flush
        if not pending:
            asyncio.get_running_loop().call_soon(self._flush_pending)
        pending.append(reader)

    def _flush_pending(self) -> None:
        pending, self._to_flush = self._to_flush, []
        for reader in pending:
            reader._flush_soon()

    def _run(self, state: _Channel) -> None:
        """Make sure ``state``'s pump runs (or will run another round)."""
        if state.pump is None:
            state.pump = asyncio.get_running_loop().create_task(self._pump(state))
        else:
            state.cond.notify_all()

    async def _pump(self, state: _Channel) -> None:
        """Read for ``state``'s readers round after round, until it has none."""
        try:
            if not self._opened:
                try:
                    await self.open()
                except StorageError as error:
                    unavailable = StorageUnavailable(str(error))
                    for reader in list(state.readers):
                        reader._failed(unavailable)
                    return
            loop = asyncio.get_running_loop()
            while self._channels.get(state.name) is state:
                if state.version == state.read_version and not state.fresh:
                    await state.cond.wait()
                    continue
                wait = state.quiet_at - loop.time()
                if wait > 0:
                    # Busy: it answered news a moment ago. Let the publishes and
                    # re-polls of the next moment join this round.
                    await asyncio.sleep(wait)
                    if self._channels.get(state.name) is not state:
                        break
                version = state.version
                if version != state.read_version:
                    state.read_version = version
                    batch = list(state.readers)
                    state.fresh.clear()
                else:
                    batch, state.fresh = state.fresh, []
                await self._round(state, batch)
        except Exception:  # a bug: fail the readers rather than leave them hanging
            log.exception("reading channel %s failed", state.name)
            failure = StorageUnavailable("internal error while reading")
            for reader in list(state.readers):
                self.unsubscribe(reader)
                if reader.held:
                    reader.expire()
                else:
                    reader.fail(failure)
        finally:
            state.pump = None
            if self._channels.get(state.name) is state and (state.readers or state.fresh):
                self._run(state)  # a reader arrived as the pump was leaving

    async def _round(self, state: _Channel, batch: list[Subscriber]) -> bool:
        """One read per distinct position among ``batch``, and every reader told.

        True if some reader was told news.
        """
        told = told_many = False
        readers = state.readers
        groups: dict[tuple[str, int | None, int], list[tuple[Subscriber, Position]]] = {}
        for reader in batch:
            position = readers.get(reader)
            if position is not None:
                key = (*position.key(), reader.limit)
                group = groups.get(key)
                if group is None:
                    groups[key] = [(reader, position)]
                else:
                    group.append((reader, position))
        reads: dict[tuple[int | None, int], Slice] = {}
        for (epoch, after, limit), group in groups.items():
            try:
                part = await self._read(state, epoch, after, limit, reads)
            except StorageUnavailable as error:
                for reader, _position in group:
                    reader._failed(error)
                continue
            if part.news:
                told = True
                if self.batch_window:  # set before the readers go (the state may go with them)
                    if len(part.messages) > 1:  # publishes outpace answers: batch more
                        if not told_many:
                            state.window = min(self.batch_window_max,
                                               max(self.batch_window, 2 * state.window))
                            told_many = True
                    elif not told_many:
                        state.window = self.batch_window
                    state.quiet_at = asyncio.get_running_loop().time() + state.window
            again = state.fresh
            for reader, position in group:
                try:
                    if reader._offer(position, part):
                        again.append(reader)
                except Exception:  # one transport's bug must not stop the others' answers
                    log.exception("answering a reader of %s failed", state.name)
                    self.unsubscribe(reader)
        return told

    async def _read(
        self,
        state: _Channel,
        epoch: str,
        after: int | None,
        limit: int,
        reads: dict[tuple[int | None, int], Slice],
    ) -> PollResult:
        """What a reader at ``epoch``/``after`` gets now (``reads``: this round's slices)."""
        storage = self.storage
        channel = state.name
        chunk = reads.get((after, limit))
        if chunk is None:
            latest = state.latest
            if (
                latest is not None
                and after is not None
                and latest[1].seq == after + 1
                and latest[0] == epoch == storage.epoch
                and not latest[1].expired(time.time())
            ):
                # Exactly the entry after the cursor, just stored here: nothing
                # lies between, so nothing was missed (first_seq 1 says so).
                newest = latest[1]
                chunk = Slice([newest], newest.seq, 1, end=newest.seq)
            else:
                chunk = await storage.read(channel, after, limit)
            reads[(after, limit)] = chunk
        chunk_epoch = chunk.epoch or storage.epoch
        reset = False
        if after is not None and (chunk_epoch != epoch or after > chunk.last_seq):
            # Another epoch (another store, a wiped one) or past the newest: start over.
            reset, after = True, None
            chunk = reads.get((None, limit))
            if chunk is None:
                chunk = reads[(None, limit)] = await storage.read(channel, None, limit)
            chunk_epoch = chunk.epoch or storage.epoch
        return _part(channel, chunk_epoch, chunk, after, reset)

    # -- counts (metrics, tests, channel info) ------------------------------

    def channels(self) -> tuple[str, ...]:
        """The channels this process holds readers on now (read-only: a copy)."""
        return tuple(self._channels)

    def waiters(self, channel: str) -> int:
        """Readers of ``channel`` in this process (held, or in their first read)."""
        state = self._channels.get(channel)
        return len(state.readers) if state is not None else 0

    def holding(self, channel: str) -> int:
        """Readers of ``channel`` that have read and now wait for news."""
        state = self._channels.get(channel)
        return sum(1 for reader in state.readers if reader.held) if state is not None else 0

    def total_waiters(self) -> int:
        """Readers that may be held (polls with a timeout, streams), on all channels."""
        return self._held

    def pending_deadlines(self) -> int:
        """Live entries in the deadline heap (for tests: nothing left behind)."""
        return len(self._deadlines)

    # -- the coroutine API: one answer, awaited ----------------------------

    async def poll(
        self,
        channel: str,
        cursor: str | None,
        timeout: float,
        limit: int,
        hold: Hold | None = None,
    ) -> PollResult | None:
        """Answer a single-channel poll, holding up to ``timeout`` seconds when nothing is newer.

        ``cursor`` must already be well-formed (see :func:`parse_cursor`).
        Returns ``None`` only when ``hold`` was cancelled. Raises
        :class:`Overloaded` when a poll that may need holding arrives while
        ``max_waiters`` readers are held or the hub is closing, and
        :class:`StorageUnavailable` when its first read fails.
        """
        position = position_from_cursor(channel, parse_cursor(cursor))
        answer = await self.read_once([position], timeout, limit, hold, single=True)
        return None if answer is None else answer.part

    async def read_once(
        self,
        positions: list[Position],
        timeout: float,
        limit: int,
        hold: Hold | None = None,
        *,
        single: bool = False,
    ) -> Answer | None:
        """One answer for ``positions`` (a poll): the first news, or none at the deadline.

        ``single``: the single-channel poll's rules (it holds through an empty
        reset). ``None`` when ``hold`` was cancelled.
        """
        if hold is not None and hold.cancelled:
            return None
        reader = (_SinglePollReader if single else _FutureReader)(positions, limit, timeout)
        if hold is not None:
            hold.reader = reader
        self.subscribe(reader)
        try:
            return await reader.future
        except asyncio.CancelledError:
            self.unsubscribe(reader)
            raise


class _FutureReader(Subscriber):
    """A poll whose answer resolves a future (for RequestHandlers and embedders)."""

    __slots__ = ("future",)

    def __init__(self, positions: list[Position], limit: int, timeout: float) -> None:
        super().__init__(positions, limit, timeout)
        self.future: asyncio.Future[Answer | None] = asyncio.get_running_loop().create_future()

    def deliver(self, answer: Answer) -> None:
        if not self.future.done():
            self.future.set_result(answer)

    def fail(self, error: StorageUnavailable) -> None:
        if not self.future.done():
            self.future.set_exception(error)

    def cancel(self) -> None:
        if self.hub is not None:
            self.hub.unsubscribe(self)
        if not self.future.done():
            self.future.set_result(None)


class _SinglePollReader(_FutureReader):
    holds_empty_reset = True
    __slots__ = ()


def _part(channel: str, epoch: str, chunk: Slice, after: int | None, reset: bool) -> PollResult:
    """What a read gives a reader that was at ``after`` (``None``: no position)."""
    messages, last_seq = chunk.messages, chunk.last_seq
    if after is None:
        return PollResult.at(channel, epoch, last_seq, messages, False, False, reset)
    if after >= last_seq:
        return PollResult.at(channel, epoch, after, [], False, False, reset)
    # Something newer than the cursor exists; anything before first_seq is gone.
    missed = chunk.first_seq > after + 1
    end = chunk.end
    if end is None:  # a store that does not say: the old rule
        end = messages[-1].seq if messages else last_seq
    return PollResult.at(channel, epoch, end, messages, end < last_seq, missed, reset)

