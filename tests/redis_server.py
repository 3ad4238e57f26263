"""A real ``redis-server`` for tests: a free loopback port, a temp dir, no persistence.

Without the binary, Redis tests skip with a message naming the Debian package;
with ``CI=true`` in the environment they fail instead, so CI cannot go green
by skipping them. One server is shared by the session (tests use fresh key
prefixes); tests that kill or wipe Redis start their own. :class:`RedisServer`
also runs with RDB snapshots or an AOF (``persistence=``) and as a replica
(``args=["--replicaof", ...]``); :class:`RedisSentinel` runs ``redis-sentinel``.
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


def sentinel_binary() -> str:
    """The redis-sentinel path, or skip (fail with CI=true) when it is missing."""
    path = shutil.which("redis-sentinel")
    if path is not None:
        return path
    missing = ("redis-sentinel is not installed: install the Debian package redis-sentinel "
               "(.ci/run does) to run the Sentinel tests")
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(missing + " (CI=true: a missing redis-sentinel fails the run)", pytrace=False)
    pytest.skip(missing)


#: ``persistence=`` of :class:`RedisServer`: the redis-server options of each.
PERSISTENCE = {
    "none": ["--appendonly", "no"],
    "rdb": ["--appendonly", "no"],  # SAVE writes dump.rdb; a start loads it
    "everysec": ["--appendonly", "yes", "--appendfsync", "everysec"],
    "always": ["--appendonly", "yes", "--appendfsync", "always"],
}


def resp(*args: str) -> bytes:
    """One command in the Redis protocol."""
    payload = f"*{len(args)}\r\n".encode()
    for arg in args:
        data = arg.encode()
        payload += b"$%d\r\n%s\r\n" % (len(data), data)
    return payload


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process. ``url`` stays the same across :meth:`restart`."""

    def __init__(
        self,
        directory: Path,
        *,
        persistent: bool = False,
        persistence: str | None = None,
        args: Sequence[str] = (),
    ) -> None:
        """``persistent=True`` means ``persistence="always"``; the default is ``"none"``."""
        self.binary = redis_server_binary()
        self.directory = directory
        self.persistence = persistence or ("always" if persistent else "none")
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
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
             "--unixsocket", str(self.socket_path), "--unixsocketperm", "700",
             "--save", "", *PERSISTENCE[self.persistence], "--dir", str(self.directory),
             "--repl-diskless-sync-delay", "0",  # a replica syncs at once, not after 5 s
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
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as conn:
            conn.sendall(resp(*args))
            return conn.recv(65536)

    def info(self, section: str) -> dict[str, str]:
        """``INFO section`` as a dict (the whole reply, however many reads it takes)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as conn:
            conn.sendall(resp("INFO", section))
            header, _, text = conn.recv(65536).partition(b"\r\n")
            if not header.startswith(b"$"):
                raise RuntimeError(f"INFO {section} failed: {header[:200]!r}")
            size = int(header[1:])
            while len(text) < size:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                text += chunk
        pairs = (line.partition(":") for line in text[:size].decode().splitlines())
        return {key: value for key, colon, value in pairs if colon and not key.startswith("#")}

    def save(self) -> None:
        """``SAVE``: an RDB snapshot of what is stored now."""
        assert self.command("SAVE") == b"+OK\r\n"

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


class RedisSentinel:
    """One ``redis-sentinel`` watching ``master_port`` as ``service``, with short timeouts.

    ``down-after-milliseconds`` 1000 and ``failover-timeout`` 3000: a killed
    master is replaced within seconds. ``auth_pass``: the master's password.
    """

    DOWN_AFTER_MS = 1000
    FAILOVER_TIMEOUT_MS = 3000

    def __init__(
        self, directory: Path, master_port: int, *, service: str = "mymaster",
        quorum: int = 2, auth_pass: str | None = None,
    ) -> None:
        self.binary = sentinel_binary()
        self.directory = directory
        self.master_port = master_port
        self.service = service
        self.quorum = quorum
        self.auth_pass = auth_pass
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisSentinel:
        for _ in range(5):
            self.port = free_port()
            if self._spawn():
                return self
        raise RuntimeError(f"redis-sentinel did not start: {self.log()}")

    def _spawn(self) -> bool:
        config = self.directory / f"sentinel-{self.port}.conf"
        lines = [
            f"port {self.port}", "bind 127.0.0.1", "daemonize no",
            f"dir {self.directory}", f"logfile {self.directory}/sentinel-{self.port}.log",
            f"sentinel monitor {self.service} 127.0.0.1 {self.master_port} {self.quorum}",
            f"sentinel down-after-milliseconds {self.service} {self.DOWN_AFTER_MS}",
            f"sentinel failover-timeout {self.service} {self.FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {self.service} 1",
        ]
        if self.auth_pass is not None:
            lines.append(f"sentinel auth-pass {self.service} {self.auth_pass}")
        config.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen(
            [self.binary, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if self.command("PING").startswith(b"+PONG"):
                    return True
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        return False

    def command(self, *args: str) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as conn:
            conn.sendall(resp(*args))
            return conn.recv(65536)

    def master(self) -> dict[str, str]:
        """``SENTINEL MASTER service`` as a dict (flat RESP array of bulk strings)."""
        reply = self.command("SENTINEL", "MASTER", self.service).split(b"\r\n")
        values = [part.decode() for part in reply[2::2]]
        return dict(zip(values[::2], values[1::2], strict=False))

    def log(self) -> str:
        path = self.directory / f"sentinel-{self.port}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


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
