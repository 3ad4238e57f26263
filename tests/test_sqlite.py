"""What only the SQLite backend has: files, durability, group commit, faults.

The storage contract itself is checked for SQLite by tests/test_storage.py and
the HTTP tests (tests/backends.py); crashes of a real process are in
tests/test_sqlite_crash.py. Faults here are real SQLite behaviour on real
files: a second connection holding ``BEGIN EXCLUSIVE``, ``PRAGMA
max_page_count`` capping the file's size.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest
from tornado.testing import gen_test

from tornado_lp.hub import Hub
from tornado_lp.storage import (
    ChannelLimitError,
    Limits,
    Storage,
    StorageConfigError,
    StorageUnavailable,
    storage_from_url,
)
from tornado_lp.storage._sqlite_db import SCHEMA_VERSION
from tornado_lp.storage.sqlite import SqliteStorage

from .backends import run_open, scratch_db
from .httpcase import AppCase, error_of
from .serverproc import run_cli

T = TypeVar("T")
HOUR = 3600.0


def run(path: str, scenario: Callable[[SqliteStorage], Awaitable[T]], **options: Any) -> T:
    """Open a SqliteStorage on ``path``, run ``scenario``, close it."""
    limits = options.pop("limits", None)
    return run_open(SqliteStorage(path, limits, **options), scenario)


def rows(path: str, sql: str, *args: Any) -> list[Any]:
    """Query the file from a separate connection: what is committed."""
    with sqlite3.connect(path) as conn:
        return conn.execute(sql, args).fetchall()


@contextmanager
def locked(path: str) -> Iterator[None]:
    """Another connection holds the write lock (``BEGIN EXCLUSIVE``) for the block."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


async def trace(storage: SqliteStorage) -> list[str]:
    """Record every SQL statement the worker's connection runs from now on."""
    statements: list[str] = []

    def install(conn: sqlite3.Connection) -> None:
        conn.set_trace_callback(statements.append)

    await storage._on_connection(install)
    return statements


# -- URLs ------------------------------------------------------------------


def test_urls() -> None:
    relative = storage_from_url("sqlite:///data/ticker.db")
    assert isinstance(relative, SqliteStorage) and relative.path == "data/ticker.db"
    absolute = storage_from_url("sqlite:////var/lib/ticker.db?synchronous=normal")
    assert isinstance(absolute, SqliteStorage)
    assert (absolute.path, absolute.synchronous) == ("/var/lib/ticker.db", "normal")
    memory = storage_from_url("sqlite://:memory:?busy_timeout=0.5")
    assert isinstance(memory, SqliteStorage)
    assert (memory.path, memory.busy_timeout, memory.synchronous) == (":memory:", 0.5, "full")
    assert "synchronous=full" in relative.description


@pytest.mark.parametrize(
    ("url", "word"),
    [
        ("sqlite://host/x.db", "sqlite:///relative.db"),
        ("sqlite:///", "no file"),
        ("sqlite:///x.db?synchronous=maybe", "synchronous"),
        ("sqlite:///x.db?busy_timeout=soon", "busy_timeout"),
        ("sqlite:///x.db?journal=off", "unknown option 'journal'"),
    ],
)
def test_bad_urls(url: str, word: str) -> None:
    with pytest.raises(StorageConfigError, match=word):
        storage_from_url(url)


def test_memory_database_works() -> None:
    async def scenario(storage: SqliteStorage) -> None:
        await storage.append("m", "in memory")
        assert [m.body for m in (await storage.read("m", 0, 10)).messages] == ["in memory"]

    run(":memory:", scenario)


# -- files that cannot work: one clear line, exit 2 ----------------------------


def _foreign_db(path: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (name TEXT)")


def _newer_db(path: str) -> None:
    run(path, lambda storage: storage.channel_count())
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))


def _not_sqlite(path: str) -> None:
    with open(path, "wb") as file:
        file.write(b"this is a ticker script, not a database\n" * 100)


BAD_FILES: list[tuple[str, Callable[[str], None], str]] = [
    ("not sqlite", _not_sqlite, "not a database"),
    ("other program", _foreign_db, "another program"),
    ("newer schema", _newer_db, "newer than this tornado_lp"),
    ("missing folder", lambda path: None, "does not exist"),
    ("a folder", os.mkdir, "is a folder"),
]


