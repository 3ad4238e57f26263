"""Reconnection delays: doubling from ``initial``, capped at ``maximum``, with jitter."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Backoff", "Retry"]


class Backoff:
    """Delays before the next attempt after consecutive failures.

    The n-th delay (n = 0, 1, ...) is ``min(initial * 2**n, maximum)`` scaled by a
    random factor in ``[1 - jitter, 1]``, so a fleet that lost its server at once
    does not come back in one wave, and no delay exceeds ``maximum``. A
    ``Retry-After`` longer than that delay wins. :meth:`reset` after a success.
    """

    def __init__(
        self,
        initial: float = 1.0,
        maximum: float = 30.0,
        jitter: float = 0.2,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if not 0 < initial <= maximum:
            raise ValueError("backoff needs 0 < initial <= maximum")
        if not 0 <= jitter < 1:
            raise ValueError("backoff jitter must be in [0, 1)")
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self._rng = rng
        self.failures = 0

    def next_delay(self, retry_after: float | None = None) -> float:
        """Count one more failure; the seconds to wait before the next attempt."""
        base = min(self.initial * 2.0 ** min(self.failures, 64), self.maximum)
        self.failures += 1
        delay = base * (1.0 - self.jitter * self._rng())
        return max(delay, retry_after) if retry_after is not None else delay

    def reset(self) -> None:
        """A success: the next failure waits ``initial`` again."""
        self.failures = 0


@dataclass(frozen=True)
class Retry:
    """One failed attempt, reported to ``on_retry`` before the client waits ``delay`` seconds.

    ``attempt`` counts the consecutive failures (1 for the first); ``error`` is why.
    """

    attempt: int
    delay: float
    error: Exception
    channels: tuple[str, ...]
