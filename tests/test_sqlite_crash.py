"""Real processes on a SQLite file: ``kill -9`` at a random moment, SIGTERM, restart.

Every message that got a 201 must be there after the restart, at the id the
server gave it, with no duplicates; a poller resumes from its last cursor with
exactly the messages after it.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from .backends import scratch_db
from .serverproc import ServerProcess

CLIENTS, PER_CLIENT = 5, 100  # 500 messages
CHANNEL = "crash"


class Client:
    """One keep-alive HTTP connection to the server."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        self.conn.request(method, path, body=body)
        response = self.conn.getresponse()
        return response.status, json.loads(response.read())

    def close(self) -> None:
        self.conn.close()


def publish_all(
    url: str, acked: dict[str, str], stop: threading.Event, errors: list[BaseException]
) -> list[threading.Thread]:
    """CLIENTS threads publishing PER_CLIENT messages each; ``acked``: body -> id of each 201."""

    def client(c: int) -> None:
        http_client = Client(url)
        try:
            for i in range(PER_CLIENT):
                if stop.is_set():
                    return
                status, message = http_client.call(
                    "POST", f"/channels/{CHANNEL}/messages", f"{c}:{i}".encode()
                )
                assert status == 201, (status, message)
                acked[message["body"]] = message["id"]
        except (OSError, http.client.HTTPException):
            return  # the server died under us: what was acknowledged so far counts
        except BaseException as error:
            errors.append(error)
        finally:
            http_client.close()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
    for thread in threads:
        thread.start()
    return threads


