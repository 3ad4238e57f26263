"""``python -m tornado_lp token``: print a subscribe token for private channels."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .tokens import make_token, parse_ttl

__all__ = ["token_main"]


def token_main(argv: Sequence[str]) -> int:
    """Print one token; exit 2 with one line on bad input."""
    parser = argparse.ArgumentParser(
        prog="tornado-lp token",
        description="Print a token that lets a ticker poll private channels. "
        "The secret comes from --subscribe-secret (the server's option of that name; "
        "--secret is the same) or TORNADO_LP_SUBSCRIBE_SECRET.",
    )
    parser.add_argument("--channel", action="append", required=True,
                        help="channel the token grants (repeatable; '*' for all)")
    parser.add_argument("--ttl", default="30d", help="lifetime: 30d, 12h, 15m, 90s (default 30d)")
    parser.add_argument("--subscribe-secret", "--secret", dest="secret",
                        default=os.environ.get("TORNADO_LP_SUBSCRIBE_SECRET"),
                        help="the server's --subscribe-secret "
                             "(default: $TORNADO_LP_SUBSCRIBE_SECRET)")
    parser.error = lambda message: parser.exit(  # type: ignore[method-assign]
        2, f"tornado-lp token: error: {message}\n"
    )
    options = parser.parse_args(argv)
    try:
        if not options.secret:
            raise ValueError(
                "no secret: pass --subscribe-secret or set TORNADO_LP_SUBSCRIBE_SECRET"
            )
        token = make_token(options.secret, options.channel, parse_ttl(options.ttl))
    except ValueError as error:
        print(f"tornado-lp token: error: {error}", file=sys.stderr)
        return 2
    print(token)
    return 0
