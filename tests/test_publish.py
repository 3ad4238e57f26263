"""POST /channels/{ch}/messages, who may publish, channel info, health, 404/405."""

from __future__ import annotations

import json
import socket

from tornado.iostream import IOStream
from tornado.testing import gen_test

from tornado_lp.storage import Limits

from .httpcase import AppCase, each_backend, error_of


@each_backend
class PublishTest(AppCase):
    app_settings = {"max_message_bytes": 100}

    @gen_test
    async def test_text_plain_publish(self) -> None:
        response = await self.request(
            "POST", "/channels/news/messages", "Grüße <b>",
            headers={"Content-Type": "text/plain; charset=utf-8"},
        )
        assert response.code == 201
        message = json.loads(response.body)
        assert set(message) == {"id", "channel", "body", "ts"}
        assert (message["channel"], message["body"]) == ("news", "Grüße <b>")
        assert message["id"] == f"{self.storage.epoch}-1"
        assert isinstance(message["ts"], float)

    @gen_test
    async def test_json_publish(self) -> None:
        response = await self.request(
            "POST", "/channels/news/messages", json.dumps({"body": "from json"}),
            headers={"Content-Type": "application/json"},
        )
        assert response.code == 201
        assert json.loads(response.body)["body"] == "from json"

    async def assert_refused(self, status: int, word: str, body: bytes, **headers: str) -> None:
        response = await self.request("POST", "/channels/bad/messages", body, headers=headers)
        assert response.code == status, (response.code, response.body)
        assert word in error_of(response).lower(), response.body
        info = json.loads((await self.request("GET", "/channels/bad")).body)
        assert info["retained"] == 0, "a refused publish stored something"

    @gen_test
    async def test_bad_bodies_are_400_and_store_nothing(self) -> None:
        plain = {"Content-Type": "text/plain"}
        js = {"Content-Type": "application/json"}
        await self.assert_refused(400, "empty", b"", **plain)
        await self.assert_refused(400, "utf-8", b"\xff\xfe bad", **plain)
        await self.assert_refused(400, "utf-8", b"\xc3", **plain)
        await self.assert_refused(400, "json", b"{not json", **js)
        await self.assert_refused(400, "body", b'["body"]', **js)
        await self.assert_refused(400, "body", b'{"text": "x"}', **js)
        await self.assert_refused(400, "body", b'{"body": 5}', **js)
        await self.assert_refused(400, "empty", b'{"body": ""}', **js)
        # A lone surrogate escape is valid JSON but no UTF-8 text: stored, it broke every poll.
        await self.assert_refused(400, "utf-8", b'{"body": "a \\ud800 b"}', **js)

    @gen_test
    async def test_oversized_body_is_413_and_stores_nothing(self) -> None:
        await self.assert_refused(413, "too large", b"x" * 101, **{"Content-Type": "text/plain"})
        ok = await self.request("POST", "/channels/bad/messages", b"x" * 100)
        assert ok.code == 201

    @gen_test
    async def test_413_is_decided_before_the_body_is_sent(self) -> None:
        # Announce 10 MB and send none of it: the answer must come from the headers alone.
        stream = IOStream(socket.socket())
        await stream.connect(("127.0.0.1", self.get_http_port()))
        await stream.write(
            b"POST /channels/big/messages HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: text/plain\r\nContent-Length: 10000000\r\n\r\n"
        )
        head = await stream.read_until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413"), head
        stream.close()
        info = json.loads((await self.request("GET", "/channels/big")).body)
        assert info["retained"] == 0

    @gen_test
    async def test_bad_channel_name(self) -> None:
        response = await self.request("POST", "/channels/no%20spaces/messages", b"x")
        assert response.code == 400 and "channel" in error_of(response)

    @gen_test
    async def test_channel_info(self) -> None:
        fresh = json.loads((await self.request("GET", "/channels/never")).body)
        assert fresh == {"channel": "never", "retained": 0, "last_id": None, "waiters": 0}
        await self.publish("info", "a")
        last = await self.publish("info", "b")
        info = json.loads((await self.request("GET", "/channels/info")).body)
        assert info == {"channel": "info", "retained": 2, "last_id": last["id"], "waiters": 0}

    @gen_test
    async def test_healthz(self) -> None:
        response = await self.request("GET", "/healthz")
        assert response.code == 200 and json.loads(response.body) == {"status": "ok"}

    @gen_test
    async def test_unknown_path_is_json_404(self) -> None:
        response = await self.request("GET", "/no/such/thing")
        assert response.code == 404 and "/no/such/thing" in error_of(response)

    @gen_test
    async def test_wrong_method_is_json_405(self) -> None:
        for method, path in [("DELETE", "/channels/x/poll"), ("POST", "/channels/x/poll"),
                             ("GET", "/channels/x/messages"), ("PUT", "/healthz"),
                             ("GET", "/update"), ("GET", "/create")]:
            response = await self.request(method, path)
            assert response.code == 405, (method, path, response.code)
            assert "not allowed" in error_of(response)


