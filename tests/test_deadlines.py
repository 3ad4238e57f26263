"""Deadlines: one heap and one armed timer for every held reader of a process."""

from __future__ import annotations

import asyncio
import functools

from tornado_lp.deadlines import Deadlines


def armed(deadlines: Deadlines) -> list[asyncio.TimerHandle]:
    """The loop timers that call this Deadlines (there must be one at most)."""
    loop = asyncio.get_running_loop()
    return [h for h in loop._scheduled  # type: ignore[attr-defined]
            if not h.cancelled() and getattr(h._callback, "__self__", None) is deadlines]


def test_calls_come_in_order_of_time_then_of_scheduling() -> None:
    async def main() -> None:
        deadlines = Deadlines()
        loop = asyncio.get_running_loop()
        now = loop.time()
        calls: list[str] = []
        done = asyncio.Event()
        deadlines.at(now + 0.03, lambda: calls.append("c"))
        deadlines.at(now + 0.01, lambda: calls.append("a"))
        deadlines.at(now + 0.02, lambda: calls.append("b1"))
        deadlines.at(now + 0.02, lambda: calls.append("b2"))
        deadlines.at(now + 0.04, done.set)
        assert len(deadlines) == 5
        await asyncio.wait_for(done.wait(), 10)
        assert calls == ["a", "b1", "b2", "c"]
        assert len(deadlines) == 0 and armed(deadlines) == []
        assert all(loop.time() >= now for _ in calls)

    asyncio.run(main())


def test_cancelled_deadlines_are_not_called() -> None:
    async def main() -> None:
        deadlines = Deadlines()
        now = asyncio.get_running_loop().time()
        calls: list[int] = []
        done = asyncio.Event()
        entries = [deadlines.at(now + 0.01 * i, functools.partial(calls.append, i))
                   for i in range(6)]
        deadlines.at(now + 0.07, done.set)
        for entry in entries[::2]:
            deadlines.cancel(entry)
        deadlines.cancel(entries[0])  # twice: still one cancellation
        assert len(deadlines) == 4
        await asyncio.wait_for(done.wait(), 10)
        assert calls == [1, 3, 5]
        assert len(deadlines) == 0 and deadlines._heap == []

    asyncio.run(main())


def test_one_armed_timer_for_the_earliest() -> None:
    async def main() -> None:
        deadlines = Deadlines()
        now = asyncio.get_running_loop().time()
        for i in range(1000):
            deadlines.at(now + 100 + i, lambda: None)
        (timer,) = armed(deadlines)
        assert timer.when() == now + 100
        earlier = deadlines.at(now + 50, lambda: None)  # an earlier one re-arms
        (timer,) = armed(deadlines)
        assert timer.when() == now + 50
        deadlines.at(now + 70, lambda: None)  # a later one does not
        assert [t.when() for t in armed(deadlines)] == [now + 50]
        deadlines.cancel(earlier)
        assert len(armed(deadlines)) == 1
        deadlines.clear()
        assert armed(deadlines) == [] and len(deadlines) == 0

    asyncio.run(main())


def test_a_timer_whose_entries_were_cancelled_re_arms_for_the_next_live_one() -> None:
    async def main() -> None:
        deadlines = Deadlines()
        now = asyncio.get_running_loop().time()
        done = asyncio.Event()
        first = deadlines.at(now + 0.01, lambda: None)
        deadlines.at(now + 0.03, done.set)
        deadlines.cancel(first)
        await asyncio.wait_for(done.wait(), 10)  # the timer fired on a blank, then re-armed
        assert len(deadlines) == 0

    asyncio.run(main())


def test_compaction_drops_blanks_when_they_outnumber_live_entries() -> None:
    async def main() -> None:
        deadlines = Deadlines()
        now = asyncio.get_running_loop().time()
        calls: list[int] = []
        entries = [deadlines.at(now + 1000 + i, functools.partial(calls.append, i))
                   for i in range(3000)]
        for entry in entries[:1500]:
            deadlines.cancel(entry)
        assert len(deadlines._heap) == 3000  # blanks not outnumbering live ones wait for the top
        deadlines.cancel(entries[1500])
        # More than 1024 blanks and more blanks than live entries: rebuilt without them.
        assert len(deadlines._heap) == len(deadlines) == 1499
        assert all(e.callback is not None for e in deadlines._heap)
        assert len(armed(deadlines)) == 1
        for entry in entries[1501:]:
            deadlines.cancel(entry)
        assert len(deadlines) == 0
        assert all(e.callback is None for e in deadlines._heap)  # blanks hold no callback
        deadlines.clear()
        assert calls == []

    asyncio.run(main())

