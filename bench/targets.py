"""The servers the benchmark drives, each started and stopped on 127.0.0.1.

* ``TornadoLP``: ``python -m tornado_lp`` with a storage URL (memory, SQLite, Redis).
* ``Seed``: ``python -m bench.seed_gevent``, the seed's gevent server ported to Python 3.
* ``Floor``: ``python -m bench.floor``, a bare Tornado RequestHandler.
* ``SSEFloor``: ``python -m bench.sse_floor``, a RequestHandler per SSE stream.
* ``Nchan``: nginx with the nchan module, one worker, config written to a
  temporary directory at run time (long-poll and EventSource subscribers).

A target also knows how to speak its protocol: ``subscriber()`` returns an
object whose ``poll()`` performs one long-poll round trip and returns the
message bodies it delivered; ``publish_request()`` encodes one publish;
``stream_path()`` and ``stream_body()`` are the event-stream side. ``runs()``
says which scenarios a target takes part in.
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
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from .client import Connection, open_connections, request_bytes
from .procstat import ProcessTree
from .sse import SSEEvent

if TYPE_CHECKING:
    from .records import Spec

__all__ = [
    "ACCESS_LOG_OFF",
    "STREAM_KINDS",
    "Floor",
    "Nchan",
    "SSEFloor",
    "Seed",
    "Subscriber",
    "Target",
    "TargetUnavailable",
    "TornadoLP",
    "all_targets",
    "parse_seed_answer",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
NCHAN_MODULE_PATHS = (
    Path("/usr/lib/nginx/modules/ngx_nchan_module.so"),
    Path("/usr/share/nginx/modules/ngx_nchan_module.so"),
)
_URL = re.compile(rb"http://127\.0\.0\.1:(\d+)/")
#: Scenario kinds that open event streams instead of long-polls.
STREAM_KINDS = frozenset({"sse", "sse-hold"})
#: The tornado_lp options of the access-log A/B (``python -m bench`` runs them on fanout-a).
ACCESS_LOG_OFF = "--log-level WARNING"


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
    #: False for the floors, which answer at once or only stream, and store nothing.
    long_polls: bool = True
    #: True for the floor: one fixed answer per GET (it runs fanout only).
    fixed_answers: bool = False
    #: True when the target serves event streams (``stream_path``).
    streams: bool = False
    #: The scenario roles this target runs (None: every one it can).
    roles: frozenset[str] | None = None

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

    def runs(self, spec: Spec) -> bool:
        """Whether this target takes part in ``spec``."""
        if self.roles is not None and spec.role not in self.roles:
            return False
        if spec.kind in STREAM_KINDS:
            return self.streams
        if spec.kind == "fanout":
            return self.long_polls or self.fixed_answers
        return self.long_polls

    # -- protocol ----------------------------------------------------------
    def stream_path(self, channels: Sequence[str]) -> str:
        """The path of one event stream on ``channels``."""
        raise NotImplementedError(f"{self.name} does not stream")

    def stream_body(self, event: SSEEvent) -> str | None:
        """The published body an event carries (None: not a message event)."""
        if event.type != "message":
            return None
        body = json.loads(event.data)["body"]
        return str(body)

    #: True when every event but a heartbeat must carry a non-empty ``id:`` (tornado_lp's protocol).
    stream_ids_required: bool = False

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

    async def stream_count(self, conn: Connection, channel: str) -> int | None:
        """How many event streams the server has open on ``channel`` (None: cannot tell)."""
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
        # Streams are measured on memory only (the issues compare that).
        self.streams = storage == "memory"
        self.stream_ids_required = True
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

    def stream_path(self, channels: Sequence[str]) -> str:
        return f"/events?channel={','.join(channels)}"

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

    async def stream_count(self, conn: Connection, channel: str) -> int | None:
        # The hub counts a stream among the channel's readers, as it counts a held poll.
        return await self.held_polls(conn, channel)


# ---------------------------------------------------------------------------
class Floor(Target):
    """A bare Tornado RequestHandler: one fixed JSON answer per GET."""

    name = "floor (bare RequestHandler)"
    long_polls = False
    fixed_answers = True

    def _command(self, tmp: Path) -> list[str]:
        return [sys.executable, "-m", "bench.floor", "--port", "0"]

    def fixed_request(self) -> bytes:
        return request_bytes("GET", "/")

    def probe_request(self) -> bytes:
        return self.fixed_request()


# ---------------------------------------------------------------------------
_SEED_DIV = re.compile(rb"<div>(.*?)</div>")
_SEED_ID = re.compile(rb"'id': '([^']*)'")


def parse_seed_answer(body: bytes) -> tuple[list[str], str] | None:
    """(message texts, last id) from the seed's ``str(dict)`` answer; None if it is not one.

    A regular expression rather than ``ast.literal_eval``: the client shares the
    CPU with the server, and the bodies (``<seq>:<ns>``) hold no quotes or tags.
    """
    found = _SEED_ID.search(body)
    if found is None or not body.startswith(b"{'html': '"):
        return None
    return [b.decode() for b in _SEED_DIV.findall(body)], found.group(1).decode()


class _SeedSubscriber(Subscriber):
    """The seed's protocol: ``POST /update`` with form field ``id`` (the last id seen);
    the answer is ``str(dict)``: ``{'html': '<div>body</div>...', 'id': '<uuid>'}``."""

    def __init__(self, conn: Connection, channel: str, hold_s: float) -> None:
        super().__init__(conn, channel, hold_s)
        self.last_id = ""

    async def poll(self) -> tuple[list[str], int]:
        form = urlencode({"id": self.last_id}).encode()
        resp = await self.conn.request(request_bytes(
            "POST", "/update", {"Content-Type": "application/x-www-form-urlencoded"}, form
        ))  # fmt: skip
        parsed = parse_seed_answer(resp.body) if resp.status == 200 else None
        if parsed is None:
            self.errors += 1
            await asyncio.sleep(0.1)
            return [], resp.received_ns
        bodies, self.last_id = parsed
        return bodies, resp.received_ns


class Seed(Target):
    """The seed's gevent server (bench/seed_gevent.py): one global channel, no trimming."""

    name = "seed (gevent)"
    # Publishing without pollers compares nothing the issues ask for.
    roles = frozenset({"fanout-a", "fanout-b", "burst", "hold-a", "hold-b", "publish-woken"})

    def check_available(self) -> None:
        if importlib.util.find_spec("gevent") is None:
            raise TargetUnavailable("gevent is not installed (pip install -e '.[bench]')")

    def _command(self, tmp: Path) -> list[str]:
        return [sys.executable, "-m", "bench.seed_gevent", "--port", "0"]

    def subscriber(self, conn: Connection, channel: str, hold_s: float) -> Subscriber:
        return _SeedSubscriber(conn, channel, hold_s)

    def probe_request(self) -> bytes:
        return request_bytes("GET", "/bench/held")

    def publish_request(self, channel: str, body: str) -> bytes:
        return request_bytes("POST", "/create", {"Content-Type": "text/plain"}, body.encode())

    async def held_polls(self, conn: Connection, channel: str) -> int | None:
        resp = await conn.request(self.probe_request())
        return int(json.loads(resp.body)["held"]) if resp.status == 200 else None


