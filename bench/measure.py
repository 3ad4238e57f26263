"""What every scenario measures with: delivery tracking, publishers, the finishing sums.

:class:`Tracker` records what each poller or stream received (lost,
duplicated, reordered, latency); :class:`Publishers` send the numbered,
timestamped bodies; ``finish_*`` turn both into a :class:`~bench.records.Result`.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence

from .client import Connection, ProtocolError
from .records import Result, Spec
from .targets import Target

__all__ = [
    "SETTLE_S",
    "Publishers",
    "Tracker",
    "drain_s",
    "finish_latency",
    "finish_publish",
    "percentile",
]

SETTLE_S = 0.25  # after the last delivery (and its re-polls), before CPU is read


def percentile(sorted_values: list[int], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..1)."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, int(q * len(sorted_values) + 0.5) - 1))
    return float(sorted_values[rank])


class Tracker:
    """Counts what every poller received: uniques, duplicates, order, latency."""

    def __init__(self, pollers: int) -> None:
        self._seen: list[set[int]] = [set() for _ in range(pollers)]
        self._last: list[dict[int, int]] = [{} for _ in range(pollers)]
        self.publisher_of: dict[int, int] = {}
        self.latencies_ns: list[int] = []
        self.delivered = 0
        self.answers = 0  # answers that carried at least one message
        self.duplicates = 0
        self.out_of_order = 0
        self.foreign = 0
        self.last_receipt_ns = 0
        self.expected: int | None = None
        self.done = asyncio.Event()

    def record(self, idx: int, bodies: list[str], received_ns: int) -> None:
        seen = self._seen[idx]
        last = self._last[idx]
        self.answers += 1
        for body in bodies:
            seq_text, _, ns_text = body.partition(":")
            try:
                seq, sent_ns = int(seq_text), int(ns_text)
            except ValueError:
                self.foreign += 1
                continue
            if seq in seen:
                self.duplicates += 1
                continue
            seen.add(seq)
            self.delivered += 1
            self.latencies_ns.append(received_ns - sent_ns)
            pub = self.publisher_of.get(seq, 0)
            # Per publisher, sends are sequential, so the server's order must keep them.
            if last.get(pub, 0) > seq:
                self.out_of_order += 1
            else:
                last[pub] = seq
        self.last_receipt_ns = received_ns
        self.check_done()

    def check_done(self) -> None:
        if self.expected is not None and self.delivered >= self.expected:
            self.done.set()


class Publishers:
    """P publisher connections drawing sequence numbers from one counter;
    message ``seq`` goes to ``channels[(seq - 1) % len(channels)]``."""

    def __init__(
        self,
        target: Target,
        conns: list[Connection],
        channels: str | Sequence[str],
        tracker: Tracker,
    ) -> None:
        self.target = target
        self.conns = conns
        self.channels = [channels] if isinstance(channels, str) else list(channels)
        self.tracker = tracker
        self.ok = 0
        self.failed = 0
        self.latencies_ns: list[int] = []
        self.started_ns = 0
        self.finished_ns = 0
        self.failures: list[str] = []

    async def run(self, total: int, rate: float, deadline: float) -> None:
        counter = itertools.count(1)
        self.started_ns = time.monotonic_ns()
        start = time.monotonic()

        async def one(pub_id: int, conn: Connection) -> None:
            for seq in counter:
                if seq > total or time.monotonic() > deadline:
                    return
                if rate:
                    delay = start + (seq - 1) / rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                self.tracker.publisher_of[seq] = pub_id
                channel = self.channels[(seq - 1) % len(self.channels)]
                sent_ns = time.monotonic_ns()
                try:
                    resp = await conn.request(
                        self.target.publish_request(channel, f"{seq}:{sent_ns}")
                    )
                except (ConnectionError, ProtocolError, OSError) as exc:
                    self.failed += 1
                    self.failures.append(f"publisher {pub_id}: {type(exc).__name__}: {exc}")
                    return
                self.latencies_ns.append(resp.received_ns - sent_ns)
                if 200 <= resp.status < 300:
                    self.ok += 1
                else:
                    self.failed += 1
                    if len(self.failures) < 5:
                        self.failures.append(
                            f"publish {seq}: HTTP {resp.status} {resp.body[:120]!r}"
                        )

        await asyncio.gather(*(one(i, c) for i, c in enumerate(self.conns)))
        self.finished_ns = time.monotonic_ns()


def drain_s(spec: Spec) -> float:
    """How long to wait for deliveries after the last publish: 10 s plus 1 ms per
    expected delivery, about 4x what the slowest target (the floor) needs alone;
    other work on the machine can take more than half of its CPU."""
    return 10 + spec.pollers * max(spec.messages, 1) * 1e-3


def finish_latency(result: Result, tracker: Tracker) -> None:
    lat = sorted(tracker.latencies_ns)
    if lat:
        result.lat_p50_ms = percentile(lat, 0.50) / 1e6
        result.lat_p90_ms = percentile(lat, 0.90) / 1e6
        result.lat_p99_ms = percentile(lat, 0.99) / 1e6
        result.lat_max_ms = lat[-1] / 1e6
    result.delivered = tracker.delivered
    result.answers = tracker.answers
    result.duplicates = tracker.duplicates
    result.out_of_order = tracker.out_of_order
    result.lost = max(0, result.expected - tracker.delivered)
    if tracker.foreign:
        result.notes.append(f"{tracker.foreign} bodies not in <seq>:<ns> form")


def finish_publish(result: Result, pubs: Publishers) -> None:
    result.published = pubs.ok
    elapsed = (pubs.finished_ns - pubs.started_ns) / 1e9
    if pubs.ok and elapsed > 0:
        result.publish_rate = pubs.ok / elapsed
    lat = sorted(pubs.latencies_ns)
    if lat:
        result.publish_p50_ms = percentile(lat, 0.50) / 1e6
        result.publish_p99_ms = percentile(lat, 0.99) / 1e6
    result.errors += pubs.failed
    result.notes.extend(pubs.failures[:3])
