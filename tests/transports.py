"""One small asynchronous test client per transport, all with the same shape.

``await open_reader(kind, port, channels, at=..., limit=...)`` gives a
:class:`Reader`; ``await reader.next()`` gives the next :class:`Answer` (its
messages, its cursor, and the channels it says were ``missed`` or ``reset``).
The kinds:

* ``poll``: the single-channel ``GET /channels/{ch}/poll`` (one channel);
* ``mux``: the multiplexed ``GET /poll?channel=a,b``;
* ``sse``: ``GET /events?channel=a,b`` read from a raw socket (chunked
  transfer encoding, ``id:``/``event:``/``data:``/``retry:`` fields and
  comments parsed by hand);
* ``ws``: ``GET /ws?channel=a,b`` through :func:`tornado.websocket.websocket_connect`.

They are honest clients: the poll readers re-poll over one keep-alive
connection with the cursor of their last answer; the stream readers stay
connected and follow what the server sends. ``at`` gives a starting position
per channel as a single-channel cursor (``<epoch>-<seq>``); the multi-channel
readers turn it into the stream cursor a server would have given
(:func:`stream_cursor`). Every wait has a deadline that fails the test
(:class:`TimeoutError`), never a sleep.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import tornado.websocket

from tornado_lp.protocol import format_stream_cursor

KINDS = ("poll", "mux", "sse", "ws")
MULTI_KINDS = ("mux", "sse", "ws")
STREAM_KINDS = ("sse", "ws")

#: Seconds a test waits for something it expects before it fails.
WAIT = 20.0
#: Seconds a poll reader asks the server to hold (longer than any test waits).
HOLD = 60.0


async def until(predicate: Callable[[], object], wait: float = WAIT, what: str = "") -> None:
    """Return once ``predicate()`` is true; fail with TimeoutError after ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {wait} s: {what or predicate}")
        await asyncio.sleep(0.001)


def stream_cursor(epoch: str, at: Mapping[str, str]) -> str:
    """The stream cursor for single-channel cursors ``at`` ({channel: "<epoch>-<seq>"}).

    Channels whose cursor is from another epoch than ``epoch`` get the
    foreign-position marker; when no channel is in ``epoch``, the cursor is
    written in the first channel's epoch (a cursor from another store).
    """
    parsed = {ch: (c.rpartition("-")[0], int(c.rpartition("-")[2])) for ch, c in at.items()}
    if parsed and all(e != epoch for e, _ in parsed.values()):
        epoch = next(iter(parsed.values()))[0]
    return format_stream_cursor(
        epoch, {ch: seq if e == epoch else None for ch, (e, seq) in parsed.items()}
    )


@dataclass
class Answer:
    """One answer: messages (JSON objects), the cursor after it, and per-channel flags."""

    messages: list[dict[str, Any]]
    cursor: str | None
    missed: set[str] = field(default_factory=set)
    reset: set[str] = field(default_factory=set)
    more: bool = False
    raw: Any = None

    @property
    def bodies(self) -> list[str]:
        return [m["body"] for m in self.messages]

    @property
    def news(self) -> bool:
        return bool(self.messages or self.missed or self.reset)


