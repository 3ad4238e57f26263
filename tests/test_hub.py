"""Hub: wake-ups, the lost wake-up window, cancelled holds, close."""

from __future__ import annotations

import asyncio

from tornado_lp.hub import Hold, Hub
from tornado_lp.protocol import new_epoch
from tornado_lp.storage import Limits, MemoryStorage, Message, Slice, Storage, StorageUnavailable

from .backends import Backend

HOUR = 3600.0


class GatedStorage(Storage):
    """A real store (any backend) whose next read, once armed, pauses after taking its snapshot.

    That pause is the window an asynchronous store (a thread, a socket) opens
    between a poll's read and its wait.
    """

    def __init__(self, inner: Storage) -> None:
        super().__init__(inner.limits)
        self.inner = inner
        self.armed = False
        self.snapshot_taken = asyncio.Event()
        self.release = asyncio.Event()

    async def open(self) -> None:
        await self.inner.open()
        self.epoch = self.inner.epoch

    async def append(self, channel: str, body: str) -> Message:
        return await self.inner.append(channel, body)

    async def read(self, channel: str, after: int | None, limit: int) -> Slice:
        chunk = await self.inner.read(channel, after, limit)
        if self.armed:
            self.armed = False
            self.snapshot_taken.set()
            await self.release.wait()
        return chunk

    async def channel_count(self) -> int:
        return await self.inner.channel_count()


def test_publish_between_read_and_wait_still_releases_the_poll(backend: Backend) -> None:
    async def scenario(inner: Storage) -> None:
        storage = GatedStorage(inner)
        hub = Hub(storage)
        await hub.publish("ch", "before")
        storage.armed = True
        poll = asyncio.ensure_future(hub.poll("ch", f"{storage.epoch}-1", HOUR, 10))
        await storage.snapshot_taken.wait()  # the poll has read "nothing newer"...
        await hub.publish("ch", "in the gap")  # ...and a publish lands before it waits
        storage.release.set()
        result = await asyncio.wait_for(poll, 10)  # a lost wake-up would hold for an hour
        assert result is not None
        assert [m.body for m in result.messages] == ["in the gap"]

    backend.run(scenario)


def test_polls_racing_publishes_never_miss_a_wake_up(backend: Backend) -> None:
    """No gate: polls and publishes interleave freely; each poller sees every message once."""

    async def scenario(storage: Storage) -> None:
        hub = Hub(storage)
        await hub.open()
        start = f"{storage.epoch}-0"

        async def follow() -> list[str]:
            seen: list[str] = []
            cursor = start
            while len(seen) < 200:
                result = await asyncio.wait_for(hub.poll("race", cursor, HOUR, 7), 10)
                assert result is not None
                seen.extend(m.body for m in result.messages)
                cursor = result.cursor
            return seen

        followers = [asyncio.ensure_future(follow()) for _ in range(5)]
        for i in range(200):
            await hub.publish("race", str(i))
            if i % 3 == 0:
                await asyncio.sleep(0)
        expected = [str(i) for i in range(200)]
        assert await asyncio.gather(*followers) == [expected] * 5

    backend.run(scenario)


def test_publish_wakes_only_its_channel() -> None:
    async def main() -> None:
        hub = Hub(MemoryStorage())
        await hub.open()
        cursor = f"{hub.storage.epoch}-0"
        a = asyncio.ensure_future(hub.poll("a", cursor, HOUR, 10))
        b = asyncio.ensure_future(hub.poll("b", cursor, HOUR, 10))
        while hub.holding("a") == 0 or hub.holding("b") == 0:
            await asyncio.sleep(0)
        await hub.publish("a", "for a")
        result = await a
        assert result is not None and [m.body for m in result.messages] == ["for a"]
        assert not b.done() and hub.waiters("b") == 1
        await hub.publish("b", "for b")
        result = await b
        assert result is not None and [m.body for m in result.messages] == ["for b"]

    asyncio.run(main())


def test_cancelled_holds_leave_no_trace() -> None:
    async def main() -> None:
        hub = Hub(MemoryStorage())
        await hub.open()
        cursor = f"{hub.storage.epoch}-0"
        holds = [Hold() for _ in range(500)]
        polls = [asyncio.ensure_future(hub.poll("quiet", cursor, HOUR, 10, h)) for h in holds]
        while hub.holding("quiet") < 500:
            await asyncio.sleep(0)
        assert hub.waiters("quiet") == hub.total_waiters() == hub.pending_deadlines() == 500
        for i, hold in enumerate(holds[:499]):
            hold.cancel()
            if i == 249:
                assert await asyncio.gather(*polls[:250]) == [None] * 250
                # No publish happened, yet nothing of the dropped polls is left.
                assert hub.waiters("quiet") == hub.holding("quiet") == 250
                assert hub.total_waiters() == hub.pending_deadlines() == 250
        await asyncio.gather(*polls[:499])
        assert hub.waiters("quiet") == hub.pending_deadlines() == 1
        holds[499].cancel()
        assert await polls[499] is None
        assert hub.waiters("quiet") == hub.total_waiters() == hub.pending_deadlines() == 0
        assert hub._channels == {}  # the channel state itself is gone
        await asyncio.sleep(0)  # and its pump has ended
        assert [t for t in asyncio.all_tasks() if "_pump" in repr(t)] == []

    asyncio.run(main())


