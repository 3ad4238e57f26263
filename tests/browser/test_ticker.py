"""The kiosk ticker page in Chromium against a real server: delivery, safety, bounds, reload."""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from tornado_lp.protocol import format_stream_cursor
from tornado_lp.tokens import make_token

from .conftest import (
    LiveServer,
    PageWatch,
    ReaderLog,
    bodies,
    connection,
    snapshot,
    track_bodies,
    wait_entry,
    wait_status,
)

XSS = "<img src=x onerror=alert(1)>"
SCRIPT = "<script>window.pwned = 1</script>"


@pytest.mark.parametrize(("transport", "held"), [("auto", "**/events?*"), ("poll", "**/poll?*")])
def test_first_paint_shows_the_backlog_before_any_read(
    serve: Callable[..., LiveServer], open_page: Callable[..., PageWatch], transport: str, held: str
) -> None:
    server = serve()
    server.publish("paint", "first")
    message = server.publish("paint", "second")
    watch = open_page()
    reads: list[Any] = []
    # Hold the stream (or poll) back: what the page shows now comes from the HTML alone.
    watch.page.route(held, lambda route: reads.append(route))
    response = watch.page.goto(server.url + f"?channel=paint&transport={transport}")
    assert response is not None
    assert response.headers["content-security-policy"].startswith("default-src 'self'")
    assert "script-src 'self';" in response.headers["content-security-policy"]
    watch.page.wait_for_function("() => window.tornadoTicker !== undefined")
    assert track_bodies(watch.page) == ["first", "second"]
    watch.page.wait_for_function("() => window.tornadoTicker.snapshot().connection.state")
    assert len(reads) == 1
    query = parse_qs(urlsplit(reads[0].request.url).query)
    # It resumes from the stream cursor rendered with the backlog: nothing is sent twice.
    epoch, seq = message["id"].split("-")
    assert query["cursor"] == [format_stream_cursor(epoch, {"paint": int(seq)})]
    assert query["channel"] == ["paint"]
    if transport == "poll":
        assert query["timeout"] == ["0"]  # it asks, it does not hold
    reads[0].continue_()
    wait_status(watch.page, "live")
    watch.page.unroute(held)
    watch.assert_clean()


def test_messages_published_after_load_appear_within_a_second_in_order(
    serve: Callable[..., LiveServer], open_page: Callable[..., PageWatch]
) -> None:
    server = serve()
    server.publish("news", "backlog")
    watch = open_page()
    watch.page.goto(server.url + "?channel=news")
    wait_status(watch.page, "live")
    sent = [f"news item {i}" for i in range(1, 4)]
    started = time.monotonic()
    for body in sent:
        server.publish("news", body)
    watch.page.wait_for_function(
        "n => document.querySelectorAll('#track .msg').length >= n", arg=4, timeout=1000
    )
    assert time.monotonic() - started < 1.0
    assert track_bodies(watch.page)[-3:] == sent  # new messages join the tail, in order
    assert bodies(watch.page) == ["backlog", *sent]
    watch.assert_clean()


def test_several_channels_interleave_by_publish_time(
    serve: Callable[..., LiveServer], open_page: Callable[..., PageWatch]
) -> None:
    server = serve()
    server.publish("a", "a1")
    server.publish("b", "b1")
    server.publish("a", "a2")
    watch = open_page()
    watch.page.goto(server.url + "?channel=a,b&max=10")
    wait_status(watch.page, "live")
    server.publish("b", "b2")
    server.publish("a", "a3")
    watch.page.wait_for_function("() => window.tornadoTicker.snapshot().entries.length === 5")
    assert bodies(watch.page) == ["a1", "b1", "a2", "b2", "a3"]
    tags = watch.page.eval_on_selector_all("#track .msg .tag", "els => els.map(e => e.textContent)")
    assert set(tags) <= {"a", "b"} and tags  # several channels: each item names its channel
    watch.assert_clean()


def test_html_in_a_body_is_shown_as_text_and_runs_nothing(
    serve: Callable[..., LiveServer], open_page: Callable[..., PageWatch]
) -> None:
    server = serve()
    server.publish("safe", XSS)  # through the first paint
    watch = open_page()
    watch.page.goto(server.url + "?channel=safe")
    wait_status(watch.page, "live")
    server.publish("safe", SCRIPT)  # through a poll
    watch.page.wait_for_function("() => window.tornadoTicker.snapshot().entries.length === 2")
    watch.page.wait_for_function("() => document.querySelectorAll('#track .msg').length === 2")
    assert track_bodies(watch.page) == [XSS, SCRIPT]
    assert watch.page.locator("#track img, #track script").count() == 0
    assert watch.page.evaluate("window.pwned") is None
    watch.assert_clean()  # no alert dialog, no error


