"""``Client.subscribe()``: follow channels' cursors, reconnect, resume without repeat or gap.

Transport: one held ``GET /poll?channel=a,b`` for all channels when the server
has it; on a server without it (404), or when asked, one held
``GET /channels/{ch}/poll`` per channel, merged in arrival order. Both keep the
same multi-channel cursor.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import quote

from . import _client_cursor as cursors
from ._client_backoff import Backoff, Retry
from ._client_errors import (
    BadRequest,
    ClientError,
    NotFound,
    ServerError,
    ServerUnavailable,
    StatusError,
    UnexpectedAnswer,
    Unreachable,
)
from ._client_events import Event, Message, Missed, Reset, message_from_json
from ._client_http import Http

__all__ = ["TRANSPORTS", "Subscription", "SubscriptionOptions", "Transport", "check_channels"]

#: Seconds a held poll may take beyond its hold before it counts as a dead connection.
WATCHDOG = 10.0
#: Statuses worth retrying besides 5xx: request timeout, too many requests.
_RETRY_STATUSES = {408, 429}

T = TypeVar("T")

#: ``multiplexed``: one ``GET /poll`` for all channels; ``per-channel``: one
#: ``GET /channels/{ch}/poll`` per channel; ``auto``: multiplexed, per-channel if the
#: server has no ``/poll`` (404).
Transport = Literal["auto", "multiplexed", "per-channel"]
TRANSPORTS = ("auto", "multiplexed", "per-channel")


@dataclass(frozen=True)
class SubscriptionOptions:
    """How a subscription polls; see :meth:`tornado_lp.client.Client.subscribe`."""

    token: str | None = None
    display: str | None = None
    hold: float = 25.0
    limit: int | None = None
    max_retries: int | None = None
    on_retry: Callable[[Retry], None] | None = None
    backoff: Callable[[], Backoff] = Backoff
    transport: Transport = "auto"


def check_channels(channels: Sequence[str]) -> None:
    """ValueError unless ``channels`` are one or more distinct, non-empty names.

    (Whether a name is valid is the server's to say: it answers 400 naming it.)
    """
    if not channels:
        raise ValueError("subscribe to at least one channel")
    if not all(channels):
        raise ValueError(f"empty channel name in {','.join(channels)!r}")
    if len(set(channels)) != len(channels):
        raise ValueError(f"channels must be distinct, got {','.join(channels)!r}")


def retryable(error: ClientError) -> bool:
    """Worth another attempt: no answer, 5xx, 408/429, or an answer that made no sense."""
    if isinstance(error, Unreachable | UnexpectedAnswer | ServerError | ServerUnavailable):
        return True
    return isinstance(error, StatusError) and error.status in _RETRY_STATUSES


class Subscription:
    """An async iterator of :class:`Message`, :class:`Missed` and :class:`Reset`.

    It never ends by itself: it holds polls, follows the cursor and, when the
    server cannot be reached or answers 5xx, waits (doubling from 1 s, at most
    30 s, with jitter, at least the ``Retry-After``) and polls again from the
    same cursor, so nothing repeats and nothing is skipped. It raises the
    :class:`~tornado_lp.client.ClientError` of an answer that retrying cannot
    mend (400, 403, ...), or the last failure after ``max_retries`` in a row.

    :attr:`cursor` resumes after everything yielded so far (pass it to a later
    ``subscribe()``); in the middle of one answer's events it is still the
    cursor before that answer, so a resume may repeat, never skip. Use it as an
    ``async with`` block, or call :meth:`aclose`, to stop its polls.
    """

    def __init__(
        self,
        http: Http,
        channels: Sequence[str],
        cursor: str | None,
        options: SubscriptionOptions,
        on_close: Callable[[Subscription], None] | None = None,
    ) -> None:
        check_channels(channels)
        if options.transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}")
        if not options.hold > 0:
            raise ValueError("hold must be a number of seconds > 0")
        self.channels = tuple(channels)
        self._http = http
        self._options = options
        if cursor and cursors.is_channel_cursor(cursor):
            # A message id: the position in its channel, as a multi-channel cursor.
            cursor = cursors.encode(cursors.decode(cursor, channels), channels)
        self._cursor = cursor
        self._positions: cursors.Positions | None = None
        self._pending: deque[tuple[Event, str | None]] = deque()
        self._use_multi = options.transport != "per-channel"
        self._backoff = options.backoff()
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]] | BaseException] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._filling: asyncio.Future[None] | None = None
        self._closed = False
        self._on_close = on_close

    @property
    def cursor(self) -> str | None:
        """The cursor after everything yielded so far (None before the first answer)."""
        return self._cursor

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        while not self._pending:
            if self._closed:
                raise StopAsyncIteration
            # A task of its own, so that aclose() can end the wait from outside.
            self._filling = asyncio.ensure_future(self._fill())
            try:
                await self._filling
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if self._closed and not (current is not None and current.cancelling()):
                    raise StopAsyncIteration from None  # aclose() ended the wait
                raise  # this wait only: the next one polls again from the same cursor
            except BaseException:
                await self.aclose()
                raise
            finally:
                self._filling = None
        event, cursor = self._pending.popleft()
        if cursor is not None:
            self._cursor = cursor
        return event

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop polling; the iterator then ends. Safe to call twice."""
        self._closed = True
        if self._filling is not None:
            self._filling.cancel()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._on_close is not None:
            self._on_close(self)
            self._on_close = None

    # -- one answer's worth of events -----------------------------------------

    def _queue_events(self, events: list[Event], cursor: str | None) -> None:
        """Queue ``events``; ``cursor`` takes effect with the last (or at once, if none)."""
        if not events:
            if cursor is not None:
                self._cursor = cursor
            return
        for event in events[:-1]:
            self._pending.append((event, None))
        self._pending.append((events[-1], cursor))

    async def _fill(self) -> None:
        if self._use_multi:
            try:
                events, cursor = await self._retrying(self._poll_multi, self.channels)
            except NotFound:
                if self._options.transport != "auto":
                    raise
                self._use_multi = False  # a server without GET /poll
                self._start_channel_polls()
            else:
                self._queue_events(events, cursor)
                return
        if self._queue is None:
            self._start_channel_polls()
        assert self._queue is not None and self._positions is not None
        item = await self._queue.get()
        if isinstance(item, BaseException):
            raise item
        channel, document = item
        self._positions = self._positions.advance(channel, document["cursor"])
        events = _channel_answer(channel, document)
        self._queue_events(events, cursors.encode(self._positions, self.channels))

    async def _retrying(
        self,
        attempt: Callable[[], Awaitable[tuple[T, bool]]],
        channels: tuple[str, ...],
        backoff: Backoff | None = None,
    ) -> T:
        """``await attempt()`` until it succeeds, waiting between failures that may mend.

        ``attempt`` returns its result and whether the answer was empty.
        """
        backoff = backoff or self._backoff
        while True:
            started = time.monotonic()
            try:
                result, empty = await attempt()
            except ClientError as error:
                limit = self._options.max_retries
                if not retryable(error) or (limit is not None and backoff.failures >= limit):
                    raise
                retry_after = error.retry_after if isinstance(error, StatusError) else None
                delay = backoff.next_delay(retry_after)
                if self._options.on_retry is not None:
                    self._options.on_retry(Retry(backoff.failures, delay, error, channels))
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            if empty and time.monotonic() - started < self._options.hold / 2:
                await asyncio.sleep(1.0)  # empty and early: never spin on a server that holds 0
            return result

    def _params(self, cursor: str | None) -> dict[str, str | None]:
        options = self._options
        return {
            "cursor": cursor,
            "timeout": f"{options.hold:g}",
            "limit": None if options.limit is None else str(options.limit),
            "token": options.token,
            "display": options.display,
        }

    async def _poll_multi(self) -> tuple[tuple[list[Event], str], bool]:
        params = {"channel": ",".join(self.channels), **self._params(self._cursor)}
        response = await self._http.fetch(
            "GET", "/poll", params=params, timeout=self._options.hold + WATCHDOG
        )
        events, cursor = _multi_answer(self._http.json_answer(response), self.channels)
        return (events, cursor), not events

    # -- the per-channel transport ---------------------------------------------

    def _start_channel_polls(self) -> None:
        try:
            self._positions = cursors.decode(self._cursor, self.channels)
        except ValueError as error:
            raise BadRequest(400, str(error)) from None
        self._queue = asyncio.Queue(maxsize=len(self.channels))
        self._tasks = [
            asyncio.create_task(self._follow(channel, self._positions.cursor_for(channel)))
            for channel in self.channels
        ]

    async def _follow(self, channel: str, cursor: str | None) -> None:
        """Hold polls on one channel, forever, handing each answer to the queue."""
        assert self._queue is not None
        backoff = self._options.backoff()
        path = f"/channels/{quote(channel, safe='')}/poll"

        async def poll() -> tuple[dict[str, Any], bool]:
            response = await self._http.fetch(
                "GET", path, params=self._params(cursor), timeout=self._options.hold + WATCHDOG
            )
            document = self._http.json_answer(response)
            events = _channel_answer(channel, document)  # the shape is checked here
            return document, not events

        try:
            while True:
                document = await self._retrying(poll, (channel,), backoff)
                await self._queue.put((channel, document))
                cursor = document["cursor"]
        except asyncio.CancelledError:
            raise
        except Exception as error:  # handed to the consumer, who raises it
            await self._queue.put(error)


def _flags(document: dict[str, Any]) -> tuple[bool, bool]:
    missed, reset = document.get("missed"), document.get("reset")
    if not isinstance(missed, bool) or not isinstance(reset, bool):
        raise UnexpectedAnswer("poll answer without boolean missed/reset")
    return missed, reset


def _messages(document: dict[str, Any]) -> list[Message]:
    messages = document.get("messages")
    if not isinstance(messages, list):
        raise UnexpectedAnswer("poll answer without a messages list")
    if not isinstance(document.get("cursor"), str):
        raise UnexpectedAnswer("poll answer without a cursor")
    return [message_from_json(item) for item in messages]


def _channel_answer(channel: str, document: dict[str, Any]) -> list[Event]:
    """Events of a ``GET /channels/{ch}/poll`` answer: a signal first, then the messages."""
    messages = _messages(document)
    missed, reset = _flags(document)
    try:
        cursors.Positions().advance(channel, document["cursor"])
    except ValueError:
        raise UnexpectedAnswer(f"poll answer with a malformed cursor for {channel}") from None
    events: list[Event] = [Reset(channel)] if reset else [Missed(channel)] if missed else []
    return [*events, *messages]


def _multi_answer(
    document: dict[str, Any], channels: tuple[str, ...]
) -> tuple[list[Event], str]:
    """Events of a ``GET /poll`` answer: each channel's signal, then the messages in order."""
    messages = _messages(document)
    per_channel = document.get("channels")
    if not isinstance(per_channel, dict):
        raise UnexpectedAnswer("poll answer without channels")
    events: list[Event] = []
    for channel in channels:
        state = per_channel.get(channel)
        if not isinstance(state, dict):
            raise UnexpectedAnswer(f"poll answer without an entry for channel {channel}")
        missed, reset = _flags(state)
        if reset:
            events.append(Reset(channel))
        elif missed:
            events.append(Missed(channel))
    events.extend(messages)
    return events, document["cursor"]
