"""A Redis that comes back with less than it acknowledged gives clients ``reset``, never silence.

The issue's scenario, through real ``python -m tornado_lp`` processes and a
real redis-server killed with SIGKILL: publish m1 m2 m3, snapshot, publish m4
m5 (a screen holds cursor ``…-5``), kill Redis, start it again (it reloads
m1..m3), publish n4 n5 n6. Without the server guard the screen's next poll
answered only n6, ``reset: false``, and ``…-4`` named two different messages.
Then the guard's verdicts one by one, on RedisStorage instances in this
process (each stands for a process of its own).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tornado_lp.storage import Message, StorageConfigError, StorageUnavailable
from tornado_lp.storage.redis_store import RedisStorage

from .redis_server import RedisServer
from .test_redis_processes import call, check_clean, publish, servers, wait_for_waiters


def epoch_of(message_id: str) -> str:
    return message_id.rsplit("-", 1)[0]


class Bodies:
    """Every (id, body) pair seen over a run: no id may ever name two bodies."""

    def __init__(self) -> None:
        self.by_id: dict[str, str] = {}

    def add(self, messages: Iterable[dict[str, Any]]) -> None:
        for message in messages:
            known = self.by_id.setdefault(message["id"], message["body"])
            assert known == message["body"], (
                f"{message['id']} named {known!r}, now {message['body']!r}"
            )


class Follower(threading.Thread):
    """A screen: polls ``channel`` from ``cursor`` until it has shown the body ``until``."""

    def __init__(self, url: str, channel: str, cursor: str, until: str) -> None:
        super().__init__(daemon=True)
        self.url, self.channel, self.cursor, self.until = url, channel, cursor, until
        self.answers: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.statuses: list[int] = []

    def run(self) -> None:
        deadline = time.monotonic() + 60
        while self.until not in (m["body"] for m in self.messages):
            if time.monotonic() > deadline:
                return
            status, answer = call(
                f"{self.url}channels/{self.channel}/poll?timeout=30&limit=1000"
                f"&cursor={self.cursor}", timeout=60,
            )
            self.statuses.append(status)
            if status != 200:
                time.sleep(0.1)
                continue
            self.answers.append(answer)
            self.messages.extend(answer["messages"])
            self.cursor = answer["cursor"]


class Stream(threading.Thread):
    """A screen on Server-Sent Events: reads ``/events`` until it has shown the body ``until``.

    ``events``: ``(type, data)`` in order; ``type`` is ``message``, ``reset`` or ``missed``.
    """

    def __init__(self, url: str, channel: str, until: str) -> None:
        super().__init__(daemon=True)
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
        self.conn.request("GET", f"/events?channel={channel}")
        self.response = self.conn.getresponse()
        assert self.response.status == 200
        self.until = until
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.shown = threading.Event()  # at least one message arrived

    def run(self) -> None:
        kind, data = "message", ""
        try:
            for raw in self.response:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    data = line[6:]
                elif not line and data:
                    self.events.append((kind, json.loads(data)))
                    self.shown.set()
                    if kind == "message" and self.events[-1][1]["body"] == self.until:
                        return
                    kind, data = "message", ""
        finally:
            self.conn.close()

    def messages(self) -> list[dict[str, Any]]:
        return [data for kind, data in self.events if kind == "message"]


@pytest.mark.parametrize("persistence", ["rdb", "everysec", "always"])
def test_redis_killed_and_restarted_with_less_data(persistence: str, tmp_path: Path) -> None:
    with RedisServer(tmp_path, persistence=persistence) as redis:
        nodes = servers(redis.url, 2)
        for node in nodes:
            node.start()
        try:
            a, b = (node.url for node in nodes)
            bodies = Bodies()
            sent = [publish(a, "t", f"m{i}") for i in (1, 2, 3)]
            if persistence == "rdb":
                redis.save()
            sent += [publish(b, "t", f"m{i}") for i in (4, 5)]
            bodies.add(sent)
            old_epoch, cursor = epoch_of(sent[-1]["id"]), sent[-1]["id"]
            # A screen on each node holds a poll with cursor …-5 while Redis dies.
            held = [Follower(url, "t", cursor, "n6") for url in (a, b)]
            for poller in held:
                poller.start()
            stream = Stream(a, "t", "n6")  # its backlog m1..m5, then it waits
            stream.start()
            wait_for_waiters([a, b], "t", 3)
            redis.kill()
            redis.restart()
            fresh = [publish(url, "t", f"n{i}") for url, i in ((a, 4), (b, 5), (a, 6))]
            bodies.add(fresh)
            # A screen that comes back with the old cursor, on either node.
            status, again = call(f"{b}channels/t/poll?timeout=0&cursor={cursor}")
            assert status == 200
            bodies.add(again["messages"])
            stream.join(60)
            assert not stream.is_alive(), stream.events
            bodies.add(stream.messages())
            before_kill = stream.messages()[:5]
            assert before_kill == sent
            for poller in held:
                poller.join(60)
                assert not poller.is_alive(), poller.answers
                assert set(poller.statuses) <= {200, 503}, poller.statuses
                for answer in poller.answers:
                    bodies.add(answer["messages"])
            if persistence == "always":
                # Every acknowledged write survived: cursors continue, nothing is reset.
                assert [epoch_of(m["id"]) for m in fresh] == [old_epoch] * 3
                assert [m["id"] for m in fresh] == [f"{old_epoch}-{seq}" for seq in (6, 7, 8)]
                assert again["messages"] == fresh and not again["reset"]
                for poller in held:
                    assert poller.messages == fresh
                    assert not any(x["reset"] or x["missed"] for x in poller.answers)
                assert sum("restarted (run_id" in node.stderr() for node in nodes) == 1
                assert stream.events[5:] == [("message", m) for m in fresh]
            else:
                new_epoch = epoch_of(fresh[0]["id"])
                assert new_epoch != old_epoch
                assert {epoch_of(m["id"]) for m in fresh} == {new_epoch}
                assert again["reset"] and not again["missed"]
                assert [epoch_of(m["id"]) for m in again["messages"]] == [new_epoch] * len(
                    again["messages"]
                )
                assert again["messages"][-3:] == fresh
                if persistence == "rdb":  # the snapshot held m1..m3
                    assert [m["body"] for m in again["messages"]] == [
                        "m1", "m2", "m3", "n4", "n5", "n6"
                    ]
                for poller in held:
                    if persistence == "rdb":
                        assert [m["body"] for m in poller.messages] == [
                            "m1", "m2", "m3", "n4", "n5", "n6"
                        ]
                    # The held poll (or its next one) said reset, then every new message once.
                    assert poller.answers[0]["reset"], poller.answers
                    assert not any(x["reset"] for x in poller.answers[1:])
                    assert poller.messages[-3:] == fresh
                    assert {epoch_of(m["id"]) for m in poller.messages} == {new_epoch}
                # The stream stayed open through the restart and told the reset in it.
                assert stream.events[5] == ("reset", {"channel": "t"}), stream.events
                after = stream.events[6:]
                assert all(kind == "message" for kind, _ in after)
                assert {epoch_of(m["id"]) for _, m in after} == {new_epoch}
                assert [m for _, m in after][-3:] == fresh
                # The nodes raced on one restart; the store was rotated once.
                rotated = sum(
                    len(re.findall("nothing proves it kept", node.stderr())) for node in nodes
                )
                assert rotated == 1, [node.stderr() for node in nodes]
            check_clean(*nodes)
        finally:
            for node in nodes:
                node.stop()


# -- the verdicts, one by one -----------------------------------------------------


def prefix() -> str:
    return f"test:{uuid.uuid4().hex[:12]}:"


def wait_synced(replica: RedisServer) -> None:
    deadline = time.monotonic() + 10
    while replica.info("replication").get("master_link_status") != "up":
        assert time.monotonic() < deadline, replica.log()
        time.sleep(0.02)


def wait_replicated(master: RedisServer, replica: RedisServer) -> None:
    """Wait until ``replica`` has every write ``master`` has made so far.

    Not ``WAIT``: on a connection that wrote nothing it waits for nothing
    (Redis counts replicas past that connection's own last write).
    """
    offset = int(master.info("replication")["master_repl_offset"])
    deadline = time.monotonic() + 10
    while int(replica.info("replication").get("slave_repl_offset", "-1")) < offset:
        assert time.monotonic() < deadline, replica.log()
        time.sleep(0.02)


def verdicts(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tornado_lp.storage.redis"]


def test_a_promoted_replica_gets_a_new_epoch_even_with_appendfsync_always(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "r").mkdir()
    with RedisServer(tmp_path / "m", persistence="always") as master:
        with RedisServer(tmp_path / "r", persistence="always",
                         args=["--replicaof", "127.0.0.1", str(master.port)]) as replica:
            wait_synced(replica)
            keys = prefix()

            async def main() -> None:
                on_master = RedisStorage(master.url, prefix=keys)
                await on_master.open()
                first = await on_master.append("p", "one")
                await on_master.close()
                wait_replicated(master, replica)  # the replica has it
                # A replica cannot serve the store: one clear error, at once.
                with pytest.raises(StorageConfigError, match="is a replica"):
                    await RedisStorage(replica.url, prefix=keys, connect_timeout=30).open()
                assert replica.command("REPLICAOF", "NO", "ONE") == b"+OK\r\n"
                on_replica = RedisStorage(replica.url, prefix=keys)
                await on_replica.open()
                try:
                    assert on_replica.epoch != first.id.split("-")[0]
                    second = await on_replica.append("p", "two")
                    assert second.seq == 2 and second.id.split("-")[0] == on_replica.epoch
                finally:
                    await on_replica.close()

            try:
                asyncio.run(main())
            finally:
                replica.kill()  # SIGTERM waits while it writes its first AOF
    assert sum("another server took over" in line for line in verdicts(caplog)) == 1


async def append(store: RedisStorage, channel: str, body: str) -> Message:
    """Publish as a client would: again after a 503 (the connection broke with the old server)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return await store.append(channel, body)
        except StorageUnavailable:
            assert time.monotonic() < deadline, "Redis did not come back"
            await asyncio.sleep(0.02)


def test_processes_racing_on_one_restart_rotate_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with RedisServer(tmp_path, persistence="rdb") as redis:
        keys = prefix()

        async def main() -> None:
            stores = [RedisStorage(redis.url, prefix=keys) for _ in range(4)]
            for store in stores:
                await store.open()
            try:
                before = await stores[0].append("r", "before")
                redis.save()
                redis.kill()
                redis.restart()
                results = await asyncio.gather(
                    *(append(store, "r", f"after {i}") for i, store in enumerate(stores))
                )
                epochs = {message.id.split("-")[0] for message in results}
                assert len(epochs) == 1 and epochs != {before.id.split("-")[0]}
                assert sorted(m.seq for m in results) == [2, 3, 4, 5]
            finally:
                for store in stores:
                    await store.close()

        asyncio.run(main())
    assert sum("nothing proves it kept" in line for line in verdicts(caplog)) == 1


def test_a_store_without_a_record_is_rotated_once(caplog: pytest.LogCaptureFixture) -> None:
    """The first start of this version on an older store: its history is unknown."""
    from .redis_server import session_server

    server, keys = session_server(), prefix()

    async def main() -> None:
        old = RedisStorage(server.url, prefix=keys)
        await old.open()
        message = await old.append("u", "from before the guard")
        await old.close()
        assert server.command("DEL", keys + "server", keys + "server:self") == b":2\r\n"
        first, second = RedisStorage(server.url, prefix=keys), RedisStorage(server.url, prefix=keys)
        await first.open()
        await second.open()
        try:
            assert first.epoch == second.epoch != message.id.split("-")[0]
        finally:
            await first.close()
            await second.close()

    asyncio.run(main())
    assert sum("holds no record" in line for line in verdicts(caplog)) == 1


def test_flushall_under_a_running_process_is_one_reset(tmp_path: Path) -> None:
    """The wipe removes the record too; a process that followed the server adopts the new one."""
    with RedisServer(tmp_path) as redis:

        async def main() -> None:
            store = RedisStorage(redis.url)
            await store.open()
            try:
                old = await store.append("f", "old")
                redis.flushall()
                new = await store.append("f", "new")
                assert new.seq == 1 and store.epoch != old.id.split("-")[0]
                wiped_epoch = store.epoch
                await store._client.connection_pool.disconnect()  # the next command reconnects
                assert (await store.read("f", 0, 10)).epoch == wiped_epoch
                assert store.epoch == wiped_epoch
            finally:
                await store.close()

        asyncio.run(main())


def test_the_check_writes_nothing_when_nothing_changed(tmp_path: Path) -> None:
    """A full Redis (noeviction) refuses writes: new connections still serve reads."""
    with RedisServer(tmp_path) as redis:

        async def main() -> None:
            store = RedisStorage(redis.url)
            await store.open()
            try:
                sent = await store.append("o", "kept")
                assert redis.command("CONFIG", "SET", "maxmemory", "1") == b"+OK\r\n"
                await store._client.connection_pool.disconnect()
                chunk = await store.read("o", None, 10)
                assert [m.id for m in chunk.messages] == [sent.id]
            finally:
                await store.close()

        asyncio.run(main())


def test_logs_name_the_server_without_its_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tornado_lp")
    with RedisServer(tmp_path, persistence="everysec", args=["--requirepass", "s3cret"]) as redis:
        url = f"redis://:s3cret@127.0.0.1:{redis.port}/0"

        async def main() -> None:
            store = RedisStorage(url)
            await store.open()
            try:
                await store.append("l", "x")
                redis.kill()
                redis.restart()
                await append(store, "l", "y")
            finally:
                await store.close()

        asyncio.run(main())
    lines = verdicts(caplog)
    assert any("nothing proves it kept" in line for line in lines), lines
    assert not any("s3cret" in line for line in lines), lines


def test_appendfsync_always_keeps_the_epoch_only_with_proof_from_this_server(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with RedisServer(tmp_path, persistence="always") as redis:
        keys = prefix()

        async def main() -> None:
            store = RedisStorage(redis.url, prefix=keys)
            await store.open()
            try:
                first = await store.append("k", "one")
                redis.stop()  # a clean restart: SHUTDOWN writes the AOF
                redis.start()
                second = await append(store, "k", "two")
                assert second.id == f"{first.id.split('-')[0]}-2"
                # The record no longer matches what this server wrote to its own AOF
                # (as on a replica restarted as a master): no proof, so a new epoch.
                assert redis.command("SET", keys + "server:self", "another") == b"+OK\r\n"
                redis.kill()
                redis.restart()
                third = await append(store, "k", "three")
                assert third.seq == 3 and third.id.split("-")[0] != first.id.split("-")[0]
            finally:
                await store.close()

        asyncio.run(main())
    lines = verdicts(caplog)
    assert sum("appendfsync always: nothing acknowledged was lost" in x for x in lines) == 1
    assert sum("nothing proves it kept" in x for x in lines) == 1


def test_the_subscription_checks_the_server_too(tmp_path: Path) -> None:
    """A process that only holds polls (no publish, no read) rotates the epoch on reconnect."""
    with RedisServer(tmp_path, persistence="everysec") as redis:
        keys = prefix()

        async def main() -> None:
            store = RedisStorage(redis.url, prefix=keys)
            await store.open()
            try:
                before = store.epoch
                redis.kill()
                redis.restart()
                deadline = time.monotonic() + 10
                while store.epoch == before:  # the subscription reconnects by itself
                    assert time.monotonic() < deadline, "the subscription did not check"
                    await asyncio.sleep(0.02)
                stored = redis.command("GET", keys + "epoch").split(b"\r\n")[1].decode()
                assert stored == store.epoch
            finally:
                await store.close()

        asyncio.run(main())
