"""Readers of channels, as the hub sees them: positions in, answers out.

Every transport — the single-channel poll (lean and full), the multiplexed
poll, Server-Sent Events, WebSocket and the seed's ``/update`` — is a
:class:`Subscriber`: a set of :class:`Position` s (one per channel) that the
hub reads for, and five methods the transport implements to frame and write
what the hub hands it:

* :meth:`Subscriber.deliver` — an :class:`~tornado_lp.answers.Answer` with news
  (messages, a gap, a reset);
* :meth:`Subscriber.on_held` — the first reads found nothing new: the reader now waits;
* :meth:`Subscriber.expire` — its deadline passed while waiting;
* :meth:`Subscriber.fail` — a first read failed (the storage is unavailable);
* :meth:`Subscriber.shutdown` — the hub is closing.

The life of a reader: :meth:`Hub.subscribe <tornado_lp.hub.Hub.subscribe>`
reads every channel once (shared with every reader at the same position);
news is delivered at once, else the reader is held until a publish wakes one
of its channels, its deadline passes or the hub closes. A poll (``once``)
ends with its first answer; a stream keeps reading, and is re-read at once
while an answer was cut at ``limit``. :meth:`Hub.unsubscribe
<tornado_lp.hub.Hub.unsubscribe>` (the client went away) forgets it at once.
"""

from __future__ import annotations

import logging
from typing import ClassVar, Protocol

from .answers import Answer, PollResult
from .deadlines import Deadline
from .protocol import Cursor, parse_stream_cursor
from .storage import StorageUnavailable

__all__ = ["Feeder", "Position", "Subscriber", "positions_from"]

log = logging.getLogger("tornado_lp.hub")


class Position:
    """Where one reader stands in one channel.

    ``seq``: the last position it has (``None``: none yet, the first read gives
    the backlog), counted in ``epoch``. ``reset``: a reset was found but not
    told yet (the single-channel poll holds on through an empty reset).
    """

    __slots__ = ("channel", "epoch", "reset", "seq", "unread")

    def __init__(self, channel: str, epoch: str = "", seq: int | None = None) -> None:
        self.channel = channel
        self.epoch = epoch
        self.seq = seq
        self.reset = False
        self.unread = True  # until the reader's first read of this channel is in

    @classmethod
    def foreign(cls, channel: str) -> Position:
        """A position from another epoch: the first read answers ``reset``."""
        return cls(channel, "", 0)

    def key(self) -> tuple[str, int | None]:
        return (self.epoch if self.seq is not None else "", self.seq)

    def __repr__(self) -> str:
        return f"Position({self.channel!r}, {self.epoch!r}, {self.seq!r})"


def positions_from(channels: tuple[str, ...], cursor: str | None) -> list[Position]:
    """Positions for ``channels`` from a stream cursor (already validated, or ``None``)."""
    parsed = parse_stream_cursor(cursor, channels)
    if parsed is None:
        return [Position(channel) for channel in channels]
    epoch, seqs = parsed
    positions = []
    for channel in channels:
        if channel not in seqs:
            positions.append(Position(channel))
        else:
            seq = seqs[channel]
            positions.append(
                Position.foreign(channel) if seq is None else Position(channel, epoch, seq)
            )
    return positions


def position_from_cursor(channel: str, cursor: Cursor | None) -> Position:
    """The position a single-channel cursor (``<epoch>-<seq>``) names."""
    if cursor is None:
        return Position(channel)
    return Position(channel, cursor.epoch, cursor.seq)


class Feeder(Protocol):
    """What a reader asks of the hub that feeds it (:class:`tornado_lp.hub.Hub`).

    Named here so that this module needs nothing from the hub's.
    """

    def answer(
        self, reader: Subscriber, parts: tuple[PollResult, ...],
        before: list[tuple[str, int | None]] | None = None,
    ) -> Answer:
        """The answer ``reader`` gets for ``parts``, shared with like readers this turn."""

    def unsubscribe(self, reader: Subscriber) -> None:
        """Forget ``reader`` at once; idempotent."""

    def reread(self, reader: Subscriber, channel: str) -> None:
        """Read ``channel`` again for ``reader`` at once."""

    def flush_soon(self, reader: Subscriber) -> None:
        """Call ``reader._flush_soon()`` once later in this turn of the event loop."""


