"""The single-channel poll's protocol, on every transport and every backend.

Each case runs once per transport of tests/transports.py (``poll``: the
single-channel poll; ``mux``: ``/poll``; ``sse``: ``/events``; ``ws``: ``/ws``)
and per storage backend (``@each_backend``): ``ContractTest_sse_redis`` is the
contract over Server-Sent Events on Redis. Multi-channel cases run on the
three multi-channel transports.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from tornado.testing import gen_test

from tornado_lp.protocol import parse_stream_cursor
from tornado_lp.storage import Limits

from .httpcase import AppCase, each_backend
from .transports import KINDS, MULTI_KINDS, Answer, Reader, open_reader, until

C = TypeVar("C", bound="TransportCase")
FOREIGN = "0123456789abcdef"


def each_transport(kinds: Sequence[str]) -> Callable[[type[C]], type[C]]:
    """One case per transport in ``kinds`` (``<cls>_<kind>``), each over every backend."""

    def decorate(cls: type[C]) -> type[C]:
        module = sys.modules[cls.__module__]
        for kind in kinds:
            name = f"{cls.__name__}_{kind}"
            case = type(name, (cls,), {"kind": kind, "__qualname__": name,
                                       "__module__": cls.__module__})
            setattr(module, name, case)
            each_backend(case)
        cls.__test__ = False  # type: ignore[attr-defined]
        return cls

    return decorate


class TransportCase(AppCase):
    """An in-process app; :meth:`reader` opens a reader of this case's transport."""

    kind = "poll"

    def setUp(self) -> None:
        super().setUp()
        self.readers: list[Reader] = []

    def tearDown(self) -> None:
        async def close() -> None:
            for reader in self.readers:
                await reader.close()

        self.io_loop.run_sync(close)
        super().tearDown()

    @property
    def epoch(self) -> str:
        return self.storage.epoch

    def at(self, seq: int) -> str:
        return f"{self.epoch}-{seq}"

    async def reader(self, channels: Sequence[str], **options: Any) -> Reader:
        reader = await open_reader(self.kind, self.get_http_port(), channels,
                                   epoch=self.epoch, **options)
        self.readers.append(reader)
        return reader

    async def publish_many(self, channel: str, bodies: Sequence[str]) -> list[dict[str, Any]]:
        return [await self.publish(channel, body) for body in bodies]

    async def held(self, *channels: str, count: int = 1) -> None:
        """Wait until ``count`` readers wait for news on each of ``channels``."""
        await until(lambda: all(self.hub.holding(ch) >= count for ch in channels),
                    what=f"{count} readers held on {channels}")

    def of(self, answer: Answer, channel: str) -> list[str]:
        return [m["body"] for m in answer.messages if m["channel"] == channel]

    def positions(self, cursor: str | None, channels: Sequence[str]) -> dict[str, int | None]:
        """The per-channel seqs a cursor stands for (single-channel cursors too)."""
        assert cursor is not None
        if self.kind == "poll":
            epoch, _, seq = cursor.rpartition("-")
            assert epoch == self.epoch
            return {channels[0]: int(seq)}
        parsed = parse_stream_cursor(cursor, channels)
        assert parsed is not None and parsed[0] == self.epoch, cursor
        return parsed[1]

    async def assert_forgotten(self, *channels: str) -> None:
        hub = self.hub
        await until(lambda: all(hub.waiters(ch) == 0 for ch in channels),
                    what="the reader forgotten")
        assert [hub.holding(ch) for ch in channels] == [0] * len(channels)
        assert hub.total_waiters() == 0
        assert hub.pending_deadlines() == 0
        assert not set(channels) & set(hub._channels)
        await until(lambda: not [t for t in asyncio.all_tasks() if "_pump" in repr(t)],
                    what="the channels' pumps ended")


