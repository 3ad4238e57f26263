"""The servers the benchmark drives, each started and stopped on 127.0.0.1.

* ``TornadoLP``: ``python -m tornado_lp`` with a storage URL (memory, SQLite).
* ``Floor``: ``python -m bench.floor``, a bare Tornado RequestHandler.
* ``Nchan``: nginx with the nchan module, one worker, config written to a
  temporary directory at run time.

A target also knows how to speak its protocol: ``subscriber()`` returns an
object whose ``poll()`` performs one long-poll round trip and returns the
message bodies it delivered; ``publish_request()`` encodes one publish.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from .client import Connection, open_connections, request_bytes
from .procstat import ProcessTree

__all__ = [
    "Floor",
    "Nchan",
    "Subscriber",
    "Target",
    "TargetUnavailable",
    "TornadoLP",
    "all_targets",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
NCHAN_MODULE_PATHS = (
    Path("/usr/lib/nginx/modules/ngx_nchan_module.so"),
    Path("/usr/share/nginx/modules/ngx_nchan_module.so"),
)
_URL = re.compile(rb"http://127\.0\.0\.1:(\d+)/")


def _free_port() -> int:
    """A port free on 127.0.0.1 now, for servers that cannot report the one they bound."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _wait_listening(
    host: str, port: int, proc: subprocess.Popen[bytes], what: str, limit: float = 20
) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise RuntimeError(f"{what} did not listen on {host}:{port} within {limit:.0f} s")


class TargetUnavailable(Exception):
    """The target cannot run on this machine (binary or backend missing)."""


class Subscriber(ABC):
    """One poller on one connection, following the target's cursor protocol."""

    def __init__(self, conn: Connection, channel: str, hold_s: float) -> None:
        self.conn = conn
        self.channel = channel
        self.hold_s = hold_s
        self.errors = 0
        self.missed = 0
        self.resets = 0

    @abstractmethod
    async def poll(self) -> tuple[list[str], int]:
        """One round trip: the bodies delivered (maybe none) and the receipt time."""


