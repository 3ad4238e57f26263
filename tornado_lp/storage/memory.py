"""In-process storage: fast, bounded, and gone when the process ends.

Each channel keeps its messages in a list with a moving head, so appending is
O(1) amortised and reading after a cursor is an index computation plus the
slice: O(1 + k). ``MemoryStorage`` is also the test double for the interface.
"""

from __future__ import annotations

import time

from ..protocol import new_epoch
from .base import ChannelLimitError, Limits, Message, Slice, Storage

__all__ = ["MemoryStorage"]


class _Channel:
    """Retained messages ``items[head:]`` with seqs ``first_seq .. last_seq``."""

    __slots__ = ("head", "items", "last_seq")

    def __init__(self) -> None:
        self.items: list[Message] = []
        self.head = 0
        self.last_seq = 0

    @property
    def first_seq(self) -> int:
        return self.last_seq - (len(self.items) - self.head) + 1

    def drop_oldest(self, count: int) -> None:
        self.head += count
        if self.head > 64 and self.head * 2 > len(self.items):
            del self.items[: self.head]
            self.head = 0

    def expire(self, cutoff: float) -> None:
        """Drop messages older than ``cutoff`` (they are in ``ts`` order)."""
        items, head, end = self.items, self.head, len(self.items)
        start = head
        while head < end and items[head].ts < cutoff:
            head += 1
        if head != start:
            self.drop_oldest(head - start)


class MemoryStorage(Storage):
    """Messages in process memory; a new epoch per instance."""

    description = "memory://"

    def __init__(self, limits: Limits | None = None) -> None:
        super().__init__(limits)
        self.epoch = new_epoch()
        self._channels: dict[str, _Channel] = {}

    async def open(self) -> None:
        pass

    async def append(self, channel: str, body: str) -> Message:
        state = self._channels.get(channel)
        if state is None:
            if len(self._channels) >= self.limits.max_channels:
                raise ChannelLimitError(
                    f"channel limit reached: the store already holds "
                    f"{self.limits.max_channels} channels (--max-channels)"
                )
            state = self._channels[channel] = _Channel()
        now = time.time()
        # Keep ts non-decreasing within a channel even if the wall clock steps back,
        # so age trimming from the head stays correct.
        if state.items and state.items[-1].ts > now:
            now = state.items[-1].ts
        state.last_seq += 1
        message = Message(self.epoch, channel, state.last_seq, body, now)
        state.items.append(message)
        excess = len(state.items) - state.head - self.limits.max_messages
        if excess > 0:
            state.drop_oldest(excess)
        return message

    async def read(self, channel: str, after: int | None, limit: int) -> Slice:
        state = self._channels.get(channel)
        if state is None:
            return Slice([], 0, 1)
        if self.limits.max_age is not None:
            state.expire(time.time() - self.limits.max_age)
        first_seq = state.first_seq
        if after is None:
            start = max(state.head, len(state.items) - limit)
        else:
            start = state.head + max(0, after + 1 - first_seq)
        return Slice(state.items[start : start + limit], state.last_seq, first_seq)

    async def channel_count(self) -> int:
        return len(self._channels)
