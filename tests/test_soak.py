"""Soak: minutes of mixed traffic against a real server, then nothing lost, leaked or logged.

Skipped by the default run (``-m "not soak"`` in setup.cfg); run it with
``TORNADO_LP_SOAK_SECONDS=120 python -m pytest -m soak`` (.ci/run runs 20 s).

Once per storage backend. On a few channels, publishers post (text and JSON)
while pollers follow every message with their cursors; meanwhile other
clients drop held polls mid-hold, give up half-way through a request head or
body, and send bad requests. Then: every poller saw every message of its
channel published after it started, once and in order (none missed, none
reset); no request went unanswered beyond its hold; every bad request got a
4xx; no poll is held anywhere (``waiters`` 0 on every channel touched, the
held-polls gauge 0); the server logged no ERROR
and no traceback. The server's RSS before and after is printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .rawhttp import Answer, address, parse
from .serverproc import ServerProcess
from .storages import SERVER_STORAGES, server_storage

pytestmark = pytest.mark.soak

SECONDS = float(os.environ.get("TORNADO_LP_SOAK_SECONDS", "120"))
CHANNELS = [f"soak-{i}" for i in range(4)]
QUIET = "soak-quiet"  # only ever polled and abandoned, never published to
POLLERS_PER_CHANNEL = 5
PUBLISHERS = 4
DROPPERS = 4
BAD_SENDERS = 2
HOLD = 2.0  # timeout the pollers ask for
ANSWER_WITHIN = HOLD + 10.0  # longer than that is a hang


class Conn:
    """One keep-alive HTTP/1.1 connection (answers are read by Content-Length)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, server: ServerProcess) -> Conn:
        reader, writer = await asyncio.open_connection(*address(server))
        return cls(reader, writer)

    async def request(
        self, method: str, target: str, body: bytes | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> Answer:
        lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1",
                 *(f"{name}: {value}" for name, value in headers)]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
        started = time.monotonic()

        async def read() -> Answer:
            head = await self.reader.readuntil(b"\r\n\r\n")
            answer = parse(head)
            length = int(answer.headers.get("content-length", "0"))
            answer.body = await self.reader.readexactly(length)
            return answer

        answer = await asyncio.wait_for(read(), ANSWER_WITHIN)
        answer.elapsed = time.monotonic() - started
        return answer

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


@dataclass
class Tally:
    """What the traffic saw; ``problems`` must stay empty."""

    published: dict[str, dict[int, str]] = field(default_factory=lambda: defaultdict(dict))
    problems: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def problem(self, text: str) -> None:
        if len(self.problems) < 50:
            self.problems.append(text)


def seq_of(cursor: str) -> int:
    return int(cursor.rsplit("-", 1)[1])


async def publisher(server: ServerProcess, tally: Tally, index: int, stop: asyncio.Event) -> None:
    conn = await Conn.open(server)
    n = 0
    try:
        while not stop.is_set():
            channel = random.choice(CHANNELS)
            text = f"p{index}-{n} {random.choice(['', 'Grüße ', '<b>', '😀 '])}"
            n += 1
            if n % 2:
                answer = await conn.request("POST", f"/channels/{channel}/messages",
                                            text.encode(), (("Content-Type", "text/plain"),))
            else:
                answer = await conn.request("POST", f"/channels/{channel}/messages",
                                            json.dumps({"body": text}).encode(),
                                            (("Content-Type", "application/json"),))
            if answer.status != 201:
                tally.problem(f"publish answered {answer.status}: {answer.body[:200]!r}")
                continue
            message = answer.json()
            tally.published[channel][seq_of(message["id"])] = message["body"]
            tally.counts["published"] += 1
            await asyncio.sleep(random.uniform(0, 0.03))
    finally:
        await conn.close()


@dataclass
class Follower:
    channel: str
    start_seq: int = 0
    cursor: str = ""
    seen: list[tuple[int, str]] = field(default_factory=list)


