"""The storage backends every conformance test runs against.

A backend here is a recipe: ``make(limits)`` returns a new, unopened storage
with an empty store. ``Backend.run(scenario, limits)`` opens one inside a fresh
event loop, runs ``await scenario(storage)``, and closes it. New backends add
one entry to ``BACKENDS``; every test parametrised on ``backend`` then covers them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tornado_lp.storage import Limits, MemoryStorage, Storage

T = TypeVar("T")


@dataclass
class Backend:
    name: str
    make: Callable[[Limits], Storage]

    def run(
        self,
        scenario: Callable[[Storage], Awaitable[T]],
        limits: Limits | None = None,
    ) -> T:
        async def main() -> T:
            storage = self.make(limits or Limits())
            await storage.open()
            try:
                return await scenario(storage)
            finally:
                await storage.close()

        return asyncio.run(main())


BACKENDS: dict[str, Backend] = {
    "memory": Backend("memory", lambda limits: MemoryStorage(limits)),
}


def backend_params() -> list[Any]:
    return list(BACKENDS.values())