@each_transport(KINDS)
class ContractTest(TransportCase):
    @gen_test(timeout=60)
    async def test_no_cursor_gives_the_latest_retained_messages(self) -> None:
        await self.publish_many("n", [f"m{i}" for i in range(5)])
        reader = await self.reader(["n"], limit=3)
        answer = await reader.next()
        assert answer.bodies == ["m2", "m3", "m4"]
        assert not answer.more and not answer.missed and not answer.reset
        assert self.positions(answer.cursor, ["n"]) == {"n": 5}

    @gen_test(timeout=60)
    async def test_paging_with_limit_delivers_everything_in_order(self) -> None:
        await self.publish_many("p", [f"m{i}" for i in range(7)])
        reader = await self.reader(["p"], at={"p": self.at(0)}, limit=3)
        answers = await reader.collect(7)
        assert [b for a in answers for b in a.bodies] == [f"m{i}" for i in range(7)]
        assert all(len(a.messages) <= 3 for a in answers)
        if self.kind in ("poll", "mux"):
            assert [a.bodies for a in answers] == [["m0", "m1", "m2"], ["m3", "m4", "m5"], ["m6"]]
            assert [a.more for a in answers] == [True, True, False]
        assert self.positions(reader.cursor, ["p"]) == {"p": 7}

    @gen_test(timeout=60)
    async def test_foreign_epoch_gives_reset_and_the_backlog(self) -> None:
        await self.publish_many("r", ["a", "b"])
        reader = await self.reader(["r"], at={"r": f"{FOREIGN}-1"})
        answer = await reader.next()
        assert answer.reset == {"r"} and not answer.missed
        assert answer.bodies == ["a", "b"]
        assert self.positions(answer.cursor, ["r"]) == {"r": 2}

    @gen_test(timeout=60)
    async def test_cursor_past_the_newest_gives_reset(self) -> None:
        await self.publish("r2", "a")
        reader = await self.reader(["r2"], at={"r2": self.at(99)})
        answer = await reader.next()
        assert answer.reset == {"r2"}
        assert answer.bodies == ["a"]
        assert self.positions(answer.cursor, ["r2"]) == {"r2": 1}

    @gen_test(timeout=60)
    async def test_held_reader_is_released_by_a_publish(self) -> None:
        first = await self.publish("h", "one")
        reader = await self.reader(["h"], at={"h": first["id"]})
        answer = asyncio.ensure_future(reader.next())
        await self.held("h")
        second = await self.publish("h", "two")
        got = await answer
        assert got.messages == [second]
        assert self.positions(got.cursor, ["h"]) == {"h": 2}

    @gen_test(timeout=60)
    async def test_empty_channel_without_cursor_holds_until_the_first_publish(self) -> None:
        reader = await self.reader(["fresh"])
        answer = asyncio.ensure_future(reader.next())
        await self.held("fresh")
        message = await self.publish("fresh", "first ever")
        assert (await answer).messages == [message]

    @gen_test(timeout=60)
    async def test_a_client_that_disconnects_is_forgotten_at_once(self) -> None:
        await self.publish("gone", "x")
        reader = await self.reader(["gone"], at={"gone": self.at(1)})
        waiting = asyncio.ensure_future(reader.next())
        await self.held("gone")
        assert self.hub.waiters("gone") == self.hub.total_waiters() == 1
        assert self.hub.pending_deadlines() == 1
        waiting.cancel()
        await reader.close()
        await self.assert_forgotten("gone")

    @gen_test(timeout=120)
    async def test_20_publishers_50_readers_nothing_lost_or_repeated_one_order(self) -> None:
        channels = ["order"] if self.kind == "poll" else ["order", "other"]
        # 20 publishers, 50 readers; 15 messages each keeps 12 such cases in seconds
        # (tests/test_poll.py runs 50 each on the single-channel poll).
        publishers, per_publisher, count = 20, 15, 50
        total = publishers * per_publisher
        readers = [await self.reader(channels, at={ch: self.at(0) for ch in channels},
                                     limit=1000) for _ in range(count)]
        following = [asyncio.ensure_future(r.collect(total, wait=60)) for r in readers]
        await self.held(*channels, count=count)

        async def publisher(p: int) -> None:
            for i in range(per_publisher):
                await self.publish(channels[p % len(channels)], f"{p}:{i}")

        await asyncio.gather(*(publisher(p) for p in range(publishers)))
        results = await asyncio.gather(*following)
        reference = [m for a in results[0] for m in a.messages]
        assert len(reference) == total
        assert len({(m["channel"], m["id"]) for m in reference}) == total
        for answers in results:
            seen = [m for a in answers for m in a.messages]
            assert not any(a.missed or a.reset for a in answers)
            for channel in channels:
                mine = [m for m in seen if m["channel"] == channel]
                # one order per channel: the store's, every seq once
                assert [m["id"] for m in mine] == [m["id"] for m in reference
                                                    if m["channel"] == channel]
                assert [int(m["id"].rpartition("-")[2]) for m in mine] == list(
                    range(1, len(mine) + 1))
            assert len(seen) == total
        for p in range(publishers):
            sent = [int(m["body"].split(":")[1]) for m in reference
                    if m["body"].split(":")[0] == str(p)]
            assert sent == list(range(per_publisher))  # each publisher's in send order