class Refused(Exception):
    """The server answered an error instead of starting: ``status``, ``headers``, ``body``."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        super().__init__(f"{status} {body[:200]!r}")
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


# -- raw HTTP/1.1 over asyncio streams ---------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection to ``127.0.0.1:port``."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.port = port

    @classmethod
    async def open(cls, port: int, *, rcvbuf: int | None = None) -> Connection:
        sock = socket.socket()
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock)
        return cls(reader, writer, port)

    def send(self, target: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        lines = [f"GET {target} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        lines += [f"{name}: {value}" for name, value in headers]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    async def head(self, wait: float = WAIT) -> tuple[int, dict[str, str]]:
        """Status and headers (names lower-cased) of the next answer."""
        raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), wait)
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        return status, headers

    async def body(self, headers: Mapping[str, str], wait: float = WAIT) -> bytes:
        """The body of an answer with ``Content-Length``."""
        length = int(headers["content-length"])
        return await asyncio.wait_for(self.reader.readexactly(length), wait)

    async def get(
        self, target: str, headers: Sequence[tuple[str, str]] = (), wait: float = WAIT
    ) -> tuple[int, dict[str, str], bytes]:
        self.send(target, headers)
        status, answer_headers = await self.head(wait)
        return status, answer_headers, await self.body(answer_headers, wait)

    async def chunk(self, wait: float = WAIT) -> bytes | None:
        """The next chunk of a chunked body; ``None`` for the terminating chunk."""
        size_line = await asyncio.wait_for(self.reader.readuntil(b"\r\n"), wait)
        size = int(size_line.split(b";")[0], 16)
        data = await asyncio.wait_for(self.reader.readexactly(size + 2), wait)
        assert data[-2:] == b"\r\n", f"chunk not followed by CRLF: {data[-10:]!r}"
        return None if size == 0 else data[:-2]

    async def at_eof(self, wait: float = WAIT) -> bool:
        """True if the server closed the connection (nothing more arrives)."""
        rest = await asyncio.wait_for(self.reader.read(65536), wait)
        return rest == b""

    def close(self) -> None:
        self.writer.close()

    async def closed(self) -> None:
        self.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


# -- readers -------------------------------------------------------------------------


class Reader:
    """A client of one transport on ``channels``; subclasses implement :meth:`next`."""

    kind = ""
    multi = True

    def __init__(
        self, port: int, channels: Sequence[str], cursor: str | None, limit: int | None,
        params: Mapping[str, str],
    ) -> None:
        self.port = port
        self.channels = tuple(channels)
        self.cursor = cursor
        self.limit = limit
        self.params = dict(params)
        self.answers: list[Answer] = []

    def query(self, **extra: str) -> str:
        params: dict[str, str] = {"channel": ",".join(self.channels)} if self.multi else {}
        if self.cursor is not None:
            params["cursor"] = self.cursor
        if self.limit is not None:
            params["limit"] = str(self.limit)
        params.update(self.params)
        params.update(extra)
        return urlencode(params)

    async def start(self) -> None:
        """Connect (streams); polls connect with their first :meth:`next`."""

    async def next(self, wait: float = WAIT) -> Answer:
        raise NotImplementedError

    async def collect(self, count: int, wait: float = WAIT) -> list[Answer]:
        """Answers until ``count`` messages have come (more is an error of the test's)."""
        answers: list[Answer] = []
        got = 0
        while got < count:
            answer = await self.next(wait)
            answers.append(answer)
            got += len(answer.messages)
        return answers

    async def close(self) -> None:
        raise NotImplementedError


class _PollReader(Reader):
    """Re-polls over one keep-alive connection with the cursor of its last answer."""

    path = ""

    def __init__(self, *args: Any, hold: float = HOLD, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hold = hold
        self.connection: Connection | None = None

    async def fetch(self, wait: float) -> tuple[int, dict[str, str], bytes]:
        if self.connection is None:
            self.connection = await Connection.open(self.port)
        return await self.connection.get(
            f"{self.path}?{self.query(timeout=str(self.hold))}", wait=wait)

    async def next(self, wait: float = WAIT) -> Answer:
        status, headers, body = await self.fetch(wait)
        if status != 200:
            raise Refused(status, headers, body)
        answer = self.parse(json.loads(body))
        self.cursor = answer.cursor
        self.answers.append(answer)
        return answer

    def parse(self, payload: dict[str, Any]) -> Answer:
        raise NotImplementedError

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.closed()
            self.connection = None


class SinglePollReader(_PollReader):
    kind = "poll"
    multi = False

    @property
    def path(self) -> str:  # type: ignore[override]
        return f"/channels/{self.channels[0]}/poll"

    def parse(self, payload: dict[str, Any]) -> Answer:
        channel = self.channels[0]
        assert set(payload) == {"messages", "cursor", "more", "missed", "reset"}, payload
        return Answer(
            payload["messages"], payload["cursor"],
            {channel} if payload["missed"] else set(), {channel} if payload["reset"] else set(),
            payload["more"], payload,
        )


def multi_answer(payload: dict[str, Any]) -> Answer:
    """An Answer from a multiplexed poll answer (also a WebSocket frame)."""
    assert set(payload) == {"messages", "cursor", "more", "missed", "reset", "channels"}, payload
    flags = payload["channels"]
    missed = {ch for ch, f in flags.items() if f["missed"]}
    reset = {ch for ch, f in flags.items() if f["reset"]}
    assert payload["missed"] == bool(missed) and payload["reset"] == bool(reset), payload
    assert payload["more"] == any(f["more"] for f in flags.values()), payload
    return Answer(payload["messages"], payload["cursor"], missed, reset, payload["more"], payload)


class MultiPollReader(_PollReader):
    kind = "mux"
    path = "/poll"

    def parse(self, payload: dict[str, Any]) -> Answer:
        assert list(payload["channels"]) == list(self.channels), payload
        return multi_answer(payload)


@dataclass
class Event:
    """One SSE event: ``type`` (``message`` unless named), ``id`` (``None``: no id line)."""

    type: str
    id: str | None
    data: str | None


def parse_sse(text: str) -> tuple[list[Event], list[str], list[int], str]:
    """Events, comments and ``retry:`` values in ``text``, and the unfinished rest."""
    events: list[Event] = []
    comments: list[str] = []
    retries: list[int] = []
    *blocks, rest = text.split("\n\n")
    for block in blocks:
        kind, ident, data = "message", None, None
        fields = False
        for line in block.split("\n"):
            if line.startswith(":"):
                comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "retry":
                retries.append(int(value))
            elif name == "event":
                kind, fields = value, True
            elif name == "id":
                ident, fields = value, True
            elif name == "data":
                data = value if data is None else data + "\n" + value
                fields = True
            else:
                raise AssertionError(f"unknown SSE field in {block!r}")
        if fields:
            events.append(Event(kind, ident, data))
    return events, comments, retries, rest


class SSEReader(Reader):
    """A raw-socket EventSource: one chunk of the stream is one answer."""

    kind = "sse"

    def __init__(
        self, *args: Any, last_event_id: str | None = None,
        headers: Sequence[tuple[str, str]] = (), rcvbuf: int | None = None, **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.last_event_id = last_event_id
        self.extra_headers = list(headers)
        self.rcvbuf = rcvbuf
        self.connection: Connection | None = None
        self.status = 0
        self.headers: dict[str, str] = {}
        self.events: list[Event] = []
        self.heartbeats = 0
        self.retries: list[int] = []
        self.ended = False  # the terminating chunk came
        self._rest = ""

    async def start(self) -> None:
        self.connection = await Connection.open(self.port, rcvbuf=self.rcvbuf)
        headers = [("Accept", "text/event-stream"), *self.extra_headers]
        if self.last_event_id is not None:
            headers.append(("Last-Event-ID", self.last_event_id))
        self.connection.send(f"/events?{self.query()}", headers)
        self.status, self.headers = await self.connection.head()
        if self.status != 200:
            body = await self.connection.body(self.headers)
            await self.connection.closed()
            raise Refused(self.status, self.headers, body)
        assert self.headers.get("transfer-encoding") == "chunked", self.headers

    async def read_chunk(self, wait: float = WAIT) -> tuple[list[Event], list[str]] | None:
        """Events and comments of the next chunk; ``None`` once the stream has ended."""
        assert self.connection is not None
        data = await self.connection.chunk(wait)
        if data is None:
            self.ended = True
            return None
        events, comments, retries, self._rest = parse_sse(self._rest + data.decode())
        self.events += events
        self.retries += retries
        self.heartbeats += comments.count("hb")
        for event in events:
            if event.id is not None:
                self.cursor = event.id
        return events, comments

    async def next(self, wait: float = WAIT) -> Answer:
        """The next chunk that has events (heartbeats and ``retry:`` alone are skipped)."""
        deadline = time.monotonic() + wait
        while True:
            got = await self.read_chunk(max(0.0, deadline - time.monotonic()))
            if got is None:
                raise EOFError("the stream ended")
            events = got[0]
            if events:
                break
        answer = Answer([], self.cursor, raw=events)
        for event in events:
            if event.type == "message":
                assert event.data is not None and event.id is not None, event
                answer.messages.append(json.loads(event.data))
            elif event.type in ("missed", "reset"):
                assert event.data is not None and event.id is not None, event
                getattr(answer, event.type).add(json.loads(event.data)["channel"])
            else:
                assert event.type == "message" or event.data is None, event
        self.answers.append(answer)
        return answer

    async def until_end(self, wait: float = WAIT) -> list[Event]:
        """Read until the terminating chunk; the events that came meanwhile."""
        deadline = time.monotonic() + wait
        seen = len(self.events)
        while await self.read_chunk(max(0.0, deadline - time.monotonic())) is not None:
            pass
        return self.events[seen:]

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.closed()
            self.connection = None


class WSReader(Reader):
    """A WebSocket client: one text frame is one answer."""

    kind = "ws"

    def __init__(self, *args: Any, origin: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.origin = origin
        self.socket: tornado.websocket.WebSocketClientConnection | None = None
        self.frames: list[dict[str, Any]] = []

    async def start(self) -> None:
        from tornado.httpclient import HTTPRequest

        headers = {"Origin": self.origin} if self.origin else {}
        request = HTTPRequest(f"ws://127.0.0.1:{self.port}/ws?{self.query()}", headers=headers,
                              request_timeout=WAIT)
        self.socket = await tornado.websocket.websocket_connect(request)

    async def frame(self, wait: float = WAIT) -> dict[str, Any] | None:
        """The next frame as JSON; ``None`` once the socket closed."""
        assert self.socket is not None
        message = await asyncio.wait_for(self.socket.read_message(), wait)
        if message is None:
            return None
        assert isinstance(message, str), "frames are text"
        payload: dict[str, Any] = json.loads(message)
        self.frames.append(payload)
        self.cursor = payload["cursor"]
        return payload

    async def next(self, wait: float = WAIT) -> Answer:
        """The next frame with news (the first frame of a held socket has none)."""
        deadline = time.monotonic() + wait
        while True:
            payload = await self.frame(max(0.0, deadline - time.monotonic()))
            if payload is None:
                raise EOFError(f"the socket closed: {self.close_code}")
            answer = multi_answer(payload)
            assert list(payload["channels"]) == list(self.channels), payload
            if answer.news:
                break
        self.answers.append(answer)
        return answer

    @property
    def close_code(self) -> int | None:
        return None if self.socket is None else self.socket.close_code

    async def close(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = None


READERS: dict[str, type[Reader]] = {
    "poll": SinglePollReader, "mux": MultiPollReader, "sse": SSEReader, "ws": WSReader,
}


async def open_reader(
    kind: str,
    port: int,
    channels: Sequence[str],
    *,
    epoch: str = "",
    at: Mapping[str, str] | None = None,
    cursor: str | None = None,
    limit: int | None = None,
    **options: Any,
) -> Reader:
    """A started reader of ``kind`` on ``channels``.

    Start positions: ``at`` ({channel: "<epoch>-<seq>"}, turned into a stream
    cursor in ``epoch`` for the multi-channel kinds), or ``cursor`` as given.
    Other keyword arguments: ``params`` (more query parameters) and each
    reader's own options (``hold``, ``last_event_id``, ``origin``, ...).
    """
    if kind == "poll" and len(channels) != 1:
        raise ValueError("the single-channel poll reads one channel")
    if at is not None:
        if kind == "poll":
            cursor = at.get(channels[0])
        elif at:
            cursor = stream_cursor(epoch, at)
    params = options.pop("params", {})
    reader = READERS[kind](port, channels, cursor, limit, params, **options)
    await reader.start()
    return reader
