"""A SQLite store that may have lost commits in a power cut starts a new epoch.

With ``synchronous=normal`` a commit is not synced to disk: a process crash
(``kill -9``) loses nothing, because the WAL is in the operating system's
hands, but an OS crash or power cut can lose the newest commits, and the next
run would hand their seqs to other messages. So each run records, in the
``meta`` table:

* ``boot_id``: the kernel's boot id (``/proc/sys/kernel/random/boot_id``),
  which changes when the machine restarts;
* ``clean``: ``0`` while the store is open, ``1`` after a clean close;
* ``synchronous``: the mode the run used.

On open, a store whose last run used ``normal``, did not close cleanly, and
ran under another boot (the machine went down while it was open) gets a new
epoch: clients get ``reset`` instead of skipping what was lost. A store
whose last run used ``full`` never does (every acknowledged commit was
synced). Where there is no boot id (not Linux), an unclean ``normal`` run
always counts as a possible power cut. The mark is written with
``synchronous=FULL``, so it is on disk before any publish is acknowledged.
"""

from __future__ import annotations

import logging
import sqlite3

from ..protocol import new_epoch

__all__ = ["BOOT_ID", "boot_id", "closed_cleanly", "opened"]

log = logging.getLogger("tornado_lp.storage.sqlite")

BOOT_ID = "/proc/sys/kernel/random/boot_id"


def boot_id(path: str = BOOT_ID) -> str:
    """This boot's id, or '' where the kernel does not offer one."""
    try:
        with open(path, encoding="ascii") as file:
            return file.read().strip()
    except OSError:
        return ""


def opened(conn: sqlite3.Connection, synchronous: str, epoch: str) -> str:
    """Record this run in ``meta``; return the epoch, new if the last run may have lost commits.

    ``synchronous`` is this run's mode (``FULL`` or ``NORMAL``). Runs in its
    own transaction, synced to disk whatever the mode.
    """
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("BEGIN IMMEDIATE")
    try:
        last = dict(conn.execute(
            "SELECT key, value FROM meta WHERE key IN ('boot_id', 'clean', 'synchronous')"
        ).fetchall())
        now = boot_id()
        if (last.get("synchronous") == "NORMAL" and last.get("clean") == "0"
                and (not now or last.get("boot_id") != now)):
            previous, epoch = epoch, new_epoch()
            conn.execute("UPDATE meta SET value = ? WHERE key = 'epoch'", (epoch,))
            log.warning(
                "the SQLite store ran with synchronous=normal and was not closed when the "
                "machine went down: its newest commits may be lost, so it gets a new epoch "
                "(%s -> %s) and clients will get reset", previous, epoch,
            )
        conn.executemany(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)",
            [("boot_id", now), ("clean", "0"), ("synchronous", synchronous.upper())],
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.execute(f"PRAGMA synchronous = {synchronous}")
    return epoch


def closed_cleanly(conn: sqlite3.Connection) -> None:
    """Mark the run as closed cleanly (before the final checkpoint, which syncs it)."""
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('clean', '1')")