@pytest.mark.parametrize(
    ("make", "word"), [b[1:] for b in BAD_FILES], ids=[b[0] for b in BAD_FILES]
)
def test_unusable_files_are_config_errors(make: Callable[[str], None], word: str) -> None:
    path = scratch_db()
    if word == "does not exist":
        path = os.path.join(path, "nowhere", "x.db")
    make(path)
    with pytest.raises(StorageConfigError, match=word):
        run(path, lambda storage: storage.channel_count())


def test_unwritable_folder_is_a_config_error() -> None:
    # /proc refuses new files even to root, where chmod would not.
    with pytest.raises(StorageConfigError, match="unable to open database file"):
        run("/proc/tornado_lp_test.db", lambda storage: storage.channel_count())


@pytest.mark.parametrize(
    ("make", "word"),
    [(_not_sqlite, "not a database"), (_newer_db, "newer"), (_foreign_db, "another program")],
    ids=["not sqlite", "newer schema", "other program"],
)
def test_cli_exits_2_with_one_line(make: Callable[[str], None], word: str) -> None:
    path = scratch_db()
    make(path)
    done = run_cli(["--port", "0", "--storage", f"sqlite:///{os.path.abspath(path)}"])
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tornado-lp: error:"), done.stderr
    assert word in lines[0] and "Traceback" not in done.stderr


def test_cli_unwritable_folder_exits_2() -> None:
    done = run_cli(["--port", "0", "--storage", "sqlite:////proc/nope/ticker.db"])
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr


# -- durability and restarts ---------------------------------------------------


def test_epoch_sequence_and_messages_survive_reopen() -> None:
    path = scratch_db()

    async def first(storage: SqliteStorage) -> str:
        for i in range(5):
            await storage.append("keep", f"m{i}")
        return storage.epoch

    async def second(storage: SqliteStorage) -> str:
        chunk = await storage.read("keep", 2, 10)
        assert [m.body for m in chunk.messages] == ["m2", "m3", "m4"]
        assert (await storage.append("keep", "after restart")).seq == 6
        return storage.epoch

    assert run(path, first) == run(path, second)


def test_newest_seq_survives_trimming_and_restart() -> None:
    path = scratch_db()
    limits = Limits(max_messages=2)

    async def fill(storage: SqliteStorage) -> None:
        for i in range(10):
            await storage.append("t", f"m{i}")

    async def check(storage: SqliteStorage) -> None:
        chunk = await storage.read("t", 3, 10)
        assert [m.seq for m in chunk.messages] == [9, 10]
        assert (chunk.first_seq, chunk.last_seq) == (9, 10)
        # A cursor from before the restart is not reset: it reads on, with missed known.
        hub = Hub(storage)
        result = await hub.poll("t", f"{storage.epoch}-3", 0, 10)
        assert result is not None and (result.missed, result.reset) == (True, False)

    run(path, fill, limits=limits)
    run(path, check, limits=limits)


def test_close_checkpoints_the_wal() -> None:
    path = scratch_db()

    async def scenario(storage: SqliteStorage) -> None:
        await asyncio.gather(*(storage.append("w", f"m{i}") for i in range(100)))
        assert os.path.getsize(path + "-wal") > 0  # committed, not yet checkpointed

    run(path, scenario)
    assert not os.path.exists(path + "-wal") or os.path.getsize(path + "-wal") == 0
    assert rows(path, "PRAGMA journal_mode") == [("wal",)]
    assert rows(path, "SELECT count(*) FROM messages") == [(100,)]


# -- group commit --------------------------------------------------------------


def test_concurrent_appends_share_commits_and_resolve_only_after_commit() -> None:
    path = scratch_db()

    async def scenario(storage: SqliteStorage) -> None:
        statements = await trace(storage)
        pending = [asyncio.ensure_future(storage.append("g", f"m{i}")) for i in range(200)]
        for next_done in asyncio.as_completed(pending):
            message = await next_done
            # Visible to another connection the moment its future resolved: committed.
            assert rows(path, "SELECT body FROM messages WHERE seq = ?", message.seq) == [
                (message.body,)
            ]
        commits = statements.count("COMMIT")
        assert 1 <= commits <= 10, f"{commits} commits for 200 concurrent appends"

    run(path, scenario)


