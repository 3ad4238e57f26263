"""What a scenario run is (:class:`Spec`) and what it measured (:class:`Result`).

Plain records, shared by the scenarios, the targets, the judge and the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Result", "Spec"]


@dataclass(frozen=True)
class Spec:
    """One scenario with its sizes; ``role`` names it for the target checks."""

    kind: str  # "fanout" | "burst" | "publish" | "hold" | "sse" | "sse-hold"
    label: str
    role: str
    pollers: int = 0  # for streams: open streams
    messages: int = 0
    rate: float = 0.0
    publishers: int = 1
    hold_s: float = 0.0
    #: channels per stream (sse only); publishes go round-robin over them
    channels: int = 1
    time_limit_s: float = 120.0

    @property
    def params(self) -> dict[str, Any]:
        return {
            "pollers": self.pollers,
            "messages": self.messages,
            "rate": self.rate,
            "publishers": self.publishers,
            "hold_s": self.hold_s,
            "channels": self.channels,
        }


@dataclass
class Result:
    target: str
    scenario: str
    kind: str
    role: str
    run: int
    params: dict[str, Any]
    expected: int = 0
    delivered: int = 0
    #: answers that carried messages (streams: reads that did); delivered / answers is the batching
    answers: int = 0
    #: acknowledged publishes
    published: int = 0
    lost: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    errors: int = 0
    lat_p50_ms: float | None = None
    lat_p90_ms: float | None = None
    lat_p99_ms: float | None = None
    lat_max_ms: float | None = None
    server_cpu_s: float | None = None
    cpu_us_per_delivery: float | None = None
    cpu_us_per_publish: float | None = None
    peak_rss_mib: float | None = None
    rss_per_held_kib: float | None = None
    idle_cpu_s: float | None = None
    wake_all_ms: float | None = None
    publish_rate: float | None = None
    publish_p50_ms: float | None = None
    publish_p99_ms: float | None = None
    client_cpu_s: float | None = None
    duration_s: float | None = None
    #: streams: comment lines (heartbeats) received in the measured window
    heartbeats: int | None = None
    #: streams: events without an ``id:`` (counted where the protocol requires one)
    events_without_id: int | None = None
    #: streams: streams the server closed before the scenario ended
    streams_closed: int | None = None
    #: 1-minute load average when the run started: other work on the machine skews CPU figures.
    loadavg: float | None = None
    notes: list[str] = field(default_factory=list)
