"""An asyncio client for a tornado_lp server, on Tornado's AsyncHTTPClient.

::

    async with Client("http://127.0.0.1:8888", publish_token="s3cret") as client:
        stored = await client.publish("lobby", "Doors open")
        async with client.subscribe(["lobby", "news"]) as messages:
            async for event in messages:
                if isinstance(event, Message):
                    print(event.channel, event.body)

:meth:`Client.publish` answers the stored message or raises one of the errors
below; it never retries (a publish is not idempotent). :meth:`Client.subscribe`
follows the channels until stopped, retrying what may mend. Errors (see
:mod:`tornado_lp._client_errors` for the tree) carry the server's ``error`` text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

from ._client_backoff import Backoff, Retry
from ._client_errors import (
    BadRequest,
    ClientError,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    ServerError,
    ServerUnavailable,
    StatusError,
    TooManyChannels,
    Unauthorized,
    UnexpectedAnswer,
    Unreachable,
)
from ._client_events import Event, Message, Missed, Reset
from ._client_http import Http
from ._client_subscribe import Subscription, SubscriptionOptions, Transport

__all__ = [
    "DEFAULT_URL",
    "BadRequest",
    "Client",
    "ClientError",
    "Event",
    "Forbidden",
    "Message",
    "Missed",
    "NotFound",
    "PayloadTooLarge",
    "Reset",
    "Retry",
    "ServerError",
    "ServerUnavailable",
    "StatusError",
    "Subscription",
    "TooManyChannels",
    "Unauthorized",
    "UnexpectedAnswer",
    "Unreachable",
]

DEFAULT_URL = "http://127.0.0.1:8888"


class Client:
    """A client of the server at ``url`` (a path prefix, as behind a proxy, is kept).

    ``publish_token`` is sent as ``Authorization: Bearer`` with publishes (the
    server's ``--publish-token``); ``subscribe_token`` as ``?token=`` with polls
    (made with ``python -m tornado_lp token``, for a server with
    ``--subscribe-secret``). ``display`` names this subscriber at ``/displays``.
    ``timeout`` bounds a publish; ``connect_timeout`` every connection attempt.
    ``retry_initial`` and ``retry_max`` shape a subscription's reconnection
    delays (doubling from the first, never above the second).

    Create it anywhere; it connects on first use, on the running event loop.
    :meth:`close` (or ``async with``) stops its subscriptions and connections.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        publish_token: str | None = None,
        subscribe_token: str | None = None,
        display: str | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        retry_initial: float = 1.0,
        retry_max: float = 30.0,
    ) -> None:
        self._http = Http(url, connect_timeout=connect_timeout)
        Backoff(retry_initial, retry_max)  # refuses bad values now rather than on first retry
        self.url = url
        self.publish_token = publish_token or None
        self.subscribe_token = subscribe_token or None
        self.display = display
        self.timeout = timeout
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self._subscriptions: set[Subscription] = set()

    async def publish(self, channel: str, body: str, **fields: Any) -> dict[str, Any]:
        """Publish ``body`` on ``channel``; the stored message as the server answers it.

        Without ``fields`` the body is sent as ``text/plain``; with them (such as
        ``expires_in=60``) as a JSON object ``{"body": body, **fields}``, and the
        server decides what they mean. Raises :class:`BadRequest`,
        :class:`Unauthorized`, :class:`Forbidden`, :class:`PayloadTooLarge`,
        :class:`TooManyChannels`, :class:`ServerUnavailable` (with
        ``retry_after``), :class:`Unreachable`, ...
        """
        if fields:
            payload = json.dumps({**fields, "body": body}, ensure_ascii=False)
            content_type = "application/json"
        else:
            payload, content_type = body, "text/plain; charset=utf-8"
        try:
            data = payload.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("body is not Unicode text: it has a lone surrogate") from None
        headers = {"Content-Type": content_type}
        if self.publish_token is not None:
            headers["Authorization"] = f"Bearer {self.publish_token}"
        response = await self._http.fetch(
            "POST", f"/channels/{quote(channel, safe='')}/messages",
            body=data, headers=headers, timeout=self.timeout,
        )
        message = self._http.json_answer(response, expect=201)
        if not isinstance(message.get("id"), str):
            raise UnexpectedAnswer("publish answer is not a message")
        return message

    def subscribe(
        self,
        channels: str | Iterable[str],
        cursor: str | None = None,
        *,
        hold: float = 25.0,
        limit: int | None = None,
        max_retries: int | None = None,
        on_retry: Callable[[Retry], None] | None = None,
        transport: Transport = "auto",
    ) -> Subscription:
        """Follow ``channels`` (a name, ``"a,b"``, or names; at most 16) from ``cursor``.

        Without a cursor each channel starts with its backlog (its latest
        messages); with one (a :attr:`Subscription.cursor`, or a message's
        ``id`` for one channel) after it. ``hold`` is how long the server may
        hold a poll; ``limit`` the most messages per channel per answer.
        ``max_retries`` failures in a row end it with the last error (default:
        retry forever); ``on_retry`` is called with each :class:`Retry` before
        the wait. ``transport``: ``"multiplexed"`` (one ``GET /poll`` for all
        channels), ``"per-channel"`` (one ``GET /channels/{ch}/poll`` each, as
        servers without ``/poll`` need), or ``"auto"``: multiplexed, per-channel
        on a server that answers ``/poll`` with 404.
        """
        names = channels.split(",") if isinstance(channels, str) else list(channels)
        subscription = Subscription(
            self._http,
            names,
            cursor or None,
            SubscriptionOptions(
                token=self.subscribe_token,
                display=self.display,
                hold=hold,
                limit=limit,
                max_retries=max_retries,
                on_retry=on_retry,
                backoff=lambda: Backoff(self.retry_initial, self.retry_max),
                transport=transport,
            ),
            on_close=self._subscriptions.discard,
        )
        self._subscriptions.add(subscription)
        return subscription

    async def close(self) -> None:
        """Stop every subscription and close the connections."""
        for subscription in list(self._subscriptions):
            await subscription.aclose()
        self._http.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
