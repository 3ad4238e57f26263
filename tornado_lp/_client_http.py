"""One server's HTTP: requests on Tornado's AsyncHTTPClient, failures as client errors.

Tornado cannot cancel a fetch in flight (tornadoweb/tornado#157): cancelling the
awaiting task leaves the connection open until the server answers, which for a
held poll is the whole hold. So each request runs on its own
SimpleAsyncHTTPClient whose TCPClient remembers the connection it made, and a
cancelled request closes that connection at once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

from tornado.concurrent import Future
from tornado.httpclient import HTTPClientError, HTTPRequest, HTTPResponse
from tornado.iostream import IOStream, StreamClosedError
from tornado.simple_httpclient import SimpleAsyncHTTPClient
from tornado.tcpclient import TCPClient

from . import __version__
from ._client_errors import UnexpectedAnswer, Unreachable, status_error

__all__ = ["Http"]

USER_AGENT = f"tornado_lp-client/{__version__}"
#: Seconds a cancelled request may take to wind down after its streams are closed.
ABORT_GRACE = 1.0


class _AbortableTCPClient(TCPClient):
    """A TCPClient whose connections :meth:`abort` closes, also those still connecting.

    (Streams are recorded where TCPClient makes them, ``_create_stream``, so a
    socket in the middle of connecting is closed too, not left to the garbage
    collector.)
    """

    aborted = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._streams: list[IOStream] = []

    def _create_stream(self, *args: Any, **kwargs: Any) -> tuple[IOStream, Future[IOStream]]:
        stream, connected = super()._create_stream(*args, **kwargs)
        self._streams.append(stream)
        if self.aborted:
            stream.close()
        return stream, connected

    async def connect(self, *args: Any, **kwargs: Any) -> IOStream:
        stream = await super().connect(*args, **kwargs)
        self._streams.append(stream)  # a TLS stream is a new object over the same socket
        if self.aborted:
            stream.close()
            raise StreamClosedError()
        return stream

    def abort(self) -> None:
        self.aborted = True
        for stream in self._streams:
            stream.close()


def _consume(future: asyncio.Future[HTTPResponse]) -> None:
    if not future.cancelled():
        future.exception()


class Http:
    """Requests to the server at ``url`` (``http://`` or ``https://``, any path prefix)."""

    def __init__(self, url: str, *, connect_timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"server URL must be http://host[:port][/path], got {url!r}")
        if parts.query or parts.fragment:
            raise ValueError(f"server URL must not have a query or fragment, got {url!r}")
        self.url = url
        self.base = url.rstrip("/")
        self.where = parts.netloc
        self.connect_timeout = connect_timeout
        self._in_flight: set[_AbortableTCPClient] = set()

    async def fetch(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | None] | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float,
    ) -> HTTPResponse:
        """The answer, whatever its status; :class:`Unreachable` if there is none.

        Cancelling the call closes its connection.
        """
        query = urlencode({k: v for k, v in (params or {}).items() if v is not None})
        request = HTTPRequest(
            self.base + path + (f"?{query}" if query else ""),
            method=method,
            headers=dict(headers or {}),
            body=body,
            connect_timeout=self.connect_timeout,
            request_timeout=timeout,
            follow_redirects=method == "GET",
            user_agent=USER_AGENT,
        )
        client = SimpleAsyncHTTPClient(force_instance=True)
        connections = _AbortableTCPClient(resolver=client.resolver)
        client.tcp_client = connections
        self._in_flight.add(connections)
        answer = client.fetch(request, raise_error=False)
        try:
            # Shielded: a cancelled Tornado future would log the abort's error.
            return await asyncio.shield(answer)
        except asyncio.CancelledError:
            answer.add_done_callback(_consume)  # it fails when aborted; nobody waits for it
            connections.abort()
            # Closed streams end the request within a turn or two of the loop; wait for
            # that (briefly), so no socket outlives the call.
            await asyncio.wait({answer}, timeout=ABORT_GRACE)
            raise
        except HTTPClientError as error:  # 599: timeout, or the connection dropped
            raise Unreachable(f"no answer from {self.where}: {error.message}") from None
        except OSError as error:  # refused, unknown host, reset, TLS
            reason = error.strerror or str(error) or type(error).__name__
            raise Unreachable(f"cannot reach {self.where}: {reason}") from None
        finally:
            self._in_flight.discard(connections)
            client.close()

    @staticmethod
    def json_answer(response: HTTPResponse, expect: int = 200) -> dict[str, Any]:
        """The JSON object of an ``expect`` answer; else the StatusError its status names."""
        if response.code != expect:
            if 200 <= response.code < 300:
                raise UnexpectedAnswer(f"expected HTTP {expect}, got {response.code}")
            raise status_error(
                response.code, response.body or b"", response.reason or "",
                response.headers.get("Retry-After"),
            )
        try:
            document = json.loads(response.body)
        except ValueError:
            raise UnexpectedAnswer(
                f"HTTP {response.code} answer is not JSON: is the URL a tornado_lp server?"
            ) from None
        if not isinstance(document, dict):
            raise UnexpectedAnswer("answer is not a JSON object")
        return document

    def close(self) -> None:
        """Close every connection still open (their requests end as cancelled)."""
        for connections in list(self._in_flight):
            connections.abort()
