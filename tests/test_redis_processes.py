"""Real ``python -m tornado_lp`` processes sharing one real redis-server (issue 5's scenarios).

Pollers are threads running the client's loop: poll with the last cursor,
keep what comes, back off briefly on a 503, poll again.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .redis_server import RedisServer, free_port
from .serverproc import ServerProcess, run_cli


def call(url: str, data: bytes | None = None, timeout: float = 30) -> tuple[int, Any]:
    """(status, decoded JSON) for a GET, or a POST when ``data`` is given."""
    try:
        with urllib.request.urlopen(url, data=data, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def publish(url: str, channel: str, body: str, deadline: float = 15) -> dict[str, Any]:
    """Publish, retrying 503s (as a publisher script would) until ``deadline`` seconds pass."""
    give_up = time.monotonic() + deadline
    while True:
        status, answer = call(f"{url}channels/{channel}/messages", body.encode())
        if status == 201:
            return dict(answer)
        assert status == 503 and set(answer) == {"error"}, (status, answer)
        if time.monotonic() > give_up:
            raise AssertionError(f"publish kept failing: {answer}")
        time.sleep(0.1)


def start_cursor(url: str, channel: str) -> str:
    status, answer = call(f"{url}channels/{channel}/poll?timeout=0")
    assert status == 200
    return str(answer["cursor"])


class Poller(threading.Thread):
    """Polls ``channel`` on ``url`` from ``cursor`` until it holds ``want`` messages."""

    def __init__(self, url: str, channel: str, cursor: str, want: int, hold: float = 20) -> None:
        super().__init__(daemon=True)
        self.url, self.channel, self.cursor, self.want, self.hold = url, channel, cursor, want, hold
        self.messages: list[dict[str, Any]] = []
        self.answers: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + 60
        while len(self.messages) < self.want and not self.stop.is_set():
            if time.monotonic() > deadline:
                return
            status, answer = call(
                f"{self.url}channels/{self.channel}/poll?timeout={self.hold}"
                f"&cursor={self.cursor}&limit=1000",
                timeout=self.hold + 30,
            )
            self.statuses.append(status)
            if status != 200:
                assert status == 503 and set(answer) == {"error"}, (status, answer)
                time.sleep(0.1)
                continue
            self.answers.append(answer)
            self.messages.extend(answer["messages"])
            self.cursor = answer["cursor"]

    def ids(self) -> list[str]:
        return [m["id"] for m in self.messages]


def wait_for_waiters(urls: list[str], channel: str, count: int) -> None:
    """Until the servers together hold ``count`` polls on ``channel``.

    ``waiters`` counts the whole fleet: each server must see them all.
    """
    deadline = time.monotonic() + 20
    while min(call(f"{url}channels/{channel}")[1]["waiters"] for url in urls) < count:
        assert time.monotonic() < deadline, "pollers did not get held"
        time.sleep(0.02)
    time.sleep(0.05)  # let the last ones finish their first read and wait


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


def servers(redis_url: str, count: int, *args: str) -> list[ServerProcess]:
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    return [
        ServerProcess("--storage", redis_url, "--redis-prefix", prefix, *args)
        for _ in range(count)
    ]


def check_clean(*procs: ServerProcess) -> None:
    for proc in procs:
        log = proc.stderr()
        assert "Traceback" not in log, log
        assert not re.search(r"\b500 (GET|POST)", log), log


def test_three_servers_sixty_pollers_one_order(redis: RedisServer) -> None:
    nodes = servers(redis.url, 3)
    for node in nodes:
        node.start()
    try:
        urls = [node.url for node in nodes]
        cursor = start_cursor(urls[0], "feed")
        total = 30
        pollers = [Poller(urls[i % 3], "feed", cursor, total) for i in range(60)]
        for poller in pollers:
            poller.start()
        wait_for_waiters(urls, "feed", 60)
        published: list[dict[str, Any]] = []

        def publisher(offset: int) -> None:
            for i in range(offset, total, 3):
                published.append(publish(urls[i % 3], "feed", f"message {i}"))

        publishers = [threading.Thread(target=publisher, args=(k,)) for k in range(3)]
        for thread in publishers:
            thread.start()
        for thread in publishers:
            thread.join(30)
        for poller in pollers:
            poller.join(30)
        reference = pollers[0].ids()
        assert len(reference) == total == len(set(reference))
        assert sorted(reference) == sorted(m["id"] for m in published)
        assert [int(i.rsplit("-", 1)[1]) for i in reference] == list(range(1, total + 1))
        for poller in pollers:
            assert poller.ids() == reference, "every poller, every message, once, one order"
            assert not any(a["reset"] or a["missed"] for a in poller.answers)
        check_clean(*nodes)
    finally:
        for node in nodes:
            node.stop()


def test_a_cursor_from_one_node_resumes_on_another(redis: RedisServer) -> None:
    nodes = servers(redis.url, 3)
    for node in nodes:
        node.start()
    try:
        a, b, c = (node.url for node in nodes)
        sent = [publish(a, "port", f"m{i}") for i in range(1, 4)]
        origin = sent[0]["id"].rsplit("-", 1)[0] + "-0"  # before the first message
        status, first = call(f"{a}channels/port/poll?timeout=0&limit=2&cursor={origin}")
        assert status == 200 and first["messages"] == sent[:2] and first["more"]
        status, rest = call(f"{b}channels/port/poll?timeout=0&cursor={first['cursor']}")
        assert status == 200 and rest["messages"] == sent[2:]
        assert not (rest["reset"] or rest["missed"] or rest["more"])
        held = Poller(c, "port", rest["cursor"], 1)
        held.start()
        wait_for_waiters([c], "port", 1)
        fourth = publish(a, "port", "m4")
        held.join(10)
        assert held.messages == [fourth]
    finally:
        for node in nodes:
            node.stop()


def children_of(pid: int, count: int) -> list[int]:
    """The pids whose parent is ``pid`` (Linux /proc), waiting until there are ``count``."""
    deadline = time.monotonic() + 10
    while True:
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(stat.parent.name))
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_processes_2_share_one_port(redis: RedisServer) -> None:
    (node,) = servers(redis.url, 1, "--processes", "2")
    node.start()
    try:
        assert node.proc is not None
        workers = children_of(node.proc.pid, 2)
        assert len(workers) == 2, workers
        cursor = start_cursor(node.url, "shared")
        pollers = [Poller(node.url, "shared", cursor, 20) for _ in range(20)]
        for poller in pollers:
            poller.start()
        time.sleep(0.5)  # waiters counts one worker only: give the holds time instead
        published = [publish(node.url, "shared", f"n{i}") for i in range(20)]
        for poller in pollers:
            poller.join(30)
        for poller in pollers:
            assert poller.messages == published
        served_by = set(re.findall(r"tornado\.access\[(\d+)\]", node.stderr()))
        assert len(served_by) == 2, f"one worker served everything: {served_by}"
        assert node.terminate(timeout=10) == 0
        assert all(_gone(pid) for pid in workers)  # not orphaned and still serving
        check_clean(node)
    finally:
        node.stop()


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_redis_killed_and_restarted(tmp_path: Path) -> None:
    with RedisServer(tmp_path, persistent=True) as redis:
        nodes = servers(redis.url, 2)
        for node in nodes:
            node.start()
        try:
            urls = [node.url for node in nodes]
            before = publish(urls[0], "k", "before")
            pollers = [Poller(urls[i % 2], "k", before["id"], 3, hold=2) for i in range(10)]
            for poller in pollers:
                poller.start()
            wait_for_waiters(urls, "k", 10)
            redis.kill()
            # Publishes fail cleanly, health says so, held polls are answered at their timeout.
            status, answer = call(f"{urls[0]}channels/k/messages", b"lost")
            assert status == 503 and "error" in answer
            status, answer = call(f"{urls[1]}healthz")
            assert status == 503 and "error" in answer
            time.sleep(2.5)
            for poller in pollers:
                assert 200 in poller.statuses and not poller.messages
                assert poller.is_alive()
            redis.restart()
            after = [publish(urls[i % 2], "k", f"after {i}") for i in range(3)]
            for poller in pollers:
                poller.join(30)
            for poller in pollers:
                assert poller.messages == after
                assert not any(a["reset"] or a["missed"] for a in poller.answers)
            for url in urls:  # healthy again once the subscription is back, by itself
                deadline = time.monotonic() + 5
                while call(f"{url}healthz")[0] != 200:
                    assert time.monotonic() < deadline, call(f"{url}healthz")
                    time.sleep(0.05)
            for node in nodes:
                log = node.stderr()
                assert len(re.findall("is unreachable", log)) == 1, log
                assert len(re.findall("reachable again", log)) == 1, log
            check_clean(*nodes)
        finally:
            for node in nodes:
                node.stop()


def test_flushall_resets_pollers(tmp_path: Path) -> None:
    with RedisServer(tmp_path) as redis:
        nodes = servers(redis.url, 2)
        for node in nodes:
            node.start()
        try:
            urls = [node.url for node in nodes]
            last = [publish(urls[0], "w", f"old {i}") for i in range(5)][-1]
            pollers = [Poller(urls[i % 2], "w", last["id"], 1) for i in range(6)]
            for poller in pollers:
                poller.start()
            wait_for_waiters(urls, "w", 6)
            redis.flushall()
            fresh = publish(urls[1], "w", "after the wipe")
            for poller in pollers:
                poller.join(10)
            for poller in pollers:
                assert poller.messages == [fresh]
                assert poller.answers[-1]["reset"]
            assert fresh["id"].split("-")[0] != last["id"].split("-")[0]
            check_clean(*nodes)
        finally:
            for node in nodes:
                node.stop()


def test_unreachable_redis_at_start_exits_2_with_one_line() -> None:
    for extra in ([], ["--processes", "2"]):
        began = time.monotonic()
        done = run_cli(["--storage", f"redis://127.0.0.1:{free_port()}/0",
                        "--redis-connect-timeout", "0.5", *extra])
        assert done.returncode == 2
        assert time.monotonic() - began < 10
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith("tornado-lp: error: cannot reach redis")
        assert "--redis-connect-timeout" in lines[0]


def test_sigterm_to_the_parent_while_workers_hold_polls(redis: RedisServer) -> None:
    (node,) = servers(redis.url, 1, "--processes", "2")
    node.start()
    try:
        assert node.proc is not None
        workers = children_of(node.proc.pid, 2)
        cursor = start_cursor(node.url, "bye")
        answers: list[tuple[int, Any]] = []
        url = f"{node.url}channels/bye/poll?timeout=60&cursor={cursor}"
        polls = [threading.Thread(target=lambda: answers.append(call(url))) for _ in range(6)]
        for poll in polls:
            poll.start()
        time.sleep(0.5)
        began = time.monotonic()
        os.kill(node.proc.pid, signal.SIGTERM)
        assert node.proc.wait(10) == 0
        assert time.monotonic() - began < 5
        for poll in polls:
            poll.join(10)
        assert answers == [(200, {"messages": [], "cursor": cursor, "more": False,
                                  "missed": False, "reset": False})] * 6
        assert children_of(node.proc.pid, 0) == [] and all(_gone(pid) for pid in workers)
        check_clean(node)
    finally:
        node.stop()


def test_a_crashed_worker_is_replaced(redis: RedisServer) -> None:
    (node,) = servers(redis.url, 1, "--processes", "2")
    node.start()
    try:
        assert node.proc is not None
        first = children_of(node.proc.pid, 2)
        assert len(first) == 2
        os.kill(first[0], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while True:
            now = children_of(node.proc.pid, 2)
            if len(now) == 2 and first[0] not in now:
                break
            assert time.monotonic() < deadline, now
            time.sleep(0.05)
        assert "was killed by signal 9; starting a new one" in node.stderr()
        sent = [publish(node.url, "crash", f"c{i}") for i in range(10)]
        status, answer = call(f"{node.url}channels/crash/poll?timeout=0&limit=10&"
                              f"cursor={sent[0]['id'].rsplit('-', 1)[0]}-0")
        assert status == 200 and answer["messages"] == sent
        assert node.terminate(timeout=10) == 0
    finally:
        node.stop()
