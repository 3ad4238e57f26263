"""The SQL side of :class:`~tornado_lp.storage.sqlite.SqliteStorage`: plain, synchronous.

A :class:`Database` owns one ``sqlite3`` connection and is used from one
thread only (the storage's worker thread). It knows nothing about asyncio.

Schema (version 2; a fresh file is made by version 1's statements followed by
every migration, so fresh and migrated files are the same)::

    schema_version(version)                       one row; older versions are migrated on open
    meta(key PRIMARY KEY, value)                  'epoch': the store's cursor epoch
                                                  ('boot_id', 'clean', 'synchronous': _sqlite_boot)
    channels(id PRIMARY KEY, name UNIQUE,         one row per channel; last_seq survives
             last_seq, last_ts, first_seq,        trimming and restarts; first_seq is
             floor, last_alert, flags)            Slice.first_seq as of the last write,
                                                  floor the oldest seq that may still have
                                                  a row, last_alert the newest alert's seq,
                                                  flags what the channel ever held (below)
    messages(channel, seq, ts, body,              WITHOUT ROWID: the rows are stored in
             expires, alert, key, retract, state, (channel, seq) order, so a read after a
             PRIMARY KEY (channel, seq))          cursor is one B-tree seek plus k steps

``state`` is 0 for a current message, 1 for an entry only a reader with a
cursor sees (a keyed message superseded by a newer one with its key, or a
tombstone: ``retract`` set, body ``''``) and 2 for a retracted message.
Partial indexes cover only the rows that need them (alerts, keyed and
expiring rows), so plain messages pay nothing for them. ``flags`` has
:data:`F_FIELDS` once the channel held anything but plain messages, and
:data:`F_HOLES` once it held an expiring message or had a retraction: a
channel without flags is read and trimmed with version 1's statements.

Rows of a channel have seqs in ``floor .. last_seq``, with holes where an
expired row was deleted. Trimming deletes a prefix, by ``max_messages`` when
the excess reaches a slack (so a busy channel pays one range delete per
``slack`` publishes, not one per publish) and by ``max_age`` in a periodic
sweep; expired rows are deleted by the sweep too, a bounded batch at a time.
Reads apply the limits and expiries exactly, so neither shows.

``first_seq`` is one more than the newest seq that a reader could still see
when trimming passed it: each write that moves the ``max_messages`` window
looks back from the window's start for the newest visible row (for plain
messages, the row just below it), so expired and retracted rows never count
as missed. Age trimming does the same at read time and in the sweep.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from ..protocol import new_epoch
from . import _sqlite_boot
from .base import (
    ChannelLimitError,
    Limits,
    NotRetained,
    StorageConfigError,
    StorageError,
    StorageUnavailable,
    not_retained,
)

__all__ = [
    "SCHEMA_VERSION", "AppendItem", "AppendResult", "Database", "ReadResult", "Row",
]

log = logging.getLogger("tornado_lp.storage.sqlite")

SCHEMA_VERSION = 2

#: Version 1, as the first release created it; never changed, only migrated from.
_SCHEMA_V1 = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE channels ("
    " id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
    " last_seq INTEGER NOT NULL, last_ts REAL NOT NULL, first_seq INTEGER NOT NULL)",
    "CREATE TABLE messages ("
    " channel INTEGER NOT NULL, seq INTEGER NOT NULL, ts REAL NOT NULL, body TEXT NOT NULL,"
    " PRIMARY KEY (channel, seq)) WITHOUT ROWID",
)

#: version -> the statements that migrate the version before it. ADD COLUMN does
#: not rewrite the table, so migrating a large file is instant.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: (
        # Expiry, retraction, alerts and keys (issue 14).
        "ALTER TABLE messages ADD COLUMN expires REAL",
        "ALTER TABLE messages ADD COLUMN alert INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE messages ADD COLUMN key TEXT",
        "ALTER TABLE messages ADD COLUMN retract INTEGER",
        "ALTER TABLE messages ADD COLUMN state INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE channels ADD COLUMN floor INTEGER NOT NULL DEFAULT 1",
        "ALTER TABLE channels ADD COLUMN last_alert INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE channels ADD COLUMN flags INTEGER NOT NULL DEFAULT 0",
        # Version 1 kept exactly seqs first_seq .. last_seq: that is where rows start.
        "UPDATE channels SET floor = first_seq",
        "CREATE INDEX messages_alerts ON messages (channel, seq) WHERE alert = 1 AND state = 0",
        "CREATE INDEX messages_keys ON messages (channel, key) WHERE key IS NOT NULL AND state = 0",
        "CREATE INDEX messages_expiring ON messages (expires) WHERE expires IS NOT NULL",
    ),
}

CURRENT, CURSOR_ONLY, RETRACTED = 0, 1, 2
#: channels.flags: some entry had an expiry, key, alert or is a tombstone / some
#: entry had an expiry or was retracted (so seqs can be holes).
F_FIELDS, F_HOLES = 1, 2

#: Expired rows deleted per sweep, and the shortest time between such sweeps.
EXPIRY_BATCH = 256
EXPIRY_PERIOD = 1.0

_COLUMNS = "seq, ts, body, expires, alert, key, retract"
#: What a reader with a cursor may see / what a first paint may show (with ``now``).
_VISIBLE = "state < 2 AND (expires IS NULL OR expires > ?)"
_CURRENT = "state = 0 AND (expires IS NULL OR expires > ?)"

#: ``(seq, ts, body, expires, alert, key, retract)`` of one stored entry.
Row = tuple[int, float, str, float | None, int, str | None, int | None]
#: One append: channel, body, expires, alert, key.
AppendItem = tuple[str, str, float | None, bool, str | None]
#: Per append: its ``(seq, ts)``, or the error that refused it.
AppendResult = tuple[int, float] | StorageError
#: What :meth:`Database.read` returns: rows (:data:`Row`, or ``(seq, ts, body)`` for a
#: channel without flags), last_seq, first_seq, end.
ReadResult = tuple[list[Any], int, int, int]


def _trim_slack(max_messages: int) -> int:
    """How far past ``max_messages`` a channel may grow before its oldest rows are deleted."""
    return max(1, min(100, max_messages // 10))


class _ChannelRow:
    """A channel's row of ``channels`` while a transaction changes it.

    ``last_alert`` is None unless this transaction appended an alert (writes
    never need the stored one); ``saved`` remembers floor and flags as read,
    so that a plain append writes back only what it changed.
    """

    __slots__ = ("first_seq", "flags", "floor", "id", "last_alert", "last_seq", "last_ts", "saved")

    #: The columns, in the order of ``__init__``'s row.
    COLUMNS = "id, last_seq, last_ts, first_seq, floor, flags"

    def __init__(self, row: Sequence[Any]) -> None:
        self.id, self.last_seq, self.last_ts, self.first_seq, self.floor, self.flags = row
        self.last_alert: int | None = None
        self.saved = (self.floor, self.flags)


class Database:
    """The store's tables behind one connection. Not thread-safe: one thread only."""

    def __init__(self, path: str, limits: Limits, synchronous: str, busy_timeout: float) -> None:
        self.path = path
        self.limits = limits
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self.conn: sqlite3.Connection | None = None
        self.epoch = ""
        #: The earliest expiry of any row (None: no row expires), for the sweep.
        self.next_expiry: float | None = None
        self._marked = False  # this run is recorded in meta: mark it clean on close

    # -- lifecycle -------------------------------------------------------

    def open(self) -> str:
        """Connect, create or migrate the schema; returns the epoch. Raises StorageConfigError."""
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
            self._find_next_expiry()
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
                for statement in _SCHEMA_V1:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version VALUES (1)")
                conn.execute("INSERT INTO meta VALUES ('epoch', ?)", (new_epoch(),))
                self._migrate(1, announce=False)
            elif "schema_version" not in tables or "meta" not in tables:
                raise StorageConfigError(
                    f"{self.path!r} is a SQLite database of another program "
                    f"(it has no tornado_lp schema_version table)"
                )
            else:
                row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
                version = row[0] if row else None
                if not isinstance(version, int) or version < 1:
                    raise StorageConfigError(
                        f"{self.path!r} has no valid tornado_lp schema version ({version!r})"
                    )
                if version > SCHEMA_VERSION:
                    raise StorageConfigError(
                        f"{self.path!r} has schema version {version}, newer than this "
                        f"tornado_lp reads ({SCHEMA_VERSION}): upgrade tornado_lp"
                    )
                self._migrate(version, announce=True)
            row = conn.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
            if row is None:
                raise StorageConfigError(f"{self.path!r} has no epoch in its meta table")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return str(row[0])

    def _migrate(self, version: int, *, announce: bool) -> None:
        """Run the migrations after ``version`` inside the open transaction."""
        if version == SCHEMA_VERSION:
            return
        conn = self._conn()
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[target]:
                conn.execute(statement)
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
        if announce:
            log.warning(
                "migrated SQLite database %r from schema version %d to %d",
                self.path, version, SCHEMA_VERSION,
            )

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

    def append_many(self, items: Sequence[AppendItem]) -> list[AppendResult]:
        """Store every ``(channel, body, expires, alert, key)`` in one transaction: group commit.

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
            touched: dict[str, _ChannelRow] = {}
            rows: list[tuple[Any, ...]] = []  # with fields
            plain_rows: list[tuple[int, int, float, str]] = []
            #: (channel id, key) -> index in `rows` of this batch's newest row with that key
            keyed: dict[tuple[int, str], int] = {}
            channel_count: int | None = None
            next_expiry = self.next_expiry
            for channel, body, expires, alert, key in items:
                state = touched.get(channel)
                if state is None:
                    found = conn.execute(
                        "SELECT " + _ChannelRow.COLUMNS + " FROM channels WHERE name = ?",
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
                        found = (cursor.lastrowid, 0, 0.0, 1, 1, 0)
                    state = touched[channel] = _ChannelRow(found)
                # ts never goes back within a channel, so age trimming can cut a prefix.
                ts = max(now, state.last_ts)
                seq = state.last_seq + 1
                state.last_seq, state.last_ts = seq, ts
                if expires is not None:
                    state.flags |= F_FIELDS | F_HOLES
                if alert:
                    state.last_alert = seq
                    state.flags |= F_FIELDS
                if key is not None:
                    state.flags |= F_FIELDS
                    earlier = keyed.get((state.id, key))
                    if earlier is not None:
                        rows[earlier] = (*rows[earlier][:-1], CURSOR_ONLY)
                    else:
                        # The planner, without statistics, would scan the channel instead.
                        conn.execute(
                            "UPDATE messages INDEXED BY messages_keys SET state = 1"
                            " WHERE channel = ? AND key = ? AND state = 0",
                            (state.id, key),
                        )
                    keyed[(state.id, key)] = len(rows)
                if expires is not None and (next_expiry is None or expires < next_expiry):
                    next_expiry = expires
                if expires is None and not alert and key is None:
                    plain_rows.append((state.id, seq, ts, body))
                else:
                    rows.append(
                        (state.id, seq, ts, body, expires, 1 if alert else 0, key, None, CURRENT)
                    )
                results.append((seq, ts))
            if plain_rows:  # the other columns' defaults; binding them costs as much again
                conn.executemany(
                    "INSERT INTO messages (channel, seq, ts, body) VALUES (?, ?, ?, ?)", plain_rows
                )
            if rows:
                conn.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            for state in touched.values():
                self._advance(state, now)
            conn.execute("COMMIT")
        except sqlite3.Error as error:
            self._rollback()
            failure = StorageUnavailable(_describe(error))
            refused: list[AppendResult] = [
                r if isinstance(r, ChannelLimitError) else failure for r in results
            ]
            return refused + [failure] * (len(items) - len(results))
        self.next_expiry = next_expiry
        return results

    def _advance(self, state: _ChannelRow, now: float) -> None:
        """After new rows: move first_seq past the max_messages window, trim, save the channel."""
        conn = self._conn()
        window = state.last_seq - self.limits.max_messages + 1
        if window > state.first_seq:
            state.first_seq = self._first_after(state.id, state.flags, state.first_seq, window, now)
        if window - state.floor >= _trim_slack(self.limits.max_messages):
            conn.execute(
                "DELETE FROM messages WHERE channel = ? AND seq < ?", (state.id, window)
            )
            state.floor = window
        if state.last_alert is None and state.saved == (state.floor, state.flags):
            conn.execute(
                "UPDATE channels SET last_seq = ?, last_ts = ?, first_seq = ? WHERE id = ?",
                (state.last_seq, state.last_ts, state.first_seq, state.id),
            )
        elif state.last_alert is None:
            conn.execute(
                "UPDATE channels SET last_seq = ?, last_ts = ?, first_seq = ?, floor = ?,"
                " flags = ? WHERE id = ?",
                (state.last_seq, state.last_ts, state.first_seq, state.floor, state.flags,
                 state.id),
            )
        else:
            conn.execute(
                "UPDATE channels SET last_seq = ?, last_ts = ?, first_seq = ?, floor = ?,"
                " flags = ?, last_alert = ? WHERE id = ?",
                (state.last_seq, state.last_ts, state.first_seq, state.floor, state.flags,
                 state.last_alert, state.id),
            )

    def retract(self, channel: str, seq: int) -> tuple[int, float]:
        """Mark message ``seq`` retracted and append its tombstone, in one transaction.

        Returns the tombstone's ``(seq, ts)``. Raises :class:`NotRetained` (nothing
        changed) or :class:`StorageUnavailable`.
        """
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            found = conn.execute(
                "SELECT " + _ChannelRow.COLUMNS + " FROM channels WHERE name = ?", (channel,)
            ).fetchone()
            if found is None or not 1 <= seq <= found[1]:
                raise not_retained("unknown", channel, seq)
            state = _ChannelRow(found)
            now = time.time()
            first_seq, trimmed_below = self._first_seq(
                state.id, state.flags, state.first_seq, state.floor, state.last_seq, now
            )
            if seq < first_seq or seq < trimmed_below:
                raise not_retained("trimmed", channel, seq)
            row = conn.execute(
                "SELECT state, retract, expires FROM messages WHERE channel = ? AND seq = ?",
                (state.id, seq),
            ).fetchone()
            if row is None:  # inside the window, rows go only by expiring
                raise not_retained("expired", channel, seq)
            if row[0] == RETRACTED:
                raise not_retained("retracted", channel, seq)
            if row[1] is not None:
                raise not_retained("tombstone", channel, seq)
            if row[2] is not None and row[2] <= now:
                raise not_retained("expired", channel, seq)
            conn.execute(
                "UPDATE messages SET state = 2 WHERE channel = ? AND seq = ?", (state.id, seq)
            )
            state.flags |= F_FIELDS | F_HOLES
            ts = max(now, state.last_ts)
            state.last_seq += 1
            state.last_ts = ts
            conn.execute(
                "INSERT INTO messages VALUES (?, ?, ?, '', NULL, 0, NULL, ?, 1)",
                (state.id, state.last_seq, ts, seq),
            )
            self._advance(state, now)
            conn.execute("COMMIT")
        except NotRetained:
            self._rollback()
            raise
        except sqlite3.Error as error:
            self._rollback()
            raise StorageUnavailable(_describe(error)) from None
        return state.last_seq, ts

    def expire(self, now: float | None = None) -> int:
        """Delete messages older than ``max_age`` in every channel; returns how many channels."""
        if self.limits.max_age is None:
            return 0
        conn = self._conn()
        now = time.time() if now is None else now
        cutoff = now - self.limits.max_age
        try:
            # Only channels whose oldest row has expired: one primary-key seek per channel.
            # Read outside a write transaction: a sweep with nothing to do takes no lock.
            stale = conn.execute(
                "SELECT c.id, c.first_seq, c.floor, c.last_seq, c.flags FROM channels AS c"
                " WHERE (SELECT m.ts FROM messages AS m WHERE m.channel = c.id"
                " AND m.seq >= c.floor ORDER BY m.seq LIMIT 1) < ?",
                (cutoff,),
            ).fetchall()
            if not stale:
                return 0
            conn.execute("BEGIN IMMEDIATE")  # only this thread writes: `stale` is still true
            for cid, first_seq, floor, last_seq, flags in stale:
                keep_from = self._first_fresh(cid, floor, last_seq, cutoff)
                if keep_from > first_seq:
                    first_seq = self._first_after(cid, flags, first_seq, keep_from, now)
                conn.execute(
                    "DELETE FROM messages WHERE channel = ? AND seq < ?", (cid, keep_from)
                )
                conn.execute(
                    "UPDATE channels SET first_seq = ?, floor = ? WHERE id = ?",
                    (first_seq, max(floor, keep_from), cid),
                )
            conn.execute("COMMIT")
        except sqlite3.Error:
            self._rollback()
            return 0  # a locked or full store expires on the next sweep; reads stay exact
        return len(stale)

    def delete_expired(self, now: float | None = None) -> int:
        """Delete up to :data:`EXPIRY_BATCH` rows whose expiry has passed; returns how many.

        Their seqs become holes: first_seq and the channels' rows do not change.
        """
        now = time.time() if now is None else now
        if self.next_expiry is None or self.next_expiry > now:
            return 0
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            deleted = conn.execute(
                "DELETE FROM messages WHERE (channel, seq) IN (SELECT channel, seq"
                " FROM messages WHERE expires IS NOT NULL AND expires <= ?"
                " ORDER BY expires LIMIT ?)",
                (now, EXPIRY_BATCH),
            ).rowcount
            conn.execute("COMMIT")
            self._find_next_expiry()
        except sqlite3.Error:
            self._rollback()
            return 0  # reads hide expired rows anyway; the next sweep tries again
        return deleted

    def _find_next_expiry(self) -> None:
        row = self._conn().execute(
            "SELECT min(expires) FROM messages WHERE expires IS NOT NULL"
        ).fetchone()
        self.next_expiry = None if row is None or row[0] is None else float(row[0])

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

    def _first_after(self, cid: int, flags: int, first_seq: int, below: int, now: float) -> int:
        """first_seq once trimming removed every seq below ``below``.

        One more than the newest row in ``first_seq .. below - 1`` that a reader
        can still see, or ``first_seq`` if there is none (only holes were
        trimmed). A channel that cannot have holes needs no lookup: ``below``.
        """
        if not flags & F_HOLES:
            return below
        row = self._conn().execute(
            "SELECT seq FROM messages WHERE channel = ? AND seq >= ? AND seq < ? AND "
            + _VISIBLE + " ORDER BY seq DESC LIMIT 1",
            (cid, first_seq, below, now),
        ).fetchone()
        return first_seq if row is None else int(row[0]) + 1

    def _first_seq(
        self, cid: int, flags: int, first_seq: int, floor: int, last_seq: int, now: float
    ) -> tuple[int, int]:
        """``(first_seq, trimmed_below)`` now: the limits applied exactly, as a read sees them.

        ``trimmed_below``: every seq below it is trimmed (the window's start).
        """
        window = max(first_seq, last_seq - self.limits.max_messages + 1)
        if window > first_seq:  # the limit shrank since the last write (a restart)
            first_seq = self._first_after(cid, flags, first_seq, window, now)
        if self.limits.max_age is not None:
            fresh = self._first_fresh(
                cid, max(first_seq, floor), last_seq, now - self.limits.max_age
            )
            window = max(window, fresh)
            if fresh > first_seq:
                first_seq = self._first_after(cid, flags, first_seq, fresh, now)
        return first_seq, window

    def read(self, channel: str, after: int | None, limit: int) -> ReadResult:
        """``(rows, last_seq, first_seq, end)``, as :meth:`Storage.read` and :class:`Slice` say.

        Rows of a channel without flags are ``(seq, ts, body)``, read with
        version 1's statements; the others are :data:`Row`.
        """
        conn = self._conn()
        try:
            found = conn.execute(
                "SELECT id, last_seq, first_seq, flags FROM channels WHERE name = ?", (channel,)
            ).fetchone()
            if found is None:
                return [], 0, 1, 0
            cid, last_seq, first_seq, flags = found
            if not flags:
                return self._read_plain(cid, last_seq, first_seq, after, limit)
            floor, last_alert = conn.execute(
                "SELECT floor, last_alert FROM channels WHERE id = ?", (cid,)
            ).fetchone()
            now = time.time()
            first_seq = self._first_seq(cid, flags, first_seq, floor, last_seq, now)[0]
            if after is not None:
                rows: list[Row] = conn.execute(
                    "SELECT " + _COLUMNS + " FROM messages WHERE channel = ? AND seq >= ? AND "
                    + _VISIBLE + " ORDER BY seq LIMIT ?",
                    (cid, max(first_seq, after + 1), now, limit + 1),
                ).fetchall()
                if len(rows) > limit:  # one more is visible: the answer stops short
                    del rows[limit:]
                    return rows, last_seq, first_seq, rows[-1][0]
                return rows, last_seq, first_seq, last_seq
            rows = conn.execute(
                "SELECT " + _COLUMNS + " FROM messages WHERE channel = ? AND seq >= ? AND "
                + _CURRENT + " ORDER BY seq DESC LIMIT ?",
                (cid, first_seq, now, limit),
            ).fetchall()
            rows.reverse()
            if last_alert >= first_seq and len(rows) == limit and not any(r[4] for r in rows):
                alert = conn.execute(
                    "SELECT " + _COLUMNS + " FROM messages INDEXED BY messages_alerts"
                    " WHERE channel = ? AND alert = 1 AND seq >= ? AND seq < ? AND "
                    + _CURRENT + " ORDER BY seq DESC LIMIT 1",
                    (cid, first_seq, rows[0][0] if rows else last_seq + 1, now),
                ).fetchone()
                if alert is not None:
                    rows.insert(0, alert)
        except sqlite3.Error as error:
            raise StorageUnavailable(_describe(error)) from None
        return rows, last_seq, first_seq, last_seq

    def _read_plain(
        self, cid: int, last_seq: int, first_seq: int, after: int | None, limit: int
    ) -> ReadResult:
        """A read of a channel that only ever held plain messages: contiguous rows."""
        limits = self.limits
        first_seq = max(first_seq, last_seq - limits.max_messages + 1)
        if limits.max_age is not None:
            first_seq = self._first_fresh(cid, first_seq, last_seq, time.time() - limits.max_age)
        start = max(first_seq, last_seq - limit + 1) if after is None else max(
            first_seq, after + 1
        )
        rows: list[Any] = self._conn().execute(
            "SELECT seq, ts, body FROM messages WHERE channel = ? AND seq >= ?"
            " ORDER BY seq LIMIT ?",
            (cid, start, limit),
        ).fetchall()
        end = last_seq if len(rows) < limit or after is None else rows[-1][0]
        return rows, last_seq, first_seq, end

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
