"""A minimal Server-Sent Events client on a raw asyncio Protocol, for the stream scenarios.

Like ``client.py`` it does the least it can per byte, because it shares the
machine with the server: one GET per connection, the response head parsed
once, then the body (chunked, or delimited by the connection's close as
Nchan sends it) fed through ``Dechunker`` and ``SSEParser``, with the receipt
time taken in ``data_received`` before any task switch.

``SSEParser`` follows the WHATWG ``text/event-stream`` rules: lines end in
CRLF, LF or CR; ``data:`` lines join with LF; ``event:`` sets the type
(default ``message``); ``id:`` sets the last event id (not when it holds a
NUL); ``retry:`` takes digits only; a line starting with ``:`` is a comment
(counted: heartbeats are comments); a blank line dispatches the event when it
has data. It does not reconnect: the scenarios count a closed stream instead.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from .client import ProtocolError, request_bytes

__all__ = [
    "Dechunker",
    "SSEEvent",
    "SSEParser",
    "SSEStream",
    "StreamRefused",
    "open_streams",
]

_BOM = b"\xef\xbb\xbf"


@dataclass(slots=True)
class SSEEvent:
    """One dispatched event. ``id`` is this event's own ``id:`` field (None: it had none)."""

    type: str
    data: str
    id: str | None


class SSEParser:
    """Incremental ``text/event-stream`` parser: ``feed(bytes) -> [SSEEvent]``."""

    def __init__(self) -> None:
        self._pending = b""
        self._started = False
        self._data: list[str] = []
        self._type = ""
        self._id: str | None = None
        #: the last ``id:`` value seen, as a browser would send it in ``Last-Event-ID``
        self.last_event_id = ""
        self.comments = 0
        self.retry_ms: int | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buf = self._pending + chunk if self._pending else chunk
        if not self._started:
            if len(buf) < len(_BOM) and _BOM.startswith(buf):
                self._pending = buf
                return []
            self._started = True
            if buf.startswith(_BOM):
                buf = buf[len(_BOM) :]
        hold = b""
        if b"\r" in buf:
            if buf.endswith(b"\r"):  # may be the first half of a CRLF
                buf, hold = buf[:-1], b"\r"
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = buf.split(b"\n")
        self._pending = lines.pop() + hold
        events: list[SSEEvent] = []
        for line in lines:
            if not line:
                if self._data:
                    events.append(SSEEvent(self._type or "message", "\n".join(self._data),
                                           self._id))  # fmt: skip
                self._data = []
                self._type = ""
                self._id = None
                continue
            if line[0] == 0x3A:  # ":"
                self.comments += 1
                continue
            name, colon, value = line.partition(b":")
            if colon and value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                self._data.append(value.decode("utf-8", "replace"))
            elif name == b"id":
                if b"\0" not in value:
                    self._id = self.last_event_id = value.decode("utf-8", "replace")
            elif name == b"event":
                self._type = value.decode("utf-8", "replace")
            elif name == b"retry":
                if value.isdigit():
                    self.retry_ms = int(value)
        return events


class Dechunker:
    """Undo HTTP/1.1 chunked transfer coding incrementally: ``feed(bytes) -> bytes``."""

    _SIZE, _DATA, _CRLF, _TRAILER, _DONE = range(5)

    def __init__(self) -> None:
        self._buf = bytearray()
        self._state = self._SIZE
        self._remaining = 0

    @property
    def done(self) -> bool:
        """True once the last (zero-size) chunk and its trailer have been read."""
        return self._state == self._DONE

    def feed(self, data: bytes) -> bytes:
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = 0
        while True:
            state = self._state
            if state == self._DATA:
                take = min(self._remaining, len(buf) - pos)
                if take == 0:
                    break
                out.append(bytes(buf[pos : pos + take]))
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = self._CRLF
            elif state == self._CRLF:
                if len(buf) - pos < 2:
                    break
                if buf[pos : pos + 2] != b"\r\n":
                    raise ProtocolError("chunk data not followed by CRLF")
                pos += 2
                self._state = self._SIZE
            elif state in (self._SIZE, self._TRAILER):
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    if len(buf) - pos > 4096:
                        raise ProtocolError("chunk size line longer than 4 KiB")
                    break
                line = bytes(buf[pos:eol])
                pos = eol + 2
                if state == self._TRAILER:
                    if not line:
                        self._state = self._DONE
                    continue
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise ProtocolError(f"bad chunk size line {line[:40]!r}") from None
                if size < 0:
                    raise ProtocolError(f"bad chunk size line {line[:40]!r}")
                if size == 0:
                    self._state = self._TRAILER
                else:
                    self._remaining = size
                    self._state = self._DATA
            else:  # done: ignore anything after the last chunk
                pos = len(buf)
                break
        del buf[:pos]
        return b"".join(out)


