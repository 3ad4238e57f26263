"""The fleet view: which screens poll, from where, and whether they are live.

A ticker names itself with ``?display=NAME`` on its polls. The registry keeps
the last ``max_displays`` names seen (least recently seen forgotten first) and
forgets a display 24 hours after its last poll.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from typing import Any

__all__ = ["DisplayRegistry", "valid_display"]

FORGET_AFTER = 24 * 3600.0
GONE_AFTER = 600.0  # seconds without a poll before a display counts as gone
_NAME = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")


def valid_display(name: str) -> bool:
    """1-64 characters of ``[A-Za-z0-9_.:-]``."""
    return _NAME.fullmatch(name) is not None


class _Display:
    __slots__ = ("address", "channel", "held", "hold", "last_poll", "user_agent")

    def __init__(self) -> None:
        self.channel = ""
        self.address = ""
        self.user_agent = ""
        self.last_poll = 0.0
        self.hold = 0.0
        self.held = 0


class DisplayRegistry:
    """Bounded record of displays; ``poll_started``/``poll_ended`` bracket each poll."""

    def __init__(self, max_displays: int = 10_000) -> None:
        if max_displays < 1:
            raise ValueError("max_displays must be at least 1")
        self.max_displays = max_displays
        self._displays: OrderedDict[str, _Display] = OrderedDict()

    def __len__(self) -> int:
        return len(self._displays)

    def poll_started(
        self, name: str, channel: str, address: str, user_agent: str, hold: float
    ) -> None:
        display = self._displays.get(name)
        if display is None:
            display = self._displays[name] = _Display()
            while len(self._displays) > self.max_displays:
                self._displays.popitem(last=False)
        else:
            self._displays.move_to_end(name)
        display.channel = channel
        display.address = address
        display.user_agent = user_agent[:256]
        display.hold = hold
        display.last_poll = time.time()
        display.held += 1

    def poll_ended(self, name: str) -> None:
        display = self._displays.get(name)
        if display is not None:
            display.held = max(0, display.held - 1)
            display.last_poll = time.time()

    def _state(self, display: _Display, now: float) -> str:
        if display.held or now - display.last_poll <= 2 * max(display.hold, 1.0):
            return "live"
        if now - display.last_poll <= GONE_AFTER:
            return "stale"
        return "gone"

    def live_count(self) -> int:
        now = time.time()
        return sum(1 for d in self._displays.values() if self._state(d, now) == "live")

    def snapshot(self) -> list[dict[str, Any]]:
        """Every display seen in the last 24 h, most recently seen first."""
        now = time.time()
        for name in [n for n, d in self._displays.items() if now - d.last_poll > FORGET_AFTER]:
            del self._displays[name]
        return [
            {
                "display": name,
                "channel": d.channel,
                "address": d.address,
                "user_agent": d.user_agent,
                "last_poll": round(d.last_poll, 3),
                "seconds_since_poll": round(max(0.0, now - d.last_poll), 1),
                "held": d.held > 0,
                "state": self._state(d, now),
            }
            for name, d in reversed(self._displays.items())
        ]
