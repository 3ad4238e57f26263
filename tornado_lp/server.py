"""Run the server: ``python -m tornado_lp`` / ``tornado-lp``.

``main()`` builds the storage and the app, listens, prints one line with the
URL, and waits for SIGTERM or SIGINT; then it stops accepting, answers every
held poll (200, empty), closes the storage and returns 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from . import __version__
from .app import make_app
from .config import parse_args
from .hub import Hub
from .storage import Limits, StorageConfigError, storage_from_url

__all__ = ["main", "run"]

log = logging.getLogger("tornado_lp")

SHUTDOWN_GRACE = 1.5  # seconds for held polls to be answered and connections to close


def _fail(message: str) -> int:
    print(f"tornado-lp: error: {message}", file=sys.stderr)
    return 2


async def serve(options: argparse.Namespace) -> int:
    try:
        limits = Limits(
            max_messages=options.max_messages,
            max_age=options.max_age or None,
            max_channels=options.max_channels,
        )
        storage = storage_from_url(options.storage, limits)
        await storage.open()
    except (StorageConfigError, ValueError) as error:
        return _fail(str(error))
    try:
        app = make_app(
            storage,
            max_message_bytes=options.max_message_bytes,
            poll_timeout_max=options.poll_timeout_max,
            publish_token=options.publish_token,
            generate_every=options.generate_every,
            generate_channel=options.generate_channel,
            static_path=options.static_path,
            template_path=options.template_path,
        )
    except (FileNotFoundError, ValueError) as error:
        await storage.close()
        return _fail(str(error))
    hub: Hub = app.settings["hub"]
    server = HTTPServer(app, xheaders=options.xheaders)
    try:
        sockets = bind_sockets(options.port, options.address)
    except OSError as error:
        await storage.close()
        return _fail(f"cannot listen on {options.address}:{options.port}: {error.strerror}")
    server.add_sockets(sockets)
    host, port = sockets[0].getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(
        f"tornado_lp {__version__} serving http://{shown}:{port}/ "
        f"(storage {storage.description})",
        flush=True,
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)

    log.info("shutting down")
    server.stop()
    generator = app.settings.get("generator")
    if generator is not None:
        generator.stop()
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


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    logging.basicConfig(
        level=options.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return asyncio.run(serve(options))


def run() -> None:
    sys.exit(main())
