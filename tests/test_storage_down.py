"""Every route while the storage cannot serve (Redis lost, disk gone): 503 or normal, never 500."""

from __future__ import annotations

import json

from tornado.testing import gen_test

from tornado_lp.storage import Limits, MemoryStorage, Message, Slice, Storage, StorageUnavailable

from .httpcase import AppCase


class DownStorage(MemoryStorage):
    """A MemoryStorage that is up for setup, then refuses everything once ``down`` is set."""

    down = False

    def _check(self) -> None:
        if self.down:
            raise StorageUnavailable("the store is down (test)")

    async def append(self, channel: str, body: str) -> Message:
        self._check()
        return await super().append(channel, body)

    async def read(self, channel: str, after: int | None, limit: int) -> Slice:
        self._check()
        return await super().read(channel, after, limit)

    async def channel_count(self) -> int:
        self._check()
        return await super().channel_count()

    async def ping(self) -> None:
        self._check()


class StorageDownTest(AppCase):
    def make_storage(self) -> Storage:
        return DownStorage(Limits())

    @gen_test
    async def test_no_route_answers_500(self) -> None:
        await self.publish("default", "before")
        self.storage.down = True  # type: ignore[attr-defined]
        requests = [
            ("GET", "/channels/default/poll?timeout=0"),
            ("GET", "/channels/default/poll?timeout=1"),
            ("POST", "/channels/default/messages"),
            ("GET", "/channels/default"),
            ("GET", "/healthz"),
            ("POST", "/update"),
            ("POST", "/new"),
            ("GET", "/"),
            ("GET", "/?channel=a,b"),
            ("GET", "/publish"),
            ("GET", "/displays"),
            ("GET", "/displays.html"),
            ("GET", "/metrics"),
        ]
        for method, path in requests:
            body = "x" if path.endswith("messages") else ("id=" if path == "/update" else None)
            response = await self.request(method, path, body)
            assert response.code != 500 and response.code < 600, (path, response.code)
            if response.code == 503:
                assert set(json.loads(response.body)) == {"error"}, (path, response.body)
