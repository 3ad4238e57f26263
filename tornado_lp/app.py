"""``make_app()``: the Tornado Application, with everything passed in explicitly."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import tornado.web

from .application import Application
from .base import Context, Settings
from .fastpoll import plain_poll
from .fleet import Fleet
from .generator import Generator
from .handlers import (
    ChannelInfoHandler,
    DisplaysHandler,
    DisplaysPageHandler,
    EventsHandler,
    HealthHandler,
    MetricsHandler,
    MultiPollHandler,
    NotFoundHandler,
    PollHandler,
    PublishHandler,
    RetractHandler,
)
from .heartbeats import Heartbeats
from .hub import Hub
from .lean import LeanRouter
from .logs import access_log_function
from .metrics import Metrics
from .muxpoll import multi_poll
from .openapi import OpenAPIHandler
from .pages import PublishPageHandler, TickerPageHandler
from .resources import resource_dir
from .seed import SeedCreateHandler, SeedUpdateHandler
from .sse import event_stream
from .staticfiles import StaticFiles
from .storage import MemoryStorage, Storage
from .storage.fleet import GONE_AFTER
from .websocket import StreamSocketHandler

__all__ = ["make_app"]

_CHANNEL = r"([^/]+)"


def make_app(
    storage: Storage | None = None,
    *,
    max_message_bytes: int = 65536,
    poll_timeout_max: float = 60.0,
    publish_token: str | None = None,
    max_waiters: int = 50_000,
    subscribe_secret: str | None = None,
    cors_origins: Iterable[str] = (),
    max_displays: int = 10_000,
    display_stale_after: float = 0.0,
    display_gone_after: float = GONE_AFTER,
    metrics_dir: str | None = None,
    generate_every: float = 0.0,
    generate_channel: str = "default",
    log_format: str = "text",
    lean_polls: bool = True,
    heartbeat: float = 15.0,
    stream_max_age: float = 600.0,
    stream_max_buffer: int = 256 * 1024,
    head_timeout: float | None = None,
    body_timeout: float | None = None,
    static_path: str | None = None,
    template_path: str | None = None,
    **settings: Any,
) -> tornado.web.Application:
    """Build the application over ``storage`` (a fresh :class:`MemoryStorage` by default).

    The storage is opened lazily on first use; ``app.settings["hub"]`` is the
    :class:`~tornado_lp.hub.Hub` (call ``await hub.close()`` to answer held
    polls and close the storage). With ``generate_every > 0`` a generator is
    started on the current IOLoop (``app.settings["generator"]``).
    ``head_timeout``, ``body_timeout``: close connections that wait longer than
    this for a request head, or a body (see :mod:`tornado_lp.application`; then
    turn the server's own timers off). ``display_stale_after``, ``display_gone_after``:
    the thresholds of a display's states (``app.settings["ctx"].fleet``, see
    :mod:`tornado_lp.fleet`). ``metrics_dir``: prometheus-client's multiprocess
    directory (``--processes N``; see :mod:`tornado_lp.metrics`). Other keyword
    arguments are Tornado Application settings. Two apps share nothing.
    """
    static_path = static_path or resource_dir("static")
    template_path = template_path or resource_dir("templates")
    if max_message_bytes < 1:
        raise ValueError("max_message_bytes must be at least 1")
    if not poll_timeout_max >= 0:
        raise ValueError("poll_timeout_max must be a number >= 0")
    if not stream_max_age > 0:
        raise ValueError("stream_max_age must be a positive number of seconds")
    if stream_max_buffer < 1024:
        raise ValueError("stream_max_buffer must be at least 1024 bytes")
    storage = storage if storage is not None else MemoryStorage()
    hub = Hub(storage, max_waiters=max_waiters)
    fleet_store = storage.fleet_store(
        max_displays, stale_after=display_stale_after, gone_after=display_gone_after
    )
    metrics = Metrics(hub.total_waiters, lambda: fleet.live_count(), metrics_dir)
    fleet = Fleet(hub, fleet_store, metrics)
    ctx = Context(
        hub=hub,
        settings=Settings(
            max_message_bytes=max_message_bytes,
            poll_timeout_max=poll_timeout_max,
            publish_token=publish_token or None,
            subscribe_secret=subscribe_secret or None,
            cors_origins=frozenset(cors_origins),
            heartbeat=heartbeat,
            stream_max_age=stream_max_age,
            stream_max_buffer=stream_max_buffer,
        ),
        metrics=metrics,
        fleet=fleet,
        heartbeats=Heartbeats(heartbeat),
    )
    deps = {"ctx": ctx}
    # Plain polls take the lean path (fastpoll.py); the router hands every other
    # poll to PollHandler.
    json_log = log_format == "json"
    poll_router = LeanRouter(ctx, json_log, PollHandler, plain_poll)
    multi_router = LeanRouter(ctx, json_log, MultiPollHandler, multi_poll)
    events_router = LeanRouter(ctx, json_log, EventsHandler, event_stream)
    routes: list[Any] = [
        (rf"/channels/{_CHANNEL}/poll", poll_router if lean_polls else PollHandler, deps),
        (rf"/channels/{_CHANNEL}/messages", PublishHandler, deps),
        (rf"/channels/{_CHANNEL}/messages/([^/]+)", RetractHandler, deps),
        (r"/poll", multi_router, deps),
        (r"/events", events_router, deps),
        (r"/ws", StreamSocketHandler, deps),
        (rf"/channels/{_CHANNEL}", ChannelInfoHandler, deps),
        (r"/healthz", HealthHandler, deps),
        (r"/displays", DisplaysHandler, deps),
        (r"/displays\.html", DisplaysPageHandler, deps),
        (r"/metrics", MetricsHandler, deps),
        (r"/update", SeedUpdateHandler, deps),
        (r"/(?:create|new)", SeedCreateHandler, deps),
        (r"/", TickerPageHandler, deps),
        (r"/publish", PublishPageHandler, deps),
        (r"/openapi\.yaml", OpenAPIHandler, deps),
    ]
    generator = None
    if generate_every > 0:
        generator = Generator(hub, generate_channel, generate_every)
        generator.start()
    # WebSocket heartbeats are Tornado's pings (read from the Application's settings).
    settings.setdefault("websocket_ping_interval", heartbeat)
    settings.setdefault("websocket_ping_timeout", 2 * heartbeat)
    app = Application(
        routes,
        default_handler_class=NotFoundHandler,
        default_handler_args=deps,
        static_path=static_path,
        static_handler_class=StaticFiles,
        template_path=template_path,
        hub=hub,
        ctx=ctx,
        generator=generator,
        log_function=access_log_function(log_format == "json"),
        **settings,
    )
    for router in (poll_router, multi_router, events_router):
        router.application = app
    app.lean_poll = poll_router if lean_polls else None
    app.lean_paths = {"/poll": multi_router, "/events": events_router}
    app.head_timeout = head_timeout
    app.body_timeout = body_timeout
    app.lean_publish = (ctx, json_log) if lean_polls else None
    return app
