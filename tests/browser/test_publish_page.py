"""The operator page: publishes with the token and the fields, shows the server's refusal,
lists the channel's current messages and retracts them."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .conftest import LiveServer, PageWatch, wait_status

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


def test_operator_page_publishes_with_fields_lists_and_retracts(
    serve: Callable[..., LiveServer], open_page: Callable[..., PageWatch]
) -> None:
    server = serve("--publish-token", TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    status, old = server.request("POST", "/channels/ops/messages", b"Old news", auth)
    assert status == 201
    screen = open_page()
    screen.page.goto(server.url + "?channel=ops")
    wait_status(screen.page, "live")

    watch = open_page()
    watch.allow_network_errors()  # the 400 is logged by Chromium as a failed load
    page = watch.page
    sent: list[Any] = []
    page.on("request", lambda r: sent.append(r) if r.method in ("POST", "DELETE") else None)
    page.goto(server.url + "publish?channel=ops")
    listed = "() => [...document.querySelectorAll('#current .current-body')].map(e => e.innerText)"
    page.wait_for_function(f"() => ({listed})().includes('Old news')")  # the first-paint read

    # A malformed key is refused here, by the server's rule: nothing is sent.
    page.fill("#token", TOKEN)
    page.fill("#message", "Gate 2: boarding")
    page.fill("#key", "gate 2")
    page.click("#send")
    assert page.evaluate("document.getElementById('key').matches(':invalid')")
    assert sent == []

    # The server's 400 is shown as it is: more than 30 days.
    page.fill("#key", "gate-2")
    page.fill("#expires", "100000")
    page.click("#send")
    page.wait_for_function("() => document.getElementById('result').dataset.ok === 'false'")
    assert page.inner_text("#result-status") == "Error 400"
    assert "expires_in" in page.inner_text("#result-body")
    status, info = server.request("GET", "/channels/ops")
    assert (status, info["retained"]) == (200, 1)

    page.fill("#expires", "10")
    page.check("#alert")
    page.click("#send")
    page.wait_for_function("() => document.getElementById('result').dataset.ok === 'true'")
    assert json.loads(sent[-1].post_data) == {
        "body": "Gate 2: boarding", "expires_in": 600, "priority": "alert", "key": "gate-2",
    }
    assert sent[-1].headers["content-type"] == "application/json"
    _, answer = server.request("GET", "/channels/ops/poll?timeout=0")
    alert = answer["messages"][-1]
    assert (alert["body"], alert["priority"], alert["key"]) == (
        "Gate 2: boarding", "alert", "gate-2"
    )
    assert abs(alert["expires"] - alert["ts"] - 600) < 1
    assert "as an alert" in page.inner_text("#result-status")
    page.wait_for_function(f"() => ({listed})().includes('Gate 2: boarding')")  # after the publish
    item = page.locator("#current .current-item", has_text="Gate 2: boarding")
    assert item.get_attribute("data-alert") == "true"
    assert "key gate-2" in item.inner_text() and "expires " in item.inner_text()
    screen.page.wait_for_function(
        "() => document.getElementById('alert-body').textContent === 'Gate 2: boarding'"
    )

    # News from elsewhere shows up in the list as it arrives.
    status, _ = server.request("POST", "/channels/ops/messages", b"From elsewhere", auth)
    assert status == 201
    page.wait_for_function(f"() => ({listed})().includes('From elsewhere')")

    # Retract from the list, with the form's token: gone from the list and every screen.
    page.locator("#current .current-item", has_text="Old news").locator("button.retract").click()
    page.wait_for_function(f"() => !({listed})().includes('Old news')")
    assert sent[-1].method == "DELETE"
    assert sent[-1].url.endswith(f"/channels/ops/messages/{old['id']}")
    assert sent[-1].headers["authorization"] == f"Bearer {TOKEN}"
    assert page.inner_text("#result-status").startswith("Retracted ")
    screen.page.wait_for_function(
        "id => !window.tornadoTicker.snapshot().entries.some(e => e.id === id)", arg=old["id"]
    )
    _, answer = server.request("GET", "/channels/ops/poll?timeout=0")
    assert [m["body"] for m in answer["messages"]] == ["Gate 2: boarding", "From elsewhere"]
    assert page.evaluate(f"({listed})()") == ["From elsewhere", "Gate 2: boarding"]

    page.locator("#current .current-item", has_text="Gate 2: boarding").locator("button").click()
    screen.page.wait_for_function("() => document.getElementById('alert').hidden")
    page.wait_for_function(f"() => ({listed})().length === 1")
    assert TOKEN not in page.url
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0
    watch.assert_clean()
    screen.assert_clean()
