"""docs/openapi.yaml describes every route of ``make_app()``, and nothing else; it is served.

Routes and document are compared both ways: each rule of the application's
router must be matched by a documented path, each documented path must reach a
handler (not the JSON 404), and each documented method must be one the handler
implements, and the other way round.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import tornado.web
import yaml
from tornado.testing import gen_test

from tornado_lp import __version__, make_app
from tornado_lp.openapi import openapi_document

from .httpcase import AppCase

REPO = Path(__file__).resolve().parent.parent
CANONICAL = REPO / "tornado_lp" / "openapi.yaml"
DOCS_COPY = REPO / "docs" / "openapi.yaml"

METHODS = ("get", "head", "post", "put", "delete", "patch", "options")
# A value for each path parameter, to turn a documented path into a request path.
SAMPLES = {"channel": "lobby", "path": "displays.css", "id": "0123456789abcdef-1"}


def load_document() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(CANONICAL.read_text(encoding="utf-8"))
    return document


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLES[m.group(1)], path)


def routes(app: tornado.web.Application) -> list[tuple[re.Pattern[str], type[Any]]]:
    """(regex, handler class) of every rule of the app's router, in order."""
    found = []
    for rule in app.wildcard_router.rules:
        regex = getattr(rule.matcher, "regex", None)
        assert regex is not None, f"rule {rule} has no path regex"
        # A router target (the poll route's lean path) documents the handler behind it.
        found.append((regex, getattr(rule.target, "handler_class", rule.target)))
    return found


def handler_for(app: tornado.web.Application, path: str) -> type[Any] | None:
    """The handler class the app routes ``path`` to (``None``: the default 404)."""
    for regex, target in routes(app):
        if regex.match(path):
            return target
    return None


def implemented(handler: type[Any]) -> set[str]:
    return {
        m for m in METHODS
        if getattr(handler, m, None) is not getattr(tornado.web.RequestHandler, m)
    }


def test_docs_copy_is_identical() -> None:
    assert DOCS_COPY.read_bytes() == CANONICAL.read_bytes(), (
        "docs/openapi.yaml differs from tornado_lp/openapi.yaml (the canonical copy): "
        "cp tornado_lp/openapi.yaml docs/openapi.yaml"
    )


def test_document_is_openapi_3_1_of_this_version() -> None:
    document = load_document()
    assert document["openapi"].startswith("3.1.")
    assert document["info"]["version"] == __version__
    ids = [op["operationId"] for item in document["paths"].values()
           for method, op in item.items() if method in METHODS]
    assert len(ids) == len(set(ids)), "operationIds must be unique"


def test_every_route_is_documented() -> None:
    app = make_app()
    documented = [concrete(p) for p in load_document()["paths"]]
    for regex, target in routes(app):
        assert any(regex.match(path) for path in documented), (
            f"route {regex.pattern} ({target.__name__}) is not in docs/openapi.yaml"
        )


def test_every_documented_path_and_method_exists() -> None:
    app = make_app()
    for path, item in load_document()["paths"].items():
        handler = handler_for(app, concrete(path))
        assert handler is not None, f"{path} is documented but make_app() does not route it"
        documented = {m for m in item if m in METHODS}
        assert documented == implemented(handler), (
            f"{path}: documented {sorted(documented)}, "
            f"{handler.__name__} implements {sorted(implemented(handler))}"
        )


def test_errors_are_documented_as_json_error_objects() -> None:
    document = load_document()
    responses = document["components"]["responses"]
    for path, item in document["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            for status, response in op["responses"].items():
                if "$ref" in response:
                    response = responses[response["$ref"].rsplit("/", 1)[1]]
                content = response.get("content", {})
                if int(status) >= 400 and content:
                    assert list(content) == ["application/json"], (path, method, status)
                    schema = content["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (path, status)


class ServedTest(AppCase):
    @gen_test
    async def test_served_at_openapi_yaml(self) -> None:
        response = await self.request("GET", "/openapi.yaml")
        assert response.code == 200
        assert response.headers["Content-Type"] == "application/yaml; charset=utf-8"
        assert response.body == CANONICAL.read_bytes() == openapi_document()
