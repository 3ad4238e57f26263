"""What the client commands share: the parser, ``--url`` and tokens from the environment.

Each option falls back to ``TORNADO_LP_<NAME>`` in the environment, as the
server's options do (:mod:`tornado_lp.config`): ``--url`` to ``TORNADO_LP_URL``,
``--publish-token`` to ``TORNADO_LP_PUBLISH_TOKEN``, ``--subscribe-token`` to
``TORNADO_LP_SUBSCRIBE_TOKEN``. The command line wins.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from typing import NoReturn

from .client import DEFAULT_URL
from .config import ENV_PREFIX

__all__ = ["Parser", "add_server_options", "env", "fail"]


def env(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """``TORNADO_LP_<NAME>`` (``publish-token`` -> ``TORNADO_LP_PUBLISH_TOKEN``), or None."""
    environ = os.environ if environ is None else environ
    return environ.get(ENV_PREFIX + name.upper().replace("-", "_")) or None


class Parser(argparse.ArgumentParser):
    """argparse, with bad usage as one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_server_options(parser: argparse.ArgumentParser, token: str) -> None:
    """``--url`` and ``--<token>`` (``publish-token`` or ``subscribe-token``)."""
    parser.add_argument(
        "--url", default=env("url") or DEFAULT_URL,
        help=f"the server (default: $TORNADO_LP_URL, else {DEFAULT_URL})",
    )
    what = "publish" if token == "publish-token" else "poll private channels"
    parser.add_argument(
        f"--{token}", default=env(token),
        help=f"token to {what} (default: ${ENV_PREFIX}{token.upper().replace('-', '_')})",
    )


def fail(prog: str, message: str, status: int = 1) -> int:
    """Print ``prog: error: message`` on stderr; return ``status`` for the exit."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return status
