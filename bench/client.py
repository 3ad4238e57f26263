"""A minimal HTTP/1.1 keep-alive client on a raw asyncio Protocol.

The load generator shares the machine with the server, so every microsecond it
spends per response is a microsecond the server does not get. This client does
the least it can: one request in flight per connection, requests pre-encoded
by the caller, a response parsed from one buffer (``Content-Length`` or
chunked), and the receipt time taken in ``data_received`` with
``time.monotonic_ns()``, before any task switch adds its delay.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

__all__ = [
    "Connection",
    "HTTPResponse",
    "ProtocolError",
    "loop_factory",
    "open_connections",
    "raise_nofile_limit",
    "request_bytes",
]


class ProtocolError(Exception):
    """The server answered something this client cannot parse."""


@dataclass(slots=True)
class HTTPResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    received_ns: int


def request_bytes(
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> bytes:
    """Encode one HTTP/1.1 request for a keep-alive connection to 127.0.0.1."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if headers:
        lines.extend(f"{k}: {v}" for k, v in headers.items())
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + body


class _ClientProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._waiter: asyncio.Future[HTTPResponse] | None = None
        self._lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so no isinstance check.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = exc or ConnectionResetError("connection closed by server")
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(self._lost)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        try:
            response = self._parse()
        except ProtocolError as exc:
            self._waiter = None
            waiter.set_exception(exc)
            return
        if response is not None:
            self._waiter = None
            waiter.set_result(response)

    def _parse(self) -> HTTPResponse | None:
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(buf[:end]).decode("latin-1").split("\r\n")
        try:
            status = int(head[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            raise ProtocolError(f"bad status line {head[0]!r}") from None
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        start = end + 4
        length = headers.get("content-length")
        if length is not None:
            stop = start + int(length)
            if len(buf) < stop:
                return None
            body = bytes(buf[start:stop])
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            chunks, stop = self._dechunk(start)
            if stop < 0:
                return None
            body = b"".join(chunks)
        elif status in (204, 304) or 100 <= status < 200:
            body, stop = b"", start
        else:
            raise ProtocolError("response without Content-Length or chunking")
        del buf[:stop]
        return HTTPResponse(status, headers, body, time.monotonic_ns())

    def _dechunk(self, pos: int) -> tuple[list[bytes], int]:
        buf = self._buf
        chunks: list[bytes] = []
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return chunks, -1
            size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
            data_start = eol + 2
            if size == 0:
                # Optional trailers, then an empty line.
                trailer_end = buf.find(b"\r\n\r\n", eol)
                return chunks, (trailer_end + 4 if trailer_end >= 0 else -1)
            if len(buf) < data_start + size + 2:
                return chunks, -1
            chunks.append(bytes(buf[data_start : data_start + size]))
            pos = data_start + size + 2

    def send(self, raw: bytes) -> asyncio.Future[HTTPResponse]:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[HTTPResponse] = loop.create_future()
        if self._lost is not None or self.transport is None:
            waiter.set_exception(self._lost or ConnectionError("not connected"))
            return waiter
        if self._waiter is not None:
            raise RuntimeError("one request at a time on a connection")
        self._waiter = waiter
        self.transport.write(raw)
        if self._buf:  # an answer that arrived before we asked (should not happen)
            self.data_received(b"")
        return waiter


class Connection:
    """One keep-alive HTTP/1.1 connection; one request in flight at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._proto: _ClientProtocol | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(_ClientProtocol, self.host, self.port)
        self._proto = proto

    async def request(self, raw: bytes) -> HTTPResponse:
        if self._proto is None:
            raise ConnectionError("connection not open")
        return await self._proto.send(raw)

    def close(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.abort()
        self._proto = None


async def open_connections(
    host: str,
    port: int,
    count: int,
    probe: bytes | None = None,
    concurrency: int = 32,
    retries: int = 5,
) -> list[Connection]:
    """Open ``count`` connections, at most ``concurrency`` unanswered at a time.

    A handshake completes in the kernel before the server has accepted the
    connection, so pacing by ``connect()`` alone overflows a listen backlog of
    128 (Tornado's default) and the dropped SYNs cost one- and three-second
    retransmits. With ``probe``, a connection counts as open only once the
    server has answered that request on it, i.e. after the server accepted it.
    """
    gate = asyncio.Semaphore(concurrency)

    async def one() -> Connection:
        conn = Connection(host, port)
        for attempt in range(retries):
            async with gate:
                try:
                    await conn.open()
                    if probe is not None:
                        await conn.request(probe)
                    return conn
                except OSError:
                    conn.close()
                    if attempt == retries - 1:
                        raise
            await asyncio.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    return list(await asyncio.gather(*(one() for _ in range(count))))


def raise_nofile_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def loop_factory() -> tuple[str, Callable[[], asyncio.AbstractEventLoop]]:
    """uvloop's loop factory when uvloop is importable, else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return "asyncio", asyncio.new_event_loop
    return "uvloop", uvloop.new_event_loop
