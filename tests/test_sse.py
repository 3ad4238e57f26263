"""GET /events: Server-Sent Events read from raw sockets (tests/transports.py's SSEReader).

In-process where the app's own state can be looked at; real ``python -m
tornado_lp`` processes for SIGTERM and for the memory of a client that stops
reading.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from typing import Any

from tornado.testing import gen_test

from tornado_lp.protocol import format_stream_cursor, parse_stream_cursor
from tornado_lp.storage import Limits
from tornado_lp.tokens import make_token

from .httpcase import AppCase, each_backend
from .rawhttp import address
from .serverproc import ServerProcess
from .transports import WAIT, Connection, SSEReader, open_reader, until

FOREIGN = "0123456789abcdef"
SECRET = "sse-secret"


class SSECase(AppCase):
    def setUp(self) -> None:
        super().setUp()
        self.readers: list[SSEReader] = []

    def tearDown(self) -> None:
        async def close() -> None:
            for reader in self.readers:
                await reader.close()

        self.io_loop.run_sync(close)
        super().tearDown()

    async def sse(self, channels: list[str], **options: Any) -> SSEReader:
        reader = await open_reader("sse", self.get_http_port(), channels, **options)
        assert isinstance(reader, SSEReader)
        self.readers.append(reader)
        return reader

    async def refused(self, target: str, headers: list[tuple[str, str]] | None = None
                      ) -> tuple[int, dict[str, str], Any]:
        """Status, headers and JSON of an /events request that must not start a stream."""
        connection = await Connection.open(self.get_http_port())
        try:
            status, answer_headers, body = await connection.get(target, headers or [])
        finally:
            await connection.closed()
        assert status != 200, body
        assert answer_headers["content-type"] == "application/json; charset=utf-8", body
        assert "transfer-encoding" not in answer_headers
        payload = json.loads(body)
        assert set(payload) == {"error"}, payload
        return status, answer_headers, payload

    def cursor(self, seqs: dict[str, int | None], epoch: str | None = None) -> str:
        return format_stream_cursor(epoch or self.storage.epoch, seqs)


@each_backend
class EventStreamTest(SSECase):
    app_settings = {"heartbeat": 0.2}

    @gen_test(timeout=60)
    async def test_headers_and_retry_first(self) -> None:
        reader = await self.sse(["h"])
        assert reader.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert reader.headers["cache-control"] == "no-store"
        assert reader.headers["x-accel-buffering"] == "no"
        assert float(reader.headers["x-server-time"]) > 0
        first = await reader.connection.chunk()  # type: ignore[union-attr]
        assert first is not None and first.startswith(b"retry: "), first
        retry = int(first.split(b"\n")[0][len(b"retry: "):])
        assert 1000 <= retry <= 4000

    @gen_test(timeout=60)
    async def test_message_events_carry_the_cursor_after_each_message(self) -> None:
        await self.publish("a", "a1")
        await self.publish("b", "b1")
        reader = await self.sse(["a", "b"])
        answer = await reader.next()
        events = answer.raw
        assert [e.type for e in events] == ["message", "message"]
        assert [json.loads(e.data)["body"] for e in events] == ["a1", "b1"]
        assert set(json.loads(events[0].data)) == {"id", "channel", "body", "ts"}
        positions = [parse_stream_cursor(e.id, ["a", "b"]) for e in events]
        epoch = self.storage.epoch
        assert positions == [(epoch, {"a": 1}), (epoch, {"a": 1, "b": 1})]
        assert set(events[1].id) <= set("0123456789abcdef~")

    @gen_test(timeout=60)
    async def test_resume_from_an_old_id_replays_exactly_what_was_missed(self) -> None:
        for i in range(3):
            await self.publish("r", f"m{i}")
        reader = await self.sse(["r", "q"])
        answer = await reader.next()
        assert answer.bodies == ["m0", "m1", "m2"]
        middle = answer.raw[0].id  # the id after m0: m1 and m2 are still unseen from there
        await reader.close()
        await until(lambda: self.hub.total_waiters() == 0)
        await self.publish("r", "m3")
        await self.publish("q", "q0")
        again = await self.sse(["r", "q"], last_event_id=middle)
        replay = await again.next()
        assert replay.bodies == ["m1", "m2", "m3", "q0"] and not replay.reset

    @gen_test(timeout=60)
    async def test_last_event_id_wins_over_cursor(self) -> None:
        for i in range(4):
            await self.publish("w", f"m{i}")
        reader = await self.sse(["w"], cursor=self.cursor({"w": 1}),
                                last_event_id=self.cursor({"w": 3}))
        assert (await reader.next()).bodies == ["m3"]

    @gen_test(timeout=60)
    async def test_a_foreign_epoch_gets_a_reset_event_before_the_backlog(self) -> None:
        await self.publish("f", "f1")
        await self.publish("f", "f2")
        reader = await self.sse(["f"], last_event_id=self.cursor({"f": 1}, FOREIGN))
        events = (await reader.next()).raw
        assert [e.type for e in events] == ["reset", "message", "message"]
        assert json.loads(events[0].data) == {"channel": "f"}
        assert parse_stream_cursor(events[0].id, ["f"]) == (self.storage.epoch, {})
        assert [json.loads(e.data)["body"] for e in events[1:]] == ["f1", "f2"]

    @gen_test(timeout=60)
    async def test_heartbeats_arrive_while_idle(self) -> None:
        reader = await self.sse(["quiet"])
        started = time.monotonic()
        while reader.heartbeats < 3:
            assert await reader.read_chunk(WAIT) is not None
        # Three beats of 0.2 s: not one per read, not a busy loop either.
        assert time.monotonic() - started >= 0.3
        # Each beat is also an event pages can see, carrying the server's clock.
        assert {event.type for event in reader.events} == {"heartbeat"}
        for event in reader.events:
            assert abs(json.loads(event.data)["server_time"] - time.time()) < 60

    @gen_test(timeout=60)
    async def test_a_client_that_disconnects_is_forgotten_and_heartbeats_stop(self) -> None:
        reader = await self.sse(["g1", "g2"], params={"display": "screen-1"})
        await until(lambda: self.hub.holding("g1") == self.hub.holding("g2") == 1)
        assert len(self.app.settings["ctx"].heartbeats) == 1
        await reader.close()
        await until(lambda: self.hub.total_waiters() == 0)
        assert self.hub.pending_deadlines() == 0 and self.hub._channels == {}
        assert len(self.app.settings["ctx"].heartbeats) == 0

    @gen_test(timeout=60)
    async def test_bad_input_is_a_json_4xx_before_any_stream_byte(self) -> None:
        epoch = self.storage.epoch
        seventeen = ",".join(f"c{i}" for i in range(17))
        cases = {
            "/events": "channel",
            "/events?channel=": "channel",
            f"/events?channel={seventeen}": "channel",
            "/events?channel=a,b,a": "channel",
            "/events?channel=a&channel=a": "channel",
            "/events?channel=bad%20name": "channel",
            "/events?channel=a,,b": "channel",
            "/events?channel=a&cursor=nonsense": "cursor",
            f"/events?channel=a&cursor={epoch}-1": "cursor",  # a single-channel cursor
            f"/events?channel=a&cursor={epoch}~xyz": "cursor",
            "/events?channel=a&limit=0": "limit",
            "/events?channel=a&limit=1001": "limit",
            "/events?channel=a&limit=many": "limit",
            "/events?channel=a&display=bad%20name": "display",
            "/events?channel=a&display=%05x": "display",
        }
        for target, word in cases.items():
            status, _, payload = await self.refused(target)
            assert status == 400, target
            assert word in payload["error"], (target, payload)
        status, _, payload = await self.refused(
            "/events?channel=a", [("Last-Event-ID", "not-a-cursor")])
        assert status == 400 and "cursor" in payload["error"]
        assert self.hub.total_waiters() == 0


@each_backend
class TrimmedEventStreamTest(SSECase):
    limits = Limits(max_messages=3)

    @gen_test(timeout=60)
    async def test_a_trimmed_id_gets_a_missed_event_then_the_retained(self) -> None:
        for i in range(1, 6):
            await self.publish("t", f"m{i}")
        await self.publish("u", "u1")
        reader = await self.sse(["t", "u"], last_event_id=self.cursor({"t": 1, "u": 0}))
        events = (await reader.next()).raw
        assert [e.type for e in events] == ["missed", "message", "message", "message",
                                            "message"]
        assert json.loads(events[0].data) == {"channel": "t"}
        assert sorted(json.loads(e.data)["body"] for e in events[1:]) == ["m3", "m4", "m5", "u1"]


class DisplayTest(SSECase):
    """Memory only: the grace after a stream ends takes the registry's 2 s."""

    @gen_test(timeout=60)
    async def test_a_stream_with_display_is_live_while_open_and_not_after(self) -> None:
        reader = await self.sse(["d1", "d2"], params={"display": "lobby-1"})
        await until(lambda: self.hub.total_waiters() == 1)

        async def display() -> dict[str, Any]:
            response = await self.request("GET", "/displays")
            (entry,) = json.loads(response.body)["displays"]
            return entry  # type: ignore[no-any-return]

        entry = await display()
        assert (entry["display"], entry["channel"]) == ("lobby-1", "d1,d2")
        assert entry["held"] is True and entry["state"] == "live"
        await reader.close()
        await until(lambda: self.hub.total_waiters() == 0)
        assert (await display())["held"] is False
        deadline = time.monotonic() + WAIT
        while (await display())["state"] == "live":  # a short grace for a reconnect, no more
            assert time.monotonic() < deadline, "a closed stream stays live"
            await asyncio.sleep(0.05)


