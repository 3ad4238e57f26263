"""``GET /events?channel=a,b``: Server-Sent Events, every channel of a screen on one connection.

An :class:`EventStream` is a lean exchange (no RequestHandler) and a hub reader
that is never done: each answer the hub hands it becomes events written with
one call, the framing shared by every stream that got the same answer
(:meth:`Answer.memo <tornado_lp.answers.Answer.memo>`). The stream starts only
after its first reads succeeded, so a channel, token or storage problem is an
ordinary JSON 4xx/503. It carries:

* ``retry:`` first (jittered), so a fleet does not reconnect in one wave;
* one event per message, ``id:`` the stream cursor after it, ``data:`` its JSON;
* ``event: reset`` / ``event: missed`` naming the channel before what follows them;
* a heartbeat every ``--heartbeat`` seconds (:mod:`tornado_lp.heartbeats`): a
  comment and an ``event: heartbeat`` with empty data, which pages can see.

It ends after ``--stream-max-age`` (jittered), at shutdown, or when its unsent
output passes ``--stream-max-buffer`` (a client that stopped reading); the
client resumes from its last id and loses nothing.
"""

from __future__ import annotations

import functools
import random

from tornado import httputil
from tornado.iostream import StreamBufferFullError, StreamClosedError

from .answers import Answer
from .hub import Overloaded
from .lean import AnyRequest, LeanExchange, LeanRouter, send_now
from .readrequest import ReadRefused, ReadRequest, parse_read_request
from .storage import StorageUnavailable

__all__ = ["HEARTBEAT_EVENT", "EventStream", "event_stream", "sse_events"]

_OK = httputil.ResponseStartLine("", 200, "OK")
EVENT_STREAM = "text/event-stream; charset=utf-8"
#: The name of the heartbeat event (pages listen for it: EventSource never shows
#: them a comment, so a stream that went silent could not be noticed otherwise).
HEARTBEAT_EVENT = "heartbeat"


@functools.lru_cache(maxsize=4)
def heartbeat(now: float, chunked: bool) -> bytes:
    """A comment (for proxies and raw clients) and, in the same block, a named event
    whose data is the server's clock (pages judge expiry by it; EventSource shows
    them no comment and no header)."""
    block = b': hb\nevent: heartbeat\ndata: {"server_time":%.3f}\n\n' % now
    return _chunked(block) if chunked else block
#: The "hold" a stream reports to /displays: a stream is live while it is open
#: (held), and only the registry's short grace after it ends (a poll's grace is
#: two hold periods; a stream's max age there kept a dead screen live for 20 min).
STREAM_HOLD = 0.0


def event_stream(
    router: LeanRouter, request: AnyRequest, path_args: list[bytes]
) -> EventStream:
    return EventStream(router, request)


def sse_events(answer: Answer) -> bytes:
    """``answer`` as SSE events: resets and gaps first, then each message with its id."""
    out: list[str] = []
    seqs = dict(answer.before)
    last_id = ""
    for part in answer.parts:
        if part.reset or part.missed:
            if part.reset:
                seqs[part.channel] = None
            last_id = answer.cursor_with(seqs)
            kind = "reset" if part.reset else "missed"
            out.append(f'event: {kind}\nid: {last_id}\ndata: {{"channel":"{part.channel}"}}\n\n')
    for message in answer.messages:
        seqs[message.channel] = message.seq
        last_id = answer.cursor_with(seqs)
        out.append(f"id: {last_id}\ndata: {message.encoded}\n\n")
    if last_id != answer.cursor:
        # Entries the reader may not see (expired, retracted) moved its position:
        # an id without data moves the client's Last-Event-ID too.
        out.append(f"id: {answer.cursor}\n\n")
    return "".join(out).encode()


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def _sse_chunk(answer: Answer) -> bytes:
    return _chunked(answer.memo("sse", sse_events))


def _retry(low: int, high: int) -> bytes:
    return b"retry: %d\n\n" % random.randint(low, high)


