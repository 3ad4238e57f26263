"""The real process: ``python -m tornado_lp``, its options, signals and exit codes."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .serverproc import ServerProcess, run_cli


def fetch(url: str, data: bytes | None = None, timeout: float = 30) -> Any:
    with urllib.request.urlopen(url, data=data, timeout=timeout) as response:
        return json.loads(response.read())


def test_prints_url_and_serves_a_held_poll_released_by_publish() -> None:
    with ServerProcess() as server:
        assert server.url.startswith("http://127.0.0.1:")
        results: list[Any] = []
        poller = threading.Thread(
            target=lambda: results.append(fetch(server.url + "channels/c/poll?timeout=30"))
        )
        poller.start()
        while fetch(server.url + "channels/c")["waiters"] == 0:
            time.sleep(0.01)
        published = fetch(server.url + "channels/c/messages", b"hello")
        poller.join(30)
        assert results and results[0]["messages"] == [published]


def test_sigterm_answers_held_polls_and_exits_0() -> None:
    server = ServerProcess().start()
    try:
        results: list[Any] = []
        threads = [
            threading.Thread(
                target=lambda: results.append(fetch(server.url + "channels/s/poll?timeout=60"))
            )
            for _ in range(5)
        ]
        for thread in threads:
            thread.start()
        while fetch(server.url + "channels/s")["waiters"] < 5:
            time.sleep(0.01)
        began = time.monotonic()
        assert server.terminate(timeout=10) == 0
        elapsed = time.monotonic() - began
        for thread in threads:
            thread.join(10)
        assert len(results) == 5
        assert all(r["messages"] == [] for r in results)
        assert elapsed < 2.0, f"shutdown took {elapsed:.2f}s"
        assert "Traceback" not in server.stderr()
    finally:
        server.stop()


def test_environment_sets_options() -> None:
    with ServerProcess(env={"TORNADO_LP_MAX_MESSAGE_BYTES": "5"}) as server:
        request = urllib.request.Request(server.url + "channels/e/messages", data=b"123456")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 413
        refused.value.close()


def test_command_line_beats_environment() -> None:
    with ServerProcess("--max-message-bytes", "10",
                       env={"TORNADO_LP_MAX_MESSAGE_BYTES": "5"}) as server:
        assert fetch(server.url + "channels/e/messages", b"123456")["body"] == "123456"


def test_generator_publishes_through_the_hub() -> None:
    with ServerProcess("--generate-every", "0.05", "--generate-channel", "gen") as server:
        first = fetch(server.url + "channels/gen/poll?timeout=30")
        assert len(first["messages"]) >= 1
        second = fetch(server.url + f"channels/gen/poll?timeout=30&cursor={first['cursor']}")
        for message in first["messages"] + second["messages"]:
            assert message["channel"] == "gen"
            assert len(message["body"]) == 6 and message["body"].isalnum()
            assert message["body"] == message["body"].upper()


@pytest.mark.parametrize(
    ("args", "env", "word"),
    [
        (["--port", "notaport"], {}, "--port"),
        (["--port", "70000"], {}, "--port"),
        (["--max-messages", "0"], {}, "--max-messages"),
        (["--poll-timeout-max", "-1"], {}, "--poll-timeout-max"),
        (["--generate-channel", "bad name"], {}, "--generate-channel"),
        (["--log-level", "loud"], {}, "--log-level"),
        (["--static-path", "/no/such/dir"], {}, "--static-path"),
        (["--storage", "ftp://x"], {}, "ftp"),
        (["--cors-origin", "not an origin"], {}, "--cors-origin"),
        ([], {"TORNADO_LP_CORS_ORIGIN": "https://ok.example,bad"}, "TORNADO_LP_CORS_ORIGIN"),
        (["--log-format", "xml"], {}, "--log-format"),
        (["--max-waiters", "0"], {}, "--max-waiters"),
        (["--no-such-option"], {}, "unrecognized"),
        ([], {"TORNADO_LP_PORT": "x"}, "TORNADO_LP_PORT"),
        ([], {"TORNADO_LP_XHEADERS": "maybe"}, "TORNADO_LP_XHEADERS"),
        (["--processes", "-1"], {}, "--processes"),
        (["--processes", "2"], {}, "--processes 2 needs a store every process shares"),
        (["--processes", "0"], {}, "--processes 0 needs a store every process shares"),
        (["--redis-connect-timeout", "soon"], {}, "--redis-connect-timeout"),
        (["--storage", "redis://127.0.0.1:6379/nodb"], {}, "bad redis URL"),
    ],
)
def test_bad_options_exit_2_with_one_line(args: list[str], env: dict[str, str], word: str) -> None:
    done = run_cli(args, env)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert word in lines[0] and lines[0].startswith("tornado-lp: error:")
    assert "Traceback" not in done.stderr


def test_port_in_use_exits_2() -> None:
    with ServerProcess() as server:
        port = server.url.rsplit(":", 1)[1].strip("/")
        done = run_cli(["--port", port])
        assert done.returncode == 2 and "cannot listen" in done.stderr


def test_help_lists_every_option() -> None:
    done = run_cli(["--help"])
    assert done.returncode == 0
    for option in ["--address", "--port", "--storage", "--max-messages", "--max-age",
                   "--max-channels", "--max-message-bytes", "--poll-timeout-max",
                   "--generate-every", "--generate-channel", "--publish-token", "--log-level",
                   "--xheaders", "--static-path", "--template-path", "--max-waiters",
                   "--idle-timeout", "--body-timeout", "--subscribe-secret", "--cors-origin",
                   "--max-displays", "--log-format", "--processes", "--redis-prefix",
                   "--redis-connect-timeout"]:
        assert option in done.stdout
    assert "TORNADO_LP_" in done.stdout


def test_cors_origins_from_environment_and_command_line() -> None:
    from tornado_lp.config import parse_args

    env = {"TORNADO_LP_CORS_ORIGIN": "https://a.example, https://b.example:8443"}
    assert parse_args([], env).cors_origin == ["https://a.example", "https://b.example:8443"]
    assert parse_args(["--cors-origin", "https://c.example"], env).cors_origin == [
        "https://c.example"
    ]
    assert parse_args([], {}).cors_origin == []


def test_listen_backlog_fits_a_fleet_reconnecting_at_once() -> None:
    import shutil
    import subprocess

    from tornado_lp.server import LISTEN_BACKLOG

    ss = shutil.which("ss")
    if ss is None:
        pytest.skip("needs ss (Debian package iproute2) to read the listen backlog")
    with ServerProcess() as server:
        port = server.url.rsplit(":", 1)[1].strip("/")
        listing = subprocess.run([ss, "-ltnH", f"sport = :{port}"], capture_output=True,
                                 text=True, check=True).stdout.split()
        somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
        assert int(listing[2]) == min(LISTEN_BACKLOG, somaxconn)  # Send-Q: the backlog


def test_event_loop_choice() -> None:
    from tornado_lp.server import event_loop_factory

    assert event_loop_factory("asyncio") is None
    uvloop = pytest.importorskip("uvloop")  # in the test extra: runs in CI
    assert event_loop_factory("auto") is uvloop.new_event_loop
    assert event_loop_factory("uvloop") is uvloop.new_event_loop
    for choice in ("asyncio", "uvloop"):
        with ServerProcess("--event-loop", choice) as server:
            assert fetch(server.url + "channels/l/messages", b"on " + choice.encode())["body"]
            assert fetch(server.url + "channels/l/poll?timeout=0")["messages"]
            assert server.terminate() == 0