class Subscriber:
    """A reader of one or more channels; transports subclass it (see the module docstring).

    ``timeout``: seconds to wait for news before :meth:`expire` (``0``: answer
    after the first reads whatever they found; ``None``: no deadline).
    ``limit``: most messages per channel in one answer.
    """

    #: A poll: one answer, then done. A stream (``False``): answers until it is closed.
    once: ClassVar[bool] = True
    #: The single-channel poll keeps holding after a reset that has nothing to
    #: show, and tells the reset with its next answer (its protocol since the
    #: first version); every other reader is told a reset at once.
    holds_empty_reset: ClassVar[bool] = False

    __slots__ = (
        "_again", "_awaiting", "_before", "_deadline", "_expired", "_flushing", "_news",
        "_shared", "done", "held", "hub", "limit", "positions", "timeout",
    )

    def __init__(self, positions: list[Position], limit: int, timeout: float | None) -> None:
        self.positions = positions
        self.limit = limit
        self.timeout = timeout
        self.hub: Feeder | None = None
        self.done = False
        self.held = False
        self._awaiting = len(positions)
        # What the next answer tells, and where each of its channels stood
        # before it; None while there is nothing (a held reader keeps no lists).
        self._news: list[PollResult] | None = None
        self._before: list[tuple[str, int | None]] | None = None
        self._flushing = False
        self._expired = False
        self._deadline: Deadline | None = None
        # Channels cut at ``limit`` whose next page waits until the answer with
        # this page is out: each answer has at most ``limit`` per channel.
        self._again: list[str] | None = None
        #: The last answer delivered, while the positions are still those it
        #: left (None once a position moved without an answer): the next
        #: answer is then named by it and its parts, not by every position.
        self._shared: Answer | None = None

    # -- what transports implement ------------------------------------------

    def deliver(self, answer: Answer) -> None:
        """Write ``answer`` (it has news). A ``once`` reader is done after this."""
        raise NotImplementedError

    def on_held(self) -> None:
        """The first reads found nothing to tell: the reader waits now."""

    def expire(self) -> None:
        """The deadline passed while waiting. Polls answer :meth:`idle_answer`."""
        self.deliver(self.idle_answer())

    def fail(self, error: StorageUnavailable) -> None:
        """A first read failed; the reader is already unsubscribed."""
        raise NotImplementedError

    def shutdown(self) -> None:
        """The hub is closing; polls answer :meth:`idle_answer`."""
        self.deliver(self.idle_answer())

    # -- what transports may call ------------------------------------------

    def idle_answer(self) -> Answer:
        """The answer without news: every channel at its current position."""
        assert self.hub is not None
        return self.hub.answer(self, ())

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(position.channel for position in self.positions)

    # -- called by the hub -------------------------------------------------

    def _offer(self, position: Position, part: PollResult) -> bool:
        """Take what a read of ``position`` found; True: read this channel again at once."""
        if self.done:
            return False
        news = part.news
        if part.reset and self.holds_empty_reset and not part.messages and not part.missed:
            position.reset, news = True, False
            self._shared = None
        if news:
            if position.reset:
                part = part.with_reset()
                position.reset = False
            stood = ((position.channel, position.seq) if position.seq is not None
                     and position.epoch == part.epoch else (position.channel, None))
            if self._news is None or self._before is None:
                self._news, self._before = [part], [stood]
            else:
                self._news.append(part)
                self._before.append(stood)
        elif position.seq != part.seq or position.epoch != part.epoch:
            self._shared = None  # moved past entries it may not see, with no answer
        position.epoch, position.seq = part.epoch, part.seq
        if not self.held:
            if position.unread:
                position.unread = False
                self._awaiting -= 1
            if self._awaiting:
                if part.more and not self.once:
                    self._read_again(position.channel)
                return False
            self.held = True
            if not self._news:
                if self._expired or (self.timeout is not None and self.timeout <= 0):
                    self._finish_idle()
                else:
                    self.on_held()
                return False
            self._flush()
            return part.more and not self.once and not self.done
        if news:
            if len(self.positions) == 1:
                self._flush()
            else:
                if not self._flushing:
                    self._flushing = True
                    assert self.hub is not None
                    self.hub.flush_soon(self)
                if part.more and not self.once:
                    self._read_again(position.channel)
                return False
        return part.more and not self.once and not self.done

    def _read_again(self, channel: str) -> None:
        if self._again is None:
            self._again = [channel]
        else:
            self._again.append(channel)

    def _failed(self, error: StorageUnavailable) -> None:
        """A read for this reader failed: fatal on the first reads, else wait for the next wake."""
        if self.done or self.held:
            return
        assert self.hub is not None
        self.hub.unsubscribe(self)
        self.fail(error)

    def _on_deadline(self) -> None:
        self._deadline = None
        if self.done:
            return
        if not self.held:
            self._expired = True  # answered as soon as the first reads are in
            return
        self._finish_idle()

    def _finish_idle(self) -> None:
        assert self.hub is not None
        self.hub.unsubscribe(self)
        self.expire()

    def _flush_soon(self) -> None:
        """The deferred flush of a multi-channel reader. A transport's bug in
        :meth:`deliver` forgets the reader, as it does in a pump's round."""
        try:
            self._flush()
        except Exception:
            log.exception("answering a reader of %s failed", ",".join(self.channels))
            if self.hub is not None:
                self.hub.unsubscribe(self)

    def _flush(self) -> None:
        self._flushing = False
        parts, before = self._news, self._before
        if self.done or not parts or before is None:
            return
        self._news = self._before = None
        assert self.hub is not None
        answer = self.hub.answer(self, _merged(parts), before)
        self._shared = answer
        if self.once:
            self.hub.unsubscribe(self)
        self.deliver(answer)
        again, self._again = self._again, None
        if again and not self.done:
            for channel in again:
                self.hub.reread(self, channel)


def _merged(parts: list[PollResult]) -> tuple[PollResult, ...]:
    """One part per channel: two answers for one channel in one flush become one."""
    if len(parts) == 1:
        return (parts[0],)
    by_channel: dict[str, PollResult] = {}
    for part in parts:
        earlier = by_channel.get(part.channel)
        if earlier is None:
            by_channel[part.channel] = part
        else:
            by_channel[part.channel] = PollResult.at(
                part.channel, part.epoch, part.seq,
                earlier.messages + part.messages if earlier.epoch == part.epoch
                else part.messages,
                part.more, earlier.missed or part.missed, earlier.reset or part.reset,
            )
    return tuple(by_channel.values())
