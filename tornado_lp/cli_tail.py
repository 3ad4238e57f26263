"""``python -m tornado_lp tail --channel lobby,news``: print messages as they come.

One line per message, ``<local time> <channel> <body>`` (control characters in
the body escaped, so a message is always one line), or with ``--json`` the
message objects as JSON lines. It starts with each channel's backlog, or after
``--cursor``, and follows until Ctrl-C or SIGTERM (exit 0; the cursor to resume
from is printed on stderr). ``missed``/``reset`` go to stderr, or with
``--json`` to stdout as ``{"signal": "reset", "channel": "lobby"}``. An
unreachable or unavailable server is retried with backoff (each retry noted on
stderr); an error retrying cannot mend (400, 403, ...) exits 1, bad usage 2.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from ._cli_common import Parser, add_server_options, fail
from .client import Client, ClientError, Event, Message, Missed, Retry, Subscription

__all__ = ["format_line", "tail_main"]

PROG = "tornado-lp tail"


def _parser() -> Parser:
    parser = Parser(
        prog=PROG,
        description="Print the messages of channels of a tornado_lp server as they come.",
    )
    parser.add_argument("--channel", action="append", required=True,
                        help="channel to follow; several comma-separated, or repeat the option")
    parser.add_argument("--cursor", default=None,
                        help="start after this cursor (the one a previous tail printed, or a "
                             "message id for one channel) instead of with the backlog")
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    parser.add_argument("--display", default=None, help="a name for this tail at /displays")
    add_server_options(parser, "subscribe-token")
    return parser


def _escape(text: str) -> str:
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def format_line(event: Event, as_json: bool) -> tuple[str, bool]:
    """The line for ``event`` and whether it goes to stdout (else stderr)."""
    if isinstance(event, Message):
        if as_json:
            return json.dumps(event.data, ensure_ascii=False), True
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.ts))
        return f"{stamp} {event.channel} {_escape(event.body)}", True
    kind = "missed" if isinstance(event, Missed) else "reset"
    if as_json:
        return json.dumps({"signal": kind, "channel": event.channel}), True
    if kind == "missed":
        return f"{PROG}: missed messages on {event.channel}: trimmed before they were read", False
    return f"{PROG}: reset on {event.channel}: the server's store was replaced; anew", False


def _print(line: str, stream: TextIO) -> None:
    print(line, file=stream, flush=True)


async def _follow(subscription: Subscription, as_json: bool) -> None:
    async for event in subscription:
        line, to_stdout = format_line(event, as_json)
        _print(line, sys.stdout if to_stdout else sys.stderr)


def _note_retry(retry: Retry) -> None:
    _print(f"{PROG}: {retry.error}; retrying in {retry.delay:.1f} s", sys.stderr)


async def _run(client: Client, subscription: Subscription, as_json: bool) -> int:
    """Follow until a signal (0) or an error retrying cannot mend (1)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    follower = asyncio.create_task(_follow(subscription, as_json))
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({follower, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        stopper.cancel()
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        resume = subscription.cursor
        await client.close()
    if follower.cancelled():
        if resume:
            _print(f"{PROG}: stopped; resume with --cursor {resume}", sys.stderr)
        return 0
    error = follower.exception()
    if isinstance(error, ClientError):
        return fail(PROG, str(error))
    if isinstance(error, ValueError):
        return fail(PROG, str(error), 2)
    if error is not None:
        raise error
    return 0


def tail_main(argv: Sequence[str]) -> int:
    """Run the command; the exit status."""
    options = _parser().parse_args(argv)
    channels = [name for value in options.channel for name in value.split(",")]
    try:
        client = Client(options.url, subscribe_token=options.subscribe_token,
                        display=options.display)
        subscription = client.subscribe(channels, options.cursor, on_retry=_note_retry)
    except ValueError as error:
        return fail(PROG, str(error), 2)
    try:
        return asyncio.run(_run(client, subscription, options.json))
    except BrokenPipeError:
        # The reader went away (tail | head): stop quietly, as coreutils' tail does.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
