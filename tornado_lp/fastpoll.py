"""The lean path for plain polls, the request a fleet of screens makes all day long.

Most polls are ``GET /channels/{ch}/poll?cursor=…&timeout=…&limit=…`` and
nothing else. Those are answered by :class:`_FastPoll`, a
:class:`~tornado_lp.lean.LeanExchange`. Anything else — another method, a
``display`` or ``token`` parameter, an ``Origin`` when CORS is on, private
channels, any parameter the protocol refuses — goes to :class:`PollHandler`,
which gives the same answers with the full machinery (and every 400).
"""

from __future__ import annotations

import random

from . import protocol
from .answers import Answer
from .handlers import PollHandler
from .hub import Overloaded
from .lean import AnyRequest, LeanExchange, LeanRouter, printable
from .storage import StorageUnavailable
from .subscription import position_from_cursor

__all__ = ["PollHandler", "plain_poll"]

_PLAIN_PARAMETERS = frozenset({"cursor", "timeout", "limit"})


def plain_poll(
    router: LeanRouter, request: AnyRequest, path_args: list[bytes]
) -> _FastPoll | None:
    """The lean exchange for a plain poll, or ``None`` to let :class:`PollHandler` answer."""
    settings = router.ctx.settings
    if len(path_args) != 1 or settings.subscribe_secret:
        return None
    if settings.cors_origins and "Origin" in request.headers:
        return None
    arguments = request.query_arguments
    if not _PLAIN_PARAMETERS.issuperset(arguments):
        return None
    try:
        channel = path_args[0].decode("ascii")
        values = {name: printable(raw[-1]) for name, raw in arguments.items()}
        cursor = protocol.parse_cursor(values.get("cursor"))
        timeout = protocol.parse_timeout(values.get("timeout"), settings.poll_timeout_max)
        limit = protocol.parse_limit(values.get("limit"))
    except (UnicodeDecodeError, ValueError):
        return None  # PollHandler answers with the 400 that names the problem
    if not protocol.valid_channel(channel):
        return None
    return _FastPoll(router, request, [position_from_cursor(channel, cursor)], limit, timeout)


def _encode_part(answer: Answer) -> bytes:
    return answer.part.encode()


class _FastPoll(LeanExchange):
    """One plain poll, held in the hub as a reader; it writes the shared answer itself."""

    holds_empty_reset = True  # the single-channel poll's rule (see Subscriber)
    __slots__ = ()

    def start(self) -> None:
        hub = self.ctx.hub
        try:
            hub.subscribe(self)
        except Overloaded as error:
            low, high = (1, 5) if hub.closing else (2, 15)
            self.ctx.metrics.poll_answered("error", 0)
            self.refuse(503, f"{error}: retry later", random.randint(low, high))
            return
        if not self.done:
            self.watch_close(True)

    def deliver(self, answer: Answer) -> None:
        result = answer.part
        if self.gone:
            self.log(499)
            return
        self.respond_shared(answer, "poll", _encode_part)
        outcome = ("reset" if result.reset else "missed" if result.missed
                   else "messages" if result.messages else "timeout")
        self.ctx.metrics.poll_answered(outcome, len(result.messages))

    def fail(self, error: StorageUnavailable) -> None:
        self.ctx.metrics.storage_error()
        self.ctx.metrics.poll_answered("error", 0)
        self.refuse(503, f"storage unavailable: {error}")