class StreamEndsTest(SSECase):
    app_settings = {"stream_max_age": 0.5}

    @gen_test(timeout=60)
    async def test_max_age_ends_the_stream_and_resuming_loses_nothing(self) -> None:
        await self.publish("age", "m0")
        reader = await self.sse(["age"])
        assert (await reader.next()).bodies == ["m0"]
        ended = await reader.until_end()
        assert reader.ended and reader.retries[-1] >= 500 and len(reader.retries) == 2
        assert [e for e in ended if e.type != "message"] == []
        await until(lambda: self.hub.total_waiters() == 0)
        missed_meanwhile = await self.publish("age", "m1")
        again = await self.sse(["age"], last_event_id=reader.cursor)
        answer = await again.next()
        assert answer.messages == [missed_meanwhile] and not answer.reset

    @gen_test(timeout=60)
    async def test_max_waiters_reached_is_503_with_retry_after(self) -> None:
        self.hub.max_waiters = 1
        await self.sse(["busy"])
        status, headers, payload = await self.refused("/events?channel=busy")
        assert status == 503 and "max-waiters" in payload["error"]
        assert 2 <= int(headers["retry-after"]) <= 15

    @gen_test(timeout=60)
    async def test_shutdown_ends_the_stream_with_a_last_retry(self) -> None:
        reader = await self.sse(["bye"])
        await until(lambda: self.hub.holding("bye") == 1)
        await self.hub.close()
        await reader.until_end()
        assert reader.ended and 1000 <= reader.retries[-1] <= 5000 and len(reader.retries) == 2