@each_transport(KINDS)
class TrimmedContractTest(TransportCase):
    limits = Limits(max_messages=3)

    @gen_test(timeout=60)
    async def test_trimmed_cursor_gives_missed_then_the_retained(self) -> None:
        first = await self.publish("m", "m1")
        await self.publish_many("m", [f"m{i}" for i in range(2, 6)])
        reader = await self.reader(["m"], at={"m": first["id"]})
        answer = await reader.next()
        assert answer.missed == {"m"} and not answer.reset
        assert answer.bodies == ["m3", "m4", "m5"]

    @gen_test(timeout=60)
    async def test_missed_only_when_something_unseen_is_gone(self) -> None:
        await self.publish_many("m2", [f"m{i}" for i in range(1, 6)])
        reader = await self.reader(["m2"], at={"m2": self.at(2)})  # m3..m5 are retained
        answer = await reader.next()
        assert not answer.missed
        assert answer.bodies == ["m3", "m4", "m5"]


@each_transport(MULTI_KINDS)
class MultiTrimmedContractTest(TransportCase):
    limits = Limits(max_messages=3)

    @gen_test(timeout=60)
    async def test_missed_is_per_channel_only_where_something_unseen_is_gone(self) -> None:
        await self.publish_many("m", [f"m{i}" for i in range(1, 6)])
        await self.publish_many("k", [f"k{i}" for i in range(1, 6)])
        reader = await self.reader(["m", "k"], at={"m": self.at(1), "k": self.at(2)})
        answer = await reader.next()
        assert answer.missed == {"m"} and not answer.reset
        assert self.of(answer, "m") == ["m3", "m4", "m5"]
        assert self.of(answer, "k") == ["k3", "k4", "k5"]


@each_transport(("poll", "mux"))
class PollTimeoutTest(TransportCase):
    @gen_test(timeout=60)
    async def test_timeout_answers_empty_at_the_same_position(self) -> None:
        first = await self.publish("t", "one")
        reader = await self.reader(["t"], at={"t": first["id"]}, hold=0.2)
        before = reader.cursor
        answer = await reader.next()
        assert answer.messages == [] and not answer.news and not answer.more
        assert answer.cursor == before
        assert self.positions(answer.cursor, ["t"]) == {"t": 1}
        assert self.hub.waiters("t") == 0 and self.hub.total_waiters() == 0


