"""GET /poll?channel=a,b: the multiplexed long-poll's answer, holding, errors, CORS, displays."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import urlencode

from tornado.testing import gen_test

from tornado_lp.protocol import format_stream_cursor
from tornado_lp.tokens import make_token

from .httpcase import AppCase, each_backend, error_of
from .transports import until

ALLOWED = "https://signage.example"
SECRET = "mux-secret"
KEYS = {"messages", "cursor", "more", "missed", "reset", "channels"}
FLAGS = {"cursor", "more", "missed", "reset"}


class MuxCase(AppCase):
    async def mux(self, channels: str, **params: Any) -> dict[str, Any]:
        response = await self.request("GET", f"/poll?{urlencode({'channel': channels, **params})}")
        assert response.code == 200, (response.code, response.body)
        assert response.headers["Content-Type"] == "application/json; charset=utf-8"
        assert float(response.headers["X-Server-Time"]) > 0
        payload: dict[str, Any] = json.loads(response.body)
        assert set(payload) == KEYS
        return payload

    def cursor(self, seqs: dict[str, int | None]) -> str:
        return format_stream_cursor(self.storage.epoch, seqs)


@each_backend
class MultiPollTest(MuxCase):
    @gen_test(timeout=60)
    async def test_the_answer_names_every_channel_with_its_flags(self) -> None:
        a1 = await self.publish("a", "a1")
        b1 = await self.publish("b", "b1")
        a2 = await self.publish("a", "a2")
        answer = await self.mux("a,b,c", timeout=0)
        assert answer["messages"] == [a1, b1, a2]  # by publication time
        epoch = self.storage.epoch
        assert list(answer["channels"]) == ["a", "b", "c"]
        for flags in answer["channels"].values():
            assert set(flags) == FLAGS
        assert answer["channels"]["a"] == {"cursor": f"{epoch}-2", "more": False,
                                           "missed": False, "reset": False}
        assert answer["channels"]["c"]["cursor"] == f"{epoch}-0"
        assert answer["cursor"] == self.cursor({"a": 2, "b": 1, "c": 0})
        assert (answer["more"], answer["missed"], answer["reset"]) == (False, False, False)

    @gen_test(timeout=60)
    async def test_more_is_per_channel(self) -> None:
        for i in range(3):
            await self.publish("big", f"m{i}")
        await self.publish("small", "s")
        answer = await self.mux("big,small", cursor=self.cursor({"big": 0, "small": 0}),
                                limit=2, timeout=0)
        assert [m["body"] for m in answer["messages"]] == ["m0", "m1", "s"]
        assert answer["more"] is True
        assert answer["channels"]["big"]["more"] is True
        assert answer["channels"]["small"]["more"] is False

    @gen_test(timeout=60)
    async def test_reset_is_per_channel_and_shows_in_the_top_flag(self) -> None:
        await self.publish("a", "a1")
        cursor = format_stream_cursor(self.storage.epoch, {"a": 7, "b": 0})
        answer = await self.mux("a,b", cursor=cursor, timeout=0)
        assert answer["reset"] is True
        assert answer["channels"]["a"]["reset"] is True
        assert answer["channels"]["b"]["reset"] is False

    @gen_test(timeout=60)
    async def test_holds_until_any_channel_has_news_then_answers_with_all_that_have(self) -> None:
        cursor = self.cursor({"a": 0, "b": 0, "c": 0})
        held = asyncio.ensure_future(self.mux("a,b,c", cursor=cursor, timeout=30))
        await until(lambda: all(self.hub.holding(ch) == 1 for ch in "abc"))
        message = await self.publish("c", "for c")
        answer = await held
        assert answer["messages"] == [message]
        # Behind on two channels: one answer with both.
        await self.publish("a", "for a")
        answer = await self.mux("a,b,c", cursor=cursor, timeout=30)
        assert [m["body"] for m in answer["messages"]] == ["for c", "for a"]

    @gen_test(timeout=60)
    async def test_timeout_answers_empty_with_the_same_positions(self) -> None:
        await self.publish("t", "x")
        cursor = self.cursor({"t": 1, "u": 0})
        answer = await self.mux("t,u", cursor=cursor, timeout=0.1)
        assert answer["messages"] == [] and answer["cursor"] == cursor
        assert self.hub.total_waiters() == 0

    @gen_test(timeout=60)
    async def test_every_bad_parameter_is_a_400_naming_it(self) -> None:
        seventeen = ",".join(f"c{i}" for i in range(17))
        cases = {
            "/poll": "channel",
            "/poll?channel=": "channel",
            f"/poll?channel={seventeen}": "channel",
            "/poll?channel=a,b&channel=a": "channel",
            "/poll?channel=%C3%A9": "channel",
            "/poll?channel=" + "x" * 65: "channel",
            "/poll?channel=a&cursor=0123456789abcdef-1": "cursor",
            "/poll?channel=a&cursor=%000123456789abcdef": "cursor",
            "/poll?channel=a&timeout=-1": "timeout",
            "/poll?channel=a&timeout=nan": "timeout",
            "/poll?channel=a&limit=1001": "limit",
            "/poll?channel=a&limit=%2010": "limit",
            "/poll?channel=a&display=" + "d" * 65: "display",
        }
        for target, word in cases.items():
            response = await self.request("GET", target)
            assert response.code == 400, target
            assert word in error_of(response), (target, response.body)
        response = await self.request("POST", "/poll?channel=a", b"")
        assert response.code == 405 and "GET" in response.headers["Allow"]
        assert self.hub.total_waiters() == 0

    @gen_test(timeout=60)
    async def test_a_display_is_listed_with_its_channels(self) -> None:
        held = asyncio.ensure_future(self.mux("a,b", cursor=self.cursor({"a": 0, "b": 0}),
                                              timeout=30, display="hall-2"))
        await until(lambda: self.hub.total_waiters() == 1)
        (entry,) = json.loads((await self.request("GET", "/displays")).body)["displays"]
        assert (entry["display"], entry["channel"], entry["held"]) == ("hall-2", "a,b", True)
        await self.publish("b", "x")
        await held
        (entry,) = json.loads((await self.request("GET", "/displays")).body)["displays"]
        assert entry["held"] is False and entry["state"] == "live"


class MultiPollOneTurnTest(MuxCase):
    """Memory storage: publishes in one loop turn are read in that turn."""

    @gen_test(timeout=60)
    async def test_publishes_on_two_channels_in_one_turn_are_one_answer(self) -> None:
        held = asyncio.ensure_future(self.mux("a,b", cursor=self.cursor({"a": 0, "b": 0}),
                                              timeout=30))
        await until(lambda: self.hub.holding("a") == self.hub.holding("b") == 1)
        await asyncio.gather(self.hub.publish("a", "one"), self.hub.publish("b", "two"))
        answer = await held
        assert [m["body"] for m in answer["messages"]] == ["one", "two"]


class PrivateMultiPollTest(MuxCase):
    app_settings = {"subscribe_secret": SECRET, "cors_origins": [ALLOWED]}

    @gen_test(timeout=60)
    async def test_every_403(self) -> None:
        expired = make_token(SECRET, ["a", "b"], 60, now=time.time() - 3600)
        cases = {
            "/poll?channel=a,b&timeout=0": "token is required",
            f"/poll?channel=a,b&timeout=0&token={make_token(SECRET, ['a'], 60)}": "does not grant",
            f"/poll?channel=a,b&timeout=0&token={expired}": "expired",
            f"/poll?channel=a,b&timeout=0&token={make_token('x', ['*'], 60)}": "signature",
        }
        for target, words in cases.items():
            response = await self.request("GET", target)
            assert response.code == 403 and words in error_of(response), target
        answer = await self.mux("a,b", timeout=0, token=make_token(SECRET, ["*"], 60))
        assert answer["messages"] == []

    @gen_test(timeout=60)
    async def test_cors_headers_for_allowed_origins_only(self) -> None:
        token = make_token(SECRET, ["a"], 60)
        target = f"/poll?channel=a&timeout=0&token={token}"
        allowed = await self.request("GET", target, headers={"Origin": ALLOWED})
        assert allowed.code == 200
        assert allowed.headers["Access-Control-Allow-Origin"] == ALLOWED
        assert "X-Server-Time" in allowed.headers["Access-Control-Expose-Headers"]
        assert "Retry-After" in allowed.headers["Access-Control-Expose-Headers"]
        assert allowed.headers["Vary"] == "Origin"
        other = await self.request("GET", target, headers={"Origin": "https://evil.example"})
        assert other.code == 200 and "Access-Control-Allow-Origin" not in other.headers
        assert other.headers["Vary"] == "Origin"
        refused = await self.request("GET", "/poll?channel=a", headers={"Origin": ALLOWED})
        assert refused.code == 403  # errors carry CORS too, so the page can read them
        assert refused.headers["Access-Control-Allow-Origin"] == ALLOWED
        preflight = await self.request("OPTIONS", "/poll?channel=a", headers={"Origin": ALLOWED})
        assert preflight.code == 204
        assert "GET" in preflight.headers["Access-Control-Allow-Methods"]


class OverloadedMultiPollTest(MuxCase):
    app_settings = {"max_waiters": 1}

    @gen_test(timeout=60)
    async def test_max_waiters_is_503_with_retry_after_and_timeout_0_still_answers(self) -> None:
        held = asyncio.ensure_future(self.mux("a", cursor=self.cursor({"a": 0}), timeout=30))
        await until(lambda: self.hub.total_waiters() == 1)
        response = await self.request("GET", "/poll?channel=a,b&timeout=5")
        assert response.code == 503 and "max-waiters" in error_of(response)
        assert 2 <= int(response.headers["Retry-After"]) <= 15
        assert (await self.mux("a,b", timeout=0))["messages"] == []
        await self.publish("a", "x")
        await held