class SlowReaderTest(SSECase):
    app_settings = {"stream_max_buffer": 64 * 1024}
    limits = Limits(max_messages=10)

    @gen_test(timeout=60)
    async def test_a_client_that_stops_reading_is_cut_off(self) -> None:
        await self.sse(["flood"], rcvbuf=4096)  # and it never reads again
        await until(lambda: self.hub.holding("flood") == 1)
        body = "x" * 60_000
        published = 0
        while self.hub.waiters("flood") and published < 500:
            await self.publish("flood", body)
            published += 1
        await until(lambda: self.hub.total_waiters() == 0, what="the stream cut off")
        # Cut off long before everything published was buffered for it.
        assert published * len(body) > 4 * 64 * 1024, published
        assert self.hub.pending_deadlines() == 0 and self.hub._channels == {}
        assert len(self.app.settings["ctx"].heartbeats) == 0


class PrivateEventStreamTest(SSECase):
    app_settings = {"subscribe_secret": SECRET}

    @gen_test(timeout=60)
    async def test_tokens_are_checked_before_the_stream_starts(self) -> None:
        expired = make_token(SECRET, ["a", "b"], 60, now=time.time() - 3600)
        cases = {
            "/events?channel=a,b": "token is required",
            f"/events?channel=a,b&token={make_token(SECRET, ['a'], 60)}": "does not grant",
            f"/events?channel=a,b&token={make_token('other', ['a', 'b'], 60)}": "signature",
            f"/events?channel=a,b&token={expired}": "expired",
            "/events?channel=a,b&token=garbage": "malformed",
        }
        for target, words in cases.items():
            status, _, payload = await self.refused(target)
            assert status == 403 and words in payload["error"], (target, payload)
        reader = await self.sse(["a", "b"], params={"token": make_token(SECRET, ["a", "b"], 60)})
        assert reader.status == 200


