"""The seed demo's routes: /update, /create, /new on channel ``default``."""

from __future__ import annotations

import asyncio
import json
import re
from urllib.parse import urlencode

from tornado.testing import gen_test

from .httpcase import AppCase, each_backend


@each_backend
class SeedTest(AppCase):
    async def update(self, cursor: str | None) -> dict[str, str]:
        body = urlencode({"id": cursor or ""})
        response = await self.request("POST", "/update", body)
        assert response.code == 200, response.body
        assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        payload = json.loads(response.body)  # real JSON, not str(dict)
        assert set(payload) == {"html", "id"}
        return payload  # type: ignore[no-any-return]

    @gen_test
    async def test_create_and_new_publish_six_random_characters(self) -> None:
        bodies = []
        for path in ("/create", "/new", "/create"):
            response = await self.request("POST", path)
            assert response.code == 201
            message = json.loads(response.body)
            assert message["channel"] == "default"
            assert re.fullmatch(r"[A-Z0-9]{6}", message["body"])
            bodies.append(message["body"])
        answer = await self.update(None)
        assert answer["html"] == "".join(f"<div>{b}</div>" for b in bodies)

    @gen_test
    async def test_update_with_empty_id_holds_then_follows_cursor(self) -> None:
        held = asyncio.ensure_future(self.update(None))
        while self.hub.waiters("default") == 0:
            await asyncio.sleep(0.001)
        await self.publish("default", "first")
        answer = await held
        assert answer["html"] == "<div>first</div>"
        held = asyncio.ensure_future(self.update(answer["id"]))
        while self.hub.waiters("default") == 0:
            await asyncio.sleep(0.001)
        await self.publish("default", "second")
        assert (await held)["html"] == "<div>second</div>"

    @gen_test
    async def test_bodies_are_html_escaped(self) -> None:
        await self.publish("default", "<img src=x onerror=alert(1)> & \"q\"")
        answer = await self.update(None)
        assert answer["html"] == "<div>&lt;img src=x onerror=alert(1)&gt; &amp; &quot;q&quot;</div>"

    @gen_test
    async def test_bad_id_is_400(self) -> None:
        # A cursor with a control character (Tornado would have made it a space and stripped it).
        for body in ("id=not-a-cursor", f"id=%01{self.storage.epoch}-0"):
            response = await self.request("POST", "/update", body)
            assert response.code == 400, body
            assert "cursor" in json.loads(response.body)["error"]
