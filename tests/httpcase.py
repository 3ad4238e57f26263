"""AsyncHTTPTestCase base with JSON helpers; the app runs in-process (no global state)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.testing import AsyncHTTPTestCase
from tornado.web import Application

from tornado_lp import make_app
from tornado_lp.storage import MemoryStorage, Storage


class AppCase(AsyncHTTPTestCase):
    app_settings: dict[str, Any] = {}

    def make_storage(self) -> Storage:
        return MemoryStorage()

    def get_app(self) -> Application:
        self.storage = self.make_storage()
        self.app = make_app(self.storage, **self.app_settings)
        self.hub = self.app.settings["hub"]
        return self.app

    def get_http_client(self) -> AsyncHTTPClient:
        return AsyncHTTPClient(force_instance=True, max_clients=500)

    def tearDown(self) -> None:
        self.io_loop.run_sync(self.hub.close)
        super().tearDown()

    async def request(
        self, method: str, path: str, body: str | bytes | None = None, **kwargs: Any
    ) -> HTTPResponse:
        if method in ("POST", "PUT") and body is None:
            body = b""
        return await self.http_client.fetch(
            self.get_url(path), method=method, body=body, raise_error=False,
            request_timeout=120, **kwargs
        )

    async def publish(self, channel: str, body: str, **kwargs: Any) -> dict[str, Any]:
        response = await self.request("POST", f"/channels/{channel}/messages", body, **kwargs)
        assert response.code == 201, (response.code, response.body)
        return json.loads(response.body)  # type: ignore[no-any-return]

    async def poll(self, channel: str, **params: Any) -> dict[str, Any]:
        response = await self.request("GET", f"/channels/{channel}/poll?{urlencode(params)}")
        assert response.code == 200, (response.code, response.body)
        return json.loads(response.body)  # type: ignore[no-any-return]


def error_of(response: HTTPResponse) -> str:
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    payload = json.loads(response.body)
    assert set(payload) == {"error"}
    return payload["error"]  # type: ignore[no-any-return]
