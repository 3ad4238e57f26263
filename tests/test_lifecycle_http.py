"""Expiry, alerts, keys and retraction over HTTP, on every backend (issue 14's protocol)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import quote

from tornado.testing import gen_test

from .httpcase import AppCase, each_backend, error_of

DAY = 24 * 3600


@each_backend
class LifecycleTest(AppCase):
    async def publish_json(self, channel: str, **document: Any) -> dict[str, Any]:
        response = await self.request(
            "POST", f"/channels/{channel}/messages", json.dumps(document),
            headers={"Content-Type": "application/json"},
        )
        assert response.code == 201, (response.code, response.body)
        return json.loads(response.body)  # type: ignore[no-any-return]

    async def first_paint(self, channel: str) -> list[dict[str, Any]]:
        return (await self.poll(channel, timeout=0))["messages"]  # type: ignore[no-any-return]

    async def retract(self, channel: str, message_id: str, **kwargs: Any) -> Any:
        return await self.request(
            "DELETE", f"/channels/{channel}/messages/{quote(message_id)}", **kwargs
        )

    @gen_test
    async def test_fields_are_stored_and_shown(self) -> None:
        before = time.time()
        message = await self.publish_json("f", body="Gate 2: delayed", expires_in=600,
                                          priority="alert", key="gate-2")
        assert set(message) == {"id", "channel", "body", "ts", "expires", "priority", "key"}
        assert before + 600 <= message["expires"] <= time.time() + 600
        assert (message["priority"], message["key"]) == ("alert", "gate-2")
        at = time.time() + 60
        second = await self.publish_json("f", body="until then", expires_at=at)
        assert abs(second["expires"] - at) < 0.01 and "priority" not in second
        normal = await self.publish_json("f", body="plain", priority="normal")
        assert set(normal) == {"id", "channel", "body", "ts"}
        assert [m["body"] for m in await self.first_paint("f")] == [
            "Gate 2: delayed", "until then", "plain"
        ]

    @gen_test
    async def test_every_bad_field_is_400_naming_it_and_stores_nothing(self) -> None:
        await self.publish("bad", "kept")
        cases = [
            ({"body": "x", "expires_in": 0}, "expires_in"),
            ({"body": "x", "expires_in": -5}, "expires_in"),
            ({"body": "x", "expires_in": "10"}, "expires_in"),
            ({"body": "x", "expires_in": True}, "expires_in"),
            ({"body": "x", "expires_in": 30 * DAY + 10}, "expires_in"),
            ({"body": "x", "expires_at": time.time() - 1}, "expires_at"),
            ({"body": "x", "expires_at": time.time() + 31 * DAY}, "expires_at"),
            ({"body": "x", "expires_at": "soon"}, "expires_at"),
            ({"body": "x", "expires_in": 5, "expires_at": time.time() + 5}, "not both"),
            ({"body": "x", "priority": "urgent"}, "priority"),
            ({"body": "x", "priority": 5}, "priority"),
            ({"body": "x", "key": ""}, "key"),
            ({"body": "x", "key": "a b"}, "key"),
            ({"body": "x", "key": "k" * 65}, "key"),
            ({"body": "x", "key": 5}, "key"),
            ({"body": "x", "colour": "red"}, "colour"),
        ]
        for document, word in cases:
            response = await self.request(
                "POST", "/channels/bad/messages", json.dumps(document),
                headers={"Content-Type": "application/json"},
            )
            assert response.code == 400, (document, response.body)
            assert word in error_of(response), (document, error_of(response))
        assert [m["body"] for m in await self.first_paint("bad")] == ["kept"]
        info = json.loads((await self.request("GET", "/channels/bad")).body)
        assert info["last_id"] == f"{self.storage.epoch}-1"

    @gen_test
    async def test_an_expired_message_is_in_no_answer(self) -> None:
        kept = await self.publish("e", "stays")
        going = await self.publish_json("e", body="goes", expires_in=0.4)
        cursor = kept["id"]
        follower = await self.poll("e", cursor=cursor, timeout=0)
        assert [m["body"] for m in follower["messages"]] == ["goes"]
        deadline = time.monotonic() + 10
        while any(m["id"] == going["id"] for m in await self.first_paint("e")):
            assert time.monotonic() < deadline, "the message never expired"
            await asyncio.sleep(0.05)
        assert time.time() >= going["expires"]
        later = await self.poll("e", cursor=cursor, timeout=0)
        assert later["messages"] == [] and not later["missed"]

    @gen_test
    async def test_a_key_replaces_the_earlier_message_for_first_paint(self) -> None:
        first = await self.publish_json("k", body="Gate 2: delayed", key="gate-2")
        await self.publish("k", "unkeyed")
        await self.publish_json("k", body="Gate 2: boarding", key="gate-2")
        assert [m["body"] for m in await self.first_paint("k")] == [
            "unkeyed", "Gate 2: boarding"
        ]
        cursor = f"{self.storage.epoch}-{int(first['id'].rsplit('-', 1)[1]) - 1}"
        following = await self.poll("k", cursor=cursor, timeout=0)
        assert [m["body"] for m in following["messages"]] == [
            "Gate 2: delayed", "unkeyed", "Gate 2: boarding"
        ]

    @gen_test
    async def test_retract_leaves_a_tombstone_for_followers_only(self) -> None:
        a = await self.publish("r", "right")
        wrong = await self.publish("r", "a typo")
        response = await self.retract("r", wrong["id"])
        assert response.code == 200, response.body
        tombstone = json.loads(response.body)
        assert set(tombstone) == {"id", "channel", "ts", "retract"}
        assert tombstone["retract"] == wrong["id"] and tombstone["channel"] == "r"
        # First paint: neither the message nor its tombstone.
        assert [m["body"] for m in await self.first_paint("r")] == ["right"]
        # A follower from before the message sees the tombstone, not the message.
        follower = await self.poll("r", cursor=a["id"], timeout=0)
        assert follower["messages"] == [tombstone]
        # A follower from between the two sees the tombstone too.
        between = await self.poll("r", cursor=wrong["id"], timeout=0)
        assert between["messages"] == [tombstone]
        # The seed page (channel default) never shows one either.
        await self.publish("default", "seed right")
        typo = await self.publish("default", "seed typo")
        assert (await self.retract("default", typo["id"])).code == 200
        update = await self.request("POST", "/update", "id=")
        assert json.loads(update.body)["html"] == "<div>seed right</div>"

    @gen_test
    async def test_a_held_follower_is_woken_by_a_retraction(self) -> None:
        message = await self.publish("w", "oops")
        held = asyncio.ensure_future(self.poll("w", cursor=message["id"], timeout=30))
        while self.hub.holding("w") == 0:
            await asyncio.sleep(0.005)
        response = await self.retract("w", message["id"])
        answer = await held
        assert [m.get("retract") for m in answer["messages"]] == [message["id"]]
        assert response.code == 200

    @gen_test
    async def test_retract_refusals(self) -> None:
        message = await self.publish("x", "once")
        tombstone = json.loads((await self.retract("x", message["id"])).body)
        for message_id, status, word in [
            ("not-an-id", 400, "malformed"),
            ("0123456789abcdef-1", 404, "another store"),
            (f"{self.storage.epoch}-99", 404, "99"),
            (message["id"], 404, "retracted"),
            (tombstone["id"], 404, "retraction"),
        ]:
            response = await self.retract("x", message_id)
            assert response.code == status, (message_id, response.body)
            assert word in error_of(response), (message_id, error_of(response))
        response = await self.retract("bad name", message["id"])
        assert response.code in (400, 404)


class RetractTokenTest(AppCase):
    app_settings = {"publish_token": "s3cret", "cors_origins": ["https://ops.example"]}

    @gen_test
    async def test_token_and_preflight(self) -> None:
        response = await self.request(
            "POST", "/channels/t/messages", "m", headers={"Authorization": "Bearer s3cret"}
        )
        message = json.loads(response.body)
        path = f"/channels/t/messages/{message['id']}"
        refused = await self.request("DELETE", path)
        assert refused.code == 401 and "WWW-Authenticate" in refused.headers
        wrong = await self.request("DELETE", path, headers={"Authorization": "Bearer no"})
        assert wrong.code == 401
        preflight = await self.request("OPTIONS", path, headers={"Origin": "https://ops.example"})
        assert "DELETE" in preflight.headers["Access-Control-Allow-Methods"]
        done = await self.request("DELETE", path, headers={"Authorization": "Bearer s3cret"})
        assert done.code == 200


class RetractLoopbackTest(AppCase):
    def get_httpserver_options(self) -> dict[str, object]:
        return {"xheaders": True}

    @gen_test
    async def test_non_loopback_may_not_retract(self) -> None:
        message = await self.publish("l", "m")
        path = f"/channels/l/messages/{message['id']}"
        refused = await self.request("DELETE", path, headers={"X-Forwarded-For": "203.0.113.9"})
        assert refused.code == 403 and "loopback" in error_of(refused)
        assert (await self.request("DELETE", path)).code == 200
