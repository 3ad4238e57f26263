"""Run the server: ``python -m tornado_lp`` / ``tornado-lp``.

``main()`` builds the storage, binds the listening sockets, opens the
storage, prints one line with the URL, and serves until SIGTERM or SIGINT;
then it stops accepting, answers every held poll (200, empty), closes the
storage and returns 0.

With ``--processes N`` the sockets are bound and the storage is checked once
in the parent, then N workers are forked (see :mod:`._workers`); each runs its
own event loop, started only after the fork.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from tornado.httpserver import HTTPServer
from tornado.ioloop import PeriodicCallback
from tornado.iostream import IOStream
from tornado.netutil import bind_sockets
from tornado.process import cpu_count

from . import __version__
from ._workers import supervise
from .app import make_app
from .config import parse_args
from .fleet import Fleet
from .hub import Hub
from .logs import configure_logging, flush_logs
from .metrics import MULTIPROC_ENV, prometheus_available
from .storage import Limits, Storage, StorageConfigError, storage_from_url
from .storage.fleet import check_thresholds

__all__ = ["main", "run"]

log = logging.getLogger("tornado_lp")

SHUTDOWN_GRACE = 1.5  # seconds for held polls to be answered and connections to close


MAX_HEADER_BYTES = 16 * 1024  # request line + headers; a 10 KB query string still fits
READ_CHUNK = 4096  # bytes per socket read


def http_limits(options: argparse.Namespace) -> dict[str, Any]:
    """Tornado's connection limits, derived from our options so slow or huge requests
    cannot pin memory: request heads within ``--idle-timeout`` and 16 KB, bodies within
    ``--body-timeout`` and a little over ``--max-message-bytes`` (our handler answers 413
    from Content-Length before reading; the slack lets chunked bodies reach that 413 too).
    """
    max_body = 2 * options.max_message_bytes + 64 * 1024
    return {
        "max_header_size": MAX_HEADER_BYTES,
        "max_body_size": max_body,
        "max_buffer_size": max_body + MAX_HEADER_BYTES,
        "idle_connection_timeout": options.idle_timeout,
        "body_timeout": options.body_timeout,
        # Tornado reads the socket into a fresh zeroed buffer of this size every time
        # (64 KB by default: a fifth of a poll's cost); requests are mostly a few
        # hundred bytes, and bigger bodies simply take several reads.
        "chunk_size": READ_CHUNK,
    }


class Server(HTTPServer):
    """Tornado's HTTPServer with TCP_NODELAY on for good.

    Tornado turns Nagle's algorithm off at the end of every response and on
    again after it (two system calls per answer). Every answer here is one
    write (and a stream's events are meant to leave at once), so it stays off.
    """

    def handle_stream(self, stream: IOStream, address: tuple[str, int]) -> None:
        stream.set_nodelay(True)
        stream.set_nodelay = _keep_nodelay  # type: ignore[method-assign]
        super().handle_stream(stream, address)


def _keep_nodelay(value: bool) -> None:
    """In place of IOStream.set_nodelay: TCP_NODELAY was set once, when the connection came."""


def _fail(message: str) -> int:
    print(f"tornado-lp: error: {message}", file=sys.stderr)
    return 2


def make_storage(options: argparse.Namespace) -> Storage:
    """The (unopened) storage the options describe; ValueError/StorageConfigError if bad."""
    limits = Limits(
        max_messages=options.max_messages,
        max_age=options.max_age or None,
        max_channels=options.max_channels,
    )
    return storage_from_url(
        options.storage,
        limits,
        redis_prefix=options.redis_prefix,
        redis_connect_timeout=options.redis_connect_timeout,
    )


def _announce(sockets: list[socket.socket], storage: Storage, processes: int) -> None:
    host, port = sockets[0].getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    workers = f", {processes} processes" if processes > 1 else ""
    print(
        f"tornado_lp {__version__} serving http://{shown}:{port}/ "
        f"(storage {storage.description}{workers})",
        flush=True,
    )


async def serve(
    options: argparse.Namespace,
    storage: Storage,
    sockets: list[socket.socket],
    *,
    announce: bool = True,
    generate: bool = True,
    parent_pid: int | None = None,
    metrics_dir: str | None = None,
) -> int:
    """Open ``storage``, serve on ``sockets`` until a signal (or the parent dies); return 0.

    ``parent_pid``: a worker stops by itself when its parent is gone.
    ``metrics_dir``: the workers' shared metrics directory (see :mod:`.metrics`).
    """
    try:
        await storage.open()
    except StorageConfigError as error:
        return _fail(str(error))
    try:
        app = make_app(
            storage,
            max_message_bytes=options.max_message_bytes,
            poll_timeout_max=options.poll_timeout_max,
            publish_token=options.publish_token,
            max_waiters=options.max_waiters,
            subscribe_secret=options.subscribe_secret,
            cors_origins=options.cors_origin,
            max_displays=options.max_displays,
            display_stale_after=options.display_stale_after,
            display_gone_after=options.display_gone_after,
            metrics_dir=metrics_dir,
            log_format=options.log_format,
            lean_polls=not options.full_poll_path,
            heartbeat=options.heartbeat,
            stream_max_age=options.stream_max_age,
            stream_max_buffer=options.stream_max_buffer,
            head_timeout=options.idle_timeout,
            body_timeout=options.body_timeout,
            generate_every=options.generate_every if generate else 0.0,
            generate_channel=options.generate_channel,
            static_path=options.static_path,
            template_path=options.template_path,
        )
    except (FileNotFoundError, ValueError) as error:
        await storage.close()
        return _fail(str(error))
    hub: Hub = app.settings["hub"]
    fleet: Fleet = app.settings["ctx"].fleet
    fleet.start()
    server = Server(app, xheaders=options.xheaders, **http_limits(options))
    # The application watches request heads and bodies (--idle-timeout,
    # --body-timeout) with one timer each, instead of Tornado's timer per read.
    server.conn_params.header_timeout = None
    server.conn_params.body_timeout = None
    server.add_sockets(sockets)
    if announce:
        _announce(sockets, storage, 1)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    orphan_check = None
    if parent_pid is not None:
        orphan_check = PeriodicCallback(
            lambda: stop.set() if os.getppid() != parent_pid else None, 1000
        )
        orphan_check.start()
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        if orphan_check is not None:
            orphan_check.stop()

    log.info("shutting down")
    server.stop()
    generator = app.settings.get("generator")
    if generator is not None:
        generator.stop()
    try:
        await asyncio.wait_for(fleet.close(), SHUTDOWN_GRACE)
    except TimeoutError:
        pass
    try:
        await asyncio.wait_for(hub.close(), SHUTDOWN_GRACE)
    except TimeoutError:
        log.warning("held polls did not finish in %.1f s", SHUTDOWN_GRACE)
    # Also when the grace ran out: a durable store must commit and checkpoint before exit.
    await storage.close()
    try:
        await asyncio.wait_for(server.close_all_connections(), 0.3)
    except TimeoutError:
        pass
    return 0


async def _check(storage: Storage) -> int:
    """Open and close ``storage`` once (the parent's check before forking workers)."""
    try:
        await storage.open()
    except StorageConfigError as error:
        return _fail(str(error))
    await storage.close()
    return 0


T = TypeVar("T")


def event_loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The loop ``--event-loop`` names: ``auto`` is uvloop when it is installed.

    Tornado runs on any asyncio loop; uvloop takes about 7 % off the CPU cost of
    a delivery (docs/BENCHMARKS.md). Raises ValueError if uvloop is asked for
    but missing.
    """
    if name == "asyncio":
        return None
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if name == "uvloop":
            raise ValueError("--event-loop uvloop: uvloop is not installed "
                             "(pip install 'tornado_lp[speed]')") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run_loop(
    main: Coroutine[Any, Any, T], loop_factory: Callable[[], asyncio.AbstractEventLoop] | None
) -> T:
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(main)
    finally:
        flush_logs()  # lines kept for the loop's last turn


# A fleet of screens reconnects at once after a restart: Tornado's default backlog of
# 128 drops SYNs that the clients then retry after 1 s, 3 s, ... (the kernel caps
# this at net.core.somaxconn).
LISTEN_BACKLOG = 4096


#: ``python -m tornado_lp <name> ...``: the module and function that run each command
#: (imported only when used); anything else runs the server.
COMMANDS = {
    "publish": ("cli_publish", "publish_main"),
    "tail": ("cli_tail", "tail_main"),
    "token": ("token_cli", "token_main"),
    "unit": ("cli_unit", "unit_main"),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in COMMANDS:
        module, function = COMMANDS[args[0]]
        command: Callable[[Sequence[str]], int] = getattr(
            importlib.import_module(f".{module}", __package__), function
        )
        return command(args[1:])
    options = parse_args(args)
    try:
        loop_factory = event_loop_factory(options.event_loop)
    except ValueError as error:
        return _fail(str(error))
    processes = options.processes or cpu_count()
    try:
        check_thresholds(options.display_stale_after, options.display_gone_after)
    except ValueError as error:
        return _fail(str(error).replace("display_", "--display-").replace("_after", "-after"))
    configure_logging(options.log_level, options.log_format, with_pid=processes > 1)
    try:
        storage = make_storage(options)
    except (StorageConfigError, ValueError) as error:
        return _fail(str(error))
    if options.processes != 1 and not storage.shared:
        return _fail(
            f"--processes {options.processes} needs a store every process shares "
            f"(redis://...): with {storage.description} each process would keep its own "
            "messages and wake only its own polls"
        )
    try:
        sockets = bind_sockets(options.port, options.address, backlog=LISTEN_BACKLOG)
    except OSError as error:
        return _fail(f"cannot listen on {options.address}:{options.port}: {error.strerror}")
    if processes == 1:
        return run_loop(serve(options, storage, sockets), loop_factory)

    # Fail once, here, if the store cannot work, rather than once per worker.
    status = run_loop(_check(storage), loop_factory)
    if status != 0:
        return status
    _announce(sockets, storage, processes)
    # One set of metrics for the workers: prometheus-client's multiprocess mode, in
    # a directory made before forking and removed at exit (see .metrics).
    metrics_dir = None
    if prometheus_available():
        metrics_dir = tempfile.mkdtemp(prefix="tornado_lp_metrics_")
        os.environ[MULTIPROC_ENV] = metrics_dir

    def worker(index: int) -> int:
        parent = os.getppid()
        try:
            own = make_storage(options)  # each worker connects on its own event loop
        except (StorageConfigError, ValueError) as error:
            return _fail(str(error))
        return run_loop(
            serve(options, own, sockets, announce=False, generate=index == 0, parent_pid=parent,
                  metrics_dir=metrics_dir),
            loop_factory,
        )

    def worker_exited(pid: int) -> None:
        if metrics_dir is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid, metrics_dir)  # type: ignore[no-untyped-call]

    try:
        return supervise(processes, worker, worker_exited)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def run() -> None:
    sys.exit(main())
