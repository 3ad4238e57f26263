"""The lean path for publishes: ``POST /channels/{ch}/messages`` with a Content-Length.

A publish that a burst is made of costs a RequestHandler (with its streamed
body) several times what storing and waking costs. :class:`_FastPublish`
answers it as a lean responder: the body is collected as it arrives (Tornado
frames it by its ``Content-Length``, which is checked against
``--max-message-bytes`` before anything is read), then the same
:func:`~tornado_lp.publishing.read_publish` and
:func:`~tornado_lp.publishing.publish` as :class:`~tornado_lp.handlers.PublishHandler`
make the same answers. Anything else — no or a bad ``Content-Length``, a
chunked body, ``Expect: 100-continue`` — takes PublishHandler.
"""

from __future__ import annotations

import asyncio
import logging

from . import protocol
from .auth import PublishDenied, check_publisher
from .base import Context
from .lean import AnyRequest, LeanResponder
from .publishing import PublishRefused, publish, read_publish
from .storage import Message

__all__ = ["lean_publish"]

log = logging.getLogger("tornado_lp.handlers")


def lean_publish(
    ctx: Context, json_log: bool, request: AnyRequest, channel: str
) -> _FastPublish | None:
    """The lean responder for a plain publish, or ``None`` to let PublishHandler answer."""
    headers = request.headers
    length = headers.get("Content-Length")
    if (length is None or not length.isdigit() or len(length) > 12
            or int(length) > ctx.settings.max_message_bytes
            or "Transfer-Encoding" in headers or "Expect" in headers):
        return None
    return _FastPublish(ctx, json_log, request, channel)


class _FastPublish(LeanResponder):
    """One publish: collect the body, check it, store it, answer 201 with the message."""

    def __init__(self, ctx: Context, json_log: bool, request: AnyRequest, channel: str) -> None:
        self.ctx = ctx
        self.json_log = json_log
        self.request = request
        self.channel = channel
        self.chunks: list[bytes] = []

    def data_received(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    def finish(self) -> None:
        ctx, request = self.ctx, self.request
        try:
            check_publisher(ctx.settings.publish_token, request.headers.get("Authorization"),
                            request.remote_ip)
        except PublishDenied as denied:
            extra = ({"WWW-Authenticate": 'Bearer realm="tornado_lp"'}
                     if denied.status == 401 else None)
            self.refuse(denied.status, denied.message, extra=extra)
            return
        if not protocol.valid_channel(self.channel):
            self.refuse(400, f"invalid channel name {self.channel[:80]!r}: use 1-64 "
                        "characters of A-Z a-z 0-9 _ . -")
            return
        try:
            wanted = read_publish(b"".join(self.chunks), request.headers.get("Content-Type"))
        except PublishRefused as refused:
            self.refuse(refused.status, refused.message)
            return
        self.watch_close(True)
        task = asyncio.ensure_future(publish(ctx.hub, ctx.metrics, self.channel, wanted))
        task.add_done_callback(self._stored)

    def _stored(self, task: asyncio.Future[Message]) -> None:
        error = task.exception()
        if self.gone:
            self.log(499)  # stored or not, nobody is left to tell
        elif isinstance(error, PublishRefused):
            self.refuse(error.status, error.message)
        elif error is not None:
            log.error("publish to %s failed", self.channel, exc_info=error)
            self.refuse(500, "internal server error")
        else:
            self.respond(201, task.result().encoded.encode())
