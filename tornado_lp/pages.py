"""The HTML pages: the kiosk ticker (``GET /``) and the operator's form (``GET /publish``).

Both pages load only same-origin files and carry a Content-Security-Policy
that forbids inline script: the ticker's data (backlog, cursors, options and
what the page must know of the server's streams) travels in a
``<script type="application/json">`` block that ``ticker.js`` parses, never
executes. Bad query options get a JSON 400 naming the option, like every
other error.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import tornado.web

from . import protocol
from .answers import PollResult
from .base import JSONHandler
from .displays import valid_display
from .sse import HEARTBEAT_EVENT
from .storage import StorageUnavailable
from .tokens import MAX_TOKEN_LENGTH

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "PublishPageHandler",
    "TickerOptions",
    "TickerPageHandler",
    "parse_ticker_options",
    "script_json",
    "stream_cursor",
]

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

MAX_PAGE_CHANNELS = 16
DEFAULT_SPEED = 120.0  # pixels per second
MAX_SPEED = 5000.0
DEFAULT_MAX = 50
MAX_TEXT_OPTION = 200  # characters of a title
THEMES = ("dark", "light")
TRANSPORTS = ("auto", "sse", "poll")

#: The SSE event the server sends as a heartbeat (sse.py). The page watches for
#: it: twice the heartbeat without an event or a heartbeat, the stream is not
#: getting through (a buffering proxy, a dead connection).
SSE_HEARTBEAT_EVENT: str | None = HEARTBEAT_EVENT


class OptionError(ValueError):
    """A page option is malformed; the message names it (answered as 400)."""


@dataclass(frozen=True)
class TickerOptions:
    """The ticker page's query options, validated."""

    channels: tuple[str, ...]
    speed: float
    theme: str
    max: int
    title: str
    hold: float  # test hook: seconds a poll may be held (the poll's ``timeout``)
    token: str | None  # passed on to the stream and the polls
    display: str | None  # passed on to the stream and the polls
    transport: str = "auto"  # auto (SSE, long-poll when it does not get through), sse, poll

    def for_client(self) -> dict[str, Any]:
        return {
            "speed": self.speed,
            "theme": self.theme,
            "max": self.max,
            "title": self.title,
            "hold": self.hold,
            "token": self.token,
            "display": self.display,
            "transport": self.transport,
        }


def _number(name: str, text: str | None, default: float, low: float, high: float) -> float:
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:  # also refuses NaN
        raise OptionError(f"{name} must be a number from {low:g} to {high:g}, got {text[:40]!r}")
    return value


def _text(name: str, text: str | None, longest: int = MAX_TEXT_OPTION) -> str | None:
    if text is None:
        return None
    if len(text) > longest or not text.isprintable():
        raise OptionError(f"{name} must be at most {longest} printable characters")
    return text


def parse_ticker_options(query: dict[str, str | None], hold_max: float) -> TickerOptions:
    """Validate the ticker's query options; raise :class:`OptionError` naming the bad one.

    ``channel`` is one name or a comma-separated list (at most 16, duplicates
    dropped); ``hold`` is capped at ``hold_max`` like the poll's ``timeout``.
    """
    raw = query.get("channel") or "default"
    channels: list[str] = []
    for part in raw.split(","):
        name = part.strip()
        if not name or name in channels:
            continue
        if not protocol.valid_channel(name):
            raise OptionError(
                f"channel {name[:80]!r} is not a valid channel name: "
                "use 1-64 characters of A-Z a-z 0-9 _ . -"
            )
        channels.append(name)
    if not channels:
        raise OptionError("channel must name at least one channel")
    if len(channels) > MAX_PAGE_CHANNELS:
        raise OptionError(f"channel lists {len(channels)} channels; at most {MAX_PAGE_CHANNELS}")

    theme = query.get("theme") or "dark"
    if theme not in THEMES:
        raise OptionError(f"theme must be dark or light, got {theme[:40]!r}")
    max_text = query.get("max")
    if max_text in (None, ""):
        max_items = DEFAULT_MAX
    elif max_text.isascii() and max_text.isdigit() and 1 <= int(max_text[:5]) <= protocol.MAX_LIMIT:
        max_items = int(max_text)
    else:
        raise OptionError(
            f"max must be an integer from 1 to {protocol.MAX_LIMIT}, got {max_text[:40]!r}"
        )
    display = query.get("display")
    if display is not None and not valid_display(display):
        # checked here too: a bad name would make every poll of the page a 400
        raise OptionError("display must be 1-64 characters of A-Z a-z 0-9 _ . : -")
    hold = min(
        _number("hold", query.get("hold"), protocol.DEFAULT_TIMEOUT, 0, 3600), hold_max
    )
    transport = query.get("transport") or "auto"
    if transport not in TRANSPORTS:
        raise OptionError(f"transport must be auto, sse or poll, got {transport[:40]!r}")
    return TickerOptions(
        channels=tuple(channels),
        speed=_number("speed", query.get("speed"), DEFAULT_SPEED, 1, MAX_SPEED),
        theme=theme,
        max=max_items,
        title=_text("title", query.get("title")) or "",
        hold=hold,
        token=_text("token", query.get("token"), MAX_TOKEN_LENGTH),
        display=display,
        transport=transport,
    )