# -- real processes ------------------------------------------------------------


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _post(server: ServerProcess, channel: str, body: bytes) -> None:
    with socket.create_connection(address(server), timeout=WAIT) as sock:
        sock.sendall(b"POST /channels/%s/messages HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n%s" % (channel.encode(), len(body), body))
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 201"), answer[:200]


def _get_json(server: ServerProcess, target: str) -> Any:
    with socket.create_connection(address(server), timeout=WAIT) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return json.loads(answer.partition(b"\r\n\r\n")[2])


def test_sigterm_ends_the_stream_cleanly_and_the_process_exits_0() -> None:
    with ServerProcess("--heartbeat", "30") as server:
        port = address(server)[1]

        async def scenario() -> None:
            reader = await open_reader("sse", port, ["term"])
            assert isinstance(reader, SSEReader)
            await reader.read_chunk()  # retry: the stream is open and held
            assert server.proc is not None
            server.proc.send_signal(15)
            await reader.until_end()
            assert reader.ended and len(reader.retries) == 2
            assert 1000 <= reader.retries[-1] <= 5000
            assert reader.connection is not None and await reader.connection.at_eof()
            await reader.close()

        asyncio.run(scenario())
        assert server.proc is not None and server.proc.wait(WAIT) == 0, server.stderr()


def test_clients_that_stop_reading_do_not_grow_the_servers_memory() -> None:
    buffer = 64 * 1024
    with ServerProcess("--stream-max-buffer", str(buffer), "--max-messages", "5") as server:
        assert server.proc is not None
        pid = server.proc.pid
        host, port = address(server)
        _post(server, "warm", b"w" * 60_000)  # warm up the allocator and the code paths
        sleepers = []
        for _ in range(10):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect((host, port))
            sock.sendall(b"GET /events?channel=flood HTTP/1.1\r\nHost: x\r\n\r\n")
            sleepers.append(sock)  # never read from again
        deadline = time.monotonic() + WAIT
        while _get_json(server, "/channels/flood")["waiters"] < len(sleepers):
            assert time.monotonic() < deadline, "the streams did not open"
        before = rss_kb(pid)
        body = b"y" * 60_000
        # The kernel queues up to tcp_wmem's maximum (4 MB on Debian) per socket
        # before the server's own buffer fills, and a stream that falls more than
        # five messages behind skips them (`missed`), so how many publishes it
        # takes depends on how they interleave with the writes: publish until
        # every sleeper is cut off, at most 1,000 (60 MB per stream).
        published = 0
        while _get_json(server, "/channels/flood")["waiters"]:
            assert published < 1000, "the streams were not cut off"
            for _ in range(10):
                _post(server, "flood", body)
            published += 10
        grown = rss_kb(pid) - before
        assert grown < 20_000, f"the server grew by {grown} KB for clients that do not read"
        for sock in sleepers:
            sock.close()
        assert server.terminate() == 0


def test_process_streams_resume_with_the_same_store_id(tmp_path: Any) -> None:
    """A stream cursor survives a restart of a persistent store (SQLite)."""
    db = os.path.join(tmp_path, "store.db")

    async def read(port: int, last_event_id: str | None) -> tuple[list[str], str | None]:
        reader = await open_reader("sse", port, ["keep"], last_event_id=last_event_id)
        assert isinstance(reader, SSEReader)
        answer = await reader.next()
        await reader.close()
        return answer.bodies, reader.cursor

    with ServerProcess("--storage", f"sqlite:///{db}") as server:
        _post(server, "keep", b"k1")
        bodies, cursor = asyncio.run(read(address(server)[1], None))
        assert bodies == ["k1"]
        _post(server, "keep", b"k2")
        assert server.terminate() == 0
    with ServerProcess("--storage", f"sqlite:///{db}") as server:
        bodies, _ = asyncio.run(read(address(server)[1], cursor))
        assert bodies == ["k2"]
        assert server.terminate() == 0

