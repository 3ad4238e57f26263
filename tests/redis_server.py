"""A real ``redis-server`` for tests: a free loopback port, a temp dir, no persistence.

Without the binary, Redis tests skip with a message naming the Debian package;
with ``CI=true`` in the environment they fail instead, so CI cannot go green
by skipping them. One server is shared by the session (tests use fresh key
prefixes); tests that kill or wipe Redis start their own.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

MISSING = (
    "redis-server is not installed: install the Debian package redis-server "
    "(.ci/run does) to run the Redis tests"
)


def redis_server_binary() -> str:
    """The redis-server path, or skip (fail with CI=true) when it is missing."""
    path = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None
    )
    if path is not None:
        return path
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(MISSING + " (CI=true: a missing redis-server fails the run)", pytrace=False)
    pytest.skip(MISSING)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process. ``url`` stays the same across :meth:`restart`."""

    def __init__(
        self, directory: Path, *, persistent: bool = False, args: Sequence[str] = ()
    ) -> None:
        self.binary = redis_server_binary()
        self.directory = directory
        self.persistent = persistent
        self.args = list(args)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def socket_path(self) -> Path:
        return self.directory / "redis.sock"

    def start(self) -> RedisServer:
        for _ in range(5):  # a free port can be taken between probing and binding
            if not self.port:
                self.port = free_port()
            if self._spawn():
                return self
            self.port = 0
        raise RuntimeError(f"redis-server did not start: {self.log()}")

    def _spawn(self) -> bool:
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.persistent else ["--appendonly", "no"]
        )
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
             "--unixsocket", str(self.socket_path), "--unixsocketperm", "700",
             "--save", "", *persistence, "--dir", str(self.directory),
             "--logfile", str(self.directory / "redis.log"), "--daemonize", "no",
             *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if self.command("PING").startswith((b"+PONG", b"-NOAUTH")):
                    return True
            except OSError:
                pass
            time.sleep(0.02)
        self.kill()
        return False

    def command(self, *args: str) -> bytes:
        """Send one command (RESP) and return the raw reply's first read."""
        payload = f"*{len(args)}\r\n".encode()
        for arg in args:
            data = arg.encode()
            payload += b"$%d\r\n%s\r\n" % (len(data), data)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as conn:
            conn.sendall(payload)
            return conn.recv(65536)

    def flushall(self) -> None:
        assert self.command("FLUSHALL") == b"+OK\r\n"

    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def restart(self) -> None:
        """Start again on the same port (and, if persistent, with the same data)."""
        self.kill()
        if not self._spawn():
            raise RuntimeError(f"redis-server did not restart on {self.port}: {self.log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_session: RedisServer | None = None


def session_server() -> RedisServer:
    """The server shared by the whole test session, started on first use."""
    global _session
    if _session is None:
        _session = RedisServer(Path(tempfile.mkdtemp(prefix="tornado_lp_redis_"))).start()
    return _session


def stop_session_server() -> None:
    global _session
    if _session is not None:
        _session.stop()
        shutil.rmtree(_session.directory, ignore_errors=True)
        _session = None