def test_one_failed_append_does_not_refuse_the_rest_of_its_batch() -> None:
    async def scenario(storage: SqliteStorage) -> None:
        await storage.append("one", "x")
        results = await asyncio.gather(
            storage.append("one", "a"), storage.append("two", "b"), storage.append("one", "c"),
            return_exceptions=True,
        )
        assert isinstance(results[1], ChannelLimitError)
        assert [m.body for m in (await storage.read("one", 0, 10)).messages] == ["x", "a", "c"]

    run(scratch_db(), scenario, limits=Limits(max_channels=1))


# -- reads and trimming --------------------------------------------------------


def test_reads_and_trims_use_the_primary_key() -> None:
    async def scenario(storage: SqliteStorage) -> None:
        statements = await trace(storage)
        for i in range(30):
            await storage.append("k", f"m{i}")
        await storage.read("k", 5, 10)
        await storage.read("k", None, 10)

        def plans(conn: sqlite3.Connection) -> list[str]:
            found = []
            for sql in set(statements):
                if sql.startswith(("SELECT seq", "DELETE FROM messages")):
                    plan = conn.execute("EXPLAIN QUERY PLAN " + sql).fetchall()
                    found.append(" ".join(row[3] for row in plan))
            return found

        found = await storage._on_connection(plans)
        assert found and all("USING PRIMARY KEY (channel=? AND seq" in p for p in found), found

    run(scratch_db(), scenario, limits=Limits(max_messages=10, max_age=HOUR))


def test_count_trimming_is_amortised() -> None:
    path = scratch_db()

    async def scenario(storage: SqliteStorage) -> None:
        statements = await trace(storage)
        for i in range(1000):
            await storage.append("busy", f"m{i}")
            if i % 97 == 0:
                (count,) = rows(path, "SELECT count(*) FROM messages")[0]
                assert count <= 110
        chunk = await storage.read("busy", 0, 1000)
        assert [m.seq for m in chunk.messages] == list(range(901, 1001))
        deletes = sum(s.startswith("DELETE") for s in statements)
        assert 80 <= deletes <= 100, f"{deletes} range deletes for 1000 appends"

    run(path, scenario, limits=Limits(max_messages=100))


def test_expired_messages_are_deleted_by_the_sweep_without_a_publish() -> None:
    path = scratch_db()

    async def scenario(storage: SqliteStorage) -> None:
        for i in range(5):
            await storage.append(f"c{i % 2}", "soon old")
        # The sweep runs every max_age / 4 (at least 0.05 s) on the worker, publish or not.
        for _ in range(100):
            if rows(path, "SELECT count(*) FROM messages") == [(0,)]:
                break
            await asyncio.sleep(0.02)
        assert rows(path, "SELECT count(*) FROM messages") == [(0,)]
        assert rows(path, "SELECT name, last_seq, first_seq FROM channels ORDER BY name") == [
            ("c0", 3, 4), ("c1", 2, 3)
        ]
        chunk = await storage.read("c0", 1, 10)
        assert (chunk.messages, chunk.first_seq, chunk.last_seq) == ([], 4, 3)

    run(path, scenario, limits=Limits(max_age=0.1))


# -- the hub over SQLite ---------------------------------------------------------


def test_held_poll_does_not_touch_the_database_until_a_publish() -> None:
    async def scenario(storage: SqliteStorage) -> None:
        hub = Hub(storage)
        first = await hub.publish("quiet", "one")
        polls = [asyncio.ensure_future(hub.poll("quiet", first.id, HOUR, 10)) for _ in range(20)]
        while hub.holding("quiet") < 20:  # every poll read once and now waits
            await asyncio.sleep(0.005)
        statements = await trace(storage)
        await asyncio.sleep(0.5)
        assert statements == [], statements
        await hub.publish("quiet", "two")
        results = await asyncio.gather(*polls)
        assert all(r is not None and [m.body for m in r.messages] == ["two"] for r in results)
        reads = sum(s.startswith("SELECT seq") for s in statements)
        assert 1 <= reads <= 20, reads  # at most one read per poll (the hub may share them)

    run(scratch_db(), scenario)


