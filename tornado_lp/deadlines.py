"""Deadlines of every held reader in a process, on one timer.

A held poll used to carry its own timer (a Condition wait with a timeout); a
fleet of 10,000 screens made 10,000 timer handles to create and cancel per
round. :class:`Deadlines` keeps them in one heap and arms one loop timer for
the earliest. Cancelling is O(1): the entry is blanked and dropped when it
reaches the top (or when blanks outnumber live entries, by a rebuild).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable

__all__ = ["Deadline", "Deadlines"]


class Deadline:
    """One scheduled call; :meth:`cancel` makes it a no-op."""

    __slots__ = ("callback", "order", "when")

    def __init__(self, when: float, order: int, callback: Callable[[], None]) -> None:
        self.when = when
        self.order = order
        self.callback: Callable[[], None] | None = callback

    def __lt__(self, other: Deadline) -> bool:
        return (self.when, self.order) < (other.when, other.order)

    def cancel(self) -> None:
        self.callback = None


class Deadlines:
    """Calls at loop times, one armed timer for all of them."""

    def __init__(self) -> None:
        self._heap: list[Deadline] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at = 0.0
        self._cancelled = 0

    def __len__(self) -> int:
        """Live (not cancelled) deadlines."""
        return len(self._heap) - self._cancelled

    def at(self, when: float, callback: Callable[[], None]) -> Deadline:
        """Call ``callback()`` at loop time ``when`` (or soon after), unless cancelled."""
        entry = Deadline(when, next(self._order), callback)
        heapq.heappush(self._heap, entry)
        if self._timer is None or when < self._armed_at:
            self._arm(when)
        return entry

    def cancel(self, entry: Deadline) -> None:
        if entry.callback is not None:
            entry.callback = None
            self._cancelled += 1
            if self._cancelled > 1024 and self._cancelled * 2 > len(self._heap):
                self._heap = [e for e in self._heap if e.callback is not None]
                heapq.heapify(self._heap)
                self._cancelled = 0
                if not self._heap and self._timer is not None:
                    self._timer.cancel()
                    self._timer = None

    def clear(self) -> None:
        """Forget every deadline (their callbacks are not called)."""
        self._heap.clear()
        self._cancelled = 0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_at = when
        self._timer = asyncio.get_running_loop().call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        heap = self._heap
        now = asyncio.get_running_loop().time()
        while heap and heap[0].when <= now:
            entry = heapq.heappop(heap)
            callback = entry.callback
            if callback is None:
                self._cancelled -= 1
                continue
            entry.callback = None
            callback()
        while heap and heap[0].callback is None:
            heapq.heappop(heap)
            self._cancelled -= 1
        if heap:
            self._arm(heap[0].when)