# ---------------------------------------------------------------------------
class SSEFloor(Target):
    """A RequestHandler per event stream (bench/sse_floor.py), nothing stored."""

    name = "floor SSE (RequestHandler per stream)"
    long_polls = False
    streams = True

    def __init__(self, heartbeat_s: float = 15.0) -> None:
        super().__init__()
        self.heartbeat_s = heartbeat_s

    def _command(self, tmp: Path) -> list[str]:
        return [sys.executable, "-m", "bench.sse_floor", "--port", "0",
                "--heartbeat", f"{self.heartbeat_s:g}"]  # fmt: skip

    def probe_request(self) -> bytes:
        return request_bytes("GET", "/channels/bench-probe")

    def publish_request(self, channel: str, body: str) -> bytes:
        return request_bytes(
            "POST", f"/channels/{channel}/messages", {"Content-Type": "text/plain"}, body.encode()
        )

    def stream_path(self, channels: Sequence[str]) -> str:
        return f"/events?channel={','.join(channels)}"

    async def stream_count(self, conn: Connection, channel: str) -> int | None:
        resp = await conn.request(request_bytes("GET", f"/channels/{channel}"))
        return int(json.loads(resp.body)["waiters"]) if resp.status == 200 else None


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
    location ~ ^/es/([A-Za-z0-9_.,-]+)$ {{
      nchan_subscriber eventsource;
      nchan_channel_id $1;
      nchan_channel_id_split_delimiter ",";
      nchan_eventsource_ping_interval {heartbeat};
      nchan_eventsource_ping_comment "hb";
      nchan_eventsource_ping_event "";
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
    """nginx + nchan, one worker process: long-poll on ``/sub/{ch}``, EventSource
    on ``/es/{ch},{ch}...`` (multiplexed by ``nchan_channel_id_split_delimiter``),
    heartbeat comments every ``heartbeat_s`` (tornado_lp's default 15 s)."""

    name = "nchan"
    streams = True

    def __init__(
        self, buffer_length: int = 100_000, connections: int = 16_000, heartbeat_s: int = 15
    ) -> None:
        super().__init__()
        self.buffer_length = buffer_length
        self.connections = connections
        self.heartbeat_s = heartbeat_s

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
            heartbeat=self.heartbeat_s,
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

    def stream_path(self, channels: Sequence[str]) -> str:
        return f"/es/{','.join(channels)}"

    def stream_body(self, event: SSEEvent) -> str | None:
        return event.data if event.type == "message" else None

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

    async def stream_count(self, conn: Connection, channel: str) -> int | None:
        return await self.held_polls(conn, channel)


def _variant(lp_args: Sequence[str], options: str) -> TornadoLP:
    words = shlex.split(options)
    variant = TornadoLP(
        "memory",
        extra_args=[*lp_args, *(w for w in words if w != "uvloop")],
        uvloop="uvloop" in words,
    )
    variant.name = f"tornado_lp memory [{options}]"
    variant.streams = False
    return variant


def all_targets(lp_args: Sequence[str] = (), variants: Sequence[str] = ()) -> list[Target]:
    """Every target, in table order; the caller skips the unavailable ones.

    Each of ``variants`` (a string of tornado_lp options) adds a memory target
    named after its options, so a change can be measured beside the default;
    the word ``uvloop`` among them runs that server on uvloop's event loop.
    Unless ``ACCESS_LOG_OFF`` is one of them, it is added anyway for fanout-a
    only: the access log's cost per request is one of the judged figures.
    """
    extra: list[Target] = [_variant(lp_args, options) for options in variants]
    if ACCESS_LOG_OFF not in variants:
        quiet = _variant(lp_args, ACCESS_LOG_OFF)
        quiet.roles = frozenset({"fanout-a"})
        extra.append(quiet)
    return [
        TornadoLP("memory", extra_args=lp_args),
        *extra,
        TornadoLP("sqlite", extra_args=lp_args),
        TornadoLP("redis", extra_args=lp_args),
        Seed(),
        Floor(),
        SSEFloor(),
        Nchan(),
    ]
