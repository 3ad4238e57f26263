"""The lean path for plain polls answers exactly as PollHandler does."""

from __future__ import annotations

import json
import logging

from tornado.testing import gen_test

from .httpcase import AppCase


class FastPollTest(AppCase):
    async def both(self, query: str) -> tuple[object, object]:
        lean = await self.request("GET", f"/channels/c/poll?{query}")
        # An unknown parameter is ignored by the protocol but takes the full path.
        full = await self.request("GET", f"/channels/c/poll?{query}&other=1")
        assert "Server" not in lean.headers  # no RequestHandler was involved
        assert full.headers["Server"].startswith("TornadoServer")
        for response in (lean, full):
            assert response.headers["Content-Type"] == "application/json; charset=utf-8"
            assert response.headers["Cache-Control"] == "no-store"
            assert "Date" in response.headers
        return (lean.code, json.loads(lean.body)), (full.code, json.loads(full.body))

    @gen_test
    async def test_same_answers_both_ways(self) -> None:
        first = await self.publish("c", "one")
        await self.publish("c", "two")
        for query in ["timeout=0", "timeout=0&limit=1", f"cursor={first['id']}&timeout=0",
                      "cursor=0123456789abcdef-1&timeout=0", f"cursor={first['id']}&limit=1",
                      f"cursor={self.storage.epoch}-2&timeout=0.01"]:
            lean, full = await self.both(query)
            assert lean == full, query

    @gen_test
    async def test_refused_parameters_take_the_full_path_and_get_its_400(self) -> None:
        for query in ["limit=0", "timeout=-1", "cursor=x", "timeout=%05", "limit=%201"]:
            response = await self.request("GET", f"/channels/c/poll?{query}")
            assert response.code == 400, query
            assert response.headers["Server"].startswith("TornadoServer")

    @gen_test
    async def test_plain_polls_are_logged_and_counted(self) -> None:
        logger = logging.getLogger("tornado.access")
        records: list[logging.LogRecord] = []
        handler = logging.Handler()
        handler.emit = records.append  # type: ignore[method-assign]
        logger.addHandler(handler)
        level = logger.level
        logger.setLevel(logging.INFO)
        try:
            await self.request("GET", "/channels/c/poll?timeout=0&cursor=0123456789abcdef-0")
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)
        assert [r.getMessage().split(" ", 3)[:3] for r in records] == [
            ["200", "GET", "/channels/c/poll?timeout=0&cursor=0123456789abcdef-0"]
        ]
        metrics = (await self.request("GET", "/metrics")).body.decode()
        assert 'tornado_lp_polls_total{outcome="reset"} 1.0' in metrics


class CorsFastPollTest(AppCase):
    app_settings = {"cors_origins": ["https://a.example"]}

    @gen_test
    async def test_cross_origin_polls_take_the_full_path(self) -> None:
        crossing = await self.request("GET", "/channels/c/poll?timeout=0",
                                      headers={"Origin": "https://a.example"})
        assert crossing.headers["Access-Control-Allow-Origin"] == "https://a.example"
        assert crossing.headers["Server"].startswith("TornadoServer")
        local = await self.request("GET", "/channels/c/poll?timeout=0")
        assert "Server" not in local.headers
        assert local.headers["Vary"] == "Origin"
        assert "Access-Control-Allow-Origin" not in local.headers


class FullPathTest(AppCase):
    app_settings = {"lean_polls": False}

    @gen_test
    async def test_lean_path_can_be_turned_off(self) -> None:
        response = await self.request("GET", "/channels/c/poll?timeout=0")
        assert response.code == 200
        assert response.headers["Server"].startswith("TornadoServer")
