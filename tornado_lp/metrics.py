"""Prometheus metrics, one registry per application (no global state).

Uses ``prometheus-client`` (the ``metrics`` extra). Without it the app still
runs: the counters are no-ops and ``/metrics`` answers 404 saying what to install.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["OUTCOMES", "Metrics"]

OUTCOMES = ("messages", "timeout", "missed", "reset", "error")

try:
    import prometheus_client as _prom
except ImportError:  # pragma: no cover - exercised only without the extra
    _prom = None  # type: ignore[assignment]


class Metrics:
    """The server's counters; ``available`` is False when prometheus-client is missing."""

    def __init__(self, held_polls: Callable[[], int], displays_live: Callable[[], int]) -> None:
        self.available = _prom is not None
        if _prom is None:
            return
        self.registry = _prom.CollectorRegistry()
        r = self.registry
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
                              ["transport"], registry=r)
        self._streams = {kind: streams.labels(kind) for kind in ("sse", "ws")}
        self._streamed = _prom.Counter("tornado_lp_messages_streamed",
                                       "Messages delivered on streams (SSE, WebSocket)",
                                       registry=r)

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
        assert _prom is not None
        return _prom.generate_latest(self.registry), _prom.CONTENT_TYPE_LATEST

