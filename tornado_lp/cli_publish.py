"""``python -m tornado_lp publish --channel lobby "Doors open"``: publish one message.

The body is the argument, or standard input without one (or with ``-``; one
trailing newline is dropped). Prints the stored message's id, or the whole
message as JSON with ``--json``. Exit 0 when stored; 1 with the server's error
on stderr when refused (4xx/5xx) or unreachable; 2 on bad usage.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence

from ._cli_common import Parser, add_server_options, fail
from .client import Client, ClientError

__all__ = ["publish_main"]

PROG = "tornado-lp publish"


def _parser() -> Parser:
    parser = Parser(
        prog=PROG,
        description="Publish one message to a channel of a tornado_lp server.",
    )
    parser.add_argument("--channel", required=True, help="channel to publish to")
    parser.add_argument("body", nargs="?", default="-",
                        help="the message text (default, or '-': read standard input)")
    parser.add_argument("--json", action="store_true",
                        help="print the stored message as JSON (default: its id)")
    add_server_options(parser, "publish-token")
    return parser


def _read_stdin() -> str:
    raw = sys.stdin.buffer.read()
    text = raw.decode("utf-8")  # UnicodeDecodeError: bad usage
    return text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text


def publish_main(argv: Sequence[str]) -> int:
    """Run the command; the exit status."""
    options = _parser().parse_args(argv)
    try:
        body = _read_stdin() if options.body == "-" else options.body
    except UnicodeDecodeError:
        return fail(PROG, "standard input is not UTF-8 text", 2)
    try:
        client = Client(options.url, publish_token=options.publish_token)
    except ValueError as error:
        return fail(PROG, str(error), 2)

    async def publish() -> dict[str, object]:
        async with client:
            return await client.publish(options.channel, body)

    try:
        message = asyncio.run(publish())
    except ValueError as error:
        return fail(PROG, str(error), 2)
    except ClientError as error:
        return fail(PROG, str(error))
    print(json.dumps(message, ensure_ascii=False) if options.json else message["id"])
    return 0
