"""One connection for all of a ticker's channels: the stream, the long-poll, the fallback.

Real servers, real Chromium; nginx (Debian's ``nginx-light``) for the
buffering proxy. The page's reads are watched from both ends: the browser's
requests (:class:`~tests.browser.conftest.ReaderLog`) and the server's
accepted connections (``/proc/net/tcp``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from ..redis_server import free_port
from .conftest import (
    LiveServer,
    PageWatch,
    ReaderLog,
    _missing,
    bodies,
    connection,
    established,
    wait_entry,
    wait_status,
    wait_until,
)

SIXTEEN = [f"c{i}" for i in range(16)]


def test_sixteen_channels_on_one_idle_connection_and_the_sixteenth_within_a_second(
    serve: Callable[..., LiveServer], open_page: Callable[..., PageWatch]
) -> None:
    # --heartbeat 1: the idle wait below spans three heartbeats, past the page's
    # silence watchdog (twice the heartbeat); --idle-timeout 1: the server closes
    # the connections that loaded the page, so what stays open is what the page uses.
    server = serve("--heartbeat", "1", "--idle-timeout", "1")
    for channel in SIXTEEN:
        server.publish(channel, f"backlog {channel}")
    watch = open_page()
    page = watch.page
    reads = ReaderLog(page)
    page.goto(server.url + "?channel=" + ",".join(SIXTEEN))
    wait_status(page, "live")
    wait_until(lambda: established(server.port) == 1, "one connection left open")

    page.wait_for_timeout(3000)  # idle: three heartbeats, nothing published
    assert established(server.port) == 1
    assert reads.paths() == ["/events"] and len(reads.open) == 1
    assert parse_qs(urlsplit(reads.started[0]).query)["channel"] == [",".join(SIXTEEN)]
    for channel in SIXTEEN:  # that one connection reads every channel
        assert server.request("GET", f"/channels/{channel}")[1]["waiters"] == 1
    assert connection(page)["transport"] == "sse"
    assert page.inner_text("#status-text") == "live"

    started = time.monotonic()
    server.publish("c15", "news on the sixteenth")
    wait_entry(page, "news on the sixteenth", timeout=1000)
    assert time.monotonic() - started < 1.0
    server.publish("c0", "news on the first")
    wait_entry(page, "news on the first", timeout=1000)
    assert reads.paths() == ["/events"] and reads.most_open == 1
    assert len(bodies(page)) == 18
    watch.assert_clean()


def test_transport_poll_forces_the_multiplexed_long_poll(
    serve: Callable[..., LiveServer], open_page: Callable[..., PageWatch]
) -> None:
    server = serve("--heartbeat", "1")
    watch = open_page()
    page = watch.page
    reads = ReaderLog(page)
    page.goto(server.url + "?channel=" + ",".join(SIXTEEN) + "&transport=poll")
    wait_status(page, "live")
    reads.wait_until(
        lambda: len(reads.open) == 1 and "timeout=0" not in reads.started[-1], "held poll"
    )
    server.publish("c15", "polled")
    wait_entry(page, "polled", timeout=1000)
    server.publish("c3", "polled again")
    wait_entry(page, "polled again")
    assert set(reads.paths()) == {"/poll"} and reads.most_open == 1
    assert all(parse_qs(urlsplit(url).query)["channel"] == [",".join(SIXTEEN)]
               for url in reads.started)  # one request for all sixteen
    state = connection(page)
    assert (state["transport"], state["fallback"], state["streams"]) == ("poll", None, 0)
    assert page.inner_text("#status-text") == "live (long-poll)"
    watch.assert_clean()


def test_without_eventsource_the_page_long_polls_and_says_so(
    serve: Callable[..., LiveServer], open_page: Callable[..., PageWatch]
) -> None:
    server = serve()
    watch = open_page()
    page = watch.page
    page.add_init_script("delete window.EventSource")
    reads = ReaderLog(page)
    page.goto(server.url + "?channel=a,b")
    wait_status(page, "live")
    server.publish("b", "no stream needed")
    wait_entry(page, "no stream needed")
    assert set(reads.paths()) == {"/poll"}
    state = connection(page)
    assert (state["transport"], state["fallback"]) == ("poll", "this browser has no EventSource")
    assert page.inner_text("#status-text") == "live (long-poll fallback)"
    watch.assert_clean()


def test_stored_cursors_of_older_pages_and_other_stores_do_not_break_the_page(
    serve: Callable[..., LiveServer], open_page: Callable[..., PageWatch]
) -> None:
    server = serve()
    server.publish("lobby", "backlog")
    watch = open_page()
    page = watch.page
    page.goto(server.url + "?channel=lobby")
    wait_status(page, "live")
    rendered = connection(page)["cursor"]
    for stored in ["not a cursor", "0123456789abcdef", "0123456789abcdef~0000000000"]:
        page.evaluate(
            """s => { tornadoTicker.stop();
                      localStorage.setItem('tornado_lp:cursor:lobby', 'x-1');  // before streams
                      localStorage.setItem('tornado_lp:stream:lobby', s); }""",
            stored,
        )
        reads = ReaderLog(page)
        page.reload()
        wait_status(page, "live")
        # Malformed, or from another store: the page resumes from the rendered cursor.
        assert parse_qs(urlsplit(reads.started[0]).query)["cursor"] == [rendered]
        assert page.evaluate("localStorage.getItem('tornado_lp:cursor:lobby')") is None
        assert page.evaluate("localStorage.getItem('tornado_lp:stream:lobby')") == rendered
        assert bodies(page) == ["backlog"]
    message = server.publish("lobby", "after the upgrade")
    wait_entry(page, "after the upgrade")
    assert connection(page)["cursor"] != rendered and message["id"].endswith("-2")
    watch.assert_clean()


# -------------------------------------------------------------------- nginx


def nginx_binary() -> str:
    path = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None
    )
    if path is None:
        _missing("nginx (the Debian package nginx-light)")
    return path


#: A proxy that holds responses back: buffering on, the server's
#: ``X-Accel-Buffering: no`` ignored, and gzip over event streams, whose
#: buffers keep the stream (its head included) until they fill. (nginx 1.22
#: with buffering alone passes a stream on as it comes while the client
#: keeps up; the gzip filter does not.)
BUFFERING_SITE = """
server {{
    listen 127.0.0.1:{port};
    location / {{
        proxy_pass http://127.0.0.1:{upstream};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_read_timeout 120s;
        proxy_buffering on;
        proxy_ignore_headers X-Accel-Buffering;
        gzip on;
        gzip_types text/event-stream;
        gzip_min_length 0;
    }}
}}
"""


@pytest.fixture
def buffering_proxy(tmp_path: Path) -> Iterator[Callable[[LiveServer], str]]:
    """``buffering_proxy(server)``: nginx before ``server``, buffering; gives its URL."""
    binary = nginx_binary()
    procs: list[subprocess.Popen[bytes]] = []

    def start(server: LiveServer) -> str:
        port = free_port()
        temp = "".join(f"    {name}_temp_path {tmp_path / name};\n"
                       for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (tmp_path / name).mkdir()
        (tmp_path / "nginx.conf").write_text(
            ("user root;\n" if os.geteuid() == 0 else "")
            + f"daemon off;\nworker_processes 1;\npid {tmp_path}/nginx.pid;\n"
            f"error_log {tmp_path}/error.log;\n"
            "events { worker_connections 64; }\n"
            f"http {{\n    access_log {tmp_path}/access.log;\n{temp}"
            + BUFFERING_SITE.format(port=port, upstream=server.port)
            + "}\n"
        )
        proc = subprocess.Popen(
            [binary, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"),
             "-e", str(tmp_path / "error.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}/"

        def up() -> bool:
            assert proc.poll() is None, (tmp_path / "error.log").read_text()
            try:
                with urllib.request.urlopen(url + "healthz", timeout=5) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        wait_until(up, "nginx answers")
        return url

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


#: Records, in the page, when EventSources open and close and polls start.
READER_ORDER = """
(() => {
  const order = window.__readerOrder = [];
  const path = (url) => new URL(url, location.href).pathname;
  const Native = window.EventSource;
  window.EventSource = class extends Native {
    constructor(url, init) { super(url, init); order.push("open " + path(url)); }
    close() { order.push("close " + path(this.url)); super.close(); }
  };
  const nativeFetch = window.fetch;
  window.fetch = function (input, init) {
    order.push("fetch " + path(typeof input === "string" ? input : input.url));
    return nativeFetch.call(this, input, init);
  };
})();
"""


def test_behind_a_buffering_proxy_the_page_falls_back_to_long_poll(
    buffering_proxy: Callable[[LiveServer], str],  # first: it stops after the pages close
    serve: Callable[..., LiveServer],
    open_page: Callable[..., PageWatch],
) -> None:
    server = serve("--heartbeat", "1")
    url = buffering_proxy(server)
    server.publish("lobby", "backlog")
    watch = open_page()
    page = watch.page
    reads = ReaderLog(page)
    page.add_init_script(READER_ORDER)
    page.goto(url + "?channel=lobby,news")
    page.wait_for_function("() => tornadoTicker.snapshot().connection.transport === 'poll'")
    wait_status(page, "live")
    state = connection(page)
    # Nothing of the stream came through, not even its head: it never opened.
    assert state["fallback"] == "the stream did not open within 2 s"
    assert page.inner_text("#status-text") == "live (long-poll fallback)"
    for i in range(3):
        server.publish("news" if i % 2 else "lobby", f"through the proxy {i}")
        wait_entry(page, f"through the proxy {i}")
    assert bodies(page) == ["backlog"] + [f"through the proxy {i}" for i in range(3)]
    assert reads.paths()[0] == "/events" and set(reads.paths()[1:]) == {"/poll"}
    # The stream was closed before the first poll started. Asked of the page, not
    # of Playwright's request events: the network service reports the cancelled
    # stream's end asynchronously, sometimes after the poll's start.
    order = page.evaluate("window.__readerOrder")
    assert order[:3] == ["open /events", "close /events", "fetch /poll"], order
    reads.wait_until(lambda: len(reads.open) == 1, "only the held poll open")
    watch.assert_clean()


def test_transport_sse_forces_the_stream_even_behind_a_buffering_proxy(
    buffering_proxy: Callable[[LiveServer], str],  # first: it stops after the pages close
    serve: Callable[..., LiveServer],
    open_page: Callable[..., PageWatch],
) -> None:
    server = serve("--heartbeat", "1")
    url = buffering_proxy(server)
    watch = open_page()
    page = watch.page
    reads = ReaderLog(page)
    page.add_init_script(READER_ORDER)
    page.goto(url + "?channel=lobby&transport=sse")
    # Past the watchdog: the silent stream is given up and a new one opened, never a long-poll.
    page.wait_for_function("() => tornadoTicker.snapshot().connection.streams >= 2", timeout=15_000)
    state = connection(page)
    assert (state["transport"], state["fallback"]) == ("sse", None)
    assert reads.paths()[:3] == ["/events", "/poll", "/events"]  # one probe between streams
    # Each stream was closed before the probe started (asked of the page: see above).
    order = page.evaluate("window.__readerOrder")
    assert order[:4] == ["open /events", "close /events", "fetch /poll", "open /events"], order
    # The same page straight at the server streams as it should.
    page.goto(server.url + "?channel=lobby&transport=sse")
    wait_status(page, "live")
    server.publish("lobby", "streamed")
    wait_entry(page, "streamed", timeout=1000)
    assert connection(page)["transport"] == "sse"
    watch.assert_clean()
