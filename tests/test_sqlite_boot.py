"""SQLite after a power cut: a store that may have lost commits starts a new epoch.

Real server processes on a real file. ``kill -9`` is a process crash (the WAL
survives it); a power cut is the same crash plus a new boot, simulated by
editing the boot id the store recorded, with sqlite3, before the restart:
the code that reads it is the real one.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

import pytest

from tornado_lp.storage._sqlite_boot import boot_id

from .backends import scratch_db
from .serverproc import ServerProcess
from .test_redis_processes import call, publish

pytestmark = pytest.mark.skipif(not boot_id(), reason="needs Linux's kernel boot id")


def meta(path: str) -> dict[str, str]:
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT key, value FROM meta").fetchall())
    finally:
        conn.close()


def other_boot(path: str) -> None:
    """What a power cut leaves behind: the store was last opened under another boot."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute("UPDATE meta SET value = 'an-earlier-boot' WHERE key = 'boot_id'")
    finally:
        conn.close()


def poll(url: str, cursor: str) -> dict[str, Any]:
    status, answer = call(f"{url}channels/b/poll?timeout=0&limit=100&cursor={cursor}")
    assert status == 200, answer
    return dict(answer)


def test_synchronous_normal_kill_9_keeps_the_epoch_a_power_cut_rotates_it() -> None:
    path = os.path.abspath(scratch_db())
    storage = ["--storage", f"sqlite:///{path}?synchronous=normal"]
    with ServerProcess(*storage) as server:
        sent = [publish(server.url, "b", f"m{i}") for i in range(3)]
        assert meta(path)["clean"] == "0" and meta(path)["boot_id"] == boot_id()
        server.kill()
    with ServerProcess(*storage) as server:  # a process crash: the WAL kept everything
        assert poll(server.url, sent[0]["id"])["messages"] == sent[1:]
        later = publish(server.url, "b", "m3")
        assert later["id"].split("-")[0] == sent[0]["id"].split("-")[0]
        server.kill()
    other_boot(path)
    with ServerProcess(*storage) as server:  # the machine went down while the store was open
        answer = poll(server.url, later["id"])
        assert answer["reset"] and not answer["missed"]
        assert [m["body"] for m in answer["messages"]] == ["m0", "m1", "m2", "m3"]
        assert {m["id"].split("-")[0] for m in answer["messages"]} != {sent[0]["id"][:16]}
        assert "synchronous=normal and was not closed" in server.stderr()
        assert server.terminate() == 0
    assert meta(path)["clean"] == "1"
    other_boot(path)
    with ServerProcess(*storage) as server:  # a clean stop before the power cut: nothing lost
        assert not poll(server.url, answer["cursor"])["reset"]


def test_synchronous_full_never_rotates() -> None:
    path = os.path.abspath(scratch_db())
    storage = ["--storage", f"sqlite:///{path}"]
    with ServerProcess(*storage) as server:
        sent = [publish(server.url, "b", f"m{i}") for i in range(2)]
        server.kill()
    other_boot(path)
    with ServerProcess(*storage) as server:
        answer = poll(server.url, sent[0]["id"])
        assert answer["messages"] == sent[1:] and not answer["reset"]
        assert meta(path)["synchronous"] == "FULL"