class EventStream(LeanExchange):
    """One SSE stream: a reader of up to 16 channels until it is closed."""

    once = False
    __slots__ = ("chunked", "display", "started")

    def __init__(self, router: LeanRouter, request: AnyRequest) -> None:
        super().__init__(router, request, [], 0, None)
        self.started = False
        self.display: str | None = None
        # Tornado's HTTP/1.1 answers without Content-Length are chunked; HTTP/1.0 ones
        # end by closing the connection.
        self.chunked = request.version == "HTTP/1.1"

    def start(self) -> None:
        ctx, request = self.ctx, self.request
        try:
            read = parse_read_request(request.query_arguments, ctx.settings,
                                      last_event_id=request.headers.get("Last-Event-ID"))
        except ReadRefused as refused:
            self.refuse(refused.status, refused.message)
            return
        self._configure(read)
        try:
            ctx.hub.subscribe(self)
        except Overloaded as error:
            low, high = (1, 5) if ctx.hub.closing else (2, 15)
            self.refuse(503, f"{error}: retry later", random.randint(low, high))
            return
        if not self.done:
            self.watch_close(True)
            if read.display is not None:
                self.display = read.display
                ctx.fleet.display_opened(
                    read.display, read.channels, request.remote_ip or "",
                    request.headers.get("User-Agent", ""), STREAM_HOLD,
                )

    def _configure(self, read: ReadRequest) -> None:
        self.positions = read.positions()
        self._awaiting = len(self.positions)
        self.limit = read.limit
        self.timeout = self.ctx.settings.stream_max_age * random.uniform(0.9, 1.1)

    # -- Subscriber ----------------------------------------------------------

    def on_held(self) -> None:
        self._begin(b"")

    def deliver(self, answer: Answer) -> None:
        if not self.started:
            self._begin(answer.memo("sse", sse_events))
        else:
            self._write_stream(answer.memo("sse-chunk", _sse_chunk) if self.chunked
                       else answer.memo("sse", sse_events))
        self.ctx.metrics.streamed(len(answer.messages))

    def beat(self, now: float) -> None:
        self._write_stream(heartbeat(now, self.chunked))

    def expire(self) -> None:
        self._end(_retry(500, 3000))  # --stream-max-age: reconnect soon, to any process

    def shutdown(self) -> None:
        self._end(_retry(1000, 5000))

    def fail(self, error: StorageUnavailable) -> None:
        self.ctx.metrics.storage_error()
        self.refuse(503, f"storage unavailable: {error}")

    def on_connection_close(self) -> None:
        if not self.done:
            self.ctx.hub.unsubscribe(self)
            self.log(200 if self.started else 499)  # a stream ends when its client leaves
        self.closed()

    def closed(self) -> None:
        if self.started:
            self.ctx.heartbeats.discard(self)
            self.ctx.metrics.stream_closed("sse")
            self.started = False
        if self.display is not None:
            self.ctx.fleet.display_closed(self.display)
            self.display = None

    # -- writing -------------------------------------------------------------

    def _begin(self, events: bytes) -> None:
        connection = self.request.connection
        assert connection is not None
        self.started = True
        headers = self.headers(200, EVENT_STREAM, None)
        headers["X-Accel-Buffering"] = "no"  # nginx: pass events on at once
        connection.write_headers(_OK, headers, _retry(1000, 4000) + events)
        stream = getattr(connection, "stream", None)
        if stream is not None:
            stream.max_write_buffer_size = self.ctx.settings.stream_max_buffer
        self.ctx.heartbeats.add(self)
        self.ctx.metrics.stream_opened("sse")

    def _write_stream(self, data: bytes) -> None:
        stream = getattr(self.request.connection, "stream", None)
        if stream is None or not self.started:
            return
        sent = send_now(stream, data)
        if sent == len(data):
            return
        try:
            stream.write(data[sent:] if sent else data)
        except (StreamBufferFullError, StreamClosedError):
            # A client that stopped reading: cut it off; it resumes from its last id.
            stream.close()

    def _end(self, last: bytes) -> None:
        connection = self.request.connection
        assert connection is not None
        self.ctx.hub.unsubscribe(self)
        if not self.started:
            self.respond(503, b'{"error":"the server is shutting down: retry later"}', 2)
            return
        self._write_stream(_chunked(last) if self.chunked else last)
        self.watch_close(False)
        if not self.gone:
            connection.finish()
        self.log(200)
        self.closed()
