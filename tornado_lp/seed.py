"""The gevent seed demo's routes, on channel ``default``.

``POST /update`` long-polls and answers ``{"html": ..., "id": cursor}`` with
every body HTML-escaped. The JSON is sent as ``text/plain``: the seed page
runs ``eval("(" + result + ")")`` on the answer, which needs jQuery to hand it
a string, and jQuery parses ``application/json`` answers by itself.
``POST /create`` and ``POST /new`` publish a random 6-character message.
"""

from __future__ import annotations

import html

import tornado.web
from tornado.escape import json_encode

from . import protocol
from .base import JSONHandler
from .handlers import PublishHandler
from .publishing import PublishRequest
from .randomtext import random_text

__all__ = ["SEED_CHANNEL", "SeedCreateHandler", "SeedUpdateHandler", "random_text"]

SEED_CHANNEL = "default"

class SeedUpdateHandler(JSONHandler):
    """``POST /update`` with form field ``id``: the seed page's long-poll."""

    def check_xsrf_cookie(self) -> None:
        pass

    async def post(self) -> None:
        self.check_subscriber(SEED_CHANNEL)
        cursor = self.get_body_argument("id", "", strip=False) or None
        try:
            protocol.parse_cursor(cursor)
        except protocol.ProtocolError as error:
            raise tornado.web.HTTPError(400, "id: %s", error) from None
        timeout = min(protocol.DEFAULT_TIMEOUT, self.config.poll_timeout_max)
        result = await self.held_poll(SEED_CHANNEL, cursor, timeout, protocol.MAX_LIMIT)
        if result is None:
            return
        page = "".join(
            f"<div>{html.escape(m.body)}</div>" for m in result.messages if m.body is not None
        )
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.finish(json_encode({"html": page, "id": result.cursor}))


class SeedCreateHandler(PublishHandler):
    """``POST /create`` and ``POST /new``: publish a random 6-character message."""

    async def post(self) -> None:  # type: ignore[override]
        message = await self.publish(SEED_CHANNEL, PublishRequest(random_text()))
        self.set_status(201)
        self.finish(message.encoded)