def test_timeout_answers_empty_with_same_cursor() -> None:
    async def main() -> None:
        hub = Hub(MemoryStorage())
        message = await hub.publish("t", "x")
        result = await hub.poll("t", message.id, 0.05, 10)
        assert result is not None
        assert (result.messages, result.cursor, result.more, result.missed, result.reset) == (
            [], message.id, False, False, False
        )
        assert hub.waiters("t") == 0

    asyncio.run(main())


def test_close_answers_every_held_poll() -> None:
    async def main() -> None:
        hub = Hub(MemoryStorage())
        await hub.open()
        cursor = f"{hub.storage.epoch}-0"
        polls = [asyncio.ensure_future(hub.poll(f"c{i % 3}", cursor, HOUR, 10)) for i in range(30)]
        while hub.total_waiters() < 30:
            await asyncio.sleep(0)
        await hub.close()
        results = await asyncio.gather(*polls)
        assert all(r is not None and r.messages == [] and r.cursor == cursor for r in results)
        assert hub.total_waiters() == 0

    asyncio.run(main())


def test_answers_encode_as_json() -> None:
    import json

    async def main() -> None:
        hub = Hub(MemoryStorage())
        await hub.publish("j", 'quote " backslash \\ </script> ünï')
        result = await hub.poll("j", None, 0, 10)
        assert result is not None
        decoded = json.loads(result.encode())
        assert decoded["messages"][0]["body"] == 'quote " backslash \\ </script> ünï'
        assert set(decoded) == {"messages", "cursor", "more", "missed", "reset"}

    asyncio.run(main())


def test_wake_all_rechecks_every_channel() -> None:
    async def main() -> None:
        storage = MemoryStorage()
        hub = Hub(storage)
        await hub.open()
        cursor = f"{storage.epoch}-0"
        polls = [asyncio.ensure_future(hub.poll(f"w{i}", cursor, HOUR, 10)) for i in range(3)]
        while hub.total_waiters() < 3:
            await asyncio.sleep(0)
        # Messages stored behind the hub's back (as by another process whose notice was lost):
        for i in range(3):
            await storage.append(f"w{i}", f"late {i}")
        hub.wake(None)
        results = await asyncio.gather(*polls)
        assert [[m.body for m in r.messages] for r in results if r] == [
            ["late 0"], ["late 1"], ["late 2"]
        ]

    asyncio.run(main())


class CountingStorage(MemoryStorage):
    """A real MemoryStorage that counts its reads."""

    def __init__(self) -> None:
        super().__init__(Limits())
        self.reads = 0

    async def read(self, channel: str, after: int | None, limit: int) -> Slice:
        self.reads += 1
        return await super().read(channel, after, limit)


def test_woken_polls_with_one_cursor_share_one_read_and_one_answer() -> None:
    async def main() -> None:
        storage = CountingStorage()
        hub = Hub(storage)
        first = await hub.publish("fan", "first")
        polls = [asyncio.ensure_future(hub.poll("fan", first.id, HOUR, 50)) for _ in range(200)]
        while hub.holding("fan") < 200:
            await asyncio.sleep(0)
        assert storage.reads == 1  # 200 polls arrived with one cursor: one read
        storage.reads = 0
        await hub.publish("fan", "second")
        results = await asyncio.gather(*polls)
        assert storage.reads == 1
        assert all(r is results[0] for r in results)  # one answer object, encoded once
        assert results[0] is not None and [m.body for m in results[0].messages] == ["second"]
        assert results[0].encode() is results[-1].encode()

    asyncio.run(main())


def test_a_failed_shared_read_fails_every_poll_sharing_it() -> None:
    class FailingStorage(MemoryStorage):
        fail = False

        async def read(self, channel: str, after: int | None, limit: int) -> Slice:
            await asyncio.sleep(0)  # in flight long enough to be shared
            if self.fail:
                raise StorageUnavailable("disk on fire")
            return await super().read(channel, after, limit)

    async def main() -> None:
        storage = FailingStorage()
        hub = Hub(storage)
        await hub.open()
        storage.fail = True
        polls = [asyncio.ensure_future(hub.poll("f", None, HOUR, 10)) for _ in range(3)]
        outcomes = await asyncio.gather(*polls, return_exceptions=True)
        assert all(isinstance(o, StorageUnavailable) for o in outcomes)
        assert hub.total_waiters() == 0
        storage.fail = False
        await hub.publish("f", "recovered")
        result = await hub.poll("f", None, HOUR, 10)
        assert result is not None and result.messages[0].body == "recovered"

    asyncio.run(main())


