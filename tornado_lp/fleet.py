"""The fleet view: this process's displays and readers, and the whole fleet's.

:class:`Fleet` ties the hub's reader counts and the displays this process
serves to the fleet store (:mod:`tornado_lp.storage.fleet`). Every transport
(``/channels/{ch}/poll``, ``/poll``, ``/events``, ``/ws``) registers a named
display here, with :meth:`Fleet.display_opened` when its reader starts and
:meth:`Fleet.display_closed` when it ends; ``/displays`` and ``waiters`` in
``GET /channels/{ch}`` ask :meth:`Fleet.displays` and :meth:`Fleet.waiters`.

With a shared store (Redis), a ticker (:meth:`Fleet.start`, every
``interval`` seconds) sends the displays noted since the last tick, says the
displays still held are still held, reports this process's held readers per
channel, and keeps the count of live displays for ``/metrics``. With
``--processes N`` it also samples this process's gauges into the shared
metrics files (:mod:`tornado_lp.metrics`). Nothing here runs per request
beyond a note in a dict.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from .hub import Hub
from .metrics import Metrics
from .storage import FleetStore, MemoryFleetStore, Sighting, StorageError
from .storage.fleet import display_state

__all__ = ["FLEET_INTERVAL", "Fleet"]

log = logging.getLogger("tornado_lp.fleet")

FLEET_INTERVAL = 1.0  # seconds between the ticker's rounds
REPORT_EVERY = 2.0  # seconds: reader counts are re-sent at least this often (their TTL is 5 s)


class Fleet:
    """One process's side of the fleet view; ``process`` names it in the store."""

    def __init__(
        self, hub: Hub, store: FleetStore, metrics: Metrics, *,
        process: str | None = None, interval: float = FLEET_INTERVAL,
    ) -> None:
        self.hub = hub
        self.store = store
        self.metrics = metrics
        self.process = process or f"{socket.gethostname()}:{os.getpid()}"
        self.interval = interval
        self._held: dict[str, tuple[int, Sighting]] = {}
        self._task: asyncio.Task[None] | None = None
        self._live = 0
        self._reported: dict[str, int] | None = None
        self._reported_at = 0.0

    # -- what the transports call ------------------------------------------

    def display_opened(
        self, name: str, channels: Sequence[str], address: str, user_agent: str, hold: float
    ) -> None:
        """A reader named ``name`` started here (a poll held up to ``hold`` s, or a stream: 0)."""
        entry = self._held.get(name)
        count = entry[0] + 1 if entry is not None else 1
        sighting = Sighting(name, ",".join(channels), address, user_agent[:256], hold, True)
        self._held[name] = (count, sighting)
        self.store.note(self.process, sighting)

    def display_closed(self, name: str) -> None:
        """The reader named ``name`` ended (answered, closed, or its client left)."""
        entry = self._held.pop(name, None)
        if entry is None:
            return
        count, sighting = entry
        if count > 1:
            self._held[name] = (count - 1, sighting)
        self.store.note(self.process, replace(sighting, held=count > 1, poll=True))

    # -- what the operators' views ask ---------------------------------------

    async def displays(self) -> tuple[float, list[dict[str, Any]]]:
        """``(now, rows)`` for ``/displays``: every display of the fleet with its state.

        Raises :class:`~tornado_lp.storage.StorageUnavailable` when a shared store is down.
        """
        store = self.store
        await store.flush()
        now, rows = await store.displays()
        out = []
        for row in rows:
            since_seen = max(0.0, now - row["last_seen"])
            out.append({
                "display": row["display"],
                "channel": row["channel"],
                "address": row["address"],
                "user_agent": row["user_agent"],
                "last_poll": round(row["last_poll"], 3),
                "seconds_since_poll": round(max(0.0, now - row["last_poll"]), 1),
                "last_seen": round(row["last_seen"], 3),
                "held": row["held"],
                "state": display_state(row["held"], since_seen, row["hold"],
                                       store.stale_after, store.gone_after),
                "process": row["process"],
            })
        return now, out

    async def waiters(self, channel: str) -> int:
        """Held readers of ``channel`` in the fleet (this process's, counted now)."""
        local = self.hub.waiters(channel)
        if not self.store.shared:
            return local
        return local + await self.store.readers(channel, exclude=self.process)

    def live_count(self) -> int:
        """Live displays of the fleet (a shared store's: as of the last tick)."""
        if isinstance(self.store, MemoryFleetStore):
            return self.store.count_live()
        return self._live

    # -- the ticker -----------------------------------------------------------

    def start(self) -> None:
        """Start the ticker (on the running loop) if there is anything for it to do."""
        if self._task is None and (self.store.shared or self.metrics.multiprocess):
            self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        """Stop the ticker; send the last notes and take this process's readers out."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        if self.store.shared:
            try:
                await self.store.flush()
                await self.store.leave(self.process)
            except StorageError:
                pass  # their TTLs end them

    async def _run(self) -> None:
        failed = False
        while not self.hub.closing:
            await asyncio.sleep(self.interval)
            try:
                await self.tick()
            except StorageError as error:
                if not failed:
                    log.debug("the fleet store could not be updated: %s", error)
                failed = True
            except Exception:
                log.exception("the fleet ticker failed")
            else:
                failed = False

    async def tick(self) -> None:
        """One round: refresh held displays, report readers, count live displays, sample."""
        store, hub = self.store, self.hub
        if store.shared:
            for _count, sighting in self._held.values():
                store.note(self.process, replace(sighting, poll=False))
            await store.flush()
            counts = {channel: n for channel in hub.channels() if (n := hub.waiters(channel))}
            now = asyncio.get_running_loop().time()
            if counts != self._reported or now - self._reported_at >= REPORT_EVERY:
                await store.report_readers(self.process, counts)
                self._reported, self._reported_at = counts, now
            self._live = await store.live_count()
        if self.metrics.multiprocess:
            self.metrics.sample(hub.total_waiters(), self.live_count())
