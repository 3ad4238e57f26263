"""The fleet store (tornado_lp/storage/fleet.py, _redis_fleet.py): the same contract in memory
and on a real redis-server; the Redis store's TTLs end a process that died."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tornado_lp.storage import FleetStore, MemoryFleetStore, Sighting, StorageUnavailable
from tornado_lp.storage.fleet import display_state

from .redis_server import RedisServer, session_server


def _memory(**options: Any) -> tuple[FleetStore, Callable[[], Awaitable[None]]]:
    async def close() -> None:
        pass

    return MemoryFleetStore(**options), close


def _redis(**options: Any) -> tuple[FleetStore, Callable[[], Awaitable[None]]]:
    from tornado_lp.storage.redis_store import RedisStorage

    storage = RedisStorage(session_server().url, prefix=f"test:{uuid.uuid4().hex[:12]}:",
                           connect_timeout=5)
    ttls = {name: options.pop(name) for name in ("held_ttl", "readers_ttl") if name in options}
    store = storage.fleet_store(**options)
    for name, value in ttls.items():
        setattr(store, name, value)
    return store, storage.close


STORES = {"memory": _memory, "redis": _redis}
BOTH = pytest.mark.parametrize("kind", list(STORES))


def run(kind: str, scenario: Callable[[FleetStore], Awaitable[None]], **options: Any) -> None:
    async def main() -> None:
        store, close = STORES[kind](**options)
        try:
            await scenario(store)
        finally:
            await close()

    asyncio.run(main())


def seen(store: FleetStore, process: str, name: str, *, held: bool = False,
         channel: str = "lobby", hold: float = 25.0) -> None:
    store.note(process, Sighting(name, channel, "10.0.0.7", "Kiosk/1", hold, held))


async def rows(store: FleetStore) -> dict[str, dict[str, Any]]:
    await store.flush()
    now, listing = await store.displays()
    return {
        row["display"]: {**row, "state": display_state(
            row["held"], now - row["last_seen"], row["hold"], store.stale_after,
            store.gone_after)}
        for row in listing
    }


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        await asyncio.sleep(0.05)


@BOTH
def test_a_display_seen_by_two_processes_is_one_entry(kind: str) -> None:
    async def scenario(store: FleetStore) -> None:
        seen(store, "node-a:1", "lobby-1", held=True)
        first = (await rows(store))["lobby-1"]
        assert (first["held"], first["process"], first["state"]) == (True, "node-a:1", "live")
        assert (first["address"], first["user_agent"], first["channel"]) == (
            "10.0.0.7", "Kiosk/1", "lobby")
        seen(store, "node-b:2", "lobby-1", held=True, channel="lobby,alerts")
        seen(store, "node-a:1", "lobby-1", held=False)  # its old poll ends after the move
        listing = await rows(store)
        assert list(listing) == ["lobby-1"]
        entry = listing["lobby-1"]
        assert entry["held"] is True  # node b still holds it
        assert entry["last_poll"] >= first["last_poll"]
        seen(store, "node-b:2", "lobby-1", held=False)
        assert (await rows(store))["lobby-1"]["held"] is False
        assert await store.live_count() == 1

    run(kind, scenario)


@BOTH
def test_displays_are_bounded_least_recently_seen_first(kind: str) -> None:
    async def scenario(store: FleetStore) -> None:
        for name in ["a", "b", "c"]:
            seen(store, "p", name)
            await store.flush()
        seen(store, "p", "a")  # seen again: most recent
        await store.flush()
        seen(store, "p", "d")
        assert list(await rows(store)) == ["d", "a", "c"]  # "b" forgotten

    run(kind, scenario, max_displays=3)


@BOTH
def test_states_go_live_stale_gone(kind: str) -> None:
    async def scenario(store: FleetStore) -> None:
        seen(store, "p", "held", held=True)
        seen(store, "p", "left")
        assert {n: r["state"] for n, r in (await rows(store)).items()} == {
            "held": "live", "left": "live"}

        async def state(want: str) -> bool:
            return bool((await rows(store))["left"]["state"] == want)

        await until(lambda: state("stale"))
        assert (await rows(store))["held"]["state"] == "live"
        await until(lambda: state("gone"))
        assert await store.live_count() == 1

    if kind == "memory":
        clock = [1000.0]

        async def ticking(store: FleetStore) -> None:
            assert isinstance(store, MemoryFleetStore)
            seen(store, "p", "held", held=True)
            seen(store, "p", "left")
            clock[0] += 0.5
            assert (await rows(store))["left"]["state"] == "live"
            clock[0] += 1
            assert (await rows(store))["left"]["state"] == "stale"
            clock[0] += 2
            assert (await rows(store))["left"]["state"] == "gone"
            assert (await rows(store))["held"]["state"] == "live"
            assert store.count_live() == 1

        run(kind, ticking, stale_after=1.0, gone_after=3.0, clock=lambda: clock[0])
    else:
        run(kind, scenario, stale_after=0.3, gone_after=0.8, held_ttl=30.0)


@BOTH
def test_readers_count_every_process_but_the_asking_one(kind: str) -> None:
    async def scenario(store: FleetStore) -> None:
        await store.report_readers("p1", {"lobby": 3, "bar": 1})
        await store.report_readers("p2", {"lobby": 2})
        assert await store.readers("lobby") == 5
        assert await store.readers("lobby", exclude="p1") == 2
        assert await store.readers("bar", exclude="p2") == 1
        assert await store.readers("never") == 0
        await store.report_readers("p1", {"bar": 4})  # replaces p1's counts
        assert await store.readers("lobby") == 2
        await store.leave("p2")
        assert await store.readers("lobby") == 0 and await store.readers("bar") == 4

    run(kind, scenario)


def test_redis_a_dead_process_drops_out_by_itself() -> None:
    async def scenario(store: FleetStore) -> None:
        await store.report_readers("dead", {"lobby": 7})
        seen(store, "dead", "screen", held=True)
        listing = await rows(store)
        assert await store.readers("lobby") == 7 and listing["screen"]["held"] is True

        async def gone() -> bool:
            return await store.readers("lobby") == 0 and not (await rows(store))["screen"]["held"]

        await until(gone)  # nobody refreshed them: the TTLs ended them

    run("redis", scenario, held_ttl=0.5, readers_ttl=1)


def test_redis_fleet_store_down_is_storage_unavailable(tmp_path: Any) -> None:
    from tornado_lp.storage.redis_store import RedisStorage

    async def main(server: RedisServer) -> None:
        storage = RedisStorage(server.url, connect_timeout=2)
        await storage.open()
        store = storage.fleet_store()
        seen(store, "p", "screen", held=True)
        server.kill()
        with pytest.raises(StorageUnavailable):
            await store.flush()
        with pytest.raises(StorageUnavailable):
            await store.displays()
        with pytest.raises(StorageUnavailable):
            await store.readers("lobby")
        await asyncio.wait_for(storage.close(), 10)

    with RedisServer(tmp_path) as server:
        asyncio.run(asyncio.wait_for(main(server), 30))