class DownStorage(MemoryStorage):
    """A MemoryStorage whose reads raise StorageUnavailable while ``down`` is set."""

    def __init__(self) -> None:
        super().__init__(Limits())
        self.down = False
        self.failed_reads = 0

    async def read(self, channel: str, after: int | None, limit: int) -> Slice:
        if self.down:
            self.failed_reads += 1
            raise StorageUnavailable("store is down (test)")
        return await super().read(channel, after, limit)


def test_store_down_while_held_answers_normally_at_the_deadline() -> None:
    async def main() -> None:
        storage = DownStorage()
        hub = Hub(storage)
        message = await hub.publish("d", "before")
        poll = asyncio.ensure_future(hub.poll("d", message.id, 0.3, 10))
        while hub.holding("d") == 0:
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        storage.down = True
        hub.wake("d")  # the re-read fails: the poll must keep holding, not raise
        await asyncio.sleep(0.05)
        assert not poll.done() and storage.failed_reads == 1
        result = await asyncio.wait_for(poll, 5)
        assert result is not None
        assert (result.messages, result.cursor, result.reset) == ([], message.id, False)

    asyncio.run(main())


def test_store_back_after_outage_wake_all_delivers() -> None:
    async def main() -> None:
        storage = DownStorage()
        hub = Hub(storage)
        message = await hub.publish("d", "before")
        poll = asyncio.ensure_future(hub.poll("d", message.id, HOUR, 10))
        while hub.holding("d") == 0:
            await asyncio.sleep(0)
        storage.down = True
        hub.wake(None)
        await asyncio.sleep(0.01)
        await storage.append("d", "during the outage")  # stored elsewhere; the notice was lost
        storage.down = False
        hub.wake(None)  # what a shared store does once it has reconnected
        result = await asyncio.wait_for(poll, 5)
        assert result is not None and [m.body for m in result.messages] == ["during the outage"]

    asyncio.run(main())


def test_first_read_failing_raises() -> None:
    async def main() -> None:
        storage = DownStorage()
        hub = Hub(storage)
        await hub.open()
        storage.down = True
        for timeout in (0, HOUR):
            try:
                await hub.poll("d", None, timeout, 10)
            except StorageUnavailable:
                pass
            else:
                raise AssertionError("expected StorageUnavailable")
        assert hub.total_waiters() == 0

    asyncio.run(main())


class ReEpochStorage(MemoryStorage):
    """A MemoryStorage that can be wiped and get a new epoch, as a shared store can (FLUSHALL)."""

    def wipe(self) -> None:
        self.epoch = new_epoch()
        self._channels.clear()

    async def read(self, channel: str, after: int | None, limit: int) -> Slice:
        chunk = await super().read(channel, after, limit)
        return Slice(chunk.messages, chunk.last_seq, chunk.first_seq, self.epoch)


def test_epoch_changing_while_held_answers_reset() -> None:
    async def main() -> None:
        storage = ReEpochStorage()
        hub = Hub(storage)
        for i in range(3):
            old = await hub.publish("e", f"old {i}")
        poll = asyncio.ensure_future(hub.poll("e", old.id, HOUR, 10))
        while hub.holding("e") == 0:
            await asyncio.sleep(0)
        storage.wipe()
        # More messages than the cursor's seq in the new epoch: without the epoch
        # check the poll would wrongly answer seqs 4.. as the continuation.
        for i in range(5):
            await hub.publish("e", f"new {i}")
        result = await asyncio.wait_for(poll, 5)
        assert result is not None and result.reset
        assert [m.body for m in result.messages] == [f"new {i}" for i in range(5)]
        assert result.cursor == f"{storage.epoch}-5"
        # A cursor of the new epoch given to a poll works at once, also without holding.
        again = await hub.poll("e", f"{storage.epoch}-3", 0, 10)
        assert again is not None and not again.reset
        assert [m.body for m in again.messages] == ["new 3", "new 4"]
        stale = await hub.poll("e", old.id, 0, 10)
        assert stale is not None and stale.reset and len(stale.messages) == 5

    asyncio.run(main())


def test_publish_refuses_what_could_never_be_answered() -> None:
    import pytest

    async def main() -> None:
        hub = Hub(MemoryStorage())
        for channel, body, word in [("ok", "\ud800", "Unicode"), ("ok", "", "empty"),
                                    ("bad name", "x", "channel")]:
            with pytest.raises(ValueError, match=word):
                await hub.publish(channel, body)
        assert (await hub.poll("ok", None, 0, 10)).messages == []  # type: ignore[union-attr]

    asyncio.run(main())
