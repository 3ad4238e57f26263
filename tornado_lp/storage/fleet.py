"""The fleet store: which screens read, from where, and whether they are live.

A ticker names itself with ``?display=NAME``. Every process that serves it
tells the fleet store what it saw (:meth:`FleetStore.note`, a *sighting*:
its channels, address, user agent, the poll's hold, and whether this
process holds a reader for it now); :meth:`FleetStore.flush` sends what was
noted. The store also keeps how many readers each process holds per
channel (:meth:`FleetStore.report_readers`), so ``waiters`` can count the
whole fleet.

* :class:`MemoryFleetStore`: one process (memory and SQLite storage), as before;
  a note is applied at once.
* ``RedisFleetStore`` (:mod:`._redis_fleet`): every process and machine on one
  Redis; notes are sent in batches, and each process's reader counts live
  under a key with a TTL, so a process that died drops out by itself.

A display is one entry, keyed by its name, whichever process or machine
serves it. Its state (:func:`display_state`): ``live`` while a reader for it
is held or it was seen within ``stale_after`` seconds (0: twice its poll's
hold, at least 2 s); ``stale`` until ``gone_after`` seconds; then ``gone``.
Displays not seen for 24 hours are forgotten, and at most ``max_displays``
are kept (least recently seen forgotten first).
"""

from __future__ import annotations

import abc
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FORGET_AFTER",
    "GONE_AFTER",
    "FleetStore",
    "MemoryFleetStore",
    "Sighting",
    "display_state",
    "live_window",
]

FORGET_AFTER = 24 * 3600.0
GONE_AFTER = 600.0  # default --display-gone-after


@dataclass
class Sighting:
    """One display as one process sees it now.

    ``held``: this process holds a reader for it (a poll or a stream).
    ``poll``: a poll or stream started or ended now (``last_poll`` moves); a
    sighting without it only says the display is still held (a refresh).
    """

    name: str
    channel: str
    address: str
    user_agent: str
    hold: float
    held: bool
    poll: bool = True


def live_window(hold: float, stale_after: float) -> float:
    """Seconds after it was last seen that a display not held stays live."""
    return stale_after if stale_after > 0 else 2 * max(hold, 1.0)


def display_state(
    held: bool, since_seen: float, hold: float, stale_after: float, gone_after: float
) -> str:
    """``live``, ``stale`` or ``gone`` (see the module docstring)."""
    if held or since_seen <= live_window(hold, stale_after):
        return "live"
    if since_seen <= gone_after:
        return "stale"
    return "gone"


def check_thresholds(stale_after: float, gone_after: float) -> None:
    if not stale_after >= 0:
        raise ValueError("display_stale_after must be seconds >= 0 (0: twice the poll's hold)")
    if not gone_after > 0:
        raise ValueError("display_gone_after must be a positive number of seconds")
    if stale_after and gone_after <= stale_after:
        raise ValueError(
            f"display_gone_after ({gone_after:g} s) must be longer than "
            f"display_stale_after ({stale_after:g} s)"
        )


class FleetStore(abc.ABC):
    """Where every process records the displays it serves and the readers it holds."""

    #: True when several processes share it (each then reports its readers).
    shared: bool = False

    def __init__(
        self, max_displays: int = 10_000, *, stale_after: float = 0.0,
        gone_after: float = GONE_AFTER,
    ) -> None:
        if max_displays < 1:
            raise ValueError("max_displays must be at least 1")
        check_thresholds(stale_after, gone_after)
        self.max_displays = max_displays
        self.stale_after = stale_after
        self.gone_after = gone_after

    @abc.abstractmethod
    def note(self, process: str, sighting: Sighting) -> None:
        """Record ``sighting`` by ``process`` (at once, or with the next :meth:`flush`)."""

    @abc.abstractmethod
    async def flush(self) -> None:
        """Send what was noted. Raises StorageUnavailable (the notes are kept)."""

    @abc.abstractmethod
    async def displays(self) -> tuple[float, list[dict[str, Any]]]:
        """``(now, rows)``: every display remembered, most recently seen first.

        ``now`` is the store's clock. Each row has ``display``, ``channel``,
        ``address``, ``user_agent``, ``last_poll``, ``last_seen``, ``hold``,
        ``held`` (a reader is held for it now, in any process) and ``process``
        (the one that saw it last); the state is :func:`display_state`'s.
        """

    @abc.abstractmethod
    async def live_count(self) -> int:
        """How many displays are live now."""

    @abc.abstractmethod
    async def report_readers(self, process: str, counts: Mapping[str, int]) -> None:
        """Replace ``process``'s count of held readers per channel."""

    @abc.abstractmethod
    async def readers(self, channel: str, exclude: str = "") -> int:
        """Readers of ``channel`` held by every live process but ``exclude``."""

    async def leave(self, process: str) -> None:  # noqa: B027 - optional hook
        """``process`` stops: its reader counts go at once (not after their TTL)."""


