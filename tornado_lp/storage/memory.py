"""In-process storage: fast, bounded, and gone when the process ends.

Each channel keeps its entries in a list with a moving head, so appending is
O(1) amortised and reading after a cursor is an index computation plus the
slice: O(1 + k). ``MemoryStorage`` is also the test double for the interface.

Expired and retracted messages become :class:`_Hole` slots (the message is
dropped, the slot remembers why, for :meth:`MemoryStorage.retract`'s answer),
so seqs still map to list positions. A channel that never held anything but
plain messages (no expiry, key or retraction) is read by slicing, as before;
the others by a scan that skips what a reader may not see.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from typing import cast

from ..protocol import new_epoch
from .base import (
    ChannelLimitError,
    Limits,
    Message,
    Slice,
    Storage,
    check_fields,
    not_retained,
)

__all__ = ["MemoryStorage"]

#: Due expiries turned into holes per call: bounded work, amortised over calls.
SWEEP_BATCH = 16


class _Hole:
    """A slot whose message expired or was retracted; keeps ``ts`` for age trimming."""

    __slots__ = ("reason", "ts")

    def __init__(self, reason: str, ts: float) -> None:
        self.reason = reason  # "expired" or "retracted"
        self.ts = ts


class _Channel:
    """Entries ``items[head:]`` with seqs ``base .. last_seq``.

    ``first`` is :attr:`Slice.first_seq`: one more than the newest seq that
    was visible when trimming removed it. ``keys`` maps a key to the newest seq
    with that key, ``alerts`` holds the seqs of alerts (oldest first) and
    ``expiring`` is a heap of ``(expires, seq)``. ``plain`` stays True while
    every entry ever stored was a message without expiry or key and nothing
    was retracted: then nothing is hidden from anyone and reads just slice.
    """

    __slots__ = ("alerts", "expiring", "first", "head", "items", "keys", "last_seq", "plain")

    def __init__(self) -> None:
        self.items: list[Message | _Hole] = []
        self.head = 0
        self.last_seq = 0
        self.first = 1
        self.keys: dict[str, int] = {}
        self.alerts: deque[int] = deque()
        self.expiring: list[tuple[float, int]] = []
        self.plain = True

    @property
    def base(self) -> int:
        """The seq of ``items[head]`` (``last_seq + 1`` when nothing is retained)."""
        return self.last_seq - (len(self.items) - self.head) + 1

    def add(self, message: Message, max_messages: int, now: float) -> None:
        items = self.items
        items.append(message)
        excess = len(items) - self.head - max_messages
        if excess > 0:
            self.drop_oldest(excess, now)

    def drop_oldest(self, count: int, now: float) -> None:
        """Trim ``count`` entries; ``first`` passes the newest of them a reader could see."""
        items, head = self.items, self.head
        if self.plain:  # no holes: every entry is visible
            self.first = self.base + count
        else:
            for index in range(head + count - 1, head - 1, -1):
                item = items[index]
                if isinstance(item, Message) and not item.expired(now):
                    self.first = max(self.first, self.base + (index - head) + 1)
                    break
        self.head += count
        if self.head > 64 and self.head * 2 > len(items):
            del items[: self.head]
            self.head = 0
        if self.alerts or self.keys or self.expiring:
            self._prune()

    def _prune(self) -> None:
        """Forget keys, alerts and expiries of trimmed seqs (amortised O(1) per entry)."""
        base = self.base
        alerts = self.alerts
        while alerts and alerts[0] < base:
            alerts.popleft()
        retained = len(self.items) - self.head
        if len(self.keys) > 64 and len(self.keys) > 2 * retained:
            self.keys = {k: s for k, s in self.keys.items() if s >= base}
        if len(self.expiring) > 64 and len(self.expiring) > 2 * retained:
            self.expiring = [e for e in self.expiring if e[1] >= base]
            heapq.heapify(self.expiring)

    def expire(self, cutoff: float, now: float) -> None:
        """Trim entries older than ``cutoff`` (they are in ``ts`` order)."""
        items, head, end = self.items, self.head, len(self.items)
        start = head
        while head < end and items[head].ts < cutoff:
            head += 1
        if head != start:
            self.drop_oldest(head - start, now)

    def sweep(self, now: float) -> None:
        """Turn up to :data:`SWEEP_BATCH` messages whose expiry has passed into holes."""
        expiring = self.expiring
        for _ in range(SWEEP_BATCH):
            if not expiring or expiring[0][0] > now:
                return
            seq = heapq.heappop(expiring)[1]
            index = self.index(seq)
            if index is not None:
                item = self.items[index]
                if isinstance(item, Message):
                    self.items[index] = _Hole("expired", item.ts)

    def index(self, seq: int) -> int | None:
        """The list position of a retained ``seq``, or None."""
        base = self.base
        if seq < base or seq > self.last_seq:
            return None
        return self.head + (seq - base)

    def current(self, item: Message | _Hole, now: float) -> bool:
        """Whether a first paint may show ``item``."""
        return (
            isinstance(item, Message)
            and item.retract_seq is None
            and not item.expired(now)
            and (item.key is None or self.keys.get(item.key) == item.seq)
        )


class MemoryStorage(Storage):
    """Messages in process memory; a new epoch per instance."""

    description = "memory://"

    def __init__(self, limits: Limits | None = None) -> None:
        super().__init__(limits)
        self.epoch = new_epoch()
        self._channels: dict[str, _Channel] = {}

    async def open(self) -> None:
        pass

    async def append(
        self,
        channel: str,
        body: str,
        *,
        expires: float | None = None,
        priority: str = "normal",
        key: str | None = None,
    ) -> Message:
        plain = expires is None and priority == "normal" and key is None
        if not plain:
            expires = check_fields(expires, priority, key)
        state = self._channels.get(channel)
        if state is None:
            if len(self._channels) >= self.limits.max_channels:
                raise ChannelLimitError(
                    f"channel limit reached: the store already holds "
                    f"{self.limits.max_channels} channels (--max-channels)"
                )
            state = self._channels[channel] = _Channel()
        items = state.items
        now = ts = time.time()
        # Keep ts non-decreasing within a channel even if the wall clock steps back,
        # so age trimming from the head stays correct.
        if len(items) > state.head and items[-1].ts > now:
            ts = items[-1].ts
        state.last_seq += 1
        seq = state.last_seq
        if plain:
            message = Message(self.epoch, channel, seq, body, ts)
        else:
            message = Message(
                self.epoch, channel, seq, body, ts, expires=expires, priority=priority, key=key
            )
            if expires is not None:
                state.plain = False
                heapq.heappush(state.expiring, (expires, seq))
            if key is not None:
                state.plain = False
                state.keys[key] = seq
            if priority == "alert":
                state.alerts.append(seq)
        items.append(message)
        excess = len(items) - state.head - self.limits.max_messages
        if excess > 0:
            state.drop_oldest(excess, now)
        if state.expiring:
            state.sweep(now)
        return message

    async def retract(self, channel: str, seq: int) -> Message:
        state = self._channels.get(channel)
        if state is None:
            raise not_retained("unknown", channel, seq)
        now = time.time()
        self._trim(state, now)
        if not 1 <= seq <= state.last_seq:
            raise not_retained("unknown", channel, seq)
        index = state.index(seq)
        if index is None:
            raise not_retained("trimmed", channel, seq)
        item = state.items[index]
        if isinstance(item, _Hole):
            raise not_retained(item.reason, channel, seq)
        if item.retract_seq is not None:
            raise not_retained("tombstone", channel, seq)
        if item.expired(now):
            raise not_retained("expired", channel, seq)
        state.items[index] = _Hole("retracted", item.ts)
        state.plain = False
        ts = self._next_ts(state, now)
        state.last_seq += 1
        tombstone = Message(self.epoch, channel, state.last_seq, None, ts, retract=seq)
        state.add(tombstone, self.limits.max_messages, now)
        return tombstone

    @staticmethod
    def _next_ts(state: _Channel, now: float) -> float:
        # Keep ts non-decreasing within a channel even if the wall clock steps back,
        # so age trimming from the head stays correct.
        items = state.items
        if len(items) > state.head and items[-1].ts > now:
            return items[-1].ts
        return now

    def _trim(self, state: _Channel, now: float) -> None:
        if self.limits.max_age is not None:
            state.expire(now - self.limits.max_age, now)
        if state.expiring:
            state.sweep(now)

    async def read(self, channel: str, after: int | None, limit: int) -> Slice:
        state = self._channels.get(channel)
        if state is None:
            return Slice([], 0, 1, end=0)
        now = 0.0  # a plain channel hides nothing: no clock needed
        if self.limits.max_age is not None or not state.plain:
            now = time.time()
            self._trim(state, now)
        items, last_seq = state.items, state.last_seq
        messages: list[Message]
        if after is None:
            if state.plain:
                # A plain channel holds only messages (no cast: this is the hot path).
                messages = items[max(state.head, len(items) - limit) :]  # type: ignore[assignment]
            else:
                messages = []
                for index in range(len(items) - 1, state.head - 1, -1):
                    item = items[index]
                    if state.current(item, now):
                        messages.append(cast(Message, item))
                        if len(messages) == limit:
                            break
                messages.reverse()
            if state.alerts:
                self._add_alert(state, messages, limit, now)
            return Slice(messages, last_seq, state.first, None, last_seq)
        start = state.head + max(0, after + 1 - state.base)
        if state.plain:
            messages = items[start : start + limit]  # type: ignore[assignment]
            end = last_seq if start + limit >= len(items) else messages[-1].seq
            return Slice(messages, last_seq, state.first, None, end)
        messages = []
        end = last_seq
        for index in range(start, len(items)):
            item = items[index]
            if isinstance(item, Message) and not item.expired(now):
                if len(messages) == limit:  # one more is visible: the answer stops short
                    end = messages[-1].seq
                    break
                messages.append(item)
        return Slice(messages, last_seq, state.first, end=end)

    @staticmethod
    def _add_alert(state: _Channel, messages: list[Message], limit: int, now: float) -> None:
        """Put the newest current alert in front of a full first paint that has none."""
        if len(messages) < limit:
            return
        if any(m.priority == "alert" for m in messages):
            return
        oldest = messages[0].seq if messages else state.last_seq + 1
        for seq in reversed(state.alerts):
            if seq >= oldest:
                continue
            index = state.index(seq)
            if index is None:
                return
            item = state.items[index]
            if state.current(item, now):
                messages.insert(0, cast(Message, item))
                return

    async def channel_count(self) -> int:
        return len(self._channels)
