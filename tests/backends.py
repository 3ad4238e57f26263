"""The storage backends every conformance test runs against.

A backend here is a recipe: ``make(limits)`` returns a new, unopened storage
with an empty store. ``Backend.run(scenario, limits)`` opens one inside a fresh
event loop, runs ``await scenario(storage)``, and closes it. New backends add
one entry to ``BACKENDS``; every test parametrised on ``backend`` (and every
HTTP test case decorated with ``@each_backend``, see tests/httpcase.py) then
covers them.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tornado_lp.storage import Limits, MemoryStorage, Storage
from tornado_lp.storage.sqlite import SqliteStorage

T = TypeVar("T")

#: One folder for every test's database files, removed when the test run ends.
SCRATCH = tempfile.mkdtemp(prefix="tornado_lp_tests_")
atexit.register(shutil.rmtree, SCRATCH, ignore_errors=True)


def scratch_db() -> str:
    """A fresh database path (no file yet) under :data:`SCRATCH`."""
    return os.path.join(tempfile.mkdtemp(dir=SCRATCH), "store.db")


S = TypeVar("S", bound=Storage)


def run_open(storage: S, scenario: Callable[[S], Awaitable[T]]) -> T:
    """In a fresh event loop: open ``storage``, ``await scenario(storage)``, close it."""

    async def main() -> T:
        await storage.open()
        try:
            return await scenario(storage)
        finally:
            await storage.close()

    return asyncio.run(main())


@dataclass
class Backend:
    name: str
    make: Callable[[Limits], Storage]

    def run(
        self,
        scenario: Callable[[Storage], Awaitable[T]],
        limits: Limits | None = None,
    ) -> T:
        return run_open(self.make(limits or Limits()), scenario)


def _redis(limits: Limits) -> Storage:
    """A RedisStorage on the session's redis-server, under a key prefix of its own."""
    from tornado_lp.storage.redis_store import RedisStorage

    from .redis_server import session_server

    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    return RedisStorage(session_server().url, limits, prefix=prefix, connect_timeout=5)


BACKENDS: dict[str, Backend] = {
    "memory": Backend("memory", lambda limits: MemoryStorage(limits)),
    # A real file per test (WAL, the worker thread, group commit), as in production.
    "sqlite": Backend("sqlite", lambda limits: SqliteStorage(scratch_db(), limits)),
    "redis": Backend("redis", _redis),
}


def backend_params() -> list[Any]:
    return list(BACKENDS.values())
