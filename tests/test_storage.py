"""The storage contract, run against every backend (tests/backends.py)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tornado_lp.storage import ChannelLimitError, Limits, Message, NotRetained, Slice, Storage

from .backends import Backend

HOUR = 3600.0


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


# -- expiry, keys, alerts, retraction (issue 14) -----------------------------------


def bodies(chunk: Slice) -> list[str | None]:
    return [m.body if m.retract is None else f"x{m.retract_seq}" for m in chunk.messages]


def test_plain_message_json_is_unchanged() -> None:
    message = Message("0123456789abcdef", "c", 7, "hi", 1.5)
    assert json.loads(message.encoded) == {
        "id": "0123456789abcdef-7", "channel": "c", "body": "hi", "ts": 1.5
    }
    assert list(json.loads(message.encoded)) == ["id", "channel", "body", "ts"]
    assert message == Message("0123456789abcdef", "c", 7, "hi", 1.5)
    assert message != Message("0123456789abcdef", "c", 7, "hi", 1.5, key="k")


def test_fields_are_stored_and_returned(backend: Backend) -> None:
    expires = time.time() + HOUR

    async def scenario(storage: Storage) -> None:
        full = await storage.append("f", "Gate 2", expires=expires, priority="alert", key="gate.2")
        assert (full.expires, full.priority, full.key, full.retract) == (
            expires, "alert", "gate.2", None
        )
        assert json.loads(full.encoded) == {
            "id": full.id, "channel": "f", "body": "Gate 2", "ts": full.ts,
            "expires": expires, "priority": "alert", "key": "gate.2",
        }
        normal = await storage.append("f", "plain", priority="normal")
        assert "priority" not in json.loads(normal.encoded)
        (read_full, read_normal) = (await storage.read("f", 0, 10)).messages
        assert read_full == full and read_full.encoded == full.encoded
        assert read_normal == normal and read_normal.encoded == normal.encoded

    backend.run(scenario)


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"priority": "urgent"}, ValueError),
        ({"key": ""}, ValueError),
        ({"expires": float("nan")}, ValueError),
        ({"expires": float("inf")}, ValueError),
        ({"expires": "soon"}, TypeError),
    ],
    ids=["priority", "empty key", "nan", "inf", "not a number"],
)
def test_fields_no_backend_could_store_are_refused(
    backend: Backend, fields: dict[str, Any], error: type[Exception]
) -> None:
    async def scenario(storage: Storage) -> None:
        with pytest.raises(error):
            await storage.append("bad", "x", **fields)
        chunk = await storage.read("bad", 0, 10)
        assert (chunk.messages, chunk.last_seq) == ([], 0)

    backend.run(scenario)


def test_expired_entries_are_in_no_answer_and_are_no_miss(backend: Backend) -> None:
    async def scenario(storage: Storage) -> None:
        await storage.append("e", "one")
        await storage.append("e", "stale", expires=time.time() - 1)
        await storage.append("e", "three")
        soon = await storage.append("e", "soon", expires=time.time() + 0.3)
        await storage.append("e", "five", expires=time.time() + HOUR)
        chunk = await storage.read("e", 0, 10)
        assert bodies(chunk) == ["one", "three", "soon", "five"]
        assert bodies(await storage.read("e", None, 10)) == ["one", "three", "soon", "five"]
        assert soon.expires is not None
        await asyncio.sleep(max(0.0, soon.expires - time.time()) + 0.02)  # the clock passes it
        for after in (0, 1, 3):
            chunk = await storage.read("e", after, 10)
            assert "soon" not in bodies(chunk) and "stale" not in bodies(chunk)
            assert (chunk.first_seq, chunk.last_seq, chunk.end) == (1, 5, 5)
        assert bodies(await storage.read("e", None, 10)) == ["one", "three", "five"]
        assert bodies(await storage.read("e", 1, 10)) == ["three", "five"]

    backend.run(scenario)


def test_expired_holes_trimmed_away_are_not_missed(backend: Backend) -> None:
    async def scenario(storage: Storage) -> None:
        await storage.append("h", "seen")  # a reader has cursor 1
        for _ in range(3):
            await storage.append("h", "gone", expires=time.time() - 1)
        await storage.append("h", "five")
        await storage.append("h", "six")
        chunk = await storage.read("h", 1, 10)
        # Seqs 1-4 are trimmed, but only 1 was a message a reader could see.
        assert (chunk.first_seq, chunk.last_seq, bodies(chunk)) == (2, 6, ["five", "six"])
        assert (await storage.read("h", 0, 10)).first_seq == 2  # a reader at 0 missed "seen"
        await storage.append("h", "seven")  # "five" trimmed while visible
        assert (await storage.read("h", 1, 10)).first_seq == 6

    backend.run(scenario, Limits(max_messages=2))


def test_age_trimming_past_holes_is_not_missed(backend: Backend) -> None:
    async def scenario(storage: Storage) -> None:
        await storage.append("ah", "seen")  # a reader has cursor 1
        await storage.append("ah", "gone", expires=time.time() - 1)
        # The rule needs the messages to age past max_age; 0.3 s is the shortest honest wait.
        await asyncio.sleep(0.3)
        await storage.append("ah", "fresh")
        chunk = await storage.read("ah", 1, 10)
        assert (bodies(chunk), chunk.first_seq, chunk.last_seq) == (["fresh"], 2, 3)
        await asyncio.sleep(0.3)
        chunk = await storage.read("ah", 1, 10)
        assert (chunk.messages, chunk.first_seq, chunk.end) == ([], 4, 3)

    backend.run(scenario, Limits(max_age=0.25))


def test_end_stops_at_the_last_visible_entry(backend: Backend) -> None:
    async def scenario(storage: Storage) -> None:
        await storage.append("end", "one")
        await storage.append("end", "two")
        for _ in range(3):
            await storage.append("end", "hidden", expires=time.time() - 1)
        chunk = await storage.read("end", 0, 1)
        assert (bodies(chunk), chunk.end) == (["one"], 1)  # "two" is still to come
        chunk = await storage.read("end", 1, 1)
        assert (bodies(chunk), chunk.end) == (["two"], 5)  # nothing visible after it
        chunk = await storage.read("end", 2, 10)
        assert (chunk.messages, chunk.end, chunk.last_seq) == ([], 5, 5)
        assert (await storage.read("end", None, 1)).end == 5
        assert (await storage.read("nothing", 0, 1)).end == 0

    backend.run(scenario)


def test_first_paint_shows_only_the_newest_per_key(backend: Backend) -> None:
    async def scenario(storage: Storage) -> None:
        await storage.append("k", "Gate 2: delayed", key="gate2")
        await storage.append("k", "Lunch")
        await storage.append("k", "Gate 2: boarding", key="gate2")
        await storage.append("k", "Gate 3: open", key="gate3")
        chunk = await storage.read("k", None, 10)
        assert bodies(chunk) == ["Lunch", "Gate 2: boarding", "Gate 3: open"]
        assert bodies(await storage.read("k", None, 2)) == ["Gate 2: boarding", "Gate 3: open"]
        # A reader with a cursor gets every one and replaces by key itself.
        assert bodies(await storage.read("k", 0, 10)) == [
            "Gate 2: delayed", "Lunch", "Gate 2: boarding", "Gate 3: open"
        ]
        # The newest of a key expired or retracted: nothing for that key, not the older one.
        await storage.append("k", "Gate 3: closing", key="gate3", expires=time.time() - 1)
        await storage.retract("k", 3)
        assert bodies(await storage.read("k", None, 10)) == ["Lunch"]
        await storage.append("k", "Gate 2: closed", key="gate2")
        assert bodies(await storage.read("k", None, 10)) == ["Lunch", "Gate 2: closed"]

    backend.run(scenario)


def test_retract_hides_the_message_and_a_cursor_gets_the_tombstone(backend: Backend) -> None:
    async def scenario(storage: Storage) -> None:
        typo = await storage.append("r", "Lunch is srved")
        second = await storage.append("r", "Gate 4")
        tombstone = await storage.retract("r", typo.seq)
        assert (tombstone.seq, tombstone.body, tombstone.retract, tombstone.retract_seq) == (
            3, None, typo.id, 1
        )
        assert tombstone.ts >= second.ts and tombstone.tombstone
        assert json.loads(tombstone.encoded) == {
            "id": tombstone.id, "channel": "r", "ts": tombstone.ts, "retract": typo.id
        }
        # First paint: neither the message nor its tombstone.
        chunk = await storage.read("r", None, 10)
        assert (bodies(chunk), chunk.end, chunk.first_seq) == (["Gate 4"], 3, 1)
        # A cursor from before the message: the tombstone, not the message.
        assert bodies(await storage.read("r", 0, 10)) == ["Gate 4", "x1"]
        # A cursor from before the tombstone (after the message): the tombstone.
        for after in (1, 2):
            chunk = await storage.read("r", after, 10)
            assert chunk.messages[-1] == tombstone and chunk.end == 3
        assert (await storage.read("r", 3, 10)).messages == []

    backend.run(scenario)


def test_retract_refusals_say_why_and_change_nothing(backend: Backend) -> None:
    async def scenario(storage: Storage) -> None:
        for i in range(1, 5):
            await storage.append("n", f"m{i}")  # max_messages=3: m1 is trimmed
        await storage.append("n", "stale", expires=time.time() - 1)  # 5; m2 trimmed
        await storage.retract("n", 4)  # 6; m3 trimmed
        cases = [
            ("none", 1, "unknown", "does not exist"),
            ("n", 0, "unknown", "does not exist"),
            ("n", 7, "unknown", "does not exist"),
            ("n", 1, "trimmed", "trimmed away"),
            ("n", 4, "retracted", "already retracted"),
            ("n", 6, "tombstone", "is a retraction"),
            ("n", 5, "expired", "has expired"),
        ]
        before = await storage.read("n", 0, 10)
        for channel, seq, reason, words in cases:
            with pytest.raises(NotRetained, match=words) as refused:
                await storage.retract(channel, seq)
            assert refused.value.reason == reason, (channel, seq)
            assert f"message {seq} of channel {channel!r}" in str(refused.value)
        after = await storage.read("n", 0, 10)
        assert (after.messages, after.last_seq, after.first_seq) == (
            before.messages, before.last_seq, before.first_seq
        ) and after.last_seq == 6
        assert (await storage.read("none", None, 10)).last_seq == 0
        assert await storage.channel_count() == 1

    backend.run(scenario, Limits(max_messages=3))


def test_retract_a_message_that_expires_meanwhile(backend: Backend) -> None:
    async def scenario(storage: Storage) -> None:
        soon = await storage.append("s", "soon", expires=time.time() + 0.3)
        assert soon.expires is not None
        await asyncio.sleep(max(0.0, soon.expires - time.time()) + 0.02)
        with pytest.raises(NotRetained) as refused:
            await storage.retract("s", soon.seq)
        assert refused.value.reason == "expired"
        assert (await storage.read("s", 0, 10)).last_seq == 1

    backend.run(scenario)


def test_concurrent_retractions_of_one_message_make_one_tombstone(backend: Backend) -> None:
    async def scenario(storage: Storage) -> None:
        await storage.append("c", "once")
        results = await asyncio.gather(
            *(storage.retract("c", 1) for _ in range(5)), return_exceptions=True
        )
        tombstones = [r for r in results if isinstance(r, Message)]
        refusals = [r for r in results if isinstance(r, NotRetained)]
        assert len(tombstones) == 1 and len(refusals) == 4
        assert {r.reason for r in refusals} == {"retracted"}
        chunk = await storage.read("c", 0, 10)
        assert chunk.messages == tombstones and chunk.last_seq == 2

    backend.run(scenario)


def test_tombstones_count_for_trimming_and_limits(backend: Backend) -> None:
    async def scenario(storage: Storage) -> None:
        for i in range(1, 4):
            await storage.append("t", f"m{i}")
        await storage.retract("t", 2)  # 4
        await storage.retract("t", 3)  # 5: window 3..5, m1 trimmed
        chunk = await storage.read("t", 0, 10)
        assert (bodies(chunk), chunk.first_seq) == (["x2", "x3"], 2)
        chunk = await storage.read("t", 0, 1)
        assert (bodies(chunk), chunk.end) == (["x2"], 4)
        assert (await storage.read("t", None, 10)).messages == []
        await storage.append("t", "m6")  # window 4..6: only holes more are trimmed
        chunk = await storage.read("t", 0, 10)
        assert (bodies(chunk), chunk.first_seq, chunk.last_seq) == (["x2", "x3", "m6"], 2, 6)
        await storage.append("t", "m7")  # tombstone 4 trimmed while visible
        chunk = await storage.read("t", 0, 10)
        assert (bodies(chunk), chunk.first_seq, chunk.last_seq) == (["x3", "m6", "m7"], 5, 7)

    backend.run(scenario, Limits(max_messages=3))


def test_first_paint_adds_the_newest_current_alert(backend: Backend) -> None:
    async def scenario(storage: Storage) -> None:
        await storage.append("a", "Leave by the east exit", priority="alert")  # 1
        for i in range(2, 6):
            await storage.append("a", f"m{i}")
        assert bodies(await storage.read("a", None, 2)) == ["Leave by the east exit", "m4", "m5"]
        assert bodies(await storage.read("a", None, 10)) == [
            "Leave by the east exit", "m2", "m3", "m4", "m5"
        ]
        await storage.append("a", "Second alert", priority="alert")  # 6
        await storage.append("a", "m7")
        assert bodies(await storage.read("a", None, 2)) == ["Second alert", "m7"]
        assert bodies(await storage.read("a", None, 1)) == ["Second alert", "m7"]
        await storage.retract("a", 6)  # 8: the newest current alert is 1 again
        assert bodies(await storage.read("a", None, 1)) == ["Leave by the east exit", "m7"]
        await storage.append("a", "Expired alert", priority="alert", expires=time.time() - 1)
        await storage.append("a", "Keyed alert", priority="alert", key="k")  # 10
        await storage.append("a", "Key replaced", key="k")  # 11
        assert bodies(await storage.read("a", None, 1)) == [
            "Leave by the east exit", "Key replaced"
        ]
        await storage.retract("a", 1)
        assert bodies(await storage.read("a", None, 1)) == ["Key replaced"]
        # A cursor reader is not given extra alerts.
        assert bodies(await storage.read("a", 10, 1)) == ["Key replaced"]

    backend.run(scenario)


def test_an_alert_trimmed_away_is_not_added(backend: Backend) -> None:
    async def scenario(storage: Storage) -> None:
        await storage.append("at", "old alert", priority="alert")
        for i in range(2, 6):
            await storage.append("at", f"m{i}")
        assert bodies(await storage.read("at", None, 1)) == ["m5"]

    backend.run(scenario, Limits(max_messages=4))


# -- property: random operations against a list model ------------------------------

CHANNELS = st.sampled_from(["a", "b", "c"])
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(
            st.just("append"), CHANNELS, st.text(min_size=1, max_size=8),
            st.sampled_from([None, None, "past", "future"]),  # expires
            st.booleans(),  # alert
            st.sampled_from([None, None, "k1", "k2"]),  # key
        ),
        # several appends in flight at once: one order, one seq each (group commit)
        st.tuples(st.just("burst"), CHANNELS, st.integers(2, 6)),
        st.tuples(st.just("retract"), CHANNELS, st.integers(0, 25)),
        st.tuples(
            st.just("read"), CHANNELS, st.none() | st.integers(0, 25), st.integers(1, 8)
        ),
    ),
    max_size=40,
)


@dataclass
class ModelEntry:
    seq: int
    body: str | None
    expires: float | None = None
    alert: bool = False
    key: str | None = None
    retract: int | None = None
    retracted: bool = False

    def visible(self, now: float) -> bool:
        return not self.retracted and (self.expires is None or self.expires > now)


class ModelChannel:
    """Every entry ever appended (seq = index + 1), and first_seq as the contract defines it."""

    def __init__(self) -> None:
        self.entries: list[ModelEntry] = []
        self.first = 1
        self.keys: dict[str, int] = {}

    def add(self, entry: ModelEntry, max_messages: int, now: float) -> None:
        self.entries.append(entry)
        if entry.key is not None:
            self.keys[entry.key] = entry.seq
        below = len(self.entries) - max_messages + 1  # the window moved past below - 1
        if below > 1 and self.entries[below - 2].visible(now):
            self.first = below

    def current(self, entry: ModelEntry, now: float) -> bool:
        return (
            entry.retract is None and entry.visible(now)
            and (entry.key is None or self.keys[entry.key] == entry.seq)
        )


def _shape(entry: ModelEntry | Message) -> tuple[Any, ...]:
    if isinstance(entry, Message):
        return (entry.seq, entry.body, entry.expires, entry.priority == "alert", entry.key,
                entry.retract_seq)
    return (entry.seq, entry.body, entry.expires, entry.alert, entry.key, entry.retract)


@settings(
    max_examples=30,
    deadline=None,  # the SQLite worker thread's latency is not the property
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # `backend` is a recipe
)
@given(max_messages=st.integers(1, 6), operations=OPERATIONS)
def test_random_operations_match_a_list_model(
    backend: Backend, max_messages: int, operations: list[tuple[Any, ...]]
) -> None:
    model: dict[str, ModelChannel] = {}

    def expected(
        channel: str, after: int | None, limit: int, now: float
    ) -> tuple[list[ModelEntry], int, int, int]:
        state = model.get(channel) or ModelChannel()
        last = len(state.entries)
        retained = state.entries[max(0, last - max_messages):]
        if after is None:
            current = [e for e in retained if state.current(e, now)]
            shown = current[-limit:]
            if len(shown) == limit and not any(e.alert for e in shown):
                older = [e for e in current[:-limit] if e.alert]
                shown = older[-1:] + shown
            return shown, last, state.first, last
        visible = [e for e in retained if e.seq > after and e.visible(now)]
        shown = visible[:limit]
        return shown, last, state.first, last if len(visible) <= limit else shown[-1].seq

    def refusal(channel: str, seq: int, now: float) -> str | None:
        state = model.get(channel)
        if state is None or not 1 <= seq <= len(state.entries):
            return "unknown"
        if seq <= len(state.entries) - max_messages or seq < state.first:
            return "trimmed"
        entry = state.entries[seq - 1]
        if entry.retracted:
            return "retracted"
        if entry.retract is not None:
            return "tombstone"
        return None if entry.visible(now) else "expired"

    async def scenario(storage: Storage) -> None:
        for op in operations:
            now = time.time()
            if op[0] == "append":
                _, channel, body, lifetime, alert, key = op
                expires = {None: None, "past": now - 60, "future": now + HOUR}[lifetime]
                message = await storage.append(
                    channel, body, expires=expires, priority="alert" if alert else "normal",
                    key=key,
                )
                state = model.setdefault(channel, ModelChannel())
                entry = ModelEntry(len(state.entries) + 1, body, expires, alert, key)
                state.add(entry, max_messages, now)
                assert (_shape(message), message.channel) == (_shape(entry), channel)
            elif op[0] == "burst":
                _, channel, count = op
                bodies = [f"{channel}{i}" for i in range(count)]
                messages = await asyncio.gather(*(storage.append(channel, b) for b in bodies))
                state = model.setdefault(channel, ModelChannel())
                seqs = sorted(m.seq for m in messages)
                known = len(state.entries)
                assert seqs == list(range(known + 1, known + count + 1))
                for m in sorted(messages, key=lambda m: m.seq):
                    state.add(ModelEntry(m.seq, m.body), max_messages, now)
            elif op[0] == "retract":
                _, channel, seq = op
                reason = refusal(channel, seq, now)
                if reason is not None:
                    with pytest.raises(NotRetained) as refused:
                        await storage.retract(channel, seq)
                    assert refused.value.reason == reason
                    continue
                tombstone = await storage.retract(channel, seq)
                state = model[channel]
                state.entries[seq - 1].retracted = True
                entry = ModelEntry(len(state.entries) + 1, None, retract=seq)
                state.add(entry, max_messages, now)
                assert _shape(tombstone) == _shape(entry)
            else:
                _, channel, after, limit = op
                chunk = await storage.read(channel, after, limit)
                shown, last, first, end = expected(channel, after, limit, time.time())
                assert [_shape(m) for m in chunk.messages] == [_shape(e) for e in shown]
                assert (chunk.last_seq, chunk.first_seq, chunk.end) == (last, first, end)
                assert all(m.id == f"{storage.epoch}-{m.seq}" for m in chunk.messages)
        for channel in model:
            chunk = await storage.read(channel, 0, 1000)
            shown = expected(channel, 0, 1000, time.time())[0]
            assert [_shape(m) for m in chunk.messages] == [_shape(e) for e in shown]

    backend.run(scenario, Limits(max_messages=max_messages))
