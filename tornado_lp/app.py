"""``make_app()``: the Tornado Application, with everything passed in explicitly."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import tornado.web

from .base import Context, Settings
from .displays import DisplayRegistry
from .fastpoll import PollRouter
from .generator import Generator
from .handlers import (
    ChannelInfoHandler,
    DisplaysHandler,
    DisplaysPageHandler,
    HealthHandler,
    MetricsHandler,
    NotFoundHandler,
    PollHandler,
    PublishHandler,
)
from .hub import Hub
from .logs import access_log_function
from .metrics import Metrics
from .openapi import OpenAPIHandler
from .pages import PublishPageHandler, TickerPageHandler
from .resources import resource_dir
from .seed import SeedCreateHandler, SeedUpdateHandler
from .staticfiles import StaticFiles
from .storage import MemoryStorage, Storage

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
    generate_every: float = 0.0,
    generate_channel: str = "default",
    log_format: str = "text",
    lean_polls: bool = True,
    static_path: str | None = None,
    template_path: str | None = None,
    **settings: Any,
) -> tornado.web.Application:
    """Build the application over ``storage`` (a fresh :class:`MemoryStorage` by default).

    The storage is opened lazily on first use; ``app.settings["hub"]`` is the
    :class:`~tornado_lp.hub.Hub` (call ``await hub.close()`` to answer held
    polls and close the storage). With ``generate_every > 0`` a generator is
    started on the current IOLoop (``app.settings["generator"]``). Other
    keyword arguments are Tornado Application settings. Two apps share nothing.
    """
    static_path = static_path or resource_dir("static")
    template_path = template_path or resource_dir("templates")
    if max_message_bytes < 1:
        raise ValueError("max_message_bytes must be at least 1")
    if not poll_timeout_max >= 0:
        raise ValueError("poll_timeout_max must be a number >= 0")
    hub = Hub(storage if storage is not None else MemoryStorage(), max_waiters=max_waiters)
    displays = DisplayRegistry(max_displays)
    ctx = Context(
        hub=hub,
        settings=Settings(
            max_message_bytes=max_message_bytes,
            poll_timeout_max=poll_timeout_max,
            publish_token=publish_token or None,
            subscribe_secret=subscribe_secret or None,
            cors_origins=frozenset(cors_origins),
        ),
        metrics=Metrics(hub.total_waiters, displays.live_count),
        displays=displays,
    )
    deps = {"ctx": ctx}
    # Plain polls take the lean path (fastpoll.py); the router hands every other
    # poll to PollHandler.
    poll_router = PollRouter(ctx, json_log=log_format == "json")
    routes: list[Any] = [
        (rf"/channels/{_CHANNEL}/poll", poll_router if lean_polls else PollHandler, deps),
        (rf"/channels/{_CHANNEL}/messages", PublishHandler, deps),
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
    app = tornado.web.Application(
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
    poll_router.application = app
    return app