def test_two_thousand_messages_keep_the_page_bounded_and_responsive(
    serve: Callable[..., LiveServer], open_page: Callable[..., PageWatch]
) -> None:
    server = serve("--max-messages", "5000")
    watch = open_page()
    page = watch.page
    page.goto(server.url + "?channel=burst&max=20&speed=4000")
    wait_status(page, "live")
    cdp = page.context.new_cdp_session(page)

    def heap_after_gc() -> float:
        cdp.send("HeapProfiler.collectGarbage")
        return float(cdp.send("Runtime.getHeapUsage")["usedSize"])

    def burst(start: int, count: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            for i in range(start, start + count):
                connection.request("POST", "/channels/burst/messages", body=f"m{i}".encode())
                response = connection.getresponse()
                response.read()
                assert response.status == 201
        finally:
            connection.close()

    burst(0, 1000)
    wait_entry(page, "m999")
    heap_1000 = heap_after_gc()
    burst(1000, 1000)
    wait_entry(page, "m1999")
    heap_2000 = heap_after_gc()

    state = snapshot(page)
    assert [e["body"] for e in state["entries"]] == [f"m{i}" for i in range(1980, 2000)]
    assert state["track"] <= 20
    assert page.locator("#track .item").count() <= 20
    on_track = page.eval_on_selector_all("#track .msg", "els => els.map(e => e.dataset.id)")
    assert len(on_track) == len(set(on_track))
    # The newest reaches the screen: the queue drains at 4000 px/s.
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('#track .msg .body'))"
        ".some(e => e.textContent === 'm1999' && e.getBoundingClientRect().left < innerWidth)",
        timeout=15_000,
    )
    # Another 1000 messages through the page did not grow the heap.
    assert heap_2000 - heap_1000 < 1_000_000, (heap_1000, heap_2000)
    # Still responsive: frames keep coming and a new message still arrives at once.
    frames = page.evaluate(
        """() => new Promise(done => {
             let n = 0; const t0 = performance.now();
             const tick = () => {
               n++;
               if (performance.now() - t0 < 500) requestAnimationFrame(tick); else done(n);
             };
             requestAnimationFrame(tick);
           })"""
    )
    assert frames >= 10
    server.publish("burst", "after the storm")
    wait_entry(page, "after the storm", timeout=1000)
    watch.assert_clean()


def test_reload_resumes_from_the_stored_cursor_without_duplicates(
    serve: Callable[..., LiveServer], open_page: Callable[..., PageWatch]
) -> None:
    server = serve()
    server.publish("rl", "a")
    server.publish("rl", "b")
    watch = open_page()
    page = watch.page
    page.goto(server.url + "?channel=rl")
    wait_status(page, "live")
    c = server.publish("rl", "c")
    page.wait_for_function("() => window.tornadoTicker.snapshot().entries.length === 3")
    stored = page.evaluate("localStorage.getItem('tornado_lp:stream:rl')")
    epoch, seq = c["id"].split("-")
    assert stored == format_stream_cursor(epoch, {"rl": int(seq)})  # the last event's id

    reads = ReaderLog(page)
    page.reload()
    wait_status(page, "live")
    assert reads.paths() == ["/events"]
    assert parse_qs(urlsplit(reads.started[0]).query)["cursor"] == [stored]  # from localStorage
    server.publish("rl", "d")
    page.wait_for_function("() => window.tornadoTicker.snapshot().entries.length === 4")
    assert bodies(page) == ["a", "b", "c", "d"]

    # Closed while a message is published: the next page shows it once.
    page.close()
    server.publish("rl", "e")
    watch.page = page = watch.context.new_page()
    page.on("pageerror", lambda error: watch.page_errors.append(str(error)))
    page.goto(server.url + "?channel=rl")
    wait_status(page, "live")
    server.publish("rl", "f")
    page.wait_for_function("() => window.tornadoTicker.snapshot().entries.length === 6")
    assert bodies(page) == ["a", "b", "c", "d", "e", "f"]
    on_track = page.eval_on_selector_all("#track .msg", "els => els.map(e => e.dataset.id)")
    assert len(on_track) == len(set(on_track))
    watch.assert_clean()


def test_bad_options_are_refused_naming_the_option(serve: Callable[..., LiveServer]) -> None:
    server = serve()
    for query, name in [
        ("channel=no/slash", "channel"),
        ("channel=a&max=0", "max"),
        ("channel=a&speed=fast", "speed"),
        ("channel=a&theme=pink", "theme"),
    ]:
        status, answer = server.request("GET", "/?" + query)
        assert status == 400, query
        assert name in answer["error"], answer


def test_private_channel_page_needs_the_token_and_passes_it_on(
    serve: Callable[..., LiveServer], open_page: Callable[..., PageWatch]
) -> None:
    secret = "kiosk secret"
    server = serve("--subscribe-secret", secret)
    server.publish("staff", "backlog for staff only")
    status, answer = server.request("GET", "/?channel=staff")
    assert status == 403 and "token" in answer["error"]  # no backlog leaks through the page
    token = make_token(secret, ["staff"], 3600)
    status, _ = server.request("GET", "/?channel=staff&token=" + quote(token))
    assert status == 200

    for transport, path in [("auto", "/events"), ("poll", "/poll")]:
        watch = open_page()
        reads = ReaderLog(watch.page)
        watch.page.goto(server.url + f"?channel=staff&transport={transport}&token=" + quote(token))
        wait_status(watch.page, "live")
        server.publish("staff", f"live for staff ({transport})")
        wait_entry(watch.page, f"live for staff ({transport})")
        assert bodies(watch.page)[0] == "backlog for staff only"
        assert reads.started and set(reads.paths()) == {path}
        assert all(parse_qs(urlsplit(url).query)["token"] == [token] for url in reads.started)
        watch.assert_clean()


