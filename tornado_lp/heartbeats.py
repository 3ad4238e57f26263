"""One timer for the heartbeats of every open stream in an application.

A stream writes a comment every ``interval`` seconds so NAT entries stay open
and a peer that went away is noticed (its writes fail, or its unsent output
grows past the limit). One :class:`~tornado.ioloop.PeriodicCallback` serves
them all, and runs only while a stream is open: no CPU while nothing is.
"""

from __future__ import annotations

import time
from typing import Protocol

from tornado.ioloop import PeriodicCallback

__all__ = ["Beating", "Heartbeats"]


class Beating(Protocol):
    def beat(self, now: float) -> None:
        """Write one heartbeat carrying the server's time ``now`` (close the stream if it fails)."""


class Heartbeats:
    """The open streams, beaten every ``interval`` seconds."""

    def __init__(self, interval: float) -> None:
        if not interval > 0:
            raise ValueError("the heartbeat interval must be a positive number of seconds")
        self.interval = interval
        self._streams: dict[Beating, None] = {}
        self._timer: PeriodicCallback | None = None

    def __len__(self) -> int:
        return len(self._streams)

    def add(self, stream: Beating) -> None:
        self._streams[stream] = None
        if self._timer is None:
            self._timer = PeriodicCallback(self._beat, self.interval * 1000)
            self._timer.start()

    def discard(self, stream: Beating) -> None:
        self._streams.pop(stream, None)
        if not self._streams and self._timer is not None:
            self._timer.stop()
            self._timer = None

    def _beat(self) -> None:
        now = time.time()  # one time for the whole round, so streams share the encoding
        for stream in list(self._streams):
            stream.beat(now)
