"""The long-poll scenarios (issues 7 and 12), each bounded in time and count.

* ``stream``: N pollers on one channel while P publishers send M messages, at
  R messages/s in all (R = 0: as fast as the server answers). This one runner
  is ``fanout`` (P=1, paced), ``burst`` (N=50, P=8 in flight, unpaced) and
  ``publish`` (N=0 or N=50 held pollers, P=1 or 50, unpaced).
* ``hold``: N idle held polls for a while, then one publish.

The stream scenarios (``sse``, ``sse-hold``) live in ``streams.py`` and are
dispatched from ``run_scenario`` here; what both kinds measure with is in
``measure.py``, the records in ``records.py``.

Every body is ``<seq>:<monotonic_ns>``, taken just before the publish is sent,
so latency is receipt - publish on this process's monotonic clock. A server
is started fresh for every scenario run, so its peak RSS belongs to that run.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable

from .client import Connection, ProtocolError
from .measure import (
    SETTLE_S,
    Publishers,
    Tracker,
    drain_s,
    finish_latency,
    finish_publish,
)
from .procstat import client_cpu_seconds
from .records import Result, Spec
from .streams import run_stream
from .targets import STREAM_KINDS, Subscriber, Target

__all__ = ["run_scenario"]

_POLL_HOLD_S = 55.0  # below tornado_lp's default --poll-timeout-max of 60


async def _poll_forever(sub: Subscriber, idx: int, tracker: Tracker, failures: list[str]) -> None:
    while True:
        try:
            bodies, received_ns = await sub.poll()
        except (ConnectionError, ProtocolError, OSError) as exc:
            failures.append(f"poller {idx}: {type(exc).__name__}: {exc}")
            return
        if bodies:
            tracker.record(idx, bodies, received_ns)


async def _wait_held(
    target: Target, control: Connection, channel: str, n: int, timeout: float
) -> str | None:
    """Wait until the server says it holds ``n`` polls; return a note when it never does."""
    deadline = time.monotonic() + timeout
    held: int | None = None
    while time.monotonic() < deadline:
        try:
            held = await target.held_polls(control, channel)
        except (ConnectionError, ProtocolError, OSError):
            # The server may close a keep-alive connection idle longer than its
            # --idle-timeout (60 s); a long scenario on a busy machine takes that long.
            control.close()
            await control.open()
            held = await target.held_polls(control, channel)
        if held is None:
            await asyncio.sleep(min(2.0, 0.5 + n / 5000))
            return "server cannot report held polls; waited a fixed time"
        if held >= n:
            return None
        await asyncio.sleep(0.1)
    return f"only {held} of {n} polls held after {timeout:.0f} s"


async def _wait_repolled(
    target: Target, control: Connection, channel: str, n: int, result: Result
) -> None:
    """Wait until every poller's next poll is held again, so that the CPU read
    afterwards includes the re-poll each delivery causes (a delivery costs one
    answer plus one new request; the last one's re-polls would be missed)."""
    note = await _wait_held(target, control, channel, n, 30)
    if note:
        result.notes.append(f"after the last delivery: {note}")


async def _stream(target: Target, spec: Spec, result: Result, channel: str) -> None:
    """fanout, burst and publish: N pollers, P publishers, M messages at R/s."""
    tracker = Tracker(spec.pollers)
    failures: list[str] = []
    control = (await target.connect(1))[0]
    conns = await target.connect(spec.pollers)
    subs = [target.subscriber(c, channel, _POLL_HOLD_S) for c in conns]
    tasks = [
        asyncio.ensure_future(_poll_forever(s, i, tracker, failures)) for i, s in enumerate(subs)
    ]
    pub_conns: list[Connection] = []
    try:
        if spec.pollers:
            note = await _wait_held(target, control, channel, spec.pollers, 30 + spec.pollers / 200)
            if note:
                result.notes.append(note)
        pub_conns = await target.connect(spec.publishers)
        pubs = Publishers(target, pub_conns, channel, tracker)
        tree = target.tree
        cpu0, client0, t0 = tree.cpu_seconds(), client_cpu_seconds(), time.monotonic()
        await pubs.run(spec.messages, spec.rate, t0 + spec.time_limit_s)
        tracker.expected = spec.pollers * pubs.ok
        tracker.check_done()
        drain = drain_s(spec)
        try:
            await asyncio.wait_for(tracker.done.wait(), drain)
        except TimeoutError:
            result.notes.append(f"not all delivered {drain:.0f} s after the last publish")
        if spec.pollers:
            await _wait_repolled(target, control, channel, spec.pollers, result)
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
            result.cpu_us_per_delivery = result.server_cpu_s / tracker.delivered * 1e6
        if pubs.ok:
            result.cpu_us_per_publish = result.server_cpu_s / pubs.ok * 1e6
        result.errors += sum(s.errors for s in subs) + len(failures)
        result.notes.extend(failures[:3])
        _subscriber_notes(result, subs)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for conn in [control, *conns, *pub_conns]:
            conn.close()


async def _floor_fanout(target: Target, spec: Spec, result: Result) -> None:
    """Fanout on the floor: each of N clients sends one GET per message round."""
    tracker = Tracker(spec.pollers)
    failures: list[str] = []
    conns = await target.connect(spec.pollers)
    rounds = [asyncio.Event() for _ in range(spec.messages)]
    round_ns = [0] * spec.messages
    request = target.fixed_request()
    errors = 0

    async def client(idx: int, conn: Connection) -> None:
        nonlocal errors
        for i, event in enumerate(rounds):
            await event.wait()
            try:
                resp = await conn.request(request)
            except (ConnectionError, ProtocolError, OSError) as exc:
                failures.append(f"client {idx}: {type(exc).__name__}: {exc}")
                return
            if resp.status == 200:
                tracker.record(idx, [f"{i + 1}:{round_ns[i]}"], resp.received_ns)
            else:
                errors += 1

    tasks = [asyncio.ensure_future(client(i, c)) for i, c in enumerate(conns)]
    try:
        tree = target.tree
        cpu0, client0, t0 = tree.cpu_seconds(), client_cpu_seconds(), time.monotonic()
        for i, event in enumerate(rounds):
            delay = t0 + i / spec.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            round_ns[i] = time.monotonic_ns()
            event.set()
        tracker.expected = spec.pollers * spec.messages
        tracker.check_done()
        drain = drain_s(spec)
        try:
            await asyncio.wait_for(tracker.done.wait(), drain)
        except TimeoutError:
            result.notes.append(f"not all answered {drain:.0f} s after the last round")
        await asyncio.sleep(SETTLE_S)
        cpu1, client1, t1 = tree.cpu_seconds(), client_cpu_seconds(), time.monotonic()
        result.expected = tracker.expected
        result.server_cpu_s = cpu1 - cpu0
        result.client_cpu_s = client1 - client0
        result.duration_s = t1 - t0
        result.peak_rss_mib = tree.peak_rss_kib() / 1024
        finish_latency(result, tracker)
        if tracker.delivered:
            result.cpu_us_per_delivery = result.server_cpu_s / tracker.delivered * 1e6
        result.errors += errors + len(failures)
        result.notes.append("one GET per expected delivery, latency from the round's start")
        result.notes.extend(failures[:3])
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for conn in conns:
            conn.close()


async def _hold(target: Target, spec: Spec, result: Result, channel: str) -> None:
    """N idle held polls for ``hold_s`` seconds, then one publish to wake them all."""
    tree = target.tree
    tracker = Tracker(spec.pollers)
    failures: list[str] = []
    control = (await target.connect(1))[0]
    rss_before = tree.rss_kib()
    conns = await target.connect(spec.pollers)
    subs = [target.subscriber(c, channel, _POLL_HOLD_S) for c in conns]
    tasks = [
        asyncio.ensure_future(_poll_forever(s, i, tracker, failures)) for i, s in enumerate(subs)
    ]
    pub_conns: list[Connection] = []
    try:
        note = await _wait_held(target, control, channel, spec.pollers, 30 + spec.pollers / 200)
        if note:
            result.notes.append(note)
        await asyncio.sleep(0.5)
        rss_holding = tree.rss_kib()
        result.rss_per_held_kib = (rss_holding - rss_before) / spec.pollers
        pub_conns = await target.connect(1)
        cpu0, client0, t0 = tree.cpu_seconds(), client_cpu_seconds(), time.monotonic()
        await asyncio.sleep(spec.hold_s)
        cpu_idle_end = tree.cpu_seconds()
        result.idle_cpu_s = cpu_idle_end - cpu0
        pubs = Publishers(target, pub_conns, channel, tracker)
        await pubs.run(1, 0.0, time.monotonic() + 30)
        tracker.expected = spec.pollers * pubs.ok
        tracker.check_done()
        try:
            await asyncio.wait_for(tracker.done.wait(), 30)
        except TimeoutError:
            result.notes.append("not all woken within 30 s")
        if tracker.delivered:
            result.wake_all_ms = (tracker.last_receipt_ns - pubs.started_ns) / 1e6
        await _wait_repolled(target, control, channel, spec.pollers, result)
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
        result.errors += sum(s.errors for s in subs) + len(failures)
        result.notes.extend(failures[:3])
        _subscriber_notes(result, subs)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for conn in [control, *conns, *pub_conns]:
            conn.close()


def _subscriber_notes(result: Result, subs: list[Subscriber]) -> None:
    missed = sum(s.missed for s in subs)
    resets = sum(s.resets for s in subs)
    if missed:
        result.notes.append(f"{missed} answers flagged missed")
    if resets:
        result.notes.append(f"{resets} answers flagged reset")


Hook = Callable[[Target], Awaitable[None]]


async def _no_hook(target: Target) -> None:
    return None


async def run_scenario(
    target: Target, spec: Spec, run: int, after_start: Hook = _no_hook, before_stop: Hook = _no_hook
) -> Result:
    """Start ``target`` fresh, run ``spec`` once, stop it; never raise for a target fault.

    The hooks let a profiler attach to the fresh server and detach before it stops.
    """
    result = Result(target.name, spec.label, spec.kind, spec.role, run, spec.params)
    result.loadavg = os.getloadavg()[0]
    channel = f"bench-{spec.kind}-{run}"
    body: Callable[[], Awaitable[None]]
    if spec.kind in STREAM_KINDS:
        body = lambda: run_stream(target, spec, result, channel)  # noqa: E731
    elif spec.kind == "hold":
        body = lambda: _hold(target, spec, result, channel)  # noqa: E731
    elif target.fixed_answers:
        body = lambda: _floor_fanout(target, spec, result)  # noqa: E731
    else:
        body = lambda: _stream(target, spec, result, channel)  # noqa: E731
    await target.start()
    try:
        await after_start(target)
        await asyncio.wait_for(body(), spec.time_limit_s + 120)
    except TimeoutError:
        result.notes.append(f"scenario stopped after {spec.time_limit_s + 120:.0f} s")
    except (ConnectionError, ProtocolError, OSError, RuntimeError) as exc:
        result.notes.append(f"failed: {type(exc).__name__}: {exc}")
        tail = target.stderr_tail(600)
        if tail:
            result.notes.append(f"server stderr: {tail}")
    finally:
        try:
            await before_stop(target)
        finally:
            await target.stop()
    return result
