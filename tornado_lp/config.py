"""Command-line options, each also read from ``TORNADO_LP_<NAME>`` in the environment.

Precedence: command line, then environment, then the default. A bad value is
one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from . import __version__
from .protocol import valid_channel

__all__ = ["build_parser", "parse_args"]

ENV_PREFIX = "TORNADO_LP_"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError
    return value


def _buffer_size(text: str) -> int:
    value = int(text)
    if value < 1024:
        raise ValueError
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value == 0:
        raise ValueError
    return value


def _channel(text: str) -> str:
    if not valid_channel(text):
        raise ValueError
    return text


def _folder(text: str) -> str:
    if not os.path.isdir(text):
        raise ValueError
    return os.path.abspath(text)


def _event_loop(text: str) -> str:
    if text.lower() not in {"auto", "asyncio", "uvloop"}:
        raise ValueError
    return text.lower()


def _log_format(text: str) -> str:
    if text.lower() not in {"text", "json"}:
        raise ValueError
    return text.lower()


def _origin(text: str) -> str:
    if not re.fullmatch(r"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?", text):
        raise ValueError
    return text


def _level(text: str) -> str:
    if text.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError
    return text.upper()


def _named(kind: str, func: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return func(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None

    return convert


# name, type, default, help
OPTIONS: list[tuple[str, Callable[[str], Any] | None, Any, str]] = [
    ("address", None, "127.0.0.1", "address to listen on"),
    ("port", _named("a port number 0-65535", _port), 8888, "port to listen on (0: any free port)"),
    ("storage", None, "memory://",
     "storage URL: memory://, sqlite:///relative.db, sqlite:////absolute.db, "
     "redis://[:password@]host:port/db, rediss://..., unix:///path/redis.sock[?db=N], "
     "redis+sentinel://[:password@]host:port[,host:port...]/service_name[/db] "
     "(docs/STORAGE.md)"),
    ("max-messages", _named("an integer >= 1", _positive_int), 1000,
     "messages retained per channel"),
    ("max-age", _named("seconds >= 0", _seconds), 0.0,
     "drop messages older than this many seconds (0: keep until --max-messages)"),
    ("max-channels", _named("an integer >= 1", _positive_int), 10000, "channels per store"),
    ("max-message-bytes", _named("an integer >= 1", _positive_int), 65536,
     "largest publish request body, in bytes"),
    ("max-waiters", _named("an integer >= 1", _positive_int), 50_000,
     "held polls per process; beyond it a poll gets 503 with Retry-After"),
    ("idle-timeout", _named("seconds > 0", _positive_seconds), 60.0,
     "close a connection that sends no complete request head for this long"),
    ("body-timeout", _named("seconds > 0", _positive_seconds), 30.0,
     "close a connection whose request body takes longer than this"),
    ("poll-timeout-max", _named("seconds >= 0", _seconds), 60.0,
     "longest hold a poll may ask for, in seconds"),
    ("heartbeat", _named("seconds > 0", _positive_seconds), 15.0,
     "seconds between heartbeats on streams (SSE comments, WebSocket pings)"),
    ("stream-max-age", _named("seconds > 0", _positive_seconds), 600.0,
     "close a stream after about this many seconds (jittered by 10%%) so clients "
     "reconnect and spread over the processes; they resume without loss"),
    ("stream-max-buffer", _named("an integer >= 1024", _buffer_size), 256 * 1024,
     "most unsent bytes a stream may hold before it is cut off (a client that stopped "
     "reading); it resumes from its last event"),
    ("generate-every", _named("seconds >= 0", _seconds), 0.0,
     "publish a random message every this many seconds (0: off)"),
    ("generate-channel", _named("a channel name (1-64 of A-Z a-z 0-9 _ . -)", _channel), "default",
     "channel the generator publishes to"),
    ("publish-token", None, None,
     "token publishers must send as 'Authorization: Bearer <token>' "
     "(unset: only loopback clients may publish)"),
    ("subscribe-secret", None, None,
     "make every channel private: polls need ?token= signed with this secret "
     "(make one with: python -m tornado_lp token --channel NAME --ttl 30d)"),
    ("cors-origin", _named("an origin like https://example.com", _origin), [],
     "allow browser pages from this origin to poll and publish (repeatable; "
     "in the environment: comma-separated)"),
    ("max-displays", _named("an integer >= 1", _positive_int), 10_000,
     "displays remembered for /displays (least recently seen forgotten first)"),
    ("display-stale-after", _named("seconds >= 0", _seconds), 0.0,
     "a display not seen for this long is stale at /displays (0: twice its poll's "
     "timeout, at least 2 s; a stream's display is live while the stream is open)"),
    ("display-gone-after", _named("seconds > 0", _positive_seconds), 600.0,
     "a display not seen for this long is gone at /displays (listed for 24 h)"),
    ("full-poll-path", None, False,
     "answer every poll through the full RequestHandler (turns the lean path for plain "
     "polls off; for comparison and troubleshooting)"),
    ("xheaders", None, False,
     "trust X-Forwarded-For / X-Real-Ip from a reverse proxy for the client address"),
    ("static-path", _named("a folder", _folder), None,
     "serve static files from this folder instead of the installed static/"),
    ("template-path", _named("a folder", _folder), None,
     "load page templates from this folder instead of the installed templates/"),
    ("event-loop", _named("auto, asyncio or uvloop", _event_loop), "auto",
     "asyncio event loop: auto uses uvloop when it is installed"),
    ("log-format", _named("text or json", _log_format), "text",
     "log lines as plain text or as one JSON object per line"),
    ("log-level", _named("one of debug, info, warning, error", _level), "INFO", "log level"),
    ("processes", _named("an integer >= 0", _count), 1,
     "worker processes sharing the port (0: one per CPU core); more than one needs a "
     "store they all share (redis://)"),
    ("redis-prefix", None, "tornado_lp:",
     "prefix of every Redis key and of the notice channel (deployments sharing one Redis "
     "need different prefixes)"),
    ("redis-connect-timeout", _named("seconds >= 0", _seconds), 10.0,
     "keep retrying an unreachable Redis this many seconds at start, then exit 2"),
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _env_default(
    name: str, convert: Callable[[str], Any] | None, default: Any, environ: Mapping[str, str]
) -> Any:
    key = ENV_PREFIX + name.upper().replace("-", "_")
    if key not in environ:
        return default
    text = environ[key]
    if isinstance(default, bool):
        if text.lower() in {"1", "true", "yes", "on"}:
            return True
        if text.lower() in {"", "0", "false", "no", "off"}:
            return False
        _fail(f"{key}: expected true or false, got {text!r}")
    if isinstance(default, list):
        assert convert is not None
        try:
            return [convert(item.strip()) for item in text.split(",") if item.strip()]
        except argparse.ArgumentTypeError as error:
            _fail(f"{key}: {error}")
    if convert is None:
        return text
    try:
        return convert(text)
    except argparse.ArgumentTypeError as error:
        _fail(f"{key}: {error}")


def _fail(message: str) -> NoReturn:
    print(f"tornado-lp: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    environ = os.environ if environ is None else environ
    parser = _Parser(
        prog="tornado-lp",
        description="HTTP long-polling message server for ticker screens. "
        f"Every option can also be set as {ENV_PREFIX}<NAME> in the environment.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tornado_lp {__version__}")
    for name, convert, default, text in OPTIONS:
        value = _env_default(name, convert, default, environ)
        if isinstance(default, bool):
            parser.add_argument(f"--{name}", action="store_true", default=value, help=text)
        elif isinstance(default, list):
            # Repeatable: the command line's list replaces the environment's.
            parser.add_argument(f"--{name}", type=convert or str, action="append", default=None,
                                help=text)
            parser.set_defaults(**{f"_{name.replace('-', '_')}_from_env": value})
        else:
            parser.add_argument(f"--{name}", type=convert or str, default=value, help=text)
    return parser


def parse_args(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> argparse.Namespace:
    options = build_parser(environ).parse_args(argv)
    for name, _convert, default, _text in OPTIONS:
        if isinstance(default, list):
            attr = name.replace("-", "_")
            from_env = getattr(options, f"_{attr}_from_env")
            delattr(options, f"_{attr}_from_env")
            if getattr(options, attr) is None:
                setattr(options, attr, from_env)
    return options
