"""One fleet view over real processes (issue 13): three ``--processes 2`` nodes on one
real redis-server; screens polling with ``display=`` on every port; ``/displays``,
``waiters`` and ``/metrics`` on any port describe the whole fleet (or node)."""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .redis_server import RedisServer
from .serverproc import ServerProcess
from .test_redis_processes import call, check_clean, publish, servers, start_cursor

STALE_AFTER = "1"
GONE_AFTER = "3"


def until(check: Callable[[], bool], what: str, seconds: float = 15) -> None:
    """Poll ``check`` until it holds (states change with time: there is no event to await)."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(0.05)


class Screen(threading.Thread):
    """A ticker named ``name``: 1 s polls, each on the next of ``urls`` (it moves around)."""

    def __init__(self, name: str, urls: list[str], first: int, channel: str) -> None:
        super().__init__(daemon=True)
        self.name, self.urls, self.turn, self.channel = name, urls, first, channel
        self.cursor = start_cursor(urls[0], channel)
        self.statuses: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            url = self.urls[self.turn % len(self.urls)]
            self.turn += 1
            status, answer = call(f"{url}channels/{self.channel}/poll?timeout=1"
                                  f"&cursor={self.cursor}&display={self.name}", timeout=10)
            self.statuses.append(status)
            if status == 200:
                self.cursor = answer["cursor"]
            else:
                time.sleep(0.1)


def states(url: str, prefix: str = "") -> dict[str, str]:
    """The states ``/displays`` on ``url`` shows, of the displays named ``prefix...``."""
    status, listing = call(f"{url}displays")
    assert status == 200, listing
    assert listing["count"] == len(listing["displays"])
    names = [d["display"] for d in listing["displays"]]
    assert len(names) == len(set(names))  # one entry per display
    return {d["display"]: d["state"] for d in listing["displays"]
            if d["display"].startswith(prefix)}


def gauge(url: str, name: str) -> float:
    with urllib.request.urlopen(f"{url}metrics", timeout=10) as response:
        text = response.read().decode()
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    assert match is not None, text
    return float(match.group(1))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as redis:
        nodes = servers(redis.url, 3, "--processes", "2", "--display-stale-after", STALE_AFTER,
                        "--display-gone-after", GONE_AFTER)
        for node in nodes:
            node.start()
        try:
            yield nodes
            check_clean(*nodes)
        finally:
            for node in nodes:
                node.stop()


def test_thirty_screens_on_every_port(fleet: list[ServerProcess]) -> None:
    urls = [node.url for node in fleet]
    screens = [Screen(f"screen-{i:02d}", urls, i, "wall") for i in range(30)]
    for screen in screens:
        screen.start()
    try:
        everyone = {screen.name for screen in screens}
        until(lambda: all(states(url, "screen-") == dict.fromkeys(everyone, "live")
                          for url in urls),
              "every port lists the 30 screens live")
        # Once each screen has polled every node: still one entry each, all live.
        until(lambda: all(len(screen.statuses) >= len(urls) for screen in screens),
              "every screen polled every node")
        assert all(states(url, "screen-") == dict.fromkeys(everyone, "live") for url in urls)

        stopped = screens[:10]
        for screen in stopped:
            screen.stop.set()
        for screen in stopped:
            screen.join(10)
        left = {screen.name for screen in stopped}

        def shown(state: str) -> Callable[[], bool]:
            def check() -> bool:
                listings = [states(url, "screen-") for url in urls]
                return all(
                    len(listing) == 30
                    and all(listing[name] == state for name in left)
                    and all(listing[name] == "live" for name in everyone - left)
                    for listing in listings
                )
            return check

        until(shown("stale"), "the 10 stopped screens are stale on every port")
        until(shown("gone"), "the 10 stopped screens are gone on every port")
    finally:
        for screen in screens:
            screen.stop.set()
        for screen in screens:
            screen.join(10)
    assert {s for screen in screens for s in screen.statuses} == {200}


def test_held_polls_gauge_and_waiters_count_the_fleet(fleet: list[ServerProcess]) -> None:
    urls = [node.url for node in fleet]
    cursor = start_cursor(urls[0], "held")
    answers: list[tuple[int, Any]] = []
    per_node = 4
    polls = [
        threading.Thread(target=lambda url=url: answers.append(
            call(f"{url}channels/held/poll?timeout=30&cursor={cursor}")), daemon=True)
        for url in urls for _ in range(per_node)
    ]
    for poll in polls:
        poll.start()
    total = per_node * len(urls)
    until(lambda: all(call(f"{url}channels/held")[1]["waiters"] == total for url in urls),
          "waiters on every port counts the polls of every node")
    for url in urls:
        until(lambda url=url: gauge(url, "tornado_lp_held_polls") == per_node,  # type: ignore[misc]
              "the node's gauge counts the polls of both its workers")
        # Each scrape lands on either worker of the node: every one says the same.
        assert {gauge(url, "tornado_lp_held_polls") for _ in range(8)} == {per_node}
    message = publish(urls[1], "held", "release")
    for poll in polls:
        poll.join(10)
    assert [a for _, a in answers] == [
        {"messages": [message], "cursor": message["id"], "more": False, "missed": False,
         "reset": False}
    ] * total
    until(lambda: all(call(f"{url}channels/held")[1]["waiters"] == 0 for url in urls),
          "answered polls leave the count")


def test_a_display_moving_between_ports_is_one_entry(fleet: list[ServerProcess]) -> None:
    urls = [node.url for node in fleet]
    cursor = start_cursor(urls[0], "moves")
    processes: set[str] = set()
    for url in urls * 2:
        status, _answer = call(f"{url}channels/moves/poll?timeout=0&cursor={cursor}"
                               "&display=wanderer")
        assert status == 200
        seen = len(processes)

        def moved(seen: int = seen) -> bool:
            # The process that answered sends what it saw within a second (its ticker).
            listings = [call(f"{port}displays")[1]["displays"] for port in urls]
            entries = [[d for d in listing if d["display"] == "wanderer"]
                       for listing in listings]
            if not all(len(found) == 1 for found in entries):  # listed once, on every port
                return False
            processes.add(entries[0][0]["process"])
            return len(processes) > seen or seen >= len(urls)

        until(moved, "the display's entry follows it")
    assert len(processes) >= len(urls)  # seen by a process of each node, one entry


def test_displays_answer_503_while_redis_is_down(tmp_path: Path) -> None:
    with RedisServer(tmp_path) as redis:
        (node,) = servers(redis.url, 1)
        with node:
            call(f"{node.url}channels/c/poll?timeout=0&display=one")
            assert call(f"{node.url}displays")[0] == 200
            redis.kill()
            for path in ("displays", "displays.html", "channels/c"):
                status, answer = call(f"{node.url}{path}")
                assert status == 503 and set(answer) == {"error"}, (path, status, answer)
                assert "storage unavailable" in answer["error"]
            redis.restart()
            until(lambda: call(f"{node.url}displays")[0] == 200, "/displays answers again")
            call(f"{node.url}channels/c/poll?timeout=0&display=two")
            assert states(node.url)["two"] == "live"
        check_clean(node)
