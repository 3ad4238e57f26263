"""``redis+sentinel://``: URLs, and a real failover under three real tornado_lp nodes.

The failover: a master, a replica and three ``redis-sentinel`` processes on
loopback (down-after 1 s, failover-timeout 3 s), three ``python -m
tornado_lp`` nodes on the Sentinel URL, a publisher that never stops and six
screens. ``kill -9`` of the master: every node follows the promoted replica
by itself, publishes answer only 201 or 503, and every screen either gets
every acknowledged message once or is told ``reset`` (the promoted replica
may lack the last writes, so it always is), and no id names two bodies.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tornado_lp.storage import StorageConfigError, storage_from_url
from tornado_lp.storage._redis_sentinel import SentinelAddress, parse
from tornado_lp.storage.redis_store import RedisStorage

from .redis_server import RedisSentinel, RedisServer
from .serverproc import ServerProcess, run_cli
from .test_redis_guard import Bodies, Follower, epoch_of
from .test_redis_processes import call, check_clean, publish, start_cursor, wait_for_waiters

PASSWORD = "s3ntinel-pw"


def test_sentinel_urls() -> None:
    assert parse("redis+sentinel://h1,h2:26380,[::1]:7/mymaster", "") == SentinelAddress(
        (("h1", 26379), ("h2", 26380), ("::1", 7)), "mymaster"
    )
    assert parse("redis+sentinel://u:p%40ss@h:1/svc/3/", "") == SentinelAddress(
        (("h", 1),), "svc", 3, "u", "p@ss"
    )
    assert parse("REDIS+SENTINEL://:pw@h/svc", "").password == "pw"
    storage = storage_from_url("redis+sentinel://:hunter2@h1:1,h2:2/svc", redis_prefix="p:")
    assert isinstance(storage, RedisStorage) and storage.shared
    assert "hunter2" not in storage.description and ":***@h1:1,h2:2/svc" in storage.description


@pytest.mark.parametrize(("url", "why"), [
    ("redis+sentinel://:hunter2@h:26379", "names no service"),
    ("redis+sentinel://:hunter2@h:26379/", "names no service"),
    ("redis+sentinel://:hunter2@/svc", "names no Sentinel host"),
    ("redis+sentinel://:hunter2@h:1,,h:2/svc", "is empty"),
    ("redis+sentinel://:hunter2@h:port/svc", "is not a number"),
    ("redis+sentinel://:hunter2@h:65536/svc", "is not a number"),
    ("redis+sentinel://:hunter2@:1/svc", "no host name"),
    ("redis+sentinel://:hunter2@h/svc/db", "database must be a number"),
    ("redis+sentinel://:hunter2@h/svc/0/more", "/service_name/db"),
    ("redis+sentinel://:hunter2@h/svc?ssl=true", "no query options"),
])
def test_bad_sentinel_urls(url: str, why: str) -> None:
    with pytest.raises(StorageConfigError) as failed:
        storage_from_url(url)
    assert str(failed.value).startswith("bad Sentinel URL") and why in str(failed.value)
    assert "hunter2" not in str(failed.value)


def test_a_bad_sentinel_url_is_one_line_and_exit_2() -> None:
    done = run_cli(["--storage", "redis+sentinel://:hunter2@127.0.0.1:26379"])
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("tornado-lp: error: bad Sentinel URL") and "no service" in lines[0]
    assert "hunter2" not in done.stderr


class Publisher(threading.Thread):
    """Publishes ``p0, p1, …`` round robin over ``urls`` until stopped; keeps every outcome."""

    def __init__(self, urls: list[str], channel: str) -> None:
        super().__init__(daemon=True)
        self.urls, self.channel = urls, channel
        self.outcomes: list[tuple[float, int, int, dict[str, Any]]] = []  # time, node, status
        self.stop = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            node = i % len(self.urls)
            status, answer = call(
                f"{self.urls[node]}channels/{self.channel}/messages", f"p{i}".encode(), timeout=30
            )
            self.outcomes.append((time.monotonic(), node, status, answer))
            i += 1
            time.sleep(0.01)

    def acked(self) -> list[dict[str, Any]]:
        return [answer for _, _, status, answer in self.outcomes if status == 201]


def wait_until(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def check_screen(screen: Follower, acked: list[dict[str, Any]]) -> None:
    """Every acknowledged message once, in order, for as long as its epoch lasted; then reset."""
    assert set(screen.statuses) <= {200, 503}, screen.statuses
    segments: list[list[dict[str, Any]]] = [[]]
    for answer in screen.answers:
        assert not answer["missed"], answer
        if answer["reset"]:
            segments.append([])
        segments[-1].extend(answer["messages"])
    ids = [m["id"] for segment in segments for m in segment]
    assert len(ids) == len(set(ids)), "a message came twice"
    assert len(segments) == 2, "the promoted replica gives one new epoch: exactly one reset"
    for number, segment in enumerate(segments):
        if not segment:
            continue
        epochs = {epoch_of(m["id"]) for m in segment}
        assert len(epochs) == 1, epochs
        seqs = [int(m["id"].rsplit("-", 1)[1]) for m in segment]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a gap or a jump"
        if number == 0:
            assert seqs[0] == 1
        (epoch,) = epochs
        expected = {m["id"] for m in acked
                    if epoch_of(m["id"]) == epoch and seqs[0] <= int(m["id"].rsplit("-", 1)[1])}
        if number == len(segments) - 1:
            assert expected <= set(ids), "an acknowledged message never came"
        else:
            shown = {m["id"] for m in segment}
            assert {i for i in expected if int(i.rsplit("-", 1)[1]) <= seqs[-1]} <= shown


def test_failover_to_the_replica(tmp_path: Path) -> None:
    for name in ("master", "replica", "sentinels"):
        (tmp_path / name).mkdir()
    auth = ["--requirepass", PASSWORD, "--masterauth", PASSWORD]
    master = RedisServer(tmp_path / "master", args=auth).start()
    replica = sentinels = nodes = None
    try:
        replica = RedisServer(
            tmp_path / "replica", args=[*auth, "--replicaof", "127.0.0.1", str(master.port)]
        ).start()
        sentinels = [
            RedisSentinel(tmp_path / "sentinels", master.port, auth_pass=PASSWORD).start()
            for _ in range(3)
        ]
        wait_until(
            lambda: all(
                s.master().get("num-slaves") == "1" and s.master().get("num-other-sentinels") == "2"
                for s in sentinels
            ),
            30, "the Sentinels did not find the replica and each other",
        )
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in sentinels)
        url = f"redis+sentinel://:{PASSWORD}@{hosts}/mymaster/0"
        prefix = f"test:{uuid.uuid4().hex[:12]}:"
        nodes = [ServerProcess("--storage", url, "--redis-prefix", prefix) for _ in range(3)]
        for node in nodes:
            node.start()
        urls = [node.url for node in nodes]
        cursor = start_cursor(urls[0], "f")
        screens = [Follower(urls[i % 3], "f", cursor, "end") for i in range(6)]
        for screen in screens:
            screen.start()
        wait_for_waiters(urls, "f", 6)
        # Polls held on a quiet channel across the whole switch: never failed, then reset.
        quiet = start_cursor(urls[0], "quiet")
        held: list[tuple[int, Any]] = []
        holders = [
            threading.Thread(target=lambda url=url: held.append(
                call(f"{url}channels/quiet/poll?timeout=60&cursor={quiet}", timeout=90)
            ))
            for url in urls
        ]
        for holder in holders:
            holder.start()
        wait_for_waiters(urls, "quiet", 3)

        publisher = Publisher(urls, "f")
        publisher.start()
        wait_until(lambda: len(publisher.acked()) >= 20, 30, "publishing did not start")
        killed = time.monotonic()
        master.kill()
        # Every node follows the promoted replica by itself.
        follow = (RedisSentinel.DOWN_AFTER_MS + RedisSentinel.FAILOVER_TIMEOUT_MS) / 1000 + 20
        wait_until(
            lambda: all(
                any(t > killed and n == node and status == 201
                    for t, n, status, _ in publisher.outcomes)
                for node in range(3)
            ),
            follow, "a node did not follow the new master",
        )
        acked_before = len(publisher.acked())
        wait_until(lambda: len(publisher.acked()) >= acked_before + 20, 30, "publishing stalled")
        publisher.stop.set()
        publisher.join(40)
        end = publish(urls[1], "f", "end")
        assert held == [], "a held poll was answered during the switch"
        woken = publish(urls[2], "quiet", "q1")
        for holder in holders:
            holder.join(30)
        assert [status for status, _ in held] == [200] * 3
        for _, answer in held:
            assert answer["reset"] and answer["messages"] == [woken]
        for screen in screens:
            screen.join(60)
            assert not screen.is_alive(), screen.answers[-3:]

        statuses = {status for _, _, status, _ in publisher.outcomes}
        assert statuses <= {201, 503}, statuses
        assert 503 in statuses  # the switch was seen, and answered as a 503
        acked = [*publisher.acked(), end]
        bodies = Bodies()
        bodies.add(acked)
        assert len({epoch_of(m["id"]) for m in acked}) == 2
        for screen in screens:
            assert set(screen.statuses) <= {200, 503}, screen.statuses
            for answer in screen.answers:
                bodies.add(answer["messages"])
            check_screen(screen, acked)
        check_clean(*nodes)
        logs = "".join(node.stderr() for node in nodes)
        assert PASSWORD not in logs
        assert logs.count("another server took over") == 1  # the nodes rotated the epoch once
    finally:
        for node in nodes or []:
            node.stop()
        for sentinel in sentinels or []:
            sentinel.stop()
        if replica is not None:
            replica.kill()
        master.kill()