async def poller(
    server: ServerProcess, tally: Tally, follower: Follower, stop: asyncio.Event,
    display: str | None,
) -> None:
    conn = await Conn.open(server)
    extra = f"&display={display}" if display else ""
    try:
        while True:
            timeout = 0 if stop.is_set() else HOLD
            limit = random.choice([1, 7, 50, 1000])
            answer = await conn.request(
                "GET", f"/channels/{follower.channel}/poll?cursor={follower.cursor}"
                f"&timeout={timeout}&limit={limit}{extra}")
            if answer.status != 200:
                tally.problem(f"poll answered {answer.status}: {answer.body[:200]!r}")
                await asyncio.sleep(0.1)
                continue
            result = answer.json()
            if result["missed"] or result["reset"]:
                tally.problem(f"{follower.channel}: missed/reset at {follower.cursor}: {result}")
            for message in result["messages"]:
                follower.seen.append((seq_of(message["id"]), message["body"]))
            tally.counts["polls"] += 1
            tally.counts["delivered"] += len(result["messages"])
            follower.cursor = result["cursor"]
            if stop.is_set() and not result["more"] and not result["messages"]:
                return  # caught up after the publishers stopped
    finally:
        await conn.close()


async def dropper(server: ServerProcess, tally: Tally, stop: asyncio.Event) -> None:
    """Polls dropped mid-hold, and requests abandoned half-way through head or body."""
    host, port = address(server)
    while not stop.is_set():
        kind = random.random()
        _reader, writer = await asyncio.open_connection(host, port)
        channel = random.choice([*CHANNELS, QUIET])
        if kind < 0.6:
            writer.write(f"GET /channels/{channel}/poll?timeout=30 HTTP/1.1\r\n"
                         "Host: x\r\n\r\n".encode())
            tally.counts["dropped polls"] += 1
        elif kind < 0.8:
            writer.write(b"GET /channels/" + channel.encode() + b"/poll?timeout=30 HTTP/1.1\r\nHo")
            tally.counts["dropped heads"] += 1
        else:
            writer.write(f"POST /channels/{QUIET}-x/messages HTTP/1.1\r\nHost: x\r\n"
                         "Content-Length: 1000\r\n\r\nonly part".encode())
            tally.counts["dropped bodies"] += 1
        await writer.drain()
        await asyncio.sleep(random.uniform(0, 0.5))
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass


BAD_REQUESTS: list[tuple[str, str, bytes | None, tuple[tuple[str, str], ...], int]] = [
    ("GET", "/channels/soak-0/poll?cursor=nonsense", None, (), 400),
    ("GET", "/channels/soak-0/poll?timeout=-1", None, (), 400),
    ("GET", "/channels/soak-0/poll?limit=0", None, (), 400),
    ("GET", "/channels/soak-0/poll?display=%05x", None, (), 400),
    ("GET", "/channels/bad%20name/poll", None, (), 400),
    ("GET", "/channels/%FF/poll", None, (), 400),
    ("POST", "/channels/soak-bad/messages", b"", (), 400),
    ("POST", "/channels/soak-bad/messages", b"\xff\xfe", (), 400),
    ("POST", "/channels/soak-bad/messages", b"{nope", (("Content-Type", "application/json"),), 400),
    ("POST", "/channels/soak-bad/messages", b'{"body": "\\ud800"}',
     (("Content-Type", "application/json"),), 400),
    ("POST", "/channels/soak-bad/messages", b"[" * 3000, (("Content-Type", "application/json"),),
     400),
    ("DELETE", "/channels/soak-0/messages", None, (), 405),
    ("GET", "/no/such/path", None, (), 404),
    ("GET", "/static/nope.css", None, (), 404),
]


async def bad_sender(server: ServerProcess, tally: Tally, stop: asyncio.Event) -> None:
    conn = await Conn.open(server)
    try:
        while not stop.is_set():
            method, target, body, headers, status = random.choice(BAD_REQUESTS)
            answer = await conn.request(method, target, body, headers)
            if answer.status != status or set(answer.json()) != {"error"}:
                tally.problem(f"{method} {target}: {answer.status} {answer.body[:200]!r}")
            tally.counts["bad requests"] += 1
            await asyncio.sleep(random.uniform(0, 0.02))
        # An oversized publish is refused from its Content-Length, then the connection closes.
        await conn.close()
        conn = await Conn.open(server)
        answer = await conn.request("POST", "/channels/soak-bad/messages", b"x" * 70_000)
        if answer.status != 413:
            tally.problem(f"oversized publish answered {answer.status}")
    finally:
        await conn.close()


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    return int(match.group(1)) if match else -1


