"""The stream scenarios (issue 11): N Server-Sent-Events streams instead of N long-polls.

* ``sse`` (roles ``sse-fanout``, ``sse-16ch``): N streams, each on the same C
  channels (1 or 16), while one publisher sends M messages at R/s, message
  ``seq`` to channel ``(seq - 1) % C``. Server CPU from the first publish until
  every stream has every message, per delivery.
* ``sse-hold``: N idle streams for a while (RSS per open stream, idle CPU,
  heartbeats), then one publish (wake-all: until the last stream has it).

Bodies are ``<seq>:<monotonic_ns>`` as in the long-poll scenarios, and the same
``Tracker`` counts deliveries, duplicates and order. A stream is open once its
200 head has arrived (``sse.open_streams``); where the server can count its
streams, the scenario also waits until it counts all of them.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from .client import Connection
from .measure import SETTLE_S, Publishers, Tracker, drain_s, finish_latency, finish_publish
from .procstat import client_cpu_seconds
from .records import Result, Spec
from .sse import SSEEvent, SSEStream, StreamRefused, open_streams
from .targets import Target

__all__ = ["StreamSink", "channels_for", "run_stream"]

#: tornado_lp's heartbeat event (docs/PROTOCOL.md): the server's clock, no position, no id.
HEARTBEAT_EVENT = "heartbeat"


def channels_for(base: str, count: int) -> list[str]:
    """The channel names of a scenario run: ``base`` alone, or ``base-c0`` ... ``base-c{n-1}``."""
    return [base] if count == 1 else [f"{base}-c{i}" for i in range(count)]


class StreamSink:
    """Turns each stream's events into ``Tracker`` records, counting the rest."""

    def __init__(self, target: Target, tracker: Tracker) -> None:
        self.target = target
        self.tracker = tracker
        self.without_id = 0
        self.other: Counter[str] = Counter()  # event types that carry no message
        self.unreadable = 0

    def __call__(self, stream: SSEStream, events: list[SSEEvent], received_ns: int) -> None:
        bodies: list[str] = []
        for event in events:
            # A heartbeat event carries the server's clock, not a position: the
            # protocol gives it no id (docs/PROTOCOL.md); every other event has one.
            if (not event.id and self.target.stream_ids_required
                    and event.type != HEARTBEAT_EVENT):
                self.without_id += 1
            try:
                body = self.target.stream_body(event)
            except (ValueError, KeyError, TypeError):
                self.unreadable += 1
                continue
            if body is None:
                self.other[event.type] += 1
            else:
                bodies.append(body)
        if bodies:
            self.tracker.record(stream.index, bodies, received_ns)


async def _wait_counted(
    target: Target, control: Connection, channels: list[str], n: int, result: Result
) -> None:
    """Wait until the server counts ``n`` streams on the first and last channel, if it can."""
    deadline = time.monotonic() + 30 + n / 200
    for channel in {channels[0], channels[-1]}:
        count = await target.stream_count(control, channel)
        while count is not None and count < n and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            count = await target.stream_count(control, channel)
        if count is not None and count < n:
            result.notes.append(f"the server counts only {count} of {n} streams on {channel}")


def _comments(streams: list[SSEStream]) -> int:
    return sum(s.parser.comments for s in streams)


def _finish_streams(result: Result, sink: StreamSink, streams: list[SSEStream]) -> None:
    closed = sum(1 for s in streams if s.is_closed)
    result.streams_closed = closed
    result.errors += closed + sink.unreadable
    if sink.target.stream_ids_required:
        result.events_without_id = sink.without_id
    if closed:
        result.notes.append(f"{closed} streams closed by the server before the end")
    if sink.unreadable:
        result.notes.append(f"{sink.unreadable} message events not readable")
    for kind, count in sorted(sink.other.items()):
        result.notes.append(f"{count} '{kind}' events")