@each_transport(MULTI_KINDS)
class MultiChannelContractTest(TransportCase):
    @gen_test(timeout=60)
    async def test_no_cursor_gives_each_channels_latest(self) -> None:
        await self.publish_many("a", [f"a{i}" for i in range(5)])
        await self.publish_many("b", [f"b{i}" for i in range(2)])
        reader = await self.reader(["a", "b"], limit=3)
        answer = await reader.next()
        assert self.of(answer, "a") == ["a2", "a3", "a4"] and self.of(answer, "b") == ["b0", "b1"]
        ts = [m["ts"] for m in answer.messages]
        assert ts == sorted(ts)  # by publication time
        assert self.positions(answer.cursor, ["a", "b"]) == {"a": 5, "b": 2}

    @gen_test(timeout=60)
    async def test_paging_several_channels_at_most_limit_per_channel_per_answer(self) -> None:
        await self.publish_many("a", [f"a{i}" for i in range(7)])
        await self.publish_many("b", [f"b{i}" for i in range(5)])
        reader = await self.reader(["a", "b"], at={"a": self.at(0), "b": self.at(0)}, limit=3)
        answers = await reader.collect(12)
        assert [self.of(a, "a") for a in answers if self.of(a, "a")] == [
            ["a0", "a1", "a2"], ["a3", "a4", "a5"], ["a6"]]
        assert [self.of(a, "b") for a in answers if self.of(a, "b")] == [
            ["b0", "b1", "b2"], ["b3", "b4"]]
        assert self.positions(reader.cursor, ["a", "b"]) == {"a": 7, "b": 5}

    @gen_test(timeout=60)
    async def test_a_channel_missing_from_the_cursor_gets_its_backlog(self) -> None:
        await self.publish_many("a", ["a1", "a2", "a3"])
        await self.publish_many("b", ["b1", "b2"])
        reader = await self.reader(["a", "b"], at={"a": self.at(2)})
        answer = await reader.next()
        assert self.of(answer, "a") == ["a3"] and self.of(answer, "b") == ["b1", "b2"]
        assert not answer.reset and not answer.missed

    @gen_test(timeout=60)
    async def test_a_reset_on_one_channel_leaves_the_others_alone(self) -> None:
        await self.publish_many("a", ["a1", "a2"])
        await self.publish_many("b", ["b1", "b2"])
        reader = await self.reader(["a", "b"], at={"a": f"{FOREIGN}-1", "b": self.at(1)})
        answer = await reader.next()
        assert answer.reset == {"a"} and not answer.missed
        assert self.of(answer, "a") == ["a1", "a2"] and self.of(answer, "b") == ["b2"]
        assert self.positions(answer.cursor, ["a", "b"]) == {"a": 2, "b": 2}
        waiting = asyncio.ensure_future(reader.next())
        await self.held("a", "b")
        b3 = await self.publish("b", "b3")
        answer = await waiting
        assert answer.messages == [b3] and not answer.reset

    @gen_test(timeout=60)
    async def test_a_position_past_the_newest_resets_only_that_channel(self) -> None:
        await self.publish_many("a", ["a1"])
        await self.publish_many("b", ["b1", "b2"])
        reader = await self.reader(["a", "b"], at={"a": self.at(9), "b": self.at(2)})
        waiting = asyncio.ensure_future(reader.next())
        answer = await waiting
        assert answer.reset == {"a"} and self.of(answer, "a") == ["a1"]
        assert self.of(answer, "b") == []
        assert self.positions(answer.cursor, ["a", "b"]) == {"a": 1, "b": 2}

    @gen_test(timeout=60)
    async def test_a_publish_on_one_channel_answers_only_its_news(self) -> None:
        reader = await self.reader(["x", "y"], at={"x": self.at(0), "y": self.at(0)})
        waiting = asyncio.ensure_future(reader.next())
        await self.held("x", "y")
        message = await self.publish("y", "for y")
        answer = await waiting
        assert answer.messages == [message]
        assert self.positions(answer.cursor, ["x", "y"]) == {"x": 0, "y": 1}

    @gen_test(timeout=60)
    async def test_channels_the_cursor_names_but_the_request_does_not_are_ignored(self) -> None:
        await self.publish_many("a", ["a1", "a2"])
        await self.publish_many("b", ["b1", "b2"])
        await self.publish_many("c", ["c1"])
        first = await self.reader(["a", "b"])
        await first.next()
        changed = await self.reader(["b", "c"], cursor=first.cursor)
        answer = await changed.next()
        assert answer.bodies == ["c1"] and not answer.reset  # b resumes, c: backlog

    @gen_test(timeout=60)
    async def test_disconnect_of_a_multi_channel_reader_forgets_every_channel(self) -> None:
        reader = await self.reader(["d1", "d2", "d3"])
        waiting = asyncio.ensure_future(reader.next())
        await self.held("d1", "d2", "d3")
        assert self.hub.total_waiters() == 1 and self.hub.pending_deadlines() == 1
        waiting.cancel()
        await reader.close()
        await self.assert_forgotten("d1", "d2", "d3")


@each_backend
class CoalescingTest(TransportCase):
    """Issue 12's behaviour (not timing): bursts answered in batches, an idle channel at once."""

    @gen_test(timeout=120)
    async def test_a_burst_is_answered_in_batches_nothing_lost_repeated_or_reordered(self) -> None:
        count, publishers, per_publisher = 20, 8, 40
        total = publishers * per_publisher
        readers = [await self.reader(["burst"], at={"burst": self.at(0)}, limit=1000)
                   for _ in range(count)]
        following = [asyncio.ensure_future(r.collect(total, wait=60)) for r in readers]
        await self.held("burst", count=count)

        async def publisher(p: int) -> None:
            for i in range(per_publisher):
                await self.publish("burst", f"{p}:{i}")

        await asyncio.gather(*(publisher(p) for p in range(publishers)))
        results = await asyncio.gather(*following)
        expected = [self.at(seq) for seq in range(1, total + 1)]
        for answers in results:
            assert [m["id"] for a in answers for m in a.messages] == expected
        answers_made = sum(len(answers) for answers in results)
        mean = count * total / answers_made
        assert mean > 1, f"{mean:.2f} messages per answer: every publish answered alone"

    @gen_test(timeout=60)
    async def test_a_single_publish_on_an_idle_channel_is_answered_at_once(self) -> None:
        first = await self.publish("idle", "before")
        reader = await self.reader(["idle"], at={"idle": first["id"]})
        waiting = asyncio.ensure_future(reader.next())
        await self.held("idle")
        message = await self.publish("idle", "now")
        # The answer must not wait for a batch window: it is written before the
        # server has answered the next request this test makes.
        fence = asyncio.ensure_future(self.request("GET", "/healthz"))
        done, _ = await asyncio.wait({waiting, fence}, return_when=asyncio.FIRST_COMPLETED)
        assert waiting in done, "the answer came after a later request's"
        assert (await waiting).messages == [message]
        await fence

