"""Prometheus metrics, one registry per application (no global state).

Uses ``prometheus-client`` (the ``metrics`` extra). Without it the app still
runs: the counters are no-ops and ``/metrics`` answers 404 saying what to install.

One process: the gauges are read when ``/metrics`` is scraped (nothing is
done for them per request). ``--processes N`` (``multiprocess_dir``):
prometheus-client's multiprocess mode. Every worker writes its counters to
files in a directory the parent made before forking (``PROMETHEUS_MULTIPROC_DIR``),
and ``/metrics`` on any worker reports the sum of all of them. Its held polls
and open streams are ``livesum`` gauges (the parent deletes a dead worker's
files with ``mark_process_dead``); held polls and the fleet's live displays
are sampled by the fleet ticker (:mod:`tornado_lp.fleet`) every second.
``tornado_lp_displays_live`` is the fleet's (every process reports the same
count: ``livemax``).

prometheus-client picks its multiprocess mode when it is first imported, so it
is imported here only when the first :class:`Metrics` is made.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from types import ModuleType

__all__ = ["MULTIPROC_ENV", "OUTCOMES", "Metrics", "prometheus", "prometheus_available"]

OUTCOMES = ("messages", "timeout", "missed", "reset", "error")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prometheus_available() -> bool:
    """Whether prometheus-client is installed (without importing it)."""
    return importlib.util.find_spec("prometheus_client") is not None


def prometheus() -> ModuleType | None:
    """prometheus_client, imported on first use (``None`` without the extra)."""
    try:
        import prometheus_client
    except ImportError:  # pragma: no cover - exercised only without the extra
        return None
    return prometheus_client


class Metrics:
    """The server's counters; ``available`` is False when prometheus-client is missing."""

    def __init__(
        self, held_polls: Callable[[], int], displays_live: Callable[[], int],
        multiprocess_dir: str | None = None,
    ) -> None:
        _prom = prometheus()
        self.available = _prom is not None
        self.multiprocess = bool(multiprocess_dir) and _prom is not None
        if _prom is None:
            return
        self._prom = _prom
        self.registry = _prom.CollectorRegistry()
        r = self.registry
        if self.multiprocess:
            assert multiprocess_dir is not None
            value_class = _prom.values.ValueClass
            if not getattr(value_class, "_multiprocess", False) or os.environ.get(
                    MULTIPROC_ENV) != multiprocess_dir:
                raise RuntimeError(
                    f"prometheus_client was imported before {MULTIPROC_ENV} was set to "
                    f"{multiprocess_dir!r}: its multiprocess mode is off"
                )
            from prometheus_client import multiprocess

            self._exposed = _prom.CollectorRegistry()
            multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
                self._exposed, path=multiprocess_dir)
            self._held = _prom.Gauge("tornado_lp_held_polls", "Polls currently held",
                                     registry=r, multiprocess_mode="livesum")
            self._live = _prom.Gauge("tornado_lp_displays_live", "Displays currently live",
                                     registry=r, multiprocess_mode="livemax")
        else:
            self._exposed = r
            held = _prom.Gauge("tornado_lp_held_polls", "Polls currently held", registry=r)
            held.set_function(lambda: float(held_polls()))
            live = _prom.Gauge("tornado_lp_displays_live", "Displays currently live", registry=r)
            live.set_function(lambda: float(displays_live()))
        polls = _prom.Counter("tornado_lp_polls", "Polls answered, by outcome",
                              ["outcome"], registry=r)
        self._polls = {outcome: polls.labels(outcome) for outcome in OUTCOMES}
        self._published = _prom.Counter("tornado_lp_messages_published",
                                        "Messages published", registry=r)
        self._delivered = _prom.Counter("tornado_lp_messages_delivered",
                                        "Messages delivered in poll answers", registry=r)
        self._publish_seconds = _prom.Histogram(
            "tornado_lp_publish_seconds", "Time to store and announce a publish", registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self._storage_errors = _prom.Counter("tornado_lp_storage_errors",
                                             "Storage operations that failed", registry=r)
        streams = _prom.Gauge("tornado_lp_streams", "Streams open now, by transport",
                              ["transport"], registry=r, multiprocess_mode="livesum")
        self._streams = {kind: streams.labels(kind) for kind in ("sse", "ws")}
        self._streamed = _prom.Counter("tornado_lp_messages_streamed",
                                       "Messages delivered on streams (SSE, WebSocket)",
                                       registry=r)

    def sample(self, held_polls: int, displays_live: int) -> None:
        """Multiprocess mode: write this process's gauges (the fleet ticker calls it)."""
        if self.multiprocess:
            self._held.set(held_polls)
            self._live.set(displays_live)

    def poll_answered(self, outcome: str, delivered: int) -> None:
        if self.available:
            self._polls[outcome].inc()
            if delivered:
                self._delivered.inc(delivered)

    def stream_opened(self, transport: str) -> None:
        if self.available:
            self._streams[transport].inc()

    def stream_closed(self, transport: str) -> None:
        if self.available:
            self._streams[transport].dec()

    def streamed(self, delivered: int) -> None:
        if self.available and delivered:
            self._streamed.inc(delivered)

    def published(self, seconds: float) -> None:
        if self.available:
            self._published.inc()
            self._publish_seconds.observe(seconds)

    def storage_error(self) -> None:
        if self.available:
            self._storage_errors.inc()

    def exposition(self) -> tuple[bytes, str]:
        """The text format and its content type."""
        prom = self._prom
        return prom.generate_latest(self._exposed), prom.CONTENT_TYPE_LATEST

