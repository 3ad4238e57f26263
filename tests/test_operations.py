"""Operators' views: CORS, the fleet of displays, Prometheus metrics, server time."""

from __future__ import annotations

import asyncio
import json
import time

from tornado.testing import gen_test

from tornado_lp.storage import MemoryFleetStore, Sighting

from .httpcase import AppCase, error_of

ORIGIN = "https://signage.example.com"


class CorsTest(AppCase):
    app_settings = {"cors_origins": [ORIGIN], "publish_token": "tok"}

    @gen_test
    async def test_allowed_origin_gets_cors_headers(self) -> None:
        response = await self.request("GET", "/channels/c/poll?timeout=0",
                                      headers={"Origin": ORIGIN})
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert response.headers["Vary"] == "Origin"
        assert "X-Server-Time" in response.headers["Access-Control-Expose-Headers"]
        # ...also on errors
        response = await self.request("GET", "/channels/c/poll?limit=0",
                                      headers={"Origin": ORIGIN})
        assert response.code == 400
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN

    @gen_test
    async def test_other_origins_get_none(self) -> None:
        for headers in ({"Origin": "https://evil.example.net"}, {}):
            response = await self.request("GET", "/channels/c/poll?timeout=0", headers=headers)
            assert "Access-Control-Allow-Origin" not in response.headers
            assert response.headers["Vary"] == "Origin"

    @gen_test
    async def test_preflight_for_publish_with_authorization(self) -> None:
        response = await self.request("OPTIONS", "/channels/c/messages", headers={
            "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        assert response.code == 204
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "POST" in response.headers["Access-Control-Allow-Methods"]
        assert "Authorization" in response.headers["Access-Control-Allow-Headers"]
        response = await self.request("OPTIONS", "/channels/c/messages", headers={
            "Origin": "https://evil.example.net", "Access-Control-Request-Method": "POST"})
        assert "Access-Control-Allow-Origin" not in response.headers
        assert "Access-Control-Allow-Methods" not in response.headers
        # The actual cross-origin publish
        response = await self.request("POST", "/channels/c/messages", b"hi", headers={
            "Origin": ORIGIN, "Authorization": "Bearer tok"})
        assert response.code == 201
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN


class NoCorsTest(AppCase):
    @gen_test
    async def test_no_cors_headers_by_default(self) -> None:
        response = await self.request("GET", "/channels/c/poll?timeout=0",
                                      headers={"Origin": ORIGIN})
        assert "Access-Control-Allow-Origin" not in response.headers
        assert "Vary" not in response.headers


class DisplaysTest(AppCase):
    @gen_test
    async def test_displays_are_listed_with_state(self) -> None:
        held = asyncio.ensure_future(self.request(
            "GET", "/channels/lobby/poll?timeout=30&display=lobby-1",
            headers={"User-Agent": "KioskBrowser/1.0"}))
        while self.hub.waiters("lobby") == 0:
            await asyncio.sleep(0.001)
        await self.poll("bar", timeout=0, display="bar-screen")
        listing = json.loads((await self.request("GET", "/displays")).body)
        assert listing["count"] == 2
        by_name = {d["display"]: d for d in listing["displays"]}
        lobby = by_name["lobby-1"]
        assert (lobby["channel"], lobby["state"], lobby["held"]) == ("lobby", "live", True)
        assert lobby["address"] == "127.0.0.1" and lobby["user_agent"] == "KioskBrowser/1.0"
        assert by_name["bar-screen"]["held"] is False
        assert abs(listing["server_time"] - time.time()) < 60
        await self.publish("lobby", "wake")
        await held
        page = await self.request("GET", "/displays.html")
        assert page.code == 200 and page.headers["Content-Type"].startswith("text/html")
        assert b"lobby-1" in page.body and b"bar-screen" in page.body

    @gen_test
    async def test_bad_display_name_is_400(self) -> None:
        response = await self.request("GET", "/channels/c/poll?timeout=0&display=%3Cscript%3E")
        assert response.code == 400 and "display" in error_of(response)

    @gen_test
    async def test_display_names_are_escaped_in_the_page(self) -> None:
        await self.poll("c", timeout=0, display="a.b")
        self.app.settings["ctx"].fleet.display_opened(
            "x", ["c"], "127.0.0.1", "<script>alert(1)</script>", 1)
        page = await self.request("GET", "/displays.html")
        assert b"<script>alert" not in page.body and b"&lt;script&gt;" in page.body

    @gen_test
    async def test_page_errors_are_json_with_a_json_content_type(self) -> None:
        # Found by the HTTP fuzz test: the page's text/html default header stayed on
        # its JSON errors. error_of() checks the Content-Type.
        response = await self.request("POST", "/displays.html", b"x")
        assert response.code == 405 and "POST" in error_of(response)


def test_memory_fleet_store_is_bounded_and_states_age() -> None:
    now = [1000.0]
    store = MemoryFleetStore(max_displays=3, clock=lambda: now[0])

    def seen(name: str, held: bool = False) -> None:
        store.note("p1", Sighting(name, "ch", "127.0.0.1", "ua", 25, held))

    def states() -> dict[str, str]:
        from tornado_lp.storage.fleet import display_state

        at, rows = store.snapshot()
        return {r["display"]: display_state(r["held"], at - r["last_seen"], r["hold"],
                                            store.stale_after, store.gone_after) for r in rows}

    for name in ["a", "b", "c", "d"]:
        seen(name)
    assert [r["display"] for r in store.snapshot()[1]] == ["d", "c", "b"]  # "a" forgotten
    seen("b")  # seen again: most recent
    assert store.snapshot()[1][0]["display"] == "b"
    now[0] += 120  # past twice the hold (50 s) for all; "b" is held
    seen("b", held=True)
    assert states() == {"b": "live", "d": "stale", "c": "stale"}
    assert store.count_live() == 1
    now[0] += 600
    assert states() == {"b": "live", "d": "gone", "c": "gone"}  # held: live however long
    now[0] += 86400
    assert store.snapshot()[1] == []


class MetricsTest(AppCase):
    @gen_test
    async def test_metrics_in_prometheus_format(self) -> None:
        first = await self.publish("m", "one")
        await self.publish("m", "two")
        await self.poll("m", timeout=0)  # messages: 2 delivered
        await self.poll("m", cursor=first["id"].rsplit("-", 1)[0] + "-2", timeout=0.01)
        await self.poll("m", cursor="0123456789abcdef-1", timeout=0)  # reset
        await self.request("GET", "/channels/m/poll?limit=0")  # error
        held = asyncio.ensure_future(self.poll("m", cursor=f"{self.storage.epoch}-2", timeout=30))
        while self.hub.waiters("m") == 0:
            await asyncio.sleep(0.001)
        response = await self.request("GET", "/metrics")
        assert response.code == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.body.decode()
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        assert values["tornado_lp_held_polls"] == 1
        assert values['tornado_lp_polls_total{outcome="messages"}'] == 1
        assert values['tornado_lp_polls_total{outcome="timeout"}'] == 1
        assert values['tornado_lp_polls_total{outcome="reset"}'] == 1
        assert values['tornado_lp_polls_total{outcome="error"}'] == 1
        assert values["tornado_lp_messages_published_total"] == 2
        assert values["tornado_lp_messages_delivered_total"] == 4  # 2 + reset's 2
        assert values["tornado_lp_publish_seconds_count"] == 2
        assert values["tornado_lp_storage_errors_total"] == 0
        assert "tornado_lp_displays_live" in values
        await self.publish("m", "three")
        await held

    @gen_test
    async def test_poll_answers_carry_server_time(self) -> None:
        response = await self.request("GET", "/channels/t/poll?timeout=0")
        assert abs(float(response.headers["X-Server-Time"]) - time.time()) < 60


class TwoAppsShareNothingTest(AppCase):
    @gen_test
    async def test_metrics_registries_are_separate(self) -> None:
        from tornado_lp import make_app

        other = make_app()
        mine = self.app.settings["ctx"].metrics.registry
        assert other.settings["ctx"].metrics.registry is not mine
        await self.publish("x", "only here")
        assert other.settings["hub"].total_waiters() == 0
        await other.settings["hub"].close()
