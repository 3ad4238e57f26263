"""The operator page publishes with the token and shows the server's refusal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .conftest import LiveServer, PageWatch

TOKEN = "s3cret-token"


def test_operator_page_publishes_with_the_token_and_shows_401_without(
    serve: Callable[..., LiveServer], open_page: Callable[..., PageWatch]
) -> None:
    server = serve("--publish-token", TOKEN)
    watch = open_page()
    watch.allow_network_errors()  # the 401 is logged by Chromium as a failed load
    page = watch.page
    sent: list[Any] = []
    page.on("request", lambda r: sent.append(r) if r.method == "POST" else None)
    response = page.goto(server.url + "publish?channel=ops")
    assert response is not None
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert page.input_value("#channel") == "ops"

    page.fill("#message", "Hall B <b>closed</b>")
    page.fill("#token", "wrong")
    page.click("#send")
    page.wait_for_function("() => !document.getElementById('result').hidden")
    assert page.inner_text("#result-status") == "Error 401"
    assert "token" in page.inner_text("#result-body")
    assert sent[-1].headers["authorization"] == "Bearer wrong"
    status, info = server.request("GET", "/channels/ops")
    assert (status, info["retained"]) == (200, 0)  # a refused publish stores nothing

    page.fill("#token", TOKEN)
    page.click("#send")
    page.wait_for_function("() => document.getElementById('result').dataset.ok === 'true'")
    assert page.inner_text("#result-status").startswith("Published to ops at ")
    assert page.inner_text("#result-body") == "Hall B <b>closed</b>"  # shown as text
    assert page.locator("#result b").count() == 0
    assert sent[-1].headers["authorization"] == f"Bearer {TOKEN}"
    status, answer = server.request("GET", "/channels/ops/poll?timeout=0")
    assert [m["body"] for m in answer["messages"]] == ["Hall B <b>closed</b>"]

    # The token lives in the page only: not in the URL, storage or cookies.
    assert TOKEN not in page.url
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0
    assert watch.context.cookies() == []
    watch.assert_clean()
