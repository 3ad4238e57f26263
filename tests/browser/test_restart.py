"""The server dies and comes back; the page carries on without a reload, on either transport."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tornado_lp.protocol import format_stream_cursor, parse_stream_cursor

from .conftest import (
    LiveServer,
    PageWatch,
    ReaderLog,
    bodies,
    connection,
    snapshot,
    wait_entry,
    wait_status,
)

TRANSPORTS = ["sse", "poll"]


def _kill_and_restart(server: LiveServer, watch: PageWatch, during: Callable[[], None]) -> None:
    server.kill()
    wait_status(watch.page, "reconnecting")  # the stream (or held poll) broke; backoff has begun
    assert "reconnecting (attempt" in watch.page.inner_text("#status-text")
    server.start()  # same port, same arguments
    during()  # before the page is back, or just after: it must not matter
    wait_status(watch.page, "live")


def _cursors(urls: list[str]) -> list[str]:
    return [parse_qs(urlsplit(url).query)["cursor"][0] for url in urls]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_memory_store_restart_is_seen_as_reset(
    serve: Callable[..., LiveServer], open_page: Callable[..., PageWatch], transport: str
) -> None:
    server = serve()
    server.publish("lobby", "before 1")
    watch = open_page()
    watch.allow_network_errors()  # refused connections while the server is down
    reads = ReaderLog(watch.page)
    watch.page.goto(server.url + f"?channel=lobby,other&transport={transport}")
    wait_status(watch.page, "live")
    server.publish("lobby", "before 2")
    wait_entry(watch.page, "before 2")

    _kill_and_restart(server, watch, lambda: None)
    # A memory store starts a new epoch: the page's cursor is foreign, the
    # answer says reset for each channel, and the page drops what it knew.
    watch.page.wait_for_function(
        "() => Object.values(window.tornadoTicker.snapshot().channels).every(c => c.resets === 1)"
    )
    assert bodies(watch.page) == []
    assert watch.page.locator("#track .msg").count() == 0

    server.publish("lobby", "after 1")
    wait_entry(watch.page, "after 1")
    assert bodies(watch.page) == ["after 1"]
    state = connection(watch.page)
    assert (state["state"], state["transport"], state["fallback"]) == ("OPEN", transport, None)
    assert snapshot(watch.page)["channels"]["lobby"] == {"resets": 1, "gaps": 0}
    assert reads.most_open == 1  # never two connections at once, also while reconnecting
    watch.assert_clean()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sqlite_store_restart_resumes_without_repeat_or_gap(
    serve: Callable[..., LiveServer],
    open_page: Callable[..., PageWatch],
    tmp_path: Path,
    transport: str,
) -> None:
    server = serve("--storage", f"sqlite:///{tmp_path / 'ticker.db'}")
    server.publish("lobby", "before 1")
    watch = open_page()
    watch.allow_network_errors()
    reads = ReaderLog(watch.page)
    watch.page.goto(server.url + f"?channel=lobby&transport={transport}")
    wait_status(watch.page, "live")
    before = server.publish("lobby", "before 2")
    wait_entry(watch.page, "before 2")
    epoch, seq = before["id"].split("-")
    last_id = format_stream_cursor(epoch, {"lobby": int(seq)})
    watch.page.wait_for_function("c => window.tornadoTicker.snapshot().connection.cursor === c",
                                 arg=last_id)
    broken = len(reads.started)

    _kill_and_restart(server, watch, lambda: server.publish("lobby", "while away"))
    server.publish("lobby", "after 1")
    wait_entry(watch.page, "after 1")
    assert bodies(watch.page) == ["before 1", "before 2", "while away", "after 1"]
    # Every reconnect asked from the last id it had: the one before the kill
    # until an answer moved it on.
    resumed = _cursors(reads.started[broken:])
    assert resumed and resumed[0] == last_id
    positions = [parse_stream_cursor(cursor, ["lobby"]) for cursor in resumed]
    seqs = [position[1]["lobby"] for position in positions if position is not None]
    assert len(seqs) == len(resumed) and {p[0] for p in positions if p} == {epoch}
    assert seqs == sorted(seqs) and set(seqs) <= {int(seq), int(seq) + 1, int(seq) + 2}
    if transport == "sse":
        assert "/events" in [urlsplit(url).path for url in reads.started[broken:]]
    assert snapshot(watch.page)["channels"]["lobby"] == {"resets": 0, "gaps": 0}
    assert connection(watch.page)["transport"] == transport
    assert watch.page.locator("#track .gap").count() == 0
    on_track = watch.page.eval_on_selector_all("#track .msg", "els => els.map(e => e.dataset.id)")
    assert len(on_track) == len(set(on_track))
    assert reads.most_open == 1
    watch.assert_clean()
