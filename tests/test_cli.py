"""The client commands as a user runs them: ``python -m tornado_lp publish|tail|token``."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from typing import IO, Any

import pytest

from tornado_lp.tokens import verify_token

from .serverproc import REPO, ServerProcess, run_cli
from .storages import SERVER_STORAGES, server_storage

TOKEN = "publish-token-for-cli-tests"
SECRET = "subscribe-secret-for-cli-tests"
#: A guard against a hang, not a timing claim.
LINE_TIMEOUT = 30.0
LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (\S+) (.*)")
#: The client commands read these; a test sets what it needs.
CLEAN_ENV = {name: "" for name in ("TORNADO_LP_URL", "TORNADO_LP_PUBLISH_TOKEN",
                                   "TORNADO_LP_SUBSCRIBE_TOKEN", "TORNADO_LP_SUBSCRIBE_SECRET")}


def run(args: list[str], env: dict[str, str] | None = None,
        stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m tornado_lp ARGS`` to completion, with ``stdin`` as its input."""
    if stdin is None:
        return run_cli(args, env={**CLEAN_ENV, **(env or {})})
    done = subprocess.run(
        [sys.executable, "-m", "tornado_lp", *args], input=stdin, capture_output=True,
        timeout=20, env={**os.environ, **CLEAN_ENV, **(env or {})}, cwd=REPO,
    )
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(),
                                       done.stderr.decode())


def poll(url: str, channel: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}channels/{channel}/poll?timeout=0", timeout=30) as answer:
        document: dict[str, Any] = json.loads(answer.read())
        return document


def publish(url: str, channel: str, body: str) -> dict[str, Any]:
    request = urllib.request.Request(f"{url}channels/{channel}/messages", body.encode(),
                                     headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        document: dict[str, Any] = json.loads(answer.read())
        return document


def closed_port() -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]


