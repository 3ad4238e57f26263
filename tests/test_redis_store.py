"""RedisStorage beyond the shared contract: cross-process wake-ups, outages, wipes, URLs.

Two RedisStorage instances on one prefix stand for two processes: each has its
own connections and its own subscription.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from tornado_lp.hub import Hub
from tornado_lp.storage import (
    Limits,
    Message,
    NotRetained,
    Slice,
    StorageConfigError,
    StorageUnavailable,
    storage_from_url,
)
from tornado_lp.storage.redis_store import RedisStorage

from . import lifecycle
from .redis_server import RedisServer, free_port, session_server

HOUR = 3600.0


def prefix() -> str:
    return f"test:{uuid.uuid4().hex[:12]}:"


def run(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(main())


class GatedRedisStorage(RedisStorage):
    """Once armed, the next read pauses after its answer arrived: the read-to-wait gap."""

    armed = False

    async def read(self, channel: str, after: int | None, limit: int) -> Slice:
        chunk = await super().read(channel, after, limit)
        if self.armed:
            self.armed = False
            self.snapshot_taken.set()
            await self.release.wait()
        return chunk

    def arm(self) -> None:
        self.armed = True
        self.snapshot_taken = asyncio.Event()
        self.release = asyncio.Event()


def test_publish_from_another_process_between_read_and_wait_releases_the_poll() -> None:
    url, shared = session_server().url, prefix()

    async def main() -> None:
        here = GatedRedisStorage(url, prefix=shared)
        there = RedisStorage(url, prefix=shared)
        hub = Hub(here)
        noticed = asyncio.Event()
        here.watch(lambda channel: noticed.set())
        await here.open()
        await there.open()
        try:
            first = await there.append("gap", "before")
            here.arm()
            poll = asyncio.ensure_future(hub.poll("gap", first.id, HOUR, 10))
            await here.snapshot_taken.wait()  # the poll read "nothing newer"...
            await there.append("gap", "in the gap")  # ...another process publishes...
            await asyncio.wait_for(noticed.wait(), 5)  # ...and its notice arrives before the wait
            here.release.set()
            result = await asyncio.wait_for(poll, 5)  # a lost wake-up would hold for an hour
            assert result is not None
            assert [m.body for m in result.messages] == ["in the gap"]
        finally:
            await there.close()
            await here.close()

    run(main)


def test_publish_on_one_process_releases_polls_held_on_another_within_milliseconds() -> None:
    url, shared = session_server().url, prefix()

    async def main() -> None:
        hubs = [Hub(RedisStorage(url, prefix=shared)) for _ in range(3)]
        for hub in hubs:
            await hub.open()
        try:
            cursor = f"{hubs[0].storage.epoch}-0"
            assert {hub.storage.epoch for hub in hubs} == {hubs[0].storage.epoch}
            polls = [asyncio.ensure_future(hub.poll("x", cursor, HOUR, 10)) for hub in hubs[1:]]
            while sum(hub.holding("x") for hub in hubs) < 2:
                await asyncio.sleep(0.001)
            began = time.monotonic()
            message = await hubs[0].publish("x", "hello")
            results = await asyncio.wait_for(asyncio.gather(*polls), 5)
            elapsed = time.monotonic() - began
            assert [[m.id for m in r.messages] for r in results if r] == [[message.id]] * 2
            assert elapsed < 0.5, f"cross-process wake-up took {elapsed:.3f}s"
        finally:
            for hub in hubs:
                await hub.close()

    run(main)


def test_polls_woken_together_share_one_read() -> None:
    url = session_server().url

    async def main() -> None:
        storage = RedisStorage(url, prefix=prefix())
        hub = Hub(storage)
        await hub.open()
        calls = 0
        script = storage._read

        async def counted(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            return await script(*args, **kwargs)

        storage._read = counted  # type: ignore[assignment]
        try:
            cursor = f"{storage.epoch}-0"
            polls = [asyncio.ensure_future(hub.poll("many", cursor, HOUR, 10)) for _ in range(200)]
            while hub.holding("many") < 200:
                await asyncio.sleep(0.001)
            calls = 0
            await hub.publish("many", "for everyone")
            results = await asyncio.wait_for(asyncio.gather(*polls), 5)
            assert all(r is not None and r.messages[0].body == "for everyone" for r in results)
            # The local wake-up plus possibly the pub/sub notice of our own publish.
            assert calls <= 3, calls
        finally:
            await hub.close()

    run(main)


def test_age_trim_drops_long_runs_of_old_messages() -> None:
    url = session_server().url

    async def main() -> None:
        storage = RedisStorage(url, Limits(max_age=0.3), prefix=prefix())
        await storage.open()
        try:
            for i in range(40):
                await storage.append("aged", f"m{i}")
            await asyncio.sleep(0.35)
            await storage.append("aged", "fresh")
            chunk = await storage.read("aged", 0, 100)
            assert [m.body for m in chunk.messages] == ["fresh"]
            assert (chunk.first_seq, chunk.last_seq) == (41, 41)
        finally:
            await storage.close()

    run(main)


def test_flushall_gives_a_new_epoch_and_held_polls_reset(tmp_path: Path) -> None:
    with RedisServer(tmp_path) as server:

        async def main() -> None:
            here, there = RedisStorage(server.url), RedisStorage(server.url)
            hub = Hub(here)
            await here.open()
            await there.open()
            try:
                for i in range(3):
                    old = await there.append("f", f"old {i}")
                poll = asyncio.ensure_future(hub.poll("f", old.id, HOUR, 10))
                while hub.holding("f") == 0:
                    await asyncio.sleep(0.001)
                server.flushall()
                for i in range(5):
                    new = await there.append("f", f"new {i}")
                assert new.seq == 5 and there.epoch != old.id.split("-")[0]
                result = await asyncio.wait_for(poll, 5)
                assert result is not None and result.reset
                # Woken by the first notice of the new epoch: a run from "new 0" on.
                bodies = [m.body for m in result.messages]
                assert bodies == [f"new {i}" for i in range(len(bodies))] and bodies
                assert here.epoch == there.epoch
            finally:
                await there.close()
                await here.close()

        run(main)


def test_outage_then_recovery(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tornado_lp")
    with RedisServer(tmp_path, persistent=True) as server:

        async def main() -> None:
            storage = RedisStorage(server.url)
            hub = Hub(storage)
            await hub.open()
            try:
                first = await hub.publish("o", "before")
                poll = asyncio.ensure_future(hub.poll("o", first.id, HOUR, 10))
                short = asyncio.ensure_future(hub.poll("o", first.id, 0.5, 10))
                while hub.holding("o") < 2:  # both read, and wait
                    await asyncio.sleep(0.001)
                server.kill()
                for _ in range(3):
                    with pytest.raises(StorageUnavailable):
                        await hub.publish("o", "refused")
                with pytest.raises(StorageUnavailable):
                    await storage.ping()
                # A held poll is answered normally at its deadline, not failed.
                result = await asyncio.wait_for(short, 5)
                assert result is not None and (result.messages, result.cursor) == ([], first.id)
                assert not poll.done()
                server.restart()
                # Published by another process while this one was not yet subscribed again:
                other = RedisStorage(server.url)
                await other.open()
                late = await other.append("o", "after recovery")
                await other.close()
                result = await asyncio.wait_for(poll, 10)
                assert result is not None and [m.id for m in result.messages] == [late.id]
                await storage.ping()
                assert (await hub.publish("o", "works")).seq == 3
            finally:
                await hub.close()

        run(main)
    lost = [r for r in caplog.records if "unreachable" in r.getMessage()]
    back = [r for r in caplog.records if "reachable again" in r.getMessage()]
    assert len(lost) == 1 and len(back) == 1, [r.getMessage() for r in caplog.records]
    assert not any(r.exc_info for r in caplog.records)


def test_unreachable_at_start_gives_up_after_the_connect_timeout() -> None:
    async def main() -> None:
        storage = RedisStorage(f"redis://:secret@127.0.0.1:{free_port()}/0", connect_timeout=0.5)
        began = time.monotonic()
        with pytest.raises(StorageConfigError) as failed:
            await storage.open()
        assert 0.4 < time.monotonic() - began < 3
        assert "cannot reach redis" in str(failed.value)
        assert "--redis-connect-timeout" in str(failed.value)
        assert "secret" not in str(failed.value)

    run(main)


def test_start_waits_for_redis_to_come_up(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.port = free_port()

    async def main() -> None:
        storage = RedisStorage(server.url, connect_timeout=10)
        opening = asyncio.ensure_future(storage.open())
        await asyncio.sleep(0.5)
        assert not opening.done()
        await asyncio.get_running_loop().run_in_executor(None, server.start)
        await asyncio.wait_for(opening, 10)
        try:
            assert (await storage.append("up", "x")).seq == 1
        finally:
            await storage.close()

    try:
        run(main)
    finally:
        server.stop()


def test_password(tmp_path: Path) -> None:
    with RedisServer(tmp_path, args=["--requirepass", "right"]) as server:

        async def main() -> None:
            for password in ("", ":hunter2@"):
                storage = RedisStorage(
                    f"redis://{password}127.0.0.1:{server.port}/0", connect_timeout=2
                )
                with pytest.raises(StorageConfigError) as failed:
                    await storage.open()
                assert "refused" in str(failed.value) and "hunter2" not in str(failed.value)
                assert "hunter2" not in storage.description
            storage = RedisStorage(f"redis://:right@127.0.0.1:{server.port}/0")
            await storage.open()
            try:
                assert (await storage.append("p", "x")).seq == 1
            finally:
                await storage.close()

        run(main)


def test_unix_socket_url() -> None:
    server = session_server()

    async def main() -> None:
        storage = storage_from_url(f"unix://{server.socket_path}?db=1", redis_prefix=prefix())
        assert isinstance(storage, RedisStorage) and storage.shared
        await storage.open()
        try:
            assert (await storage.append("u", "via socket")).seq == 1
        finally:
            await storage.close()

    run(main)


def test_storage_from_url_options_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    storage = storage_from_url(
        "rediss://user:pw@example.invalid:6380/2", redis_prefix="p:", redis_connect_timeout=3
    )
    assert isinstance(storage, RedisStorage)
    assert (storage.prefix, storage.connect_timeout) == ("p:", 3)
    assert "pw" not in storage.description
    assert "user:***@example.invalid:6380" in storage.description
    storage = storage_from_url("unix:///run/redis.sock?db=1&password=pw2&x=1")
    assert "pw2" not in storage.description and "password=***&x=1" in storage.description
    with pytest.raises(StorageConfigError, match="bad redis URL"):
        storage_from_url("redis://127.0.0.1:6379/notadb")
    monkeypatch.setitem(sys.modules, "tornado_lp.storage.redis_store", None)
    with pytest.raises(StorageConfigError, match=r"tornado_lp\[redis\]"):
        storage_from_url("redis://127.0.0.1:6379/0")


def test_old_redis_is_refused() -> None:
    url = session_server().url

    async def main() -> None:
        storage = RedisStorage(url, prefix=prefix())

        async def info(section: str) -> dict[str, Any]:
            return {"redis_version": "6.0.16"}

        storage._client.info = info  # type: ignore[method-assign,assignment]
        with pytest.raises(StorageConfigError, match=r"version 6\.0\.16.*6\.2"):
            await storage.open()

    run(main)


def test_a_lost_seqs_hash_does_not_break_appends() -> None:
    server, shared = session_server(), prefix()

    async def main() -> None:
        storage = RedisStorage(server.url, prefix=shared)
        await storage.open()
        try:
            for i in range(3):
                await storage.append("h", f"m{i}")
            assert server.command("DEL", f"{shared}seqs") == b":1\r\n"  # as an eviction would
            chunk = await storage.read("h", 1, 10)
            assert [m.seq for m in chunk.messages] == [2, 3]
            assert (chunk.first_seq, chunk.last_seq) == (1, 3)
            assert (await storage.append("h", "next")).seq == 4
            assert (await storage.append("h", "and on")).seq == 5
            chunk = await storage.read("h", 0, 10)
            assert [m.seq for m in chunk.messages] == [1, 2, 3, 4, 5] and chunk.last_seq == 5
        finally:
            await storage.close()

    run(main)


class QuickRedisStorage(RedisStorage):
    """Short timeouts, so that a silent Redis is noticed within a second in tests."""

    command_timeout = 0.5
    heartbeat = 0.2


def test_a_silent_redis_is_noticed_by_the_heartbeat(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tornado_lp")
    with RedisServer(tmp_path) as server:
        assert server.proc is not None

        async def main() -> None:
            storage = QuickRedisStorage(server.url)
            wakes: list[str | None] = []
            storage.watch(wakes.append)
            await storage.open()
            try:
                server.proc.send_signal(signal.SIGSTOP)  # alive, connected, and silent
                deadline = time.monotonic() + 5
                while not any("unreachable" in r.getMessage() for r in caplog.records):
                    assert time.monotonic() < deadline, "the dead subscription went unnoticed"
                    await asyncio.sleep(0.05)
                with pytest.raises(StorageUnavailable):
                    await storage.ping()
                server.proc.send_signal(signal.SIGCONT)
                deadline = time.monotonic() + 5
                while None not in wakes:  # resubscribed, and every held poll told to re-check
                    assert time.monotonic() < deadline, "the subscription did not come back"
                    await asyncio.sleep(0.05)
                await storage.ping()
            finally:
                server.proc.send_signal(signal.SIGCONT)
                await storage.close()

        run(main)


def test_concurrent_opens_make_one_subscription() -> None:
    server, shared = session_server(), prefix()

    async def main() -> None:
        storage = RedisStorage(server.url, prefix=shared)
        await asyncio.gather(*(storage.open() for _ in range(5)))
        try:
            subscribers = server.command("PUBSUB", "NUMSUB", f"{shared}notify")
            assert subscribers.endswith(b":1\r\n"), subscribers
        finally:
            await storage.close()
        await storage.close()  # idempotent

    run(main)


# -- expiry, retraction, keys and alerts (issue 14) ----------------------------------


def test_expiries_tombstones_keys_and_alerts_survive_a_redis_restart(tmp_path: Path) -> None:
    with RedisServer(tmp_path, persistent=True) as server:

        async def write() -> lifecycle.Written:
            storage = RedisStorage(server.url)
            await storage.open()
            try:
                return await lifecycle.write(storage)
            finally:
                await storage.close()

        written = run(write)
        server.restart()  # kill -9, then the append-only file is replayed

        async def check() -> None:
            storage = RedisStorage(server.url)
            await storage.open()
            try:
                await lifecycle.check(storage, written)
            finally:
                await storage.close()

        run(check)


def test_expired_entries_are_deleted_from_the_stream() -> None:
    server, shared = session_server(), prefix()

    async def main() -> None:
        storage = RedisStorage(server.url, prefix=shared)
        await storage.open()
        try:
            await storage.append("x", "stays")
            expires = time.time() + 0.3
            for _ in range(20):
                await storage.append("x", "gone", expires=expires)
            await storage.append("x", "stays too")
            assert server.command("XLEN", f"{shared}s:x") == b":22\r\n"
            await asyncio.sleep(max(0.0, expires - time.time()) + 0.02)  # the clock passes it
            # Each script call deletes a bounded batch (16) of due entries.
            await storage.read("x", 0, 10)
            assert server.command("XLEN", f"{shared}s:x") == b":6\r\n"
            chunk = await storage.read("x", 0, 10)
            assert server.command("XLEN", f"{shared}s:x") == b":2\r\n"
            assert server.command("EXISTS", f"{shared}e:x") == b":0\r\n"
            assert ([m.body for m in chunk.messages], chunk.first_seq, chunk.end) == (
                ["stays", "stays too"], 1, 22
            )
        finally:
            await storage.close()

    run(main)


def test_channels_written_before_retraction_existed_read_and_retract() -> None:
    """A stream of plain ``t``/``b`` entries and a seqs hash, as the previous release wrote them."""
    server, shared = session_server(), prefix()
    stream = f"{shared}s:old"
    for seq in (4, 5, 6):  # 1-3 trimmed by MAXLEN
        server.command("XADD", stream, f"{seq}-0", "t", f"{1_700_000_000_000_000 + seq}",
                       "b", f"old {seq}")
    server.command("HSET", f"{shared}seqs", "old", "6")
    server.command("SET", f"{shared}epoch", "00000000000000bb")

    async def main() -> None:
        storage = RedisStorage(server.url, prefix=shared)
        await storage.open()
        try:
            # The first start of this version on a store it has no record of starts a
            # new epoch once (see _redis_guard): clients get reset, the data stays.
            assert storage.epoch not in ("", "00000000000000bb")
            chunk = await storage.read("old", 0, 10)
            assert [(m.seq, m.body) for m in chunk.messages] == [(4, "old 4"), (5, "old 5"),
                                                                 (6, "old 6")]
            assert (chunk.first_seq, chunk.last_seq) == (4, 6)
            assert chunk.messages[0].ts == 1_700_000_000.000004
            with pytest.raises(NotRetained) as refused:
                await storage.retract("old", 3)
            assert refused.value.reason == "trimmed"
            await storage.retract("old", 4)  # the oldest: a hole at the head
            chunk = await storage.read("old", 3, 10)
            assert ([m.seq for m in chunk.messages], chunk.first_seq) == ([5, 6, 7], 4)
            assert (await storage.append("old", "new", key="k")).seq == 8
        finally:
            await storage.close()

    run(main)


def test_a_retraction_on_one_process_wakes_the_others_and_happens_once() -> None:
    url, shared = session_server().url, prefix()

    async def main() -> None:
        here, there = RedisStorage(url, prefix=shared), RedisStorage(url, prefix=shared)
        woken = asyncio.Event()
        await here.open()
        await there.open()
        try:
            message = await there.append("w", "typo")
            here.watch(lambda channel: woken.set() if channel == "w" else None)
            results = await asyncio.gather(
                here.retract("w", message.seq), there.retract("w", message.seq),
                return_exceptions=True,
            )
            assert sorted(type(r).__name__ for r in results) == ["Message", "NotRetained"]
            await asyncio.wait_for(woken.wait(), 5)
            tombstone = next(r for r in results if isinstance(r, Message))
            chunk = await here.read("w", 0, 10)
            assert chunk.messages == [tombstone] and chunk.last_seq == 2
        finally:
            await there.close()
            await here.close()

    run(main)


def test_a_lost_trim_record_still_hides_expired_entries() -> None:
    server, shared = session_server(), prefix()

    async def main() -> None:
        storage = RedisStorage(server.url, prefix=shared)
        await storage.open()
        try:
            await storage.append("lost", "stays")
            soon = await storage.append("lost", "soon", expires=time.time() + 0.3)
            assert soon.expires is not None
            assert server.command("DEL", f"{shared}firsts") == b":1\r\n"  # as an eviction would
            await asyncio.sleep(max(0.0, soon.expires - time.time()) + 0.02)
            assert [m.body for m in (await storage.read("lost", 0, 10)).messages] == ["stays"]
            assert [m.body for m in (await storage.read("lost", None, 10)).messages] == ["stays"]
        finally:
            await storage.close()

    run(main)