class Poller(threading.Thread):
    """Follows the channel with held polls; ``cursor`` is the last cursor it was given."""

    def __init__(self, url: str, cursor: str | None = None) -> None:
        super().__init__()
        self.url = url
        self.cursor = cursor
        self.seen: list[tuple[str, str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        client = Client(self.url)
        try:
            while not self.stop.is_set():
                # The first poll answers at once, so the poller holds a cursor from the start.
                wait = 0.5 if self.cursor else 0
                query = f"timeout={wait}&limit=1000&cursor={self.cursor or ''}"
                status, answer = client.call("GET", f"/channels/{CHANNEL}/poll?{query}")
                assert status == 200 and not answer["reset"] and not answer["missed"], answer
                self.seen.extend((m["id"], m["body"]) for m in answer["messages"])
                self.cursor = answer["cursor"]
        except (OSError, http.client.HTTPException):
            return
        except BaseException as error:
            self.error = error
        finally:
            client.close()

    error: BaseException | None = None

    def wait_for_cursor(self) -> None:
        deadline = time.monotonic() + 10
        while self.cursor is None and self.error is None and time.monotonic() < deadline:
            time.sleep(0.001)
        assert self.cursor is not None, self.error


def everything(url: str, cursor: str | None = None) -> tuple[list[tuple[str, str]], str]:
    """Every retained message after ``cursor`` (all of them by default), paging with limit."""
    client = Client(url)
    try:
        status, answer = client.call("GET", f"/channels/{CHANNEL}/poll?timeout=0&limit=1")
        epoch = answer["cursor"].split("-")[0]
        cursor = cursor or f"{epoch}-0"
        found: list[tuple[str, str]] = []
        while True:
            status, answer = client.call(
                "GET", f"/channels/{CHANNEL}/poll?timeout=0&limit=97&cursor={cursor}"
            )
            assert status == 200 and not answer["reset"] and not answer["missed"], answer
            found.extend((m["id"], m["body"]) for m in answer["messages"])
            cursor = answer["cursor"]
            if not answer["more"]:
                return found, epoch
    finally:
        client.close()


def seq(message_id: str) -> int:
    return int(message_id.rsplit("-", 1)[1])


def check_store(stored: list[tuple[str, str]], acked: dict[str, str], note: str) -> None:
    """Acknowledged messages present at their ids; one order; no duplicates; client order kept."""
    assert [seq(i) for i, _ in stored] == list(range(1, len(stored) + 1)), note
    bodies = [body for _, body in stored]
    assert len(set(bodies)) == len(bodies), f"duplicates {note}"
    by_body = dict((body, i) for i, body in stored)
    lost = {body: i for body, i in acked.items() if by_body.get(body) != i}
    assert not lost, f"acknowledged messages lost or moved {note}: {sorted(lost)[:10]}"
    for c in range(CLIENTS):
        mine = [int(b.split(":")[1]) for b in bodies if b.split(":")[0] == str(c)]
        assert mine == list(range(len(mine))), f"client {c} out of order {note}"


def test_kill_9_at_a_random_moment_loses_no_acknowledged_message() -> None:
    seed = int(os.environ.get("TORNADO_LP_CRASH_SEED") or random.randrange(1 << 30))
    kill_after = random.Random(seed).randint(1, CLIENTS * PER_CLIENT - 50)
    note = f"(seed {seed}: kill -9 after {kill_after} acknowledgements)"
    path = scratch_db()
    url_arg = f"sqlite:///{os.path.abspath(path)}"
    acked: dict[str, str] = {}
    stop = threading.Event()
    errors: list[BaseException] = []

    server = ServerProcess("--storage", url_arg).start()
    try:
        poller = Poller(server.url)
        poller.start()
        poller.wait_for_cursor()
        threads = publish_all(server.url, acked, stop, errors)
        deadline = time.monotonic() + 60
        while len(acked) < kill_after and time.monotonic() < deadline:
            time.sleep(0.0005)
        server.kill()  # SIGKILL, with publishes and polls in flight
        stop.set()
        poller.stop.set()
        for thread in [*threads, poller]:
            thread.join(30)
    finally:
        server.stop()
    assert not errors and poller.error is None, (errors, poller.error, note)
    assert len(acked) >= kill_after, note
    held_cursor = poller.cursor

    with ServerProcess("--storage", url_arg) as restarted:
        stored, epoch = everything(restarted.url)
        check_store(stored, acked, note)
        # The poller's view before the kill is a prefix of the store...
        assert poller.seen == stored[: len(poller.seen)], note
        # ...and its cursor resumes with exactly what follows it, no reset.
        assert held_cursor is not None and held_cursor.startswith(epoch), note
        after, _ = everything(restarted.url, held_cursor)
        assert after == [m for m in stored if seq(m[0]) > seq(held_cursor)], note
        client = Client(restarted.url)
        status, message = client.call("POST", f"/channels/{CHANNEL}/messages", b"after restart")
        client.close()
        assert status == 201 and seq(message["id"]) == len(stored) + 1, note


def test_sigterm_checkpoints_the_wal_and_restart_resumes() -> None:
    path = scratch_db()
    url_arg = f"sqlite:///{os.path.abspath(path)}"
    acked: dict[str, str] = {}
    errors: list[BaseException] = []
    with ServerProcess("--storage", url_arg) as server:
        poller = Poller(server.url)
        poller.start()
        poller.wait_for_cursor()
        for thread in publish_all(server.url, acked, threading.Event(), errors):
            thread.join(60)
        assert not errors and len(acked) == CLIENTS * PER_CLIENT, errors
        while len(poller.seen) < 300:  # let the poller get part of the way
            time.sleep(0.01)
        poller.stop.set()
        poller.join(10)
        assert poller.error is None, poller.error
        assert server.terminate(timeout=10) == 0
        assert "Traceback" not in server.stderr()
    wal = path + "-wal"
    assert not os.path.exists(wal) or os.path.getsize(wal) == 0, "WAL not checkpointed"

    with ServerProcess("--storage", url_arg) as restarted:
        stored, _ = everything(restarted.url)
        assert len(stored) == CLIENTS * PER_CLIENT
        check_store(stored, acked, "(SIGTERM)")
        after, _ = everything(restarted.url, poller.cursor)
        assert poller.seen + after == stored