class _Entry:
    __slots__ = ("address", "channel", "held", "hold", "last_poll", "last_seen", "process",
                 "user_agent")

    def __init__(self) -> None:
        self.channel = ""
        self.address = ""
        self.user_agent = ""
        self.hold = 0.0
        self.last_poll = 0.0
        self.last_seen = 0.0
        self.process = ""
        self.held: set[str] = set()


class MemoryFleetStore(FleetStore):
    """The fleet of one process; notes apply at once. ``clock``: for tests."""

    def __init__(
        self, max_displays: int = 10_000, *, stale_after: float = 0.0,
        gone_after: float = GONE_AFTER, clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(max_displays, stale_after=stale_after, gone_after=gone_after)
        self.clock = clock
        self._displays: OrderedDict[str, _Entry] = OrderedDict()
        self._readers: dict[str, dict[str, int]] = {}

    def __len__(self) -> int:
        return len(self._displays)

    def note(self, process: str, sighting: Sighting) -> None:
        now = self.clock()
        entry = self._displays.get(sighting.name)
        if entry is None:
            entry = self._displays[sighting.name] = _Entry()
            while len(self._displays) > self.max_displays:
                self._displays.popitem(last=False)
        else:
            self._displays.move_to_end(sighting.name)
        entry.channel = sighting.channel
        entry.address = sighting.address
        entry.user_agent = sighting.user_agent[:256]
        entry.hold = sighting.hold
        entry.process = process
        entry.last_seen = now
        if sighting.poll:
            entry.last_poll = now
        if sighting.held:
            entry.held.add(process)
        else:
            entry.held.discard(process)

    async def flush(self) -> None:
        pass

    def _forget(self, now: float) -> None:
        for name in [n for n, e in self._displays.items() if now - e.last_seen > FORGET_AFTER]:
            del self._displays[name]

    def snapshot(self) -> tuple[float, list[dict[str, Any]]]:
        """:meth:`displays`, without awaiting."""
        now = self.clock()
        self._forget(now)
        return now, [
            {
                "display": name,
                "channel": e.channel,
                "address": e.address,
                "user_agent": e.user_agent,
                "last_poll": e.last_poll,
                "last_seen": e.last_seen,
                "hold": e.hold,
                "held": bool(e.held),
                "process": e.process,
            }
            for name, e in reversed(self._displays.items())
        ]

    async def displays(self) -> tuple[float, list[dict[str, Any]]]:
        return self.snapshot()

    def count_live(self) -> int:
        """:meth:`live_count`, without awaiting."""
        now = self.clock()
        return sum(
            1 for e in self._displays.values()
            if display_state(bool(e.held), now - e.last_seen, e.hold, self.stale_after,
                             self.gone_after) == "live"
        )

    async def live_count(self) -> int:
        return self.count_live()

    async def report_readers(self, process: str, counts: Mapping[str, int]) -> None:
        self._readers[process] = dict(counts)

    async def readers(self, channel: str, exclude: str = "") -> int:
        return sum(counts.get(channel, 0) for process, counts in self._readers.items()
                   if process != exclude)

    async def leave(self, process: str) -> None:
        self._readers.pop(process, None)
