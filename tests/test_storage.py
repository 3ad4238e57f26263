"""The storage contract, run against every backend (tests/backends.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tornado_lp.storage import ChannelLimitError, Limits, Storage

from .backends import Backend


def test_epoch_is_16_hex(backend: Backend) -> None:
    async def scenario(storage: Storage) -> str:
        return storage.epoch

    epoch = backend.run(scenario)
    assert len(epoch) == 16 and int(epoch, 16) >= 0


def test_append_numbers_messages_per_channel(backend: Backend) -> None:
    async def scenario(storage: Storage) -> None:
        a1 = await storage.append("a", "one")
        a2 = await storage.append("a", "two")
        b1 = await storage.append("b", "uno")
        assert (a1.seq, a2.seq, b1.seq) == (1, 2, 1)
        assert a1.id == f"{storage.epoch}-1" and b1.id == f"{storage.epoch}-1"
        assert (a1.channel, a1.body) == ("a", "one")
        assert a1.ts <= a2.ts and abs(a2.ts - time.time()) < 60
        assert await storage.channel_count() == 2

    backend.run(scenario)


def test_read_unknown_channel_is_empty(backend: Backend) -> None:
    async def scenario(storage: Storage) -> None:
        chunk = await storage.read("nothing", None, 10)
        assert (chunk.messages, chunk.last_seq, chunk.first_seq) == ([], 0, 1)
        chunk = await storage.read("nothing", 0, 10)
        assert chunk.messages == []

    backend.run(scenario)


def test_read_after_cursor_with_limit(backend: Backend) -> None:
    async def scenario(storage: Storage) -> None:
        for i in range(1, 11):
            await storage.append("c", f"m{i}")
        chunk = await storage.read("c", 3, 4)
        assert [m.body for m in chunk.messages] == ["m4", "m5", "m6", "m7"]
        assert (chunk.last_seq, chunk.first_seq) == (10, 1)
        assert (await storage.read("c", 10, 4)).messages == []
        assert [m.seq for m in (await storage.read("c", 0, 1000)).messages] == list(range(1, 11))
        # after=None: the newest `limit`, oldest first
        assert [m.body for m in (await storage.read("c", None, 3)).messages] == ["m8", "m9", "m10"]

    backend.run(scenario)


def test_unicode_and_large_bodies_round_trip(backend: Backend) -> None:
    body = "Grüße 🚀 \u2028 <b>&amp;</b> \"quoted\" \\ \x00 end" + "x" * 60000

    async def scenario(storage: Storage) -> None:
        await storage.append("u", body)
        (message,) = (await storage.read("u", 0, 10)).messages
        assert message.body == body

    backend.run(scenario)


def test_trimming_by_count_keeps_numbers(backend: Backend) -> None:
    async def scenario(storage: Storage) -> None:
        for i in range(1, 8):
            await storage.append("t", f"m{i}")
        chunk = await storage.read("t", 0, 100)
        assert [m.seq for m in chunk.messages] == [5, 6, 7]
        assert (chunk.first_seq, chunk.last_seq) == (5, 7)
        chunk = await storage.read("t", 5, 100)
        assert [m.seq for m in chunk.messages] == [6, 7]

    backend.run(scenario, Limits(max_messages=3))


def test_trimming_by_age(backend: Backend) -> None:
    async def scenario(storage: Storage) -> None:
        await storage.append("old", "gone soon")
        # The rule needs the message to age past max_age; 0.3 s is the shortest honest wait.
        await asyncio.sleep(0.3)
        await storage.append("old", "fresh")
        chunk = await storage.read("old", 0, 10)
        assert [m.body for m in chunk.messages] == ["fresh"]
        assert (chunk.first_seq, chunk.last_seq) == (2, 2)
        await asyncio.sleep(0.3)
        chunk = await storage.read("old", 0, 10)
        assert chunk.messages == [] and chunk.last_seq == 2 and chunk.first_seq == 3

    backend.run(scenario, Limits(max_age=0.25))


def test_channel_limit(backend: Backend) -> None:
    async def scenario(storage: Storage) -> None:
        await storage.append("one", "x")
        await storage.append("two", "x")
        with pytest.raises(ChannelLimitError, match="channel limit"):
            await storage.append("three", "x")
        await storage.append("one", "still fine")
        assert await storage.channel_count() == 2
        assert (await storage.read("three", None, 10)).messages == []

    backend.run(scenario, Limits(max_channels=2))


def test_concurrent_appends_get_one_order(backend: Backend) -> None:
    async def scenario(storage: Storage) -> None:
        async def writer(w: int) -> list[int]:
            return [(await storage.append("race", f"{w}:{i}")).seq for i in range(20)]

        seqs = await asyncio.gather(*(writer(w) for w in range(10)))
        flat = sorted(s for run in seqs for s in run)
        assert flat == list(range(1, 201))
        for run in seqs:
            assert run == sorted(run)
        stored = (await storage.read("race", 0, 1000)).messages
        assert [m.seq for m in stored] == list(range(1, 201))
        for w in range(10):
            mine = [int(m.body.split(":")[1]) for m in stored if m.body.startswith(f"{w}:")]
            assert mine == list(range(20))

    backend.run(scenario)


# -- property: random operations against a plain list model --------------------

CHANNELS = st.sampled_from(["a", "b", "c"])
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), CHANNELS, st.text(min_size=1, max_size=8)),
        # several appends in flight at once: one order, one seq each (group commit)
        st.tuples(st.just("burst"), CHANNELS, st.integers(2, 6)),
        st.tuples(
            st.just("read"), CHANNELS, st.none() | st.integers(0, 25), st.integers(1, 8)
        ),
    ),
    max_size=40,
)


@settings(
    max_examples=30,
    deadline=None,  # the SQLite worker thread's latency is not the property
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # `backend` is a recipe
)
@given(max_messages=st.integers(1, 6), operations=OPERATIONS)
def test_random_operations_match_a_list_model(
    backend: Backend, max_messages: int, operations: list[tuple[Any, ...]]
) -> None:
    # The model: per channel, every body ever appended (seq = index + 1).
    model: dict[str, list[str]] = {}

    def expected(channel: str, after: int | None, limit: int) -> tuple[list[Any], int, int]:
        bodies = model.get(channel, [])
        last = len(bodies)
        first = max(1, last - max_messages + 1)
        retained = [(seq, bodies[seq - 1]) for seq in range(first, last + 1)]
        if after is None:
            shown = retained[-limit:]
        else:
            shown = [m for m in retained if m[0] > after][:limit]
        return shown, last, first

    async def scenario(storage: Storage) -> None:
        for op in operations:
            if op[0] == "append":
                _, channel, body = op
                message = await storage.append(channel, body)
                model.setdefault(channel, []).append(body)
                assert (message.seq, message.channel) == (len(model[channel]), channel)
            elif op[0] == "burst":
                _, channel, count = op
                bodies = [f"{channel}{i}" for i in range(count)]
                messages = await asyncio.gather(*(storage.append(channel, b) for b in bodies))
                known = model.setdefault(channel, [])
                seqs = sorted(m.seq for m in messages)
                assert seqs == list(range(len(known) + 1, len(known) + count + 1))
                known.extend(m.body for m in sorted(messages, key=lambda m: m.seq))
            else:
                _, channel, after, limit = op
                chunk = await storage.read(channel, after, limit)
                shown, last, first = expected(channel, after, limit)
                assert [(m.seq, m.body) for m in chunk.messages] == shown
                assert (chunk.last_seq, chunk.first_seq) == (last, first)
                assert all(m.id == f"{storage.epoch}-{m.seq}" for m in chunk.messages)
        for channel in model:
            chunk = await storage.read(channel, 0, 1000)
            assert [(m.seq, m.body) for m in chunk.messages] == expected(channel, 0, 1000)[0]

    backend.run(scenario, Limits(max_messages=max_messages))