class Target(ABC):
    name: str
    #: False for the floor, which answers at once and has no channels.
    long_polls: bool = True

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: Path | None = None

    # -- lifecycle -------------------------------------------------------
    def check_available(self) -> None:  # noqa: B027 - most targets need no check
        """Raise TargetUnavailable with a reason when the target cannot run."""

    @abstractmethod
    def _command(self, tmp: Path) -> list[str]: ...

    async def start(self) -> None:
        self._tmp = Path(tempfile.mkdtemp(prefix=f"bench-{self.slug}-"))
        out = open(self._tmp / "stdout.log", "wb")
        err = open(self._tmp / "stderr.log", "wb")
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        self._proc = subprocess.Popen(
            self._command(self._tmp), stdout=out, stderr=err, cwd=self._tmp, env=env
        )
        out.close()
        err.close()
        try:
            await self._wait_ready(self._tmp)
        except BaseException:
            await self.stop()
            raise

    async def _wait_ready(self, tmp: Path) -> None:
        """Wait for the ``http://127.0.0.1:PORT/`` line on stdout."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            match = _URL.search((tmp / "stdout.log").read_bytes())
            if match:
                self.port = int(match.group(1))
                return
            self._check_alive(tmp)
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.name}: no listening URL on stdout within 20 s")

    def _check_alive(self, tmp: Path) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            tail = (tmp / "stderr.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} exited with {self._proc.returncode}: {tail}")

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            for _ in range(100):
                if proc.poll() is not None:
                    break
                await asyncio.sleep(0.05)
            else:
                proc.kill()
                proc.wait()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    @property
    def tree(self) -> ProcessTree:
        if self._proc is None:
            raise RuntimeError(f"{self.name} is not running")
        return ProcessTree(self._proc.pid)

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")

    def stderr_tail(self, chars: int = 2000) -> str:
        if self._tmp is None:
            return ""
        path = self._tmp / "stderr.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    # -- protocol ----------------------------------------------------------
    def subscriber(self, conn: Connection, channel: str, hold_s: float) -> Subscriber:
        raise NotImplementedError(f"{self.name} does not long-poll")

    def publish_request(self, channel: str, body: str) -> bytes:
        raise NotImplementedError(f"{self.name} does not take publishes")

    def fixed_request(self) -> bytes:
        raise NotImplementedError(f"{self.name} has no fixed request")

    @abstractmethod
    def probe_request(self) -> bytes:
        """A cheap request answered at once, to know a new connection was accepted."""

    async def connect(self, count: int) -> list[Connection]:
        return await open_connections(self.host, self.port, count, probe=self.probe_request())

    async def held_polls(self, conn: Connection, channel: str) -> int | None:
        """How many polls the server holds on ``channel`` (None: cannot tell)."""
        return None


# ---------------------------------------------------------------------------
class _LPSubscriber(Subscriber):
    limit = 1000

    def __init__(self, conn: Connection, channel: str, hold_s: float) -> None:
        super().__init__(conn, channel, hold_s)
        self.cursor: str | None = None
        self._base = f"/channels/{channel}/poll?timeout={hold_s:g}&limit={self.limit}"

    async def poll(self) -> tuple[list[str], int]:
        path = self._base if self.cursor is None else f"{self._base}&cursor={self.cursor}"
        resp = await self.conn.request(request_bytes("GET", path))
        if resp.status != 200:
            self.errors += 1
            await asyncio.sleep(0.1)
            return [], resp.received_ns
        answer = json.loads(resp.body)
        self.cursor = answer["cursor"]
        if answer["missed"]:
            self.missed += 1
        if answer["reset"]:
            self.resets += 1
        return [m["body"] for m in answer["messages"]], resp.received_ns


class TornadoLP(Target):
    """tornado_lp itself, on one storage backend.

    For ``redis`` the benchmark starts its own ``redis-server`` (no persistence)
    on a free port, and counts its CPU and memory as the server's.
    """

    def __init__(
        self,
        storage: str = "memory",
        max_messages: int = 100_000,
        extra_args: Sequence[str] = (),
        uvloop: bool = False,
    ) -> None:
        super().__init__()
        self.storage = storage
        self.max_messages = max_messages
        self.extra_args = list(extra_args)
        self.uvloop = uvloop
        self.name = f"tornado_lp {storage}"
        self.storage_module = storage
        self._redis: subprocess.Popen[bytes] | None = None
        self._redis_port = 0

    def check_available(self) -> None:
        try:
            found = importlib.util.find_spec("tornado_lp")
        except ImportError:
            found = None
        if found is None:
            raise TargetUnavailable("package tornado_lp is not importable")
        if self.uvloop and importlib.util.find_spec("uvloop") is None:
            raise TargetUnavailable("uvloop is not installed (pip install uvloop)")
        if self.storage == "redis":
            if shutil.which("redis-server") is None:
                raise TargetUnavailable(
                    "redis-server is not installed (apt-get install redis-server)"
                )
            if importlib.util.find_spec("redis") is None:
                raise TargetUnavailable("the redis driver is not installed (pip install redis)")
            self.storage_module = "redis_store"
        if self.storage != "memory":
            module = self.storage_module
            try:
                backend = importlib.util.find_spec(f"tornado_lp.storage.{module}")
            except ImportError:
                backend = None
            if backend is None:
                raise TargetUnavailable(f"tornado_lp.storage.{module} does not exist yet")

    def _storage_url(self, tmp: Path) -> str:
        if self.storage == "memory":
            return "memory://"
        if self.storage == "sqlite":
            return f"sqlite:///{tmp / 'bench.db'}"  # tmp is absolute: four slashes
        if self.storage == "redis":
            return f"redis://127.0.0.1:{self._redis_port}/0"
        raise TargetUnavailable(f"no storage URL known for {self.storage}")

    def _command(self, tmp: Path) -> list[str]:
        module = "bench._uvloop_run" if self.uvloop else "tornado_lp"
        return [
            sys.executable, "-m", module,
            "--port", "0",
            "--storage", self._storage_url(tmp),
            "--max-messages", str(self.max_messages),
            *self.extra_args,
        ]  # fmt: skip

    async def start(self) -> None:
        if self.storage == "redis":
            await self._start_redis()
        try:
            await super().start()
        except BaseException:
            await self._stop_redis()
            raise

    async def stop(self) -> None:
        try:
            await super().stop()
        finally:
            await self._stop_redis()

    async def _start_redis(self) -> None:
        self._redis_port = _free_port()
        self._redis = subprocess.Popen(
            ["redis-server", "--port", str(self._redis_port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", tempfile.gettempdir()],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        await _wait_listening(self.host, self._redis_port, self._redis, "redis-server")

    async def _stop_redis(self) -> None:
        proc, self._redis = self._redis, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            await asyncio.get_running_loop().run_in_executor(None, proc.wait)

    @property
    def tree(self) -> ProcessTree:
        tree = super().tree
        if self._redis is not None:
            return ProcessTree(tree.root, self._redis.pid)
        return tree

    def subscriber(self, conn: Connection, channel: str, hold_s: float) -> Subscriber:
        return _LPSubscriber(conn, channel, hold_s)

    def probe_request(self) -> bytes:
        return request_bytes("GET", "/healthz")

    def publish_request(self, channel: str, body: str) -> bytes:
        return request_bytes(
            "POST",
            f"/channels/{channel}/messages",
            {"Content-Type": "text/plain; charset=utf-8"},
            body.encode(),
        )

    async def held_polls(self, conn: Connection, channel: str) -> int | None:
        resp = await conn.request(request_bytes("GET", f"/channels/{channel}"))
        if resp.status != 200:
            return None
        waiters = json.loads(resp.body).get("waiters")
        return int(waiters) if waiters is not None else None


# ---------------------------------------------------------------------------
class Floor(Target):
    """A bare Tornado RequestHandler: one fixed JSON answer per GET."""

    name = "floor (bare RequestHandler)"
    long_polls = False

    def _command(self, tmp: Path) -> list[str]:
        return [sys.executable, "-m", "bench.floor", "--port", "0"]

    def fixed_request(self) -> bytes:
        return request_bytes("GET", "/")

    def probe_request(self) -> bytes:
        return self.fixed_request()


# ---------------------------------------------------------------------------
_NGINX_CONF = """\
load_module {module};
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
worker_rlimit_nofile {nofile};
events {{ worker_connections {connections}; multi_accept on; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  nchan_max_reserved_memory 256M;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location ~ ^/sub/([A-Za-z0-9_.-]+)$ {{
      nchan_subscriber longpoll;
      nchan_channel_id $1;
      nchan_subscriber_timeout 120s;
    }}
    location ~ ^/pub/([A-Za-z0-9_.-]+)$ {{
      nchan_publisher;
      nchan_channel_id $1;
      nchan_message_buffer_length {buffer};
      nchan_message_timeout 1h;
    }}
  }}
}}
"""


class _NchanSubscriber(Subscriber):
    """Nchan long-poll: one message per answer, the position kept in
    ``Last-Modified``/``Etag`` and sent back as ``If-Modified-Since``/``If-None-Match``."""

    def __init__(self, conn: Connection, channel: str, hold_s: float) -> None:
        super().__init__(conn, channel, hold_s)
        self._path = f"/sub/{channel}"
        self._headers: dict[str, str] = {}

    async def poll(self) -> tuple[list[str], int]:
        resp = await self.conn.request(request_bytes("GET", self._path, self._headers))
        if resp.status == 200:
            self._headers = {
                "If-Modified-Since": resp.headers.get("last-modified", ""),
                "If-None-Match": resp.headers.get("etag", ""),
            }
            return [resp.body.decode()], resp.received_ns
        if resp.status not in (304, 408):
            self.errors += 1
            await asyncio.sleep(0.1)
        return [], resp.received_ns


class Nchan(Target):
    """nginx + nchan, one worker process."""

    name = "nchan"

    def __init__(self, buffer_length: int = 100_000, connections: int = 16_000) -> None:
        super().__init__()
        self.buffer_length = buffer_length
        self.connections = connections

    @staticmethod
    def _module() -> Path | None:
        return next((p for p in NCHAN_MODULE_PATHS if p.exists()), None)

    def check_available(self) -> None:
        if shutil.which("nginx") is None:
            raise TargetUnavailable("nginx is not installed (apt-get install nginx-light)")
        if self._module() is None:
            raise TargetUnavailable(
                "the nchan module is missing (apt-get install libnginx-mod-nchan)"
            )

    def _command(self, tmp: Path) -> list[str]:
        self.port = _free_port()  # nginx cannot print the port it got
        conf = _NGINX_CONF.format(
            module=self._module(),
            tmp=tmp,
            port=self.port,
            buffer=self.buffer_length,
            connections=self.connections,
            nofile=self.connections + 1000,
        )
        (tmp / "nginx.conf").write_text(conf)
        return [shutil.which("nginx") or "nginx", "-p", str(tmp), "-e", str(tmp / "error.log"),
                "-c", str(tmp / "nginx.conf")]  # fmt: skip

    async def _wait_ready(self, tmp: Path) -> None:
        if self._proc is None:
            raise RuntimeError("nginx was not started")
        await _wait_listening(self.host, self.port, self._proc, "nginx")

    def stderr_tail(self, chars: int = 2000) -> str:
        if self._tmp is None:
            return ""
        path = self._tmp / "error.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def subscriber(self, conn: Connection, channel: str, hold_s: float) -> Subscriber:
        return _NchanSubscriber(conn, channel, hold_s)

    def probe_request(self) -> bytes:
        return request_bytes("GET", "/pub/bench-probe", {"Accept": "text/json"})

    def publish_request(self, channel: str, body: str) -> bytes:
        return request_bytes(
            "POST",
            f"/pub/{channel}",
            {"Accept": "text/json", "Content-Type": "text/plain"},
            body.encode(),
        )

    async def held_polls(self, conn: Connection, channel: str) -> int | None:
        resp = await conn.request(request_bytes("GET", f"/pub/{channel}", {"Accept": "text/json"}))
        if resp.status == 404:  # no subscriber has created the channel yet
            return 0
        if resp.status != 200:
            return None
        return int(json.loads(resp.body)["subscribers"])


def all_targets(lp_args: Sequence[str] = (), variants: Sequence[str] = ()) -> list[Target]:
    """Every target, in table order; the caller skips the unavailable ones.

    Each of ``variants`` (a string of tornado_lp options) adds a memory target
    named after its options, so a change can be measured beside the default;
    the word ``uvloop`` among them runs that server on uvloop's event loop.
    """
    extra: list[Target] = []
    for options in variants:
        words = shlex.split(options)
        variant = TornadoLP(
            "memory",
            extra_args=[*lp_args, *(w for w in words if w != "uvloop")],
            uvloop="uvloop" in words,
        )
        variant.name = f"tornado_lp memory [{options}]"
        extra.append(variant)
    return [
        TornadoLP("memory", extra_args=lp_args),
        *extra,
        TornadoLP("sqlite", extra_args=lp_args),
        TornadoLP("redis", extra_args=lp_args),
        Floor(),
        Nchan(),
    ]