@each_backend
class JsonBodyEdgesTest(AppCase):
    """Found by fuzzing: JSON that json.loads takes but the server could not answer."""

    @gen_test
    async def test_lone_surrogate_is_400_and_does_not_poison_the_channel(self) -> None:
        # json.loads turns "\ud800" into a str that cannot be encoded as UTF-8: it
        # used to be stored, then the 201 and every later poll of the channel were 500s.
        for body in (b'{"body": "\\ud800"}', b'{"body": "ok \\udfff"}'):
            response = await self.request("POST", "/channels/s/messages", body,
                                          headers={"Content-Type": "application/json"})
            assert response.code == 400, response.body
            assert "surrogate" in error_of(response)
        poll = await self.poll("s", timeout=0)
        assert poll["messages"] == []
        pair = await self.publish("s", '{"body": "\\ud83d\\ude00"}',
                                  headers={"Content-Type": "application/json"})
        assert pair["body"] == "\U0001F600"  # a proper surrogate pair is one character

    @gen_test
    async def test_deeply_nested_json_is_400(self) -> None:
        # json.loads raises RecursionError (not ValueError) past ~1000 levels: was a 500.
        for body in (b"[" * 50000, b'{"body": "x", "n": ' + b"[" * 5000 + b"]" * 5000 + b"}"):
            response = await self.request("POST", "/channels/deep/messages", body,
                                          headers={"Content-Type": "application/json"})
            assert response.code == 400, response.body
            assert "json" in error_of(response).lower()
        info = json.loads((await self.request("GET", "/channels/deep")).body)
        assert info["retained"] == 0


@each_backend
class ChannelLimitTest(AppCase):
    limits = Limits(max_channels=1)

    @gen_test
    async def test_one_channel_too_many_is_507(self) -> None:
        await self.publish("only", "x")
        response = await self.request("POST", "/channels/another/messages", b"y")
        assert response.code == 507 and "channel limit" in error_of(response)
        assert (await self.request("POST", "/channels/only/messages", b"z")).code == 201


@each_backend
class TokenTest(AppCase):
    app_settings = {"publish_token": "s3cret-token"}

    @gen_test
    async def test_token_required(self) -> None:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"},
                        {"Authorization": "Bearer "}, {"Authorization": "s3cret-token"}):
            for path in ("/channels/t/messages", "/create", "/new"):
                response = await self.request("POST", path, b"hi", headers=headers)
                assert response.code == 401, (headers, path)
                assert "token" in error_of(response) or "Authorization" in error_of(response)
                assert "s3cret" not in response.body.decode()
        info = json.loads((await self.request("GET", "/channels/t")).body)
        assert info["retained"] == 0
        ok = await self.request(
            "POST", "/channels/t/messages", b"hi", headers={"Authorization": "Bearer s3cret-token"}
        )
        assert ok.code == 201


@each_backend
class LoopbackOnlyTest(AppCase):
    """Without a token only loopback may publish; judged by the peer (or X-Forwarded-For)."""


    def get_httpserver_options(self) -> dict[str, object]:
        return {"xheaders": True}

    @gen_test
    async def test_non_loopback_is_403(self) -> None:
        for path in ("/channels/l/messages", "/create", "/new"):
            response = await self.request(
                "POST", path, b"hi", headers={"X-Forwarded-For": "203.0.113.9"}
            )
            assert response.code == 403, path
            assert "loopback" in error_of(response)
        ok = await self.request("POST", "/channels/l/messages", b"hi",
                                headers={"X-Forwarded-For": "127.0.0.1"})
        assert ok.code == 201


@each_backend
class ForwardedIgnoredByDefaultTest(AppCase):
    @gen_test
    async def test_forwarded_header_not_trusted_without_xheaders(self) -> None:
        # The peer is loopback; a forged header must not change that either way.
        response = await self.request(
            "POST", "/channels/f/messages", b"hi", headers={"X-Forwarded-For": "203.0.113.9"}
        )
        assert response.code == 201
