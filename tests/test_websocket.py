"""GET /ws: origins, frames, resume, errors before the upgrade, pings, close codes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tornado.testing import gen_test

from tornado_lp.protocol import parse_stream_cursor
from tornado_lp.tokens import make_token

from .httpcase import AppCase, each_backend
from .transports import Connection, WSReader, open_reader, until

ALLOWED = "https://signage.example"
SECRET = "ws-secret"
FRAME_KEYS = {"messages", "cursor", "more", "missed", "reset", "channels"}


class SocketCase(AppCase):
    def setUp(self) -> None:
        super().setUp()
        self.readers: list[WSReader] = []

    def tearDown(self) -> None:
        async def close() -> None:
            for reader in self.readers:
                await reader.close()

        self.io_loop.run_sync(close)
        super().tearDown()

    async def ws(self, channels: list[str], **options: Any) -> WSReader:
        reader = await open_reader("ws", self.get_http_port(), channels, **options)
        assert isinstance(reader, WSReader)
        self.readers.append(reader)
        return reader

    async def handshake(self, target: str, origin: str | None = None,
                        upgrade: bool = True) -> tuple[int, dict[str, str], bytes]:
        """A raw WebSocket handshake: the status, headers and body of the answer."""
        headers = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                   ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                   ("Sec-WebSocket-Version", "13")] if upgrade else []
        if origin is not None:
            headers.append(("Origin", origin))
        connection = await Connection.open(self.get_http_port())
        try:
            connection.send(target, headers)
            status, answer_headers = await connection.head()
            body = b"" if status == 101 else await connection.body(answer_headers)
        finally:
            await connection.closed()
        return status, answer_headers, body

    async def refused(self, target: str, origin: str | None = None,
                      upgrade: bool = True) -> tuple[int, dict[str, str], str]:
        status, headers, body = await self.handshake(target, origin, upgrade)
        assert status != 101
        assert headers["content-type"] == "application/json; charset=utf-8", body
        payload = json.loads(body)
        assert set(payload) == {"error"}
        return status, headers, payload["error"]

    @property
    def own_origin(self) -> str:
        return f"http://127.0.0.1:{self.get_http_port()}"


@each_backend
class WebSocketTest(SocketCase):
    app_settings = {"cors_origins": [ALLOWED], "heartbeat": 0.2}

    @gen_test(timeout=60)
    async def test_a_page_on_a_foreign_origin_cannot_connect(self) -> None:
        for origin in ("https://evil.example", "http://127.0.0.1:1", "null",
                       ALLOWED + ".evil.example"):
            status, _, error = await self.refused("/ws?channel=a", origin)
            assert status == 403 and "origin" in error, origin
        assert self.hub.total_waiters() == 0

    @gen_test(timeout=60)
    async def test_an_allowed_origin_its_own_origin_and_no_origin_can_connect(self) -> None:
        for origin in (ALLOWED, self.own_origin, None):
            status, headers, _ = await self.handshake("/ws?channel=a", origin)
            assert status == 101 and headers["upgrade"].lower() == "websocket", origin
            reader = await self.ws(["a"], origin=origin)
            frame = await reader.frame()
            assert frame is not None and frame["messages"] == []

    @gen_test(timeout=60)
    async def test_frames_have_the_documented_shape(self) -> None:
        await self.publish("a", "a1")
        reader = await self.ws(["a", "b"])
        first = await reader.frame()
        assert first is not None and set(first) == FRAME_KEYS
        assert [m["body"] for m in first["messages"]] == ["a1"]
        assert set(first["messages"][0]) == {"id", "channel", "body", "ts"}
        epoch = self.storage.epoch
        assert first["channels"] == {
            "a": {"cursor": f"{epoch}-1", "more": False, "missed": False, "reset": False},
            "b": {"cursor": f"{epoch}-0", "more": False, "missed": False, "reset": False},
        }
        assert parse_stream_cursor(first["cursor"], ["a", "b"]) == (epoch, {"a": 1, "b": 0})
        waiting = asyncio.ensure_future(reader.frame())
        await until(lambda: self.hub.holding("b") == 1)
        message = await self.publish("b", "b1")
        frame = await waiting
        assert frame is not None and frame["messages"] == [message]
        assert frame["channels"]["b"]["cursor"] == message["id"]

    @gen_test(timeout=60)
    async def test_the_first_frame_comes_at_once_without_news(self) -> None:
        reader = await self.ws(["empty"])
        frame = await reader.frame()
        assert frame is not None and frame["messages"] == [] and not frame["reset"]
        assert frame["channels"]["empty"]["cursor"] == f"{self.storage.epoch}-0"

    @gen_test(timeout=60)
    async def test_resume_with_cursor_gives_exactly_what_was_missed(self) -> None:
        await self.publish("r", "m0")
        reader = await self.ws(["r"])
        assert (await reader.next()).bodies == ["m0"]
        cursor = reader.cursor
        await reader.close()
        await until(lambda: self.hub.total_waiters() == 0)
        await self.publish("r", "m1")
        await self.publish("r", "m2")
        again = await self.ws(["r"], cursor=cursor)
        answer = await again.next()
        assert answer.bodies == ["m1", "m2"] and not answer.reset and not answer.missed

    @gen_test(timeout=60)
    async def test_bad_parameters_are_json_400_before_the_upgrade(self) -> None:
        epoch = self.storage.epoch
        seventeen = ",".join(f"c{i}" for i in range(17))
        cases = {
            "/ws": "channel",
            f"/ws?channel={seventeen}": "channel",
            "/ws?channel=a,a": "channel",
            "/ws?channel=bad%20name": "channel",
            "/ws?channel=a&cursor=nonsense": "cursor",
            f"/ws?channel=a&cursor={epoch}-3": "cursor",
            "/ws?channel=a&limit=0": "limit",
            "/ws?channel=a&display=no%20spaces": "display",
        }
        for target, word in cases.items():
            status, _, error = await self.refused(target)
            assert status == 400 and word in error, (target, error)
        status, _, error = await self.refused("/ws?channel=a", upgrade=False)
        assert status == 400 and "Upgrade" in error
        assert self.hub.total_waiters() == 0

    @gen_test(timeout=60)
    async def test_pings_every_heartbeat(self) -> None:
        reader = await self.ws(["p"])
        assert reader.socket is not None
        pinged = asyncio.Event()
        pings = []

        def on_ping(data: bytes) -> None:
            pings.append(data)
            if len(pings) >= 2:
                pinged.set()

        reader.socket.on_ping = on_ping  # type: ignore[method-assign]
        await asyncio.wait_for(pinged.wait(), 20)

    @gen_test(timeout=60)
    async def test_shutdown_closes_with_1001(self) -> None:
        reader = await self.ws(["bye"])
        await reader.frame()
        await until(lambda: self.hub.holding("bye") == 1)
        await self.hub.close()
        assert await reader.frame() is None
        assert reader.close_code == 1001

    @gen_test(timeout=60)
    async def test_a_display_is_live_while_the_socket_is_open(self) -> None:
        reader = await self.ws(["x", "y"], params={"display": "hall"})
        await reader.frame()
        (entry,) = json.loads((await self.request("GET", "/displays")).body)["displays"]
        assert (entry["channel"], entry["held"], entry["state"]) == ("x,y", True, "live")
        await reader.close()
        await until(lambda: self.hub.total_waiters() == 0)
        (entry,) = json.loads((await self.request("GET", "/displays")).body)["displays"]
        assert entry["held"] is False


class WebSocketLimitsTest(SocketCase):
    app_settings = {"max_waiters": 1, "stream_max_age": 0.3, "subscribe_secret": SECRET}

    def token(self, *channels: str) -> str:
        return make_token(SECRET, list(channels), 60)

    @gen_test(timeout=60)
    async def test_tokens_are_checked_before_the_upgrade(self) -> None:
        for target, words in {
            "/ws?channel=a,b": "token is required",
            f"/ws?channel=a,b&token={self.token('a')}": "does not grant",
        }.items():
            status, _, error = await self.refused(target)
            assert status == 403 and words in error

    @gen_test(timeout=60)
    async def test_max_waiters_is_503_with_retry_after_before_the_upgrade(self) -> None:
        reader = await self.ws(["a"], params={"token": self.token("a")})
        await reader.frame()
        status, headers, error = await self.refused(f"/ws?channel=a&token={self.token('a')}")
        assert status == 503 and "max-waiters" in error
        assert 2 <= int(headers["retry-after"]) <= 15

    @gen_test(timeout=60)
    async def test_max_age_closes_with_1000_and_the_cursor_resumes(self) -> None:
        reader = await self.ws(["age"], params={"token": self.token("age")})
        await reader.frame()
        assert await reader.frame() is None
        assert reader.close_code == 1000
        await until(lambda: self.hub.total_waiters() == 0)
        message = await self.publish("age", "later")
        again = await self.ws(["age"], cursor=reader.cursor,
                              params={"token": self.token("age")})
        assert (await again.next()).messages == [message]

