"""AsyncHTTPTestCase base with JSON helpers; the app runs in-process (no global state).

``@each_backend`` turns a test case into one case per storage backend of
tests/backends.py (``PollTest`` -> ``PollTest_memory``, ``PollTest_sqlite``, ...),
so every HTTP protocol test runs against every backend.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TypeVar
from urllib.parse import urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.testing import AsyncHTTPTestCase
from tornado.web import Application

from tornado_lp import make_app
from tornado_lp.storage import Limits, Storage

from .backends import BACKENDS, Backend

C = TypeVar("C", bound="AppCase")


class AppCase(AsyncHTTPTestCase):
    app_settings: dict[str, Any] = {}
    #: The storage backend and its limits; ``@each_backend`` sets ``backend`` per subclass.
    backend: Backend = BACKENDS["memory"]
    limits: Limits = Limits()

    def make_storage(self) -> Storage:
        return self.backend.make(self.limits)

    def get_app(self) -> Application:
        self.storage = self.make_storage()
        self.app = make_app(self.storage, **self.app_settings)
        self.hub = self.app.settings["hub"]
        return self.app

    def setUp(self) -> None:
        super().setUp()
        # Open the store as the server does before it listens: the epoch is known from here on.
        self.io_loop.run_sync(self.hub.open)

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


def each_backend(cls: type[C]) -> type[C]:
    """Replace test case ``cls`` by one subclass per backend, ``<cls>_<backend>``.

    ``cls`` itself stays importable (others may subclass it) but is not collected.
    """
    module = sys.modules[cls.__module__]
    for backend in BACKENDS.values():
        name = f"{cls.__name__}_{backend.name}"
        case = type(name, (cls,), {
            "backend": backend, "__test__": True, "__qualname__": name,
            "__module__": cls.__module__,
        })
        setattr(module, name, case)
    cls.__test__ = False  # type: ignore[attr-defined]
    return cls


def error_of(response: HTTPResponse) -> str:
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    payload = json.loads(response.body)
    assert set(payload) == {"error"}
    return payload["error"]  # type: ignore[no-any-return]