async def get_json(server: ServerProcess, target: str) -> Any:
    conn = await Conn.open(server)
    try:
        answer = await conn.request("GET", target)
        assert answer.status == 200, answer.raw
        return answer.json() if target != "/metrics" else answer.body.decode()
    finally:
        await conn.close()


async def soak(server: ServerProcess, seconds: float) -> tuple[Tally, list[Follower]]:
    tally = Tally()
    stop = asyncio.Event()
    followers = []
    for channel in CHANNELS:
        first = await get_json(server, f"/channels/{channel}/poll?timeout=0")
        for _ in range(POLLERS_PER_CHANNEL):
            followers.append(Follower(channel, seq_of(first["cursor"]), first["cursor"]))
    tasks = [
        *(asyncio.create_task(poller(server, tally, f, stop, f"soak-{i}" if i % 3 == 0 else None))
          for i, f in enumerate(followers)),
        *(asyncio.create_task(publisher(server, tally, i, stop)) for i in range(PUBLISHERS)),
        *(asyncio.create_task(dropper(server, tally, stop)) for _ in range(DROPPERS)),
        *(asyncio.create_task(bad_sender(server, tally, stop)) for _ in range(BAD_SENDERS)),
    ]
    await asyncio.sleep(seconds)
    stop.set()
    for task, outcome in zip(tasks, await asyncio.gather(*tasks, return_exceptions=True),
                             strict=True):
        if isinstance(outcome, BaseException):
            tally.problem(f"{task.get_coro()!r} failed: {outcome!r}")
    return tally, followers


async def settled(server: ServerProcess) -> tuple[dict[str, int], float]:
    """Waiters per channel touched, and the held-polls gauge, once the dust settles."""
    deadline = time.monotonic() + 10
    while True:
        waiters = {ch: (await get_json(server, f"/channels/{ch}"))["waiters"]
                   for ch in [*CHANNELS, QUIET, "soak-bad"]}
        metrics = await get_json(server, "/metrics")
        gauge = re.search(r"^tornado_lp_held_polls (\S+)$", metrics, re.M)
        assert gauge is not None
        held = float(gauge.group(1))
        if (not any(waiters.values()) and held == 0) or time.monotonic() > deadline:
            return waiters, held
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("storage", SERVER_STORAGES)
def test_soak(storage: str, capsys: pytest.CaptureFixture[str]) -> None:
    with ServerProcess("--poll-timeout-max", "5", "--max-messages", "1000000",
                       "--idle-timeout", "5", "--body-timeout", "5",
                       *server_storage(storage)) as server:
        assert server.proc is not None
        rss_start = rss_kib(server.proc.pid)
        started = time.monotonic()
        tally, followers = asyncio.run(soak(server, SECONDS))
        elapsed = time.monotonic() - started
        waiters, held = asyncio.run(settled(server))
        rss_end = rss_kib(server.proc.pid)
        log = server.stderr()
    with capsys.disabled():
        print(f"\nsoak ({storage}): {elapsed:.0f} s, {dict(tally.counts)}; server RSS "
              f"{rss_start} KiB at start, {rss_end} KiB at the end "
              f"({tally.counts['published']} messages retained)")

    assert not tally.problems, "\n".join(tally.problems)
    assert tally.counts["published"] > 0 and tally.counts["dropped polls"] > 0
    for follower in followers:
        published = tally.published[follower.channel]
        expected = [(seq, published[seq]) for seq in sorted(published) if seq > follower.start_seq]
        assert follower.seen == expected, (
            f"a poller of {follower.channel} saw {len(follower.seen)} messages, "
            f"{len(expected)} were published after it started"
        )
    assert waiters == dict.fromkeys(waiters, 0), waiters
    assert held == 0
    assert "Traceback" not in log, log[-4000:]
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert not errors, "\n".join(errors[:20])