class Tail:
    """A running ``python -m tornado_lp tail ...``, its output read line by line."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tornado_lp", "tail", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
            env={**os.environ, **CLEAN_ENV, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self.stdout: queue.Queue[str] = queue.Queue()
        self.stderr: queue.Queue[str] = queue.Queue()
        self.all_stderr: list[str] = []
        for stream, lines in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            assert stream is not None
            threading.Thread(target=self._read, args=(stream, lines), daemon=True).start()

    def _read(self, stream: IO[str], lines: queue.Queue[str]) -> None:
        for line in stream:
            if lines is self.stderr:
                self.all_stderr.append(line)
            lines.put(line.rstrip("\n"))

    def line(self) -> str:
        """The next line on stdout."""
        return self.stdout.get(timeout=LINE_TIMEOUT)

    def error_line(self) -> str:
        return self.stderr.get(timeout=LINE_TIMEOUT)

    def interrupt(self) -> int:
        """Ctrl-C; the exit status."""
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(LINE_TIMEOUT)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(LINE_TIMEOUT)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture(params=SERVER_STORAGES)
def storage(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


# ------------------------------------------------------------------ publish


def test_publish_prints_the_id_or_the_stored_message(storage: str) -> None:
    with ServerProcess(*server_storage(storage)) as server:
        done = run(["publish", "--url", server.url, "--channel", "lobby", "Doors open"])
        assert done.returncode == 0, done.stderr
        (stored,) = poll(server.url, "lobby")["messages"]
        assert done.stdout == stored["id"] + "\n" and done.stderr == ""
        as_json = run(["publish", "--channel", "lobby", "--json", "Ünïcode ✓"],
                      env={"TORNADO_LP_URL": server.url})
        assert as_json.returncode == 0, as_json.stderr
        assert json.loads(as_json.stdout) == poll(server.url, "lobby")["messages"][-1]
        assert json.loads(as_json.stdout)["body"] == "Ünïcode ✓"


def test_publish_reads_the_body_from_stdin() -> None:
    with ServerProcess() as server:
        for args, text, body in ([], b"from stdin\n", "from stdin"),\
                (["-"], b"two\nlines\r\n", "two\nlines"), ([], b"no newline", "no newline"):
            done = run(["publish", "--url", server.url, "--channel", "in", "--json", *args],
                       stdin=text)
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["body"] == body


def test_publish_takes_the_token_from_the_option_or_the_environment() -> None:
    with ServerProcess("--publish-token", TOKEN) as server:
        base = ["publish", "--url", server.url, "--channel", "t"]
        assert run([*base, "--publish-token", TOKEN, "by option"]).returncode == 0
        assert run([*base, "by env"], env={"TORNADO_LP_PUBLISH_TOKEN": TOKEN}).returncode == 0
        wrong = run([*base, "--publish-token", "wrong", "x"],
                    env={"TORNADO_LP_PUBLISH_TOKEN": TOKEN})  # the option wins
        assert wrong.returncode == 1
        assert wrong.stderr.startswith("tornado-lp publish: error: ")
        assert "401" in wrong.stderr and "token" in wrong.stderr
        assert [m["body"] for m in poll(server.url, "t")["messages"]] == ["by option", "by env"]


def test_publish_exits_1_with_the_servers_error() -> None:
    with ServerProcess("--max-message-bytes", "8") as server:
        for args, error in ((["--channel", "bad name", "x"], "invalid channel name"),
                            (["--channel", "ok", "much too long"], "message too large"),
                            (["--channel", "ok", ""], "empty body")):
            done = run(["publish", "--url", server.url, *args])
            assert done.returncode == 1, (args, done)
            assert done.stdout == ""
            assert len(done.stderr.splitlines()) == 1 and error in done.stderr, done.stderr
            assert "Traceback" not in done.stderr
        assert poll(server.url, "ok")["messages"] == []  # nothing half-stored


def test_publish_exits_1_when_the_server_is_unreachable() -> None:
    sock, port = closed_port()
    with sock:
        done = run(["publish", "--url", f"http://127.0.0.1:{port}", "--channel", "a", "x"])
    assert done.returncode == 1
    assert done.stderr == f"tornado-lp publish: error: cannot reach 127.0.0.1:{port}: " \
                          "Connection refused\n"


def test_publish_exits_2_on_bad_usage() -> None:
    for args, stdin in ((["publish", "x"], None),  # no --channel
                        (["publish", "--channel", "a", "--url", "ftp://h", "x"], None),
                        (["publish", "--channel", "a", "--bogus", "x"], None),
                        (["publish", "--channel", "a"], b"\xff\xfe not UTF-8")):
        done = run(args, stdin=stdin)
        assert done.returncode == 2, (args, done)
        assert len(done.stderr.splitlines()) == 1 and "error" in done.stderr, done.stderr


# --------------------------------------------------------------------- tail


def test_tail_prints_the_backlog_then_follows_several_channels(storage: str) -> None:
    with ServerProcess(*server_storage(storage)) as server:
        publish(server.url, "a", "a1")
        tail = Tail("--url", server.url, "--channel", "a,b", "--channel", "c")
        try:
            channel, body = LINE.fullmatch(tail.line()).groups()  # type: ignore[union-attr]
            assert (channel, body) == ("a", "a1")
            publish(server.url, "b", "b1")
            assert LINE.fullmatch(tail.line()).groups() == ("b", "b1")  # type: ignore[union-attr]
            publish(server.url, "c", "two\nlines\tand a tab")
            assert LINE.fullmatch(tail.line()).groups() == (  # type: ignore[union-attr]
                "c", "two\\nlines\\tand a tab")  # one line per message, whatever its body
            publish(server.url, "a", "a2")
            assert tail.line().endswith(" a a2")
            assert tail.interrupt() == 0
            resume = tail.error_line()
            assert resume.startswith("tornado-lp tail: stopped; resume with --cursor ")
            cursor = resume.rsplit(" ", 1)[1]
            assert "Traceback" not in "".join(tail.all_stderr)
        finally:
            tail.close()

        # Resumed from the printed cursor, as JSON lines: only what came after.
        publish(server.url, "b", "b2")
        resumed = Tail("--url", server.url, "--channel", "a,b,c", "--cursor", cursor, "--json")
        try:
            message = json.loads(resumed.line())
            assert message == poll(server.url, "b")["messages"][-1]
            assert resumed.interrupt() == 0
        finally:
            resumed.close()


def test_tail_reports_reset_and_missed() -> None:
    with ServerProcess("--max-messages", "2") as server:
        first = publish(server.url, "r", "r1")
        for i in range(2, 5):
            publish(server.url, "r", f"r{i}")
        missed = Tail("--url", server.url, "--channel", "r", "--cursor", first["id"], "--json")
        try:
            assert json.loads(missed.line()) == {"signal": "missed", "channel": "r"}
            assert [json.loads(missed.line())["body"] for _ in range(2)] == ["r3", "r4"]
        finally:
            missed.close()
        foreign = "0123456789abcdef-3"  # a cursor of another store
        reset = Tail("--url", server.url, "--channel", "r", "--cursor", foreign)
        try:
            assert reset.error_line().startswith("tornado-lp tail: reset on r:")
            assert [reset.line().endswith(f" r r{i}") for i in (3, 4)] == [True, True]
        finally:
            reset.close()


def test_tail_retries_an_unreachable_server_until_interrupted() -> None:
    sock, port = closed_port()
    with sock:
        tail = Tail("--url", f"http://127.0.0.1:{port}", "--channel", "a")
        try:
            first, second = tail.error_line(), tail.error_line()
            assert "cannot reach" in first and "retrying in" in second
            assert tail.interrupt() == 0
            assert "Traceback" not in "".join(tail.all_stderr)
        finally:
            tail.close()


def test_tail_exits_1_on_an_error_retrying_cannot_mend() -> None:
    with ServerProcess("--subscribe-secret", SECRET) as server:
        tail = Tail("--url", server.url, "--channel", "private")
        try:
            assert tail.proc.wait(LINE_TIMEOUT) == 1
            assert tail.error_line() == (
                "tornado-lp tail: error: channel 'private' is private: a token is required "
                "(?token=...) (HTTP 403)"
            )
        finally:
            tail.close()
        assert "Traceback" not in "".join(tail.all_stderr)


def test_tail_takes_the_subscribe_token_from_the_environment() -> None:
    with ServerProcess("--subscribe-secret", SECRET) as server:
        publish(server.url, "private", "secret news")
        token = run(["token", "--channel", "private", "--subscribe-secret", SECRET]).stdout
        tail = Tail("--url", server.url, "--channel", "private",
                    env={"TORNADO_LP_SUBSCRIBE_TOKEN": token.strip()})
        try:
            assert tail.line().endswith(" private secret news")
            assert tail.interrupt() == 0
        finally:
            tail.close()


def test_tail_exits_2_on_bad_usage() -> None:
    for args in (["tail"], ["tail", "--channel", "a,,b"], ["tail", "--channel", "a,a"],
                 ["tail", "--channel", "a", "--url", "nope"],
                 ["tail", "--channel", "a,b", "--cursor", "0123456789abcdef-1"]):
        done = run(args)
        assert done.returncode == 2, (args, done)
        assert len(done.stderr.splitlines()) == 1 and "error" in done.stderr, done.stderr


# -------------------------------------------------------------------- token


def test_token_takes_the_secret_by_the_servers_option_name() -> None:
    for args, env in ((["--subscribe-secret", SECRET], {}), (["--secret", SECRET], {}),
                      ([], {"TORNADO_LP_SUBSCRIBE_SECRET": SECRET})):
        done = run(["token", "--channel", "lobby", *args], env=env)
        assert done.returncode == 0, done.stderr
        verify_token(SECRET, done.stdout.strip(), "lobby")
    missing = run(["token", "--channel", "lobby"])
    assert missing.returncode == 2 and "--subscribe-secret" in missing.stderr