class StreamRefused(Exception):
    """The server answered the stream request with something other than 200."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body[:200]!r}")
        self.status = status
        self.body = body


#: ``on_events(stream, events, received_ns)``, called from ``data_received``.
EventSink = Callable[["SSEStream", list[SSEEvent], int], None]


class SSEStream(asyncio.Protocol):
    """One ``GET`` of an event stream; ``opened`` resolves when a 200 head has arrived."""

    def __init__(self, index: int, request: bytes, on_events: EventSink) -> None:
        self.index = index
        self.request = request
        self.on_events = on_events
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.parser = SSEParser()
        self.status = 0
        self.headers: dict[str, str] = {}
        self.events = 0
        self._head = bytearray()
        self._dechunk: Dechunker | None = None
        self._error_body: bytearray | None = None
        self._error_length = 0

    # -- asyncio.Protocol ---------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        received_ns = time.monotonic_ns()
        if self._error_body is not None:
            self._error_body += data
            self._maybe_refused()
            return
        if not self.status:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            data = bytes(self._head[end + 4 :])
            try:
                status = self._parse_head(bytes(self._head[:end]))
            except ProtocolError as exc:
                self._fail(exc)
                return
            self._head = bytearray()
            if status != 200:
                self._error_body = bytearray(data)
                self._maybe_refused()
                return
            if not self.opened.done():
                self.opened.set_result(None)
            if not data:
                return
        if self._dechunk is not None:
            try:
                data = self._dechunk.feed(data)
            except ProtocolError as exc:
                self._fail(exc)
                return
        events = self.parser.feed(data)
        if events:
            self.events += len(events)
            self.on_events(self, events, received_ns)
        if self._dechunk is not None and self._dechunk.done and not self.closed.done():
            self.closed.set_result(None)  # the server ended the stream, keeping the connection

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            if self._error_body is not None:
                self.opened.set_exception(StreamRefused(self.status, bytes(self._error_body)))
            else:
                self.opened.set_exception(exc or ConnectionResetError("closed before the head"))
        if not self.closed.done():
            self.closed.set_result(None)

    # -- helpers -------------------------------------------------------------
    def _parse_head(self, raw: bytes) -> int:
        lines = raw.decode("latin-1").split("\r\n")
        try:
            self.status = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            raise ProtocolError(f"bad status line {lines[0]!r}") from None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            self._dechunk = Dechunker()
        self._error_length = int(self.headers.get("content-length", "0") or 0)
        return self.status

    def _maybe_refused(self) -> None:
        body = self._error_body
        if body is not None and len(body) >= self._error_length and not self.opened.done():
            self.opened.set_exception(StreamRefused(self.status, bytes(body)))
            self.close()

    def _fail(self, exc: Exception) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)
        self.close()

    @property
    def is_closed(self) -> bool:
        """True once the connection is lost or the server sent the last chunk."""
        return self.closed.done()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def _same(proto: SSEStream) -> SSEStream:
    return proto


async def open_streams(
    host: str,
    port: int,
    paths: list[str],
    on_events: EventSink,
    headers: dict[str, str] | None = None,
    concurrency: int = 32,
    retries: int = 5,
) -> list[SSEStream]:
    """Open one stream per path, at most ``concurrency`` without a head at a time.

    A stream counts as open once its 200 head has arrived, i.e. the server
    accepted it and (for every target here) registered it as a subscriber.
    A non-200 answer raises ``StreamRefused``; it is not retried.
    """
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)
    sent = {"Accept": "text/event-stream", **(headers or {})}

    async def one(index: int, path: str) -> SSEStream:
        request = request_bytes("GET", path, sent)
        for attempt in range(retries):
            async with gate:
                proto = SSEStream(index, request, on_events)
                try:
                    await loop.create_connection(functools.partial(_same, proto), host, port)
                    await proto.opened
                    return proto
                except OSError:
                    proto.close()
                    if attempt == retries - 1:
                        raise
            await asyncio.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    tasks = [asyncio.ensure_future(one(i, p)) for i, p in enumerate(paths)]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        for stream in done:
            if isinstance(stream, SSEStream):
                stream.close()
        raise
