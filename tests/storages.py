"""Storage options for tests that start real server processes, one per backend.

``server_storage(name)`` gives the command-line options for a fresh, empty
store: nothing for memory; a new database file for SQLite; the session's
redis-server (tests/redis_server.py, which skips, or fails under CI=true,
without the binary) under a new key prefix.
"""

from __future__ import annotations

import uuid

SERVER_STORAGES = ["memory", "sqlite", "redis"]


def server_storage(name: str) -> list[str]:
    if name == "memory":
        return []
    if name == "sqlite":
        from .backends import scratch_db

        return ["--storage", f"sqlite:///{scratch_db()}"]  # an absolute path: sqlite:////...
    if name == "redis":
        from .redis_server import session_server

        prefix = f"test:{uuid.uuid4().hex[:12]}:"
        return ["--storage", session_server().url, "--redis-prefix", prefix]
    raise ValueError(f"unknown storage {name!r}")
