"""The optional message generator: a PeriodicCallback that publishes random text.

It publishes through :meth:`Hub.publish`, the same path as HTTP publishers.
"""

from __future__ import annotations

import asyncio
import logging

from tornado.ioloop import PeriodicCallback

from .hub import Hub
from .randomtext import random_text
from .storage import StorageError

__all__ = ["Generator"]

log = logging.getLogger("tornado_lp.generator")


class Generator:
    """Publish a random 6-character ``[A-Z0-9]`` message to ``channel`` every ``every`` seconds."""

    def __init__(self, hub: Hub, channel: str, every: float) -> None:
        if not every > 0:
            raise ValueError("the generator interval must be a positive number of seconds")
        self.hub = hub
        self.channel = channel
        self._callback = PeriodicCallback(self._tick, every * 1000)
        self._inflight: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._callback.start()

    def stop(self) -> None:
        self._callback.stop()

    @property
    def running(self) -> bool:
        return self._callback.is_running()

    def _tick(self) -> None:
        # One publish at a time: a slow store must not pile up generator tasks.
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.ensure_future(self._publish())

    async def _publish(self) -> None:
        try:
            await self.hub.publish(self.channel, random_text())
        except StorageError as error:
            log.warning("generator could not publish to %s: %s", self.channel, error)
