"""The server dies and comes back; the page carries on without a reload."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .conftest import LiveServer, PageWatch, bodies, snapshot, wait_entry, wait_status


def _kill_and_restart(server: LiveServer, watch: PageWatch) -> None:
    server.kill()
    wait_status(watch.page, "reconnecting")  # the held poll broke; backoff has begun
    assert "reconnecting (attempt" in watch.page.inner_text("#status-text")
    server.start()  # same port, same arguments
    wait_status(watch.page, "live")


def test_memory_store_restart_is_seen_as_reset(
    serve: Callable[..., LiveServer], open_page: Callable[..., PageWatch]
) -> None:
    server = serve()
    server.publish("lobby", "before 1")
    watch = open_page()
    watch.allow_network_errors()  # refused connections while the server is down
    watch.page.goto(server.url + "?channel=lobby")
    wait_status(watch.page, "live")
    server.publish("lobby", "before 2")
    wait_entry(watch.page, "before 2")

    _kill_and_restart(server, watch)
    # A memory store starts a new epoch: the page's cursor is foreign, the
    # answer says reset, and the page drops what it knew.
    watch.page.wait_for_function("() => window.tornadoTicker.snapshot().pollers[0].resets === 1")
    assert bodies(watch.page) == []
    assert watch.page.locator("#track .msg").count() == 0

    server.publish("lobby", "after 1")
    wait_entry(watch.page, "after 1")
    assert bodies(watch.page) == ["after 1"]
    assert snapshot(watch.page)["pollers"][0]["state"] == "OPEN"
    watch.assert_clean()


def test_sqlite_store_restart_resumes_without_repeat_or_gap(
    serve: Callable[..., LiveServer], open_page: Callable[..., PageWatch], tmp_path: Path
) -> None:
    server = serve("--storage", f"sqlite:///{tmp_path / 'ticker.db'}")
    server.publish("lobby", "before 1")
    watch = open_page()
    watch.allow_network_errors()
    watch.page.goto(server.url + "?channel=lobby")
    wait_status(watch.page, "live")
    server.publish("lobby", "before 2")
    wait_entry(watch.page, "before 2")

    _kill_and_restart(server, watch)
    server.publish("lobby", "after 1")
    wait_entry(watch.page, "after 1")
    assert bodies(watch.page) == ["before 1", "before 2", "after 1"]
    poller = snapshot(watch.page)["pollers"][0]
    assert (poller["resets"], poller["gaps"]) == (0, 0)
    assert watch.page.locator("#track .gap").count() == 0
    on_track = watch.page.eval_on_selector_all("#track .msg", "els => els.map(e => e.dataset.id)")
    assert len(on_track) == len(set(on_track))
    watch.assert_clean()
