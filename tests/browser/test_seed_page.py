"""The seed's own jQuery page, unchanged, against tornado_lp (issue 8).

The page is cut out of the seed article at test time: from
``tests/fixtures/longpolling-gevent.txt``, a verbatim copy of
``shared/seed/longpolling-gevent.txt`` (checked byte-identical below whenever
``../shared`` sits next to the repository, as on developer machines and in
CI). It is served from the server's own origin by route interception, so its
relative ``update`` and ``new`` URLs reach tornado_lp; its CDN jQuery request
is answered with jQuery 1.9.1 from npm (``tests/fixtures``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from .conftest import REPO, LiveServer, PageWatch

FIXTURES = REPO / "tests" / "fixtures"
SEED_COPY = FIXTURES / "longpolling-gevent.txt"
SHARED_SEED = REPO.parent / "shared" / "seed" / "longpolling-gevent.txt"
JQUERY = FIXTURES / "jquery-1.9.1.min.js"
JQUERY_URL = "http://ajax.googleapis.com/ajax/libs/jquery/1.9.1/jquery.min.js"


def seed_page() -> str:
    """The HTML page in the seed article, from ``<!doctype html>`` to ``</html>``, unchanged."""
    text = SEED_COPY.read_text(encoding="utf-8")
    start = text.index("<!doctype html>")
    end = text.index("</html>", start) + len("</html>")
    return text[start:end]


def test_the_fixture_is_the_seed_unchanged() -> None:
    if not SHARED_SEED.exists():
        pytest.skip(f"{SHARED_SEED} is not here to compare with")
    assert SEED_COPY.read_bytes() == SHARED_SEED.read_bytes()


def test_seed_page_works_unchanged(
    serve: Callable[..., LiveServer], open_page: Callable[..., PageWatch]
) -> None:
    server = serve()
    html = seed_page()
    assert 'url: "update"' in html and "eval(" in html  # really the seed's page
    watch = open_page()
    page = watch.page
    page.context.route(JQUERY_URL, lambda route: route.fulfill(
        status=200, body=JQUERY.read_bytes(), content_type="application/javascript"
    ))
    page.route(server.url + "seed.html", lambda route: route.fulfill(
        status=200, body=html, content_type="text/html; charset=utf-8"
    ))
    updates: list[Any] = []
    page.on("request", lambda r: updates.append(r) if r.url.endswith("/update") else None)

    with page.expect_request(lambda r: r.url.endswith("/update")):
        page.goto(server.url + "seed.html")
    assert updates[0].method == "POST" and updates[0].post_data == "id="  # jQuery's null

    created = [server.request("POST", "/create")[1]["body"] for _ in range(3)]
    assert all(re.fullmatch(r"[A-Z0-9]{6}", body) for body in created)
    page.wait_for_function("() => document.querySelectorAll('#inbox div').length === 3")
    assert page.eval_on_selector_all("#inbox div", "ds => ds.map(d => d.textContent)") == created

    page.evaluate("() => sendNewMessage()")  # the page's own button action: POST new
    page.wait_for_function("() => document.querySelectorAll('#inbox div').length === 4")
    server.publish("default", "<b>bold</b>")
    page.wait_for_function("() => document.querySelectorAll('#inbox div').length === 5")

    inbox = page.eval_on_selector_all("#inbox div", "ds => ds.map(d => d.textContent)")
    assert inbox[:3] == created
    assert re.fullmatch(r"[A-Z0-9]{6}", inbox[3])
    assert inbox[4] == "<b>bold</b>"  # literal text, not markup
    assert page.locator("#inbox b").count() == 0
    assert len(inbox) == len(set(inbox))  # no duplicate
    # Every later /update sent the last id it got.
    ids = [r.post_data for r in updates]
    assert all(re.fullmatch(r"id=[0-9a-f]{16}-[0-9]+", d) for d in ids[1:]), ids
    state = page.inner_text("#state")
    assert "success" in state and "error" not in state
    watch.assert_clean()
