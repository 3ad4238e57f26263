"""The subscription core at the hub level: custom Subscribers, no HTTP.

Multi-channel answers, streams re-read at their limit, shared answers and
their memos, no lost wake-up with asynchronous stores, churn, a failing
reader, and issue 12's coalescing behaviour (a burst in batches, an idle
channel at once).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from tornado_lp.answers import Answer
from tornado_lp.hub import Hub
from tornado_lp.storage import MemoryStorage, Storage, StorageUnavailable
from tornado_lp.subscription import Position, Subscriber

from .backends import Backend
from .test_hub import GatedStorage
from .transports import until

HOUR = 3600.0


class Recorder(Subscriber):
    """A reader that keeps what it is handed; ``once`` per instance."""

    def __init__(self, positions: list[Position], limit: int = 50,
                 timeout: float | None = HOUR, *, once: bool = False) -> None:
        super().__init__(positions, limit, timeout)
        self.once = once  # type: ignore[misc]
        self.answers: list[Answer] = []
        self.failures: list[StorageUnavailable] = []
        self.expired = 0
        self.ended = False

    def deliver(self, answer: Answer) -> None:
        self.answers.append(answer)

    def fail(self, error: StorageUnavailable) -> None:
        self.failures.append(error)

    def expire(self) -> None:
        self.expired += 1

    def shutdown(self) -> None:
        self.ended = True

    def bodies(self, channel: str | None = None) -> list[str]:
        return [m.body for a in self.answers for m in a.messages
                if channel is None or m.channel == channel]


def at(hub: Hub, **seqs: int | None) -> list[Position]:
    return [Position(ch, hub.storage.epoch, seq) for ch, seq in seqs.items()]


def pumps() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if "_pump" in repr(t)]


async def nothing_left(hub: Hub) -> None:
    await until(lambda: not hub._channels and not pumps(), what="channel states and pumps gone")
    assert hub.total_waiters() == 0 and hub.pending_deadlines() == 0


def test_publishes_on_two_channels_in_one_loop_turn_are_one_answer() -> None:
    async def main() -> None:
        hub = Hub(MemoryStorage())
        await hub.open()
        reader = Recorder(at(hub, a=0, b=0, c=0))
        hub.subscribe(reader)
        await until(lambda: reader.held)
        await asyncio.gather(hub.publish("a", "one"), hub.publish("b", "two"))
        await until(lambda: reader.answers)
        await asyncio.sleep(0)
        (answer,) = reader.answers
        assert [p.channel for p in answer.parts] == ["a", "b"]
        assert [m.body for m in answer.messages] == ["one", "two"]
        hub.unsubscribe(reader)
        await nothing_left(hub)

    asyncio.run(main())


def test_a_stream_with_a_small_limit_is_re_read_until_caught_up_in_order() -> None:
    async def main() -> None:
        hub = Hub(MemoryStorage())
        for i in range(10):
            await hub.publish("s", f"m{i}")
        stream = Recorder(at(hub, s=0, t=0), limit=3)
        hub.subscribe(stream)
        await until(lambda: len(stream.bodies()) == 10)
        assert stream.bodies() == [f"m{i}" for i in range(10)]
        assert [len(a.messages) for a in stream.answers] == [3, 3, 3, 1]
        assert [a.parts[0].more for a in stream.answers] == [True, True, True, False]
        assert stream.answers[-1].cursor == positions_cursor(hub, s=10, t=0)
        for i in range(10, 14):  # caught up: later publishes come as they are made
            await hub.publish("s", f"m{i}")
        await until(lambda: len(stream.bodies()) == 14)
        assert stream.bodies() == [f"m{i}" for i in range(14)]
        hub.unsubscribe(stream)
        await nothing_left(hub)

    asyncio.run(main())


def positions_cursor(hub: Hub, **seqs: int) -> str:
    from tornado_lp.protocol import format_stream_cursor

    return format_stream_cursor(hub.storage.epoch, seqs)


def test_readers_at_the_same_positions_share_one_answer_and_its_memo() -> None:
    calls: list[Answer] = []

    def frame(answer: Answer) -> bytes:
        calls.append(answer)
        return b"framed"

    class Framing(Recorder):
        def deliver(self, answer: Answer) -> None:
            assert answer.memo("test-frame", frame) == b"framed"
            super().deliver(answer)

    async def main() -> None:
        hub = Hub(MemoryStorage())
        await hub.publish("a", "first")
        readers = [Framing(at(hub, a=1, b=0)) for _ in range(200)]
        for reader in readers:
            hub.subscribe(reader)
        await until(lambda: all(r.held for r in readers))
        await hub.publish("a", "second")
        await until(lambda: all(r.answers for r in readers))
        answers = {id(r.answers[0]) for r in readers}
        assert len(answers) == 1  # one Answer object for all of them
        assert len(calls) == 1  # its framing computed once
        assert readers[0].answers[0].encode() is readers[-1].answers[0].encode()
        # A reader at another position gets an answer of its own.
        other = Framing(at(hub, a=0, b=0))
        hub.subscribe(other)
        await until(lambda: other.answers)
        assert other.bodies() == ["first", "second"] and len(calls) == 2
        for reader in [*readers, other]:
            hub.unsubscribe(reader)
        await nothing_left(hub)

    asyncio.run(main())


@pytest.mark.parametrize("phase", ["first read", "held"])
def test_no_lost_wake_up_for_a_multi_channel_reader(backend: Backend, phase: str) -> None:
    async def scenario(inner: Storage) -> None:
        storage = GatedStorage(inner)
        hub = Hub(storage)
        await hub.publish("a", "before")
        reader = Recorder(at(hub, a=1, b=0), once=True)
        if phase == "first read":
            storage.armed = True  # the reader's first read of a pauses after its snapshot
            hub.subscribe(reader)
        else:
            hub.subscribe(reader)
            await until(lambda: reader.held)
            storage.armed = True
            hub.wake("a")  # a wake without news: the re-read of a pauses after its snapshot
        await asyncio.wait_for(storage.snapshot_taken.wait(), 10)
        await hub.publish("a", "in the gap")  # lands between the read and the wait
        storage.release.set()
        await until(lambda: reader.answers, wait=10, what="the publish in the gap delivered")
        assert reader.bodies() == ["in the gap"]
        await nothing_left(hub)

    backend.run(scenario)


def test_racing_multi_channel_readers_see_every_message_once(backend: Backend) -> None:
    async def scenario(storage: Storage) -> None:
        hub = Hub(storage)
        await hub.open()
        channels = ["r0", "r1", "r2"]

        async def follow() -> list[tuple[str, str]]:
            seen: list[tuple[str, str]] = []
            positions = [Position(ch, storage.epoch, 0) for ch in channels]
            while len(seen) < 150:
                answer = await asyncio.wait_for(hub.read_once(positions, HOUR, 7), 10)
                assert answer is not None
                seen += [(m.channel, m.body) for m in answer.messages]
                positions = [Position(ch, epoch, seq) for ch, epoch, seq, _ in answer.positions]
            return seen

        followers = [asyncio.ensure_future(follow()) for _ in range(5)]
        for i in range(150):
            await hub.publish(channels[i % 3], str(i))
            if i % 4 == 0:
                await asyncio.sleep(0)
        for seen in await asyncio.gather(*followers):
            for k, channel in enumerate(channels):
                assert [b for ch, b in seen if ch == channel] == [str(i) for i in range(k, 150, 3)]
        await nothing_left(hub)

    backend.run(scenario)


def test_churn_leaves_nothing_behind() -> None:
    async def main() -> None:
        hub = Hub(MemoryStorage())
        await hub.open()
        rng = random.Random(7)
        names = [f"ch{i}" for i in range(20)]
        live: list[Recorder] = []
        answered = 0
        for round_ in range(10):
            for _ in range(400):
                chosen = rng.sample(names, rng.randint(1, 4))
                seqs = {ch: rng.choice([None, 0]) for ch in chosen}
                reader = Recorder([Position(ch, hub.storage.epoch, s) for ch, s in seqs.items()],
                                  once=rng.random() < 0.5)
                hub.subscribe(reader)
                if rng.random() < 0.2:
                    hub.unsubscribe(reader)  # gone before its first read is in
                else:
                    live.append(reader)
            await asyncio.sleep(0)
            await hub.publish(rng.choice(names), f"round {round_}")
            rng.shuffle(live)
            for reader in live[: len(live) // 2]:
                hub.unsubscribe(reader)
            live = live[len(live) // 2:]
        await until(lambda: all(r.done or r.held for r in live))
        answered = sum(1 for r in live if r.answers)
        assert answered > 0
        for reader in live:
            hub.unsubscribe(reader)
        await nothing_left(hub)
        # What stays in the heap are blanks, holding no reader, bounded by the compaction.
        heap = hub._deadlines._heap
        assert all(entry.callback is None for entry in heap) and len(heap) <= 2 * 1024

    asyncio.run(main())


def test_a_reader_whose_deliver_raises_does_not_stop_the_others() -> None:
    class Broken(Recorder):
        def deliver(self, answer: Answer) -> None:
            raise RuntimeError("a transport's bug")

    async def main() -> None:
        hub = Hub(MemoryStorage())
        await hub.open()
        loop_errors: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: loop_errors.append(ctx))
        single = [Recorder(at(hub, s=0)), Broken(at(hub, s=0)), Recorder(at(hub, s=0))]
        multi = [Recorder(at(hub, m=0, n=0)), Broken(at(hub, m=0, n=0)),
                 Recorder(at(hub, m=0, n=0))]
        for reader in [*single, *multi]:
            hub.subscribe(reader)
        await until(lambda: all(r.held for r in [*single, *multi]))
        await hub.publish("s", "for s")
        await hub.publish("m", "for m")
        await until(lambda: all(r.answers for r in [*single, *multi] if not isinstance(r, Broken)))
        assert [r.bodies() for r in single if not isinstance(r, Broken)] == [["for s"]] * 2
        assert [r.bodies() for r in multi if not isinstance(r, Broken)] == [["for m"]] * 2
        # The broken readers are forgotten, as a reader that went away.
        await until(lambda: all(r.done for r in (single[1], multi[1])))
        assert hub.waiters("s") == 2 and hub.waiters("m") == 2 and hub.total_waiters() == 4
        await hub.publish("m", "again")  # and the others keep getting answers
        await until(lambda: all(len(r.answers) == 2 for r in (multi[0], multi[2])))
        assert loop_errors == []
        for reader in [*single, *multi]:
            hub.unsubscribe(reader)
        await nothing_left(hub)

    asyncio.run(main())


def test_close_ends_streams_and_answers_polls() -> None:
    async def main() -> None:
        hub = Hub(MemoryStorage())
        await hub.open()
        stream = Recorder(at(hub, a=0, b=0))
        poll = Recorder(at(hub, a=0), once=True)
        hub.subscribe(stream)
        hub.subscribe(poll)
        await until(lambda: stream.held and poll.held)
        await hub.close()
        assert stream.ended and poll.ended and hub.total_waiters() == 0

    asyncio.run(main())


def test_a_deadline_expires_a_held_multi_channel_reader() -> None:
    async def main() -> None:
        hub = Hub(MemoryStorage())
        await hub.open()
        reader = Recorder(at(hub, a=0, b=0), timeout=0.05)
        hub.subscribe(reader)
        await until(lambda: reader.expired == 1)
        assert reader.answers == [] and reader.done
        await nothing_left(hub)

    asyncio.run(main())


# -- issue 12: coalescing ---------------------------------------------------------


def test_a_burst_is_answered_in_batches_nothing_lost_repeated_or_reordered() -> None:
    async def main() -> None:
        hub = Hub(MemoryStorage())
        await hub.open()
        total, readers = 400, 20
        answers: list[int] = []

        async def poller() -> list[str]:
            seen: list[str] = []
            cursor = f"{hub.storage.epoch}-0"
            while len(seen) < total:
                result = await asyncio.wait_for(hub.poll("burst", cursor, HOUR, 1000), 10)
                assert result is not None and not result.missed and not result.reset
                answers.append(len(result.messages))
                seen += [m.body for m in result.messages]
                cursor = result.cursor
            return seen

        async def publisher(p: int) -> None:
            for i in range(total // 8):
                await hub.publish("burst", f"{p}:{i}")
                await asyncio.sleep(0)

        polling = [asyncio.ensure_future(poller()) for _ in range(readers)]
        await until(lambda: hub.holding("burst") == readers)
        await asyncio.gather(*(publisher(p) for p in range(8)))
        results = await asyncio.gather(*polling)
        assert all(seen == results[0] for seen in results) and len(set(results[0])) == total
        for p in range(8):
            assert [b for b in results[0] if b.startswith(f"{p}:")] == [
                f"{p}:{i}" for i in range(total // 8)]
        assert sum(answers) / len(answers) > 1, "every publish was answered alone"

    asyncio.run(main())


def test_a_single_publish_on_an_idle_channel_is_answered_within_a_few_loop_turns() -> None:
    """No batch window: the answer is out before three zero-time turns of the loop."""

    async def main() -> None:
        hub = Hub(MemoryStorage())
        await hub.open()
        reader = Recorder(at(hub, idle=0), once=True)
        hub.subscribe(reader)
        await until(lambda: reader.held)
        await hub.publish("idle", "now")
        for _ in range(3):
            await asyncio.sleep(0)  # a yield to the loop, not a clock: no timer can be due
        assert reader.bodies() == ["now"], "the answer waited for a timer"

    asyncio.run(main())
