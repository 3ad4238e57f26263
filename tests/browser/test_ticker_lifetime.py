"""What a screen shows, and for how long (issue 14): expiry, retraction, keys, alerts.

Real servers, real Chromium, over the stream (``/events``) and the long-poll
(``/poll``). Waits are events (``wait_for_function``), never fixed sleeps;
where a bound matters ("within a second") it is measured from the server's
answer in the test process, which shares the server's clock.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import LiveServer, PageWatch, bodies, snapshot, wait_entry, wait_status

HOUR_MS = 3_600_000

# The kiosk's own clock is wrong by `shift` ms: Date (new Date(), Date.now()) is
# shifted, timers and performance.now() are not, as on a kiosk whose clock was
# never set. Only the server's clock may count.
WRONG_CLOCK = """
(shift => {
  const Real = Date;
  class KioskDate extends Real {
    constructor(...args) { if (args.length === 0) super(Real.now() + shift); else super(...args); }
    static now() { return Real.now() + shift; }
  }
  window.Date = KioskDate;
})(%d);
"""

# Records every moment (every DOM change) the line holds two items with one key.
TWO_WITH_ONE_KEY = """
window.__twoWithOneKey = [];
window.__keyChecks = 0;
new MutationObserver(() => {
  window.__keyChecks += 1;
  const seen = new Set();
  for (const el of document.querySelectorAll('#track .msg[data-key]')) {
    const k = el.dataset.channel + '\\n' + el.dataset.key;
    if (seen.has(k)) window.__twoWithOneKey.push(
      Array.from(document.querySelectorAll('#track .msg .body')).map(e => e.textContent));
    seen.add(k);
  }
}).observe(document, {subtree: true, childList: true, characterData: true});
"""

GONE = """([id, body]) =>
  !window.tornadoTicker.snapshot().entries.some(e => e.id === id)
  && !window.tornadoTicker.snapshot().alerts.some(e => e.id === id)
  && document.querySelector('#track .msg[data-id="' + id + '"]') === null
  && document.getElementById('latest-body').textContent !== body
  && (document.getElementById('alert').hidden
      || document.getElementById('alert').dataset.id !== id)"""

BANNER = """() => {
  const el = document.getElementById('alert');
  if (el.hidden) return null;
  return {id: el.dataset.id, body: document.getElementById('alert-body').textContent};
}"""


def banner(page: Any) -> dict[str, str] | None:
    return page.evaluate(BANNER)  # type: ignore[no-any-return]


def wait_banner(page: Any, body: str | None) -> None:
    """Wait until the banner shows this body (``None``: until it is hidden)."""
    page.wait_for_function(
        f"b => {{ const s = ({BANNER})();"
        " return b === null ? s === null : s !== null && s.body === b; }",
        arg=body,
    )


def wait_gone(page: Any, message: dict[str, Any]) -> None:
    page.wait_for_function(GONE, arg=[message["id"], message["body"]])


def is_gone(page: Any, message: dict[str, Any]) -> bool:
    return page.evaluate(GONE, [message["id"], message["body"]])  # type: ignore[no-any-return]


# ------------------------------------------------------------------ expiry


@pytest.mark.parametrize(("transport", "shift"), [("sse", -HOUR_MS), ("poll", HOUR_MS)])
def test_an_expiring_message_leaves_on_time_by_the_servers_clock(
    serve: Callable[..., LiveServer], open_page: Callable[..., PageWatch],
    transport: str, shift: int,
) -> None:
    # An hour behind, a page judging by its own clock would keep the message an
    # hour; an hour ahead, it would never show it.
    server = serve("--heartbeat", "1")
    stays = server.publish("exp", "stays")
    painted = server.publish_json("exp", "expires from the first paint", expires_in=3)
    watch = open_page()
    page = watch.page
    page.add_init_script(WRONG_CLOCK % shift)
    page.goto(server.url + f"?channel=exp&transport={transport}")
    wait_status(page, "live")
    assert abs(page.evaluate("Date.now()") / 1000 - time.time() - shift / 1000) < 5  # it is wrong
    live = server.publish_json("exp", "expires while on screen", expires_in=2)
    wait_entry(page, live["body"])
    assert bodies(page) == ["stays", painted["body"], live["body"]]
    state = snapshot(page)
    assert abs(state["clock"]["now"] - time.time()) < 1  # the page knows the server's time
    assert [e["expires"] for e in state["entries"]] == [None, painted["expires"], live["expires"]]

    for message in sorted([painted, live], key=lambda m: float(m["expires"])):
        wait_gone(page, message)
        gone_at = time.time()
        assert message["expires"] - 0.05 <= gone_at < message["expires"] + 1.0, (
            gone_at - message["expires"]
        )
    assert bodies(page) == [stays["body"]]
    assert page.locator("#track .msg").count() >= 1
    assert page.inner_text("#latest-body") == "stays"
    state = snapshot(page)
    assert state["clock"]["expiryAt"] is None  # nothing left to expire: no timer
    if transport == "sse":  # the heartbeats told it the server's time (--heartbeat 1)
        page.wait_for_function("() => window.tornadoTicker.snapshot().clock.readings >= 3")
    else:  # each poll answer's X-Server-Time did
        assert state["clock"]["readings"] >= 2
    watch.assert_clean()


# -------------------------------------------------------------- retraction


def test_a_retraction_leaves_three_pages_within_a_second(
    serve: Callable[..., LiveServer], open_page: Callable[..., PageWatch]
) -> None:
    server = serve()
    on_line = server.publish("rt", "Typo on the line")
    server.publish("rt", "Lunch is served")
    headline = server.publish("rt", "Typo in the headline")
    pages = []
    for transport in ("sse", "poll", "auto"):
        watch = open_page()
        watch.page.goto(server.url + f"?channel=rt&speed=1&transport={transport}")
        wait_status(watch.page, "live")
        pages.append(watch)
    for watch in pages:
        assert watch.page.inner_text("#latest-body") == "Typo in the headline"
        assert watch.page.locator(f'#track .msg[data-id="{on_line["id"]}"]').count() == 1

    for message in (on_line, headline):  # one on the line, one in the headline (and the line)
        server.retract("rt", message["id"])
        answered = time.monotonic()
        for watch in pages:
            wait_gone(watch.page, message)
        assert time.monotonic() - answered < 1.0
    for watch in pages:
        assert bodies(watch.page) == ["Lunch is served"]
        assert watch.page.inner_text("#latest-body") == "Lunch is served"
        watch.assert_clean()

    # A page opened now never sees the retracted messages (nor their tombstones).
    late = open_page()
    late.page.goto(server.url + "?channel=rt")
    wait_status(late.page, "live")
    assert bodies(late.page) == ["Lunch is served"]
    late.assert_clean()


# --------------------------------------------------------------------- keys


@pytest.mark.parametrize("transport", ["sse", "poll"])
def test_a_keyed_message_replaces_in_place_and_never_shows_two(
    serve: Callable[..., LiveServer], open_page: Callable[..., PageWatch], transport: str
) -> None:
    server = serve()
    server.publish("gates", "Hi")
    server.publish_json("gates", "Gate 2: delayed", key="gate-2")
    server.publish("gates", "Bus")
    watch = open_page()
    page = watch.page
    page.add_init_script(TWO_WITH_ONE_KEY)
    page.goto(server.url + f"?channel=gates&speed=1&transport={transport}")
    wait_status(page, "live")
    track = "() => [...document.querySelectorAll('#track .msg .body')].map(e => e.textContent)"
    assert page.evaluate(track) == ["Hi", "Gate 2: delayed", "Bus"]

    server.publish_json("gates", "Gate 2: boarding", key="gate-2")
    wait_entry(page, "Gate 2: boarding")
    # In place: the line keeps its order, the new value where the old one stood.
    assert page.evaluate(track) == ["Hi", "Gate 2: boarding", "Bus"]
    assert page.inner_text("#latest-body") == "Gate 2: boarding"  # the newest, in the headline

    for i in range(10):  # a burst of values, some arriving in one answer
        server.publish_json("gates", f"Gate 2: final call {i}", key="gate-2")
    server.publish_json("gates", "Gate 3: open", key="gate-3")
    wait_entry(page, "Gate 3: open")
    wait_entry(page, "Gate 2: final call 9")
    keyed = [e["body"] for e in snapshot(page)["entries"] if e["key"] == "gate-2"]
    assert keyed == ["Gate 2: final call 9"]
    assert page.locator('#track .msg[data-key="gate-2"]').count() == 1
    assert page.evaluate("window.__keyChecks") > 0  # the observer saw the changes
    assert page.evaluate("window.__twoWithOneKey") == []
    watch.assert_clean()


# ------------------------------------------------------------------- alerts


@pytest.mark.parametrize("transport", ["sse", "poll"])
def test_an_alert_interrupts_and_clears(
    serve: Callable[..., LiveServer], open_page: Callable[..., PageWatch], transport: str
) -> None:
    server = serve()
    server.publish("hall", "Lunch is served")
    watch = open_page(viewport={"width": 1280, "height": 720})
    page = watch.page
    page.goto(server.url + f"?channel=hall&transport={transport}")
    wait_status(page, "live")
    assert banner(page) is None

    first = server.publish_json("hall", "Please leave by the east exit", priority="alert")
    wait_banner(page, first["body"])
    on_top = page.evaluate(
        """() => { const r = document.getElementById('alert').getBoundingClientRect();
                   return document.elementFromPoint(innerWidth / 2, r.top + r.height / 2)
                     .closest('#alert') !== null; }"""
    )
    assert on_top  # above everything else at its place
    assert bodies(page) == ["Lunch is served"]  # an alert is a banner, not an item of the line
    assert page.locator("#track .msg", has_text="east exit").count() == 0

    newer = server.publish_json("hall", "Stay where you are", priority="alert")
    wait_banner(page, newer["body"])
    assert snapshot(page)["alert"]["id"] == newer["id"]
    server.retract("hall", newer["id"])  # as a page opened now would: the older alert again
    wait_banner(page, first["body"])
    server.retract("hall", first["id"])  # an alert without expiry stays until retracted
    wait_banner(page, None)

    # A keyed alert replaces the older one for good; an expiring one clears on time.
    server.publish_json("hall", "Fire drill at 10:00", priority="alert", key="drill")
    wait_banner(page, "Fire drill at 10:00")
    server.publish_json("hall", "Fire drill now", priority="alert", key="drill", expires_in=2)
    wait_banner(page, "Fire drill now")
    assert [a["body"] for a in snapshot(page)["alerts"]] == ["Fire drill now"]
    wait_banner(page, None)
    assert snapshot(page)["alerts"] == []
    assert page.inner_text("#latest-body") == "Lunch is served"
    watch.assert_clean()


@pytest.mark.parametrize(("transport", "held"), [("auto", "**/events?*"), ("poll", "**/poll?*")])
def test_a_page_opened_during_an_alert_shows_it_on_first_paint(
    serve: Callable[..., LiveServer], open_page: Callable[..., PageWatch], transport: str, held: str
) -> None:
    server = serve()
    alert = server.publish_json("fp", "Building closed today", priority="alert")
    for i in range(8):  # the alert is older than the newest `max` messages
        server.publish("fp", f"news {i}")
    watch = open_page()
    reads: list[Any] = []
    watch.page.route(held, lambda route: reads.append(route))  # nothing but the HTML
    watch.page.goto(server.url + f"?channel=fp&max=3&transport={transport}")
    watch.page.wait_for_function("() => window.tornadoTicker !== undefined")
    assert banner(watch.page) == {"id": alert["id"], "body": "Building closed today"}
    assert bodies(watch.page) == ["news 5", "news 6", "news 7"]
    watch.page.wait_for_function("() => window.tornadoTicker.snapshot().connection.state")
    assert len(reads) == 1
    reads[0].continue_()
    wait_status(watch.page, "live")
    watch.page.unroute(held)
    assert banner(watch.page) == {"id": alert["id"], "body": "Building closed today"}
    watch.assert_clean()


LONG_ALERT = "Please leave the building now by the east exit and gather in the car park"


def _luminance(rgb: str) -> float:
    channels = [int(part) / 255 for part in rgb[rgb.index("(") + 1 : rgb.index(")")].split(",")[:3]]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


@pytest.mark.parametrize(
    ("width", "height", "theme", "min_font"),
    [(1280, 720, "dark", 48), (1920, 1080, "light", 72), (1080, 1920, "dark", 72)],
)
def test_the_alert_banner_is_full_width_and_in_view(
    serve: Callable[..., LiveServer], open_page: Callable[..., PageWatch], tmp_path: Path,
    width: int, height: int, theme: str, min_font: int,
) -> None:
    server = serve()
    for i in range(3):
        server.publish("lobby", f"Keynote in Hall {i} starts in 15 minutes")
    server.publish_json("lobby", LONG_ALERT, priority="alert")
    watch = open_page(viewport={"width": width, "height": height})
    page = watch.page
    page.goto(server.url + f"?channel=lobby,transit&theme={theme}&speed=1&title=Spring%20Fair")
    wait_status(page, "live")
    wait_banner(page, LONG_ALERT)
    layout = page.evaluate(
        """() => {
             const r = document.getElementById('alert').getBoundingClientRect();
             const body = document.getElementById('alert-body');
             const style = getComputedStyle(document.getElementById('alert'));
             return {left: r.left, right: r.right, top: r.top, bottom: r.bottom,
                     font: parseFloat(getComputedStyle(body).fontSize),
                     clipped: body.scrollHeight > body.clientHeight + 1,
                     scrollW: document.documentElement.scrollWidth,
                     scrollH: document.documentElement.scrollHeight,
                     fg: style.color, bg: style.backgroundColor,
                     band: document.getElementById('band').getBoundingClientRect().bottom};
           }"""
    )
    assert (layout["left"], layout["right"]) == (0, width)  # full width
    assert 0 <= layout["top"] and layout["bottom"] <= height  # in the viewport
    assert layout["bottom"] < layout["band"]  # the moving line still shows below it
    assert (layout["scrollW"], layout["scrollH"]) == (width, height)  # no scrollbars
    assert layout["font"] >= min_font  # readable from across a room
    assert not layout["clipped"]  # the whole text fits
    light, dark = sorted([_luminance(layout["fg"]), _luminance(layout["bg"])], reverse=True)
    assert (light + 0.05) / (dark + 0.05) >= 7  # WCAG AAA contrast
    folder = Path(os.environ.get("TICKER_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"alert-{width}x{height}-{theme}.png"))
    watch.assert_clean()
