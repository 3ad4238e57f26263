"""The SQL side of :class:`~tornado_lp.storage.sqlite.SqliteStorage`: plain, synchronous.

A :class:`Database` owns one ``sqlite3`` connection and is used from one
thread only (the storage's worker thread). It knows nothing about asyncio.

Schema (version 1)::

    schema_version(version)                       one row; a later release migrates from it
    meta(key PRIMARY KEY, value)                  'epoch': the store's cursor epoch
                                                  ('boot_id', 'clean', 'synchronous': _sqlite_boot)
    channels(id PRIMARY KEY, name UNIQUE,         one row per channel; last_seq survives
             last_seq, last_ts, first_seq)        trimming and restarts
    messages(channel, seq, ts, body,              WITHOUT ROWID: the rows are stored in
             PRIMARY KEY (channel, seq))          (channel, seq) order, so a read after a
                                                  cursor is one B-tree seek plus k steps

Invariant: the rows of a channel are exactly seqs ``first_seq .. last_seq``.
Trimming deletes a prefix, by ``max_messages`` when the excess reaches a slack
(so a busy channel pays one range delete per ``slack`` publishes, not one per
publish) and by ``max_age`` in a periodic sweep. Reads apply both limits
exactly, so the slack and the sweep period never show.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Sequence

from ..protocol import new_epoch
from . import _sqlite_boot
from .base import ChannelLimitError, Limits, StorageConfigError, StorageError, StorageUnavailable

__all__ = ["SCHEMA_VERSION", "AppendResult", "Database", "Row"]

SCHEMA_VERSION = 1

_SCHEMA = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE channels ("
    " id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
    " last_seq INTEGER NOT NULL, last_ts REAL NOT NULL, first_seq INTEGER NOT NULL)",
    "CREATE TABLE messages ("
    " channel INTEGER NOT NULL, seq INTEGER NOT NULL, ts REAL NOT NULL, body TEXT NOT NULL,"
    " PRIMARY KEY (channel, seq)) WITHOUT ROWID",
)

#: ``(seq, ts, body)`` of one stored message.
Row = tuple[int, float, str]
#: Per append: its ``(seq, ts)``, or the error that refused it.
AppendResult = tuple[int, float] | StorageError


def _trim_slack(max_messages: int) -> int:
    """How far past ``max_messages`` a channel may grow before its oldest rows are deleted."""
    return max(1, min(100, max_messages // 10))


class Database:
    """The store's tables behind one connection. Not thread-safe: one thread only."""

    def __init__(self, path: str, limits: Limits, synchronous: str, busy_timeout: float) -> None:
        self.path = path
        self.limits = limits
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self.conn: sqlite3.Connection | None = None
        self.epoch = ""
        self._marked = False  # this run is recorded in meta: mark it clean on close

    # -- lifecycle -------------------------------------------------------

    def open(self) -> str:
        """Connect, create or check the schema; returns the epoch. Raises StorageConfigError."""
        path = self.path
        if path != ":memory:":
            folder = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(folder):
                raise StorageConfigError(
                    f"cannot open SQLite database {path!r}: folder {folder!r} does not exist"
                )
            if os.path.isdir(path):
                raise StorageConfigError(f"cannot open SQLite database {path!r}: it is a folder")
        try:
            self.conn = conn = sqlite3.connect(path, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL").fetchone()
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            self.epoch = self._schema()
            if path != ":memory:":  # a power cut under synchronous=normal: see _sqlite_boot
                self.epoch = _sqlite_boot.opened(conn, self.synchronous, self.epoch)
                self._marked = True
        except sqlite3.Error as error:
            self.close()
            hint = " (is its folder writable?)" if "unable to open" in str(error) else ""
            raise StorageConfigError(
                f"cannot use {path!r} as a SQLite database: {_describe(error)}{hint}"
            ) from None
        except StorageConfigError:
            self.close()
            raise
        return self.epoch

    def _schema(self) -> str:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")  # also proves the file is writable
        try:
            tables = {
                name for (name,) in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                )
            }
            if not tables:
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
                conn.execute("INSERT INTO meta VALUES ('epoch', ?)", (new_epoch(),))
            elif "schema_version" not in tables or "meta" not in tables:
                raise StorageConfigError(
                    f"{self.path!r} is a SQLite database of another program "
                    f"(it has no tornado_lp schema_version table)"
                )
            else:
                row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
                version = row[0] if row else None
                if not isinstance(version, int) or version > SCHEMA_VERSION:
                    raise StorageConfigError(
                        f"{self.path!r} has schema version {version}, newer than this "
                        f"tornado_lp reads ({SCHEMA_VERSION}): upgrade tornado_lp"
                    )
                # Migrations from older versions go here when there are any.
            row = conn.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
            if row is None:
                raise StorageConfigError(f"{self.path!r} has no epoch in its meta table")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return str(row[0])

    def close(self) -> None:
        """Checkpoint the WAL into the database file and close; idempotent."""
        conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if self._marked:
                _sqlite_boot.closed_cleanly(conn)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass  # the file stays consistent; the next open replays the WAL
        finally:
            conn.close()

    def _conn(self) -> sqlite3.Connection:
        if self.conn is None:
            raise StorageUnavailable("the SQLite store is closed")
        return self.conn

    # -- writing ---------------------------------------------------------

    def append_many(self, items: Sequence[tuple[str, str]]) -> list[AppendResult]:
        """Store every ``(channel, body)`` in one transaction: group commit.

        Returns, per item, its ``(seq, ts)`` or the error that refused it. A
        refused item (channel limit) does not stop the others; a failed
        transaction (locked, disk full) refuses them all and stores nothing.
        """
        conn = self._conn()
        limits = self.limits
        results: list[AppendResult] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            now = time.time()
            # channel name -> [id, last_seq, last_ts, first_seq]
            touched: dict[str, list[int | float]] = {}
            rows: list[tuple[int, int, float, str]] = []
            channel_count: int | None = None
            for channel, body in items:
                state = touched.get(channel)
                if state is None:
                    found = conn.execute(
                        "SELECT id, last_seq, last_ts, first_seq FROM channels WHERE name = ?",
                        (channel,),
                    ).fetchone()
                    if found is None:
                        if channel_count is None:
                            channel_count = conn.execute(
                                "SELECT count(*) FROM channels"
                            ).fetchone()[0]
                        if channel_count >= limits.max_channels:
                            results.append(ChannelLimitError(
                                f"channel limit reached: the store already holds "
                                f"{limits.max_channels} channels (--max-channels)"
                            ))
                            continue
                        channel_count += 1
                        cursor = conn.execute(
                            "INSERT INTO channels (name, last_seq, last_ts, first_seq)"
                            " VALUES (?, 0, 0, 1)",
                            (channel,),
                        )
                        found = (cursor.lastrowid, 0, 0.0, 1)
                    state = touched[channel] = list(found)
                # ts never goes back within a channel, so age trimming can cut a prefix.
                ts = max(now, state[2])
                seq = int(state[1]) + 1
                state[1], state[2] = seq, ts
                rows.append((int(state[0]), seq, ts, body))
                results.append((seq, ts))
            if rows:
                conn.executemany("INSERT INTO messages VALUES (?, ?, ?, ?)", rows)
                slack = _trim_slack(limits.max_messages)
                for cid, last_seq, last_ts, first_seq in touched.values():
                    keep_from = int(last_seq) - limits.max_messages + 1
                    if keep_from - first_seq >= slack:
                        conn.execute(
                            "DELETE FROM messages WHERE channel = ? AND seq < ?", (cid, keep_from)
                        )
                        first_seq = keep_from
                    conn.execute(
                        "UPDATE channels SET last_seq = ?, last_ts = ?, first_seq = ? WHERE id = ?",
                        (last_seq, last_ts, first_seq, cid),
                    )
            conn.execute("COMMIT")
        except sqlite3.Error as error:
            self._rollback()
            failure = StorageUnavailable(_describe(error))
            refused: list[AppendResult] = [
                r if isinstance(r, ChannelLimitError) else failure for r in results
            ]
            return refused + [failure] * (len(items) - len(results))
        return results

    def expire(self, now: float | None = None) -> int:
        """Delete messages older than ``max_age`` in every channel; returns how many channels."""
        if self.limits.max_age is None:
            return 0
        conn = self._conn()
        cutoff = (time.time() if now is None else now) - self.limits.max_age
        try:
            # Only channels whose oldest row has expired: one primary-key probe per channel
            # (CROSS JOIN keeps channels as the outer loop, never a scan of messages).
            # Read outside a write transaction: a sweep with nothing to do takes no lock.
            stale = conn.execute(
                "SELECT c.id, c.first_seq, c.last_seq FROM channels AS c"
                " CROSS JOIN messages AS m ON m.channel = c.id AND m.seq = c.first_seq"
                " WHERE m.ts < ?",
                (cutoff,),
            ).fetchall()
            if not stale:
                return 0
            conn.execute("BEGIN IMMEDIATE")  # only this thread writes: `stale` is still true
            for cid, first_seq, last_seq in stale:
                keep_from = self._first_fresh(cid, first_seq, last_seq, cutoff)
                conn.execute(
                    "DELETE FROM messages WHERE channel = ? AND seq < ?", (cid, keep_from)
                )
                conn.execute("UPDATE channels SET first_seq = ? WHERE id = ?", (keep_from, cid))
            conn.execute("COMMIT")
        except sqlite3.Error:
            self._rollback()
            return 0  # a locked or full store expires on the next sweep; reads stay exact
        return len(stale)

    def _rollback(self) -> None:
        conn = self.conn
        if conn is not None and conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    # -- reading ---------------------------------------------------------

    def _first_fresh(self, cid: int, first_seq: int, last_seq: int, cutoff: float) -> int:
        """The oldest seq with ``ts >= cutoff``, or ``last_seq + 1``; walks only expired rows."""
        row = self._conn().execute(
            "SELECT seq FROM messages WHERE channel = ? AND seq >= ? AND ts >= ?"
            " ORDER BY seq LIMIT 1",
            (cid, first_seq, cutoff),
        ).fetchone()
        return int(row[0]) if row is not None else last_seq + 1

    def read(self, channel: str, after: int | None, limit: int) -> tuple[list[Row], int, int]:
        """``(rows, last_seq, first_seq)`` as :meth:`Storage.read` defines them."""
        conn = self._conn()
        limits = self.limits
        try:
            found = conn.execute(
                "SELECT id, last_seq, first_seq FROM channels WHERE name = ?", (channel,)
            ).fetchone()
            if found is None:
                return [], 0, 1
            cid, last_seq, first_seq = found
            first_seq = max(first_seq, last_seq - limits.max_messages + 1)
            if limits.max_age is not None:
                first_seq = self._first_fresh(
                    cid, first_seq, last_seq, time.time() - limits.max_age
                )
            start = max(first_seq, last_seq - limit + 1) if after is None else max(
                first_seq, after + 1
            )
            rows: list[Row] = conn.execute(
                "SELECT seq, ts, body FROM messages WHERE channel = ? AND seq >= ?"
                " ORDER BY seq LIMIT ?",
                (cid, start, limit),
            ).fetchall()
        except sqlite3.Error as error:
            raise StorageUnavailable(_describe(error)) from None
        return rows, last_seq, first_seq

    def channel_count(self) -> int:
        try:
            return int(self._conn().execute("SELECT count(*) FROM channels").fetchone()[0])
        except sqlite3.Error as error:
            raise StorageUnavailable(_describe(error)) from None

    def ping(self) -> None:
        try:
            self._conn().execute("SELECT count(*) FROM schema_version").fetchone()
        except sqlite3.Error as error:
            raise StorageUnavailable(_describe(error)) from None


def _describe(error: sqlite3.Error) -> str:
    """SQLite's own words, e.g. 'database is locked', 'database or disk is full'."""
    text = str(error) or type(error).__name__
    return f"SQLite: {text}"
