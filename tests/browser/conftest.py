"""Browser tests: real ``python -m tornado_lp`` processes driven by Debian's Chromium.

Chromium comes from the Debian package ``chromium`` (``/usr/bin/chromium``),
driven by the ``playwright`` Python package; Playwright's own browser download
is never used. Without the browser or the package these tests skip with a
message naming what is missing, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
_URL = re.compile(r"http://\S+")
NOT_LOOPBACK = re.compile(r"^(?!http://127\.0\.0\.1[:/])")


def _missing(what: str) -> NoReturn:
    message = f"browser tests need {what}"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true: not skipping)", pytrace=False)
    pytest.skip(message)


# -------------------------------------------------------------------- server


class LiveServer:
    """``python -m tornado_lp ARGS`` on a free loopback port.

    ``restart()`` kills nothing by itself: call ``kill()`` first; it starts the
    same command again on the same port (so an open page reconnects to it).
    """

    def __init__(self, *args: str) -> None:
        self.args = list(args)
        self.port = 0
        self.url = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tempfile.NamedTemporaryFile(prefix="tornado_lp_browser_", suffix=".log")

    def start(self, timeout: float = 15.0) -> LiveServer:
        command = [sys.executable, "-m", "tornado_lp", "--port", str(self.port), *self.args]
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=self.log,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.proc.stdout is not None
        line = b""
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + timeout
            while not line.endswith(b"\n"):
                if not selector.select(max(0.0, deadline - time.monotonic())):
                    break
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                line += chunk
        match = _URL.search(line.decode(errors="replace"))
        if match is None:
            self.kill()
            raise RuntimeError(f"server did not print its URL: {line!r}\n{self.stderr()}")
        self.url = match.group(0)
        self.port = urlsplit(self.url).port or 0
        return self

    def kill(self) -> None:
        """SIGKILL: no goodbye to held polls, as a crash or a power cut."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def restart(self) -> LiveServer:
        self.kill()
        return self.start()

    def stderr(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def close(self) -> None:
        self.kill()
        self.log.close()

    # -- HTTP helpers (from the test process, i.e. from loopback) ----------

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            data = response.read()
            if not response.getheader("Content-Type", "").startswith("application/json"):
                return response.status, {"text": data.decode()}
            return response.status, json.loads(data)
        finally:
            connection.close()

    def publish(self, channel: str, body: str) -> dict[str, Any]:
        status, message = self.request(
            "POST", f"/channels/{channel}/messages", body.encode(), {"Content-Type": "text/plain"}
        )
        assert status == 201, (status, message)
        return message

    def publish_json(self, channel: str, body: str, **fields: Any) -> dict[str, Any]:
        """Publish with JSON fields (``expires_in``, ``expires_at``, ``priority``, ``key``)."""
        status, message = self.request(
            "POST", f"/channels/{channel}/messages", json.dumps({"body": body, **fields}).encode(),
            {"Content-Type": "application/json"},
        )
        assert status == 201, (status, message)
        return message

    def retract(self, channel: str, message_id: str) -> dict[str, Any]:
        """``DELETE`` a message; returns the tombstone."""
        status, tombstone = self.request("DELETE", f"/channels/{channel}/messages/{message_id}")
        assert status == 200, (status, tombstone)
        return tombstone


@pytest.fixture
def serve() -> Iterator[Callable[..., LiveServer]]:
    """``serve(*args)`` starts a server; every server is killed after the test."""
    servers: list[LiveServer] = []

    def start(*args: str) -> LiveServer:
        server = LiveServer(*args)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.close()


# ------------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for one test module.

    Module scope, not session: while Playwright's sync API is active it owns
    an event loop in the main thread, and the other tests' ``asyncio.run()``
    would refuse to start.
    """
    if not CHROMIUM.exists():
        _missing("the Debian package chromium (/usr/bin/chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the Python package playwright (pip install playwright; no 'playwright install')")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class PageWatch:
    """A page in a fresh browser context, with its JavaScript errors recorded.

    Requests to any origin but loopback are aborted (a kiosk may have no
    internet, and a test must not reach out). ``errors`` collects uncaught
    exceptions and console errors; failed loads (``Failed to load resource``)
    count only until ``allow_network_errors()``.
    """

    def __init__(self, context: Any) -> None:
        self.context = context
        self.page = context.new_page()
        self.page_errors: list[str] = []
        self.console_errors: list[str] = []
        self.dialogs: list[str] = []
        self.network_errors_allowed = False
        self.page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        self.page.on("console", self._console)
        self.page.on("dialog", self._dialog)

    def _console(self, message: Any) -> None:
        if message.type != "error":
            return
        if self.network_errors_allowed and message.text.startswith("Failed to load resource"):
            return
        self.console_errors.append(message.text)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def allow_network_errors(self) -> None:
        self.network_errors_allowed = True

    def assert_clean(self) -> None:
        assert self.page_errors == [], self.page_errors
        assert self.console_errors == [], self.console_errors
        assert self.dialogs == [], self.dialogs


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[..., PageWatch]]:
    """``open_page(viewport=...)`` gives a PageWatch; each is checked clean at teardown."""
    watches: list[PageWatch] = []

    def make(**context_args: Any) -> PageWatch:
        context = browser.new_context(**context_args)
        # A regex is matched inside the browser driver, so loopback requests are never
        # intercepted. (A Python predicate would intercept every request and hold it
        # until the test next calls into Playwright: a poll sent while the test waits
        # on the server would stall.)
        context.route(NOT_LOOPBACK, lambda route: route.abort())
        watch = PageWatch(context)
        watches.append(watch)
        return watch

    yield make
    for watch in watches:
        watch.context.close()
    for watch in watches:
        watch.assert_clean()


# ------------------------------------------------------------- ticker state


def snapshot(page: Any) -> dict[str, Any]:
    """``window.tornadoTicker.snapshot()``: model entries, track size, connection, channels."""
    return page.evaluate("window.tornadoTicker.snapshot()")  # type: ignore[no-any-return]


def connection(page: Any) -> dict[str, Any]:
    """The page's one connection: transport, fallback, state, attempt, cursor, counters."""
    return snapshot(page)["connection"]  # type: ignore[no-any-return]


def bodies(page: Any) -> list[str]:
    return [entry["body"] for entry in snapshot(page)["entries"]]


def track_bodies(page: Any) -> list[str]:
    """Message bodies on the scrolling track, in track order."""
    return page.eval_on_selector_all(  # type: ignore[no-any-return]
        "#track .msg .body", "els => els.map(e => e.textContent)"
    )


def wait_entry(page: Any, body: str, timeout: float = 30_000) -> None:
    """Wait until the ticker's model holds a message with this body."""
    page.wait_for_function(
        "b => window.tornadoTicker.snapshot().entries.some(e => e.body === b)",
        arg=body,
        timeout=timeout,
    )


def wait_status(page: Any, state: str, timeout: float = 15_000) -> None:
    page.wait_for_function(
        "s => document.getElementById('status').dataset.state === s", arg=state, timeout=timeout
    )


# ------------------------------------------------------------- connections


def is_reader(url: str) -> bool:
    """A request that reads channels: the stream (``/events``) or a long-poll (``/poll``)."""
    path = urlsplit(url).path
    return path in ("/events", "/poll") or path.endswith("/poll")


class ReaderLog:
    """The page's reading requests as the browser saw them: ``/events`` and ``/poll``.

    ``started`` lists each one's URL in order; ``open`` the ones not finished
    yet; ``most_open`` the most that were open at once. Listens to
    Playwright's request events, so it never delays a request. Playwright's
    sync API delivers those events only while a call into it waits, so wait
    on this log with :meth:`wait_until`, never with a plain sleep.
    """

    def __init__(self, page: Any) -> None:
        self.page = page
        self.started: list[str] = []
        self.open: list[Any] = []
        self.most_open = 0
        page.on("request", self._started)
        page.on("requestfinished", self._ended)
        page.on("requestfailed", self._ended)

    def _started(self, request: Any) -> None:
        if not is_reader(request.url):
            return
        self.started.append(request.url)
        self.open.append(request)
        self.most_open = max(self.most_open, len(self.open))

    def _ended(self, request: Any) -> None:
        if request in self.open:
            self.open.remove(request)

    def paths(self) -> list[str]:
        return [urlsplit(url).path for url in self.started]

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
        """Like :func:`wait_until`, but let Playwright deliver request events meanwhile."""
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, what
            self.page.wait_for_timeout(50)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
    """Wait until ``condition()`` holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def established(port: int) -> int:
    """TCP connections to ``port`` established right now, counted at the server's end.

    Read from ``/proc/net/tcp`` (IPv4; the servers listen on 127.0.0.1): an
    entry whose local port is ``port`` and whose state is ``01`` is one
    accepted connection.
    """
    count = 0
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            local, state = fields[1], fields[3]
            if int(local.rsplit(":", 1)[1], 16) == port and state == "01":
                count += 1
    return count
