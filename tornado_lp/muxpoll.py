"""``GET /poll?channel=a,b``: the long-poll for several channels at once.

The same hold and wake rules as the single-channel poll, in one request: it
answers as soon as any of its channels has news, with the news of all of them
(:meth:`Answer.encode <tornado_lp.answers.Answer.encode>`), or empty at its
timeout. The fallback wherever streams do not get through.
"""

from __future__ import annotations

import random

from .answers import Answer
from .hub import Overloaded
from .lean import AnyRequest, LeanExchange, LeanRouter
from .readrequest import ReadRefused, parse_read_request
from .storage import StorageUnavailable

__all__ = ["MultiPoll", "multi_poll"]


def multi_poll(
    router: LeanRouter, request: AnyRequest, path_args: list[bytes]
) -> MultiPoll:
    return MultiPoll(router, request)


class MultiPoll(LeanExchange):
    """One multiplexed poll: a reader of up to 16 channels, done with its first answer."""

    __slots__ = ("display",)

    def __init__(self, router: LeanRouter, request: AnyRequest) -> None:
        super().__init__(router, request, [], 0, 0)
        self.display: str | None = None

    def start(self) -> None:
        ctx, request = self.ctx, self.request
        try:
            read = parse_read_request(request.query_arguments, ctx.settings)
        except ReadRefused as refused:
            ctx.metrics.poll_answered("error", 0)
            self.refuse(refused.status, refused.message)
            return
        self.positions = read.positions()
        self._awaiting = len(self.positions)
        self.limit, self.timeout = read.limit, read.timeout
        if read.display is not None:
            self.display = read.display
            ctx.fleet.display_opened(
                read.display, read.channels, request.remote_ip or "",
                request.headers.get("User-Agent", ""), read.timeout,
            )
        try:
            ctx.hub.subscribe(self)
        except Overloaded as error:
            low, high = (1, 5) if ctx.hub.closing else (2, 15)
            ctx.metrics.poll_answered("error", 0)
            self.refuse(503, f"{error}: retry later", random.randint(low, high))
            self.closed()
            return
        if not self.done:
            self.watch_close(True)

    def deliver(self, answer: Answer) -> None:
        if self.gone:
            self.log(499)
        else:
            self.respond_shared(answer, "mux", Answer.encode)
            outcome = ("reset" if any(p.reset for p in answer.parts)
                       else "missed" if any(p.missed for p in answer.parts)
                       else "messages" if answer.parts else "timeout")
            self.ctx.metrics.poll_answered(outcome, len(answer.messages))
        self.closed()

    def fail(self, error: StorageUnavailable) -> None:
        self.ctx.metrics.storage_error()
        self.ctx.metrics.poll_answered("error", 0)
        self.refuse(503, f"storage unavailable: {error}")
        self.closed()

    def closed(self) -> None:
        if self.display is not None:
            self.ctx.fleet.display_closed(self.display)
            self.display = None