# -- faults while running: 503, polls still served, recovery -----------------------


def test_locked_database_refuses_appends_then_recovers() -> None:
    path = scratch_db()

    async def scenario(storage: SqliteStorage) -> None:
        await storage.append("l", "before")
        with locked(path):
            with pytest.raises(StorageUnavailable, match="database is locked"):
                await storage.append("l", "while locked")
            chunk = await storage.read("l", 0, 10)  # WAL: readers go on
            assert [m.body for m in chunk.messages] == ["before"]
        assert (await storage.append("l", "after")).seq == 2
        assert [m.body for m in (await storage.read("l", 0, 10)).messages] == ["before", "after"]

    run(path, scenario, busy_timeout=0.05)


def test_full_disk_refuses_appends_stores_nothing_then_recovers() -> None:
    async def scenario(storage: SqliteStorage) -> None:
        await storage.append("f", "small")

        def cap(conn: sqlite3.Connection) -> None:
            (pages,) = conn.execute("PRAGMA page_count").fetchone()
            conn.execute(f"PRAGMA max_page_count = {pages + 2}")

        await storage._on_connection(cap)
        with pytest.raises(StorageUnavailable, match="full"):
            for _ in range(20):
                await storage.append("f", "x" * 4000)
        stored = (await storage.read("f", 0, 100)).messages
        results = await asyncio.gather(
            *(storage.append("f", "y" * 4000) for _ in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, StorageUnavailable) for r in results)
        assert (await storage.read("f", 0, 100)).messages == stored  # a failed batch stored nothing
        await storage._on_connection(lambda conn: conn.execute("PRAGMA max_page_count = 1000000"))
        message = await storage.append("f", "room again")
        assert message.seq == stored[-1].seq + 1

    run(scratch_db(), scenario)


class LockedHTTPTest(AppCase):
    def make_storage(self) -> Storage:
        self.path = scratch_db()
        return SqliteStorage(self.path, busy_timeout=0.05)

    @gen_test
    async def test_publish_is_503_while_locked_and_polls_are_served(self) -> None:
        first = await self.publish("news", "before the lock")
        with locked(self.path):
            response = await self.request("POST", "/channels/news/messages", "while locked")
            assert response.code == 503
            assert "database is locked" in error_of(response)
            answer = await self.poll("news", timeout=0)
            assert [m["body"] for m in answer["messages"]] == ["before the lock"]
            info = json.loads((await self.request("GET", "/channels/news")).body)
            assert info["retained"] == 1
            assert (await self.request("GET", "/healthz")).code == 200
        second = await self.publish("news", "after the lock")
        assert second["id"] == f"{self.storage.epoch}-2"
        answer = await self.poll("news", cursor=first["id"], timeout=0)
        assert [m["body"] for m in answer["messages"]] == ["after the lock"]


def test_an_idle_sweep_takes_no_write_lock() -> None:
    async def scenario(storage: SqliteStorage) -> None:
        await storage.append("fresh", "not old yet")
        statements = await trace(storage)
        await asyncio.sleep(1.1)  # two sweeps (every max_age / 4), nothing to expire yet
        assert any(s.startswith("SELECT c.id") for s in statements), statements
        assert not any(s.startswith(("BEGIN", "DELETE")) for s in statements), statements

    run(scratch_db(), scenario, limits=Limits(max_age=2.0))


def test_close_again_after_a_cancelled_close_still_finishes_it() -> None:
    path = scratch_db()

    async def main() -> None:
        storage = SqliteStorage(path)
        await storage.open()
        await storage.append("c", "x")
        closing = asyncio.ensure_future(storage.close())
        await asyncio.sleep(0)
        closing.cancel()  # as asyncio.wait_for does when the shutdown grace runs out
        await storage.close()
        assert not os.path.exists(path + "-wal")
        with pytest.raises(StorageUnavailable, match="closed"):
            await storage.append("c", "too late")

    asyncio.run(main())
    assert rows(path, "SELECT body FROM messages") == [("x",)]