async def _fanout(
    target: Target, spec: Spec, result: Result, channels: list[str], tracker: Tracker,
    streams: list[SSEStream],
) -> None:  # fmt: skip
    tree = target.tree
    pub_conns = await target.connect(spec.publishers)
    try:
        pubs = Publishers(target, pub_conns, channels, tracker)
        cpu0, client0, t0 = tree.cpu_seconds(), client_cpu_seconds(), time.monotonic()
        comments0 = _comments(streams)
        await pubs.run(spec.messages, spec.rate, t0 + spec.time_limit_s)
        tracker.expected = spec.pollers * pubs.ok
        tracker.check_done()
        drain = drain_s(spec)
        try:
            await asyncio.wait_for(tracker.done.wait(), drain)
        except TimeoutError:
            result.notes.append(f"not all delivered {drain:.0f} s after the last publish")
        await asyncio.sleep(SETTLE_S)
        cpu1, client1, t1 = tree.cpu_seconds(), client_cpu_seconds(), time.monotonic()
        result.expected = tracker.expected
        result.server_cpu_s = cpu1 - cpu0
        result.client_cpu_s = client1 - client0
        result.duration_s = t1 - t0
        result.heartbeats = _comments(streams) - comments0
        result.peak_rss_mib = tree.peak_rss_kib() / 1024
        finish_latency(result, tracker)
        finish_publish(result, pubs)
        if tracker.delivered:
            result.cpu_us_per_delivery = result.server_cpu_s / tracker.delivered * 1e6
        if pubs.ok:
            result.cpu_us_per_publish = result.server_cpu_s / pubs.ok * 1e6
    finally:
        for conn in pub_conns:
            conn.close()


async def _hold(
    target: Target, spec: Spec, result: Result, channels: list[str], tracker: Tracker,
    streams: list[SSEStream], rss_before: int,
) -> None:  # fmt: skip
    tree = target.tree
    await asyncio.sleep(0.5)
    result.rss_per_held_kib = (tree.rss_kib() - rss_before) / spec.pollers
    pub_conns = await target.connect(1)
    try:
        cpu0, client0, t0 = tree.cpu_seconds(), client_cpu_seconds(), time.monotonic()
        comments0 = _comments(streams)
        await asyncio.sleep(spec.hold_s)
        cpu_idle_end = tree.cpu_seconds()
        result.idle_cpu_s = cpu_idle_end - cpu0
        result.heartbeats = _comments(streams) - comments0
        pubs = Publishers(target, pub_conns, channels, tracker)
        await pubs.run(1, 0.0, time.monotonic() + 30)
        tracker.expected = spec.pollers * pubs.ok
        tracker.check_done()
        try:
            await asyncio.wait_for(tracker.done.wait(), 30)
        except TimeoutError:
            result.notes.append("not all woken within 30 s")
        if tracker.delivered:
            result.wake_all_ms = (tracker.last_receipt_ns - pubs.started_ns) / 1e6
        await asyncio.sleep(SETTLE_S)
        cpu1, client1, t1 = tree.cpu_seconds(), client_cpu_seconds(), time.monotonic()
        result.expected = tracker.expected
        result.server_cpu_s = cpu1 - cpu0
        result.client_cpu_s = client1 - client0
        result.duration_s = t1 - t0
        result.peak_rss_mib = tree.peak_rss_kib() / 1024
        finish_latency(result, tracker)
        finish_publish(result, pubs)
        if tracker.delivered:
            result.cpu_us_per_delivery = (cpu1 - cpu_idle_end) / tracker.delivered * 1e6
    finally:
        for conn in pub_conns:
            conn.close()


async def run_stream(target: Target, spec: Spec, result: Result, base_channel: str) -> None:
    """Run one ``sse`` or ``sse-hold`` scenario on a started ``target``."""
    channels = channels_for(base_channel, spec.channels)
    tracker = Tracker(spec.pollers)
    sink = StreamSink(target, tracker)
    control = (await target.connect(1))[0]
    rss_before = target.tree.rss_kib()
    streams: list[SSEStream] = []
    try:
        path = target.stream_path(channels)
        try:
            streams = await open_streams(target.host, target.port, [path] * spec.pollers, sink)
        except StreamRefused as exc:
            result.notes.append(f"failed: GET {path.split('?')[0]} refused: {exc}")
            return
        await _wait_counted(target, control, channels, spec.pollers, result)
        if spec.kind == "sse-hold":
            await _hold(target, spec, result, channels, tracker, streams, rss_before)
        else:
            await _fanout(target, spec, result, channels, tracker, streams)
        _finish_streams(result, sink, streams)
    finally:
        for stream in streams:
            stream.close()
        control.close()