@pytest.mark.parametrize("transport", ["sse", "poll"])
def test_start_is_idempotent_and_stop_ends_the_held_read(
    serve: Callable[..., LiveServer], open_page: Callable[..., PageWatch], transport: str
) -> None:
    server = serve()
    watch = open_page()
    page = watch.page
    reads = ReaderLog(page)
    page.goto(server.url + f"?channel=sm&transport={transport}")
    wait_status(page, "live")
    wait_waiters(server, "sm", 1)
    # The server counts a timeout=0 first poll while it reads, and Playwright
    # reports requests after the fact: wait until the log shows the held read.
    reads.wait_until(lambda: bool(reads.started) and held_read(reads.started[-1]), "the held read")
    started = len(reads.started)
    page.evaluate("() => { tornadoTicker.start(); tornadoTicker.start(); }")
    assert len(reads.started) == started  # no second loop
    assert connection(page)["transport"] == transport

    page.evaluate("() => tornadoTicker.stop()")
    assert connection(page)["state"] == "CLOSED"
    wait_status(page, "stopped")
    wait_waiters(server, "sm", 0)  # the stream was closed (the poll aborted), the server forgot it

    page.evaluate("() => { tornadoTicker.start(); tornadoTicker.start(); }")
    wait_status(page, "live")
    wait_waiters(server, "sm", 1)  # one loop holds one reader, not two
    reads.wait_until(lambda: len(reads.started) > started, "a read after the restart")
    server.publish("sm", "after restart of the loop")
    wait_entry(page, "after restart of the loop")
    wait_waiters(server, "sm", 1)
    assert bodies(page).count("after restart of the loop") == 1
    assert reads.most_open == 1
    watch.assert_clean()


def held_read(url: str) -> bool:
    """True for a stream or a poll that may be held (not a ``timeout=0`` probe)."""
    return urlsplit(url).path == "/events" or parse_qs(urlsplit(url).query).get("timeout") != ["0"]


def wait_waiters(server: LiveServer, channel: str, count: int, timeout: float = 10) -> None:
    """Wait until the server holds exactly ``count`` polls on ``channel``."""
    deadline = time.monotonic() + timeout
    while True:
        _, info = server.request("GET", f"/channels/{channel}")
        if info["waiters"] == count:
            return
        assert time.monotonic() < deadline, info
        time.sleep(0.05)


@pytest.mark.parametrize("transport", ["sse", "poll"])
def test_a_named_display_shows_up_in_the_fleet_view(
    serve: Callable[..., LiveServer], open_page: Callable[..., PageWatch], transport: str
) -> None:
    server = serve()
    watch = open_page()
    reads = ReaderLog(watch.page)
    query = f"channel=lobby,news&display=lobby-screen-1&transport={transport}"
    watch.page.goto(server.url + "?" + query)
    wait_status(watch.page, "live")
    assert all(parse_qs(urlsplit(url).query)["display"] == ["lobby-screen-1"]
               for url in reads.started)
    deadline = time.monotonic() + 10
    while True:  # a long-poll page is between two polls for a moment after each answer
        _, fleet = server.request("GET", "/displays")
        (display,) = [d for d in fleet["displays"] if d["display"] == "lobby-screen-1"]
        if display["held"] or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert display["channel"] == "lobby,news"
    assert (display["state"], display["held"]) == ("live", True)  # while the read is open
    watch.page.evaluate("() => tornadoTicker.stop()")
    deadline = time.monotonic() + 10
    while display["held"]:
        assert time.monotonic() < deadline, display
        time.sleep(0.05)
        _, fleet = server.request("GET", "/displays")
        (display,) = [d for d in fleet["displays"] if d["display"] == "lobby-screen-1"]
    watch.assert_clean()


def test_missed_messages_leave_a_gap_marker(
    serve: Callable[..., LiveServer], open_page: Callable[..., PageWatch]
) -> None:
    server = serve("--max-messages", "3")
    server.publish("gap", "seen")
    watch = open_page()
    page = watch.page
    page.goto(server.url + "?channel=gap")
    wait_status(page, "live")
    page.evaluate("() => tornadoTicker.stop()")
    for i in range(5):  # the store keeps 3: two are trimmed before the page asks again
        server.publish("gap", f"later {i}")
    page.evaluate("() => tornadoTicker.start()")
    wait_entry(page, "later 4")
    assert bodies(page) == ["seen", "later 2", "later 3", "later 4"]
    assert snapshot(page)["channels"]["gap"] == {"resets": 0, "gaps": 1}
    assert page.locator("#track .gap").count() == 1
    assert track_bodies(page)[-3:] == ["later 2", "later 3", "later 4"]
    watch.assert_clean()