def stream_cursor(results: Mapping[str, PollResult]) -> str:
    """The stream cursor at the end of each channel's backlog ({channel: its first-paint read}).

    Written in the first channel's epoch; a channel read in another epoch (the
    store was replaced between two reads) gets no position in it, so the
    stream answers ``reset`` for that channel.
    """
    epoch = next(iter(results.values())).epoch
    return protocol.format_stream_cursor(
        epoch, {channel: r.seq if r.epoch == epoch else None for channel, r in results.items()}
    )


def script_json(data: Any) -> str:
    """JSON safe inside ``<script type="application/json">``: no ``<``, ``>``, ``&`` left."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class _PageHandler(JSONHandler):
    """HTML on success, JSON on error, with the pages' security headers."""

    def set_default_headers(self) -> None:
        # Also runs when an error clears the headers: the JSON content type of
        # the base class stays the default, and page() switches to HTML.
        super().set_default_headers()
        self.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")

    def page(self, template: str, **kwargs: Any) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.render(template, **kwargs)

    def query(self, *names: str) -> dict[str, str | None]:
        return {name: self.get_query_argument(name, None) for name in names}


class TickerPageHandler(_PageHandler):
    """``GET /``: the kiosk ticker, painted with each channel's backlog and cursor.

    The page data carries the stream cursor that goes with the backlog
    (``cursor``), what the page needs to judge its stream (``stream``: the
    server's heartbeat, the streams' maximum age and the heartbeat event, if
    any) and the server's clock at render (``server_time``, Unix seconds): the
    page judges ``expires`` by the server's clock, never the kiosk's own.
    ``token`` and ``display`` are passed on to the page's stream and polls;
    ``token`` is also checked here for private channels (``--subscribe-secret``).
    """

    async def get(self) -> None:
        try:
            options = parse_ticker_options(
                self.query("channel", "speed", "theme", "max", "title", "hold", "token", "display",
                           "transport"),
                self.config.poll_timeout_max,
            )
        except OptionError as error:
            raise tornado.web.HTTPError(400, "%s", error) from None
        backlog: dict[str, Any] = {}
        results: dict[str, PollResult] = {}
        for channel in options.channels:
            # The first paint shows what a poll would: a private channel needs
            # the same subscribe token (the page's ``token`` option, 403 if not).
            self.check_subscriber(channel)
            try:
                result = await self.hub.poll(channel, None, timeout=0, limit=options.max)
            except StorageUnavailable as error:
                raise tornado.web.HTTPError(503, "storage unavailable: %s", error) from None
            if result is None:  # only a cancelled hold answers None; timeout=0 never holds
                raise tornado.web.HTTPError(503, "storage did not answer")
            results[channel] = result
            backlog[channel] = {
                "messages": [m.to_dict() for m in result.messages],
                "cursor": result.cursor,
            }
        data = {
            "channels": list(options.channels),
            "backlog": backlog,
            "cursor": stream_cursor(results),
            "stream": {
                "heartbeat": self.config.heartbeat,
                "max_age": self.config.stream_max_age,
                "heartbeat_event": SSE_HEARTBEAT_EVENT,
            },
            "options": options.for_client(),
            "server_time": round(time.time(), 3),
        }
        self.page(
            "ticker.html",
            data_json=script_json(data),
            theme=options.theme,
            title=options.title,
        )


class PublishPageHandler(_PageHandler):
    """``GET /publish``: a form that posts to ``/channels/{channel}/messages``."""

    def get(self) -> None:
        channel = self.get_query_argument("channel", "default")
        if not protocol.valid_channel(channel):
            channel = "default"
        self.page("publish.html", channel=channel)
