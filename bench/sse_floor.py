"""The stream floor: Server-Sent Events as a Tornado user would write them.

One ``RequestHandler`` per open stream (``GET /events?channel=a,b``) that stays
in ``get()`` until the client goes away; a publish (``POST
/channels/{ch}/messages``, the body is the message) writes one event, ``id:``
plus ``data:`` with the message JSON in tornado_lp's shape, to every stream of
that channel and flushes each one. A ``: hb`` comment goes to every stream
every ``--heartbeat`` seconds. Nothing is stored: a stream gets only what is
published while it is open. ``GET /channels/{ch}`` answers ``{"waiters": N}``,
the number of open streams on that channel.

Run ``python -m bench.sse_floor --port 0``; it prints ``http://127.0.0.1:PORT/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time

import tornado.web
from tornado.httpserver import HTTPServer
from tornado.ioloop import PeriodicCallback
from tornado.netutil import bind_sockets

__all__ = ["StreamHub", "main", "make_app"]


class StreamHub:
    """Open streams per channel and each channel's last sequence number."""

    def __init__(self) -> None:
        self.streams: dict[str, set[EventsHandler]] = {}
        self.seq: dict[str, int] = {}

    def publish(self, channel: str, body: str) -> dict[str, object]:
        seq = self.seq.get(channel, 0) + 1
        self.seq[channel] = seq
        message = {"id": f"{channel}-{seq}", "channel": channel, "body": body, "ts": time.time()}
        event = f"id: {message['id']}\ndata: {json.dumps(message)}\n\n".encode()
        for stream in list(self.streams.get(channel, ())):
            stream.send(event)
        return message

    def heartbeat(self) -> None:
        for streams in list(self.streams.values()):
            for stream in list(streams):
                stream.send(b": hb\n\n")


class EventsHandler(tornado.web.RequestHandler):
    def initialize(self, hub: StreamHub) -> None:
        self.hub = hub
        self.channels: list[str] = []
        self.gone: asyncio.Event | None = None

    async def get(self) -> None:
        self.channels = self.get_argument("channel").split(",")
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-store")
        self.gone = asyncio.Event()
        for channel in self.channels:
            self.hub.streams.setdefault(channel, set()).add(self)
        await self.flush()
        await self.gone.wait()

    def send(self, event: bytes) -> None:
        connection = self.request.connection
        if connection is None or connection.stream.closed():  # type: ignore[attr-defined]
            return
        self.write(event)
        self.flush()

    def on_connection_close(self) -> None:
        for channel in self.channels:
            self.hub.streams.get(channel, set()).discard(self)
        if self.gone is not None:
            self.gone.set()


class PublishHandler(tornado.web.RequestHandler):
    def initialize(self, hub: StreamHub) -> None:
        self.hub = hub

    def post(self, channel: str) -> None:
        message = self.hub.publish(channel, self.request.body.decode())
        self.set_status(201)
        self.write(message)


class ChannelHandler(tornado.web.RequestHandler):
    def initialize(self, hub: StreamHub) -> None:
        self.hub = hub

    def get(self, channel: str) -> None:
        self.write({"waiters": len(self.hub.streams.get(channel, ()))})


def make_app(hub: StreamHub) -> tornado.web.Application:
    args = {"hub": hub}
    return tornado.web.Application([
        (r"/events", EventsHandler, args),
        (r"/channels/([^/]+)/messages", PublishHandler, args),
        (r"/channels/([^/]+)", ChannelHandler, args),
    ])  # fmt: skip


async def main(port: int, heartbeat: float) -> None:
    hub = StreamHub()
    sockets = bind_sockets(port, "127.0.0.1")
    server = HTTPServer(make_app(hub))
    server.add_sockets(sockets)
    PeriodicCallback(hub.heartbeat, heartbeat * 1000).start()
    bound = sockets[0].getsockname()[1]
    print(f"sse floor listening on http://127.0.0.1:{bound}/", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--heartbeat", type=float, default=15.0)
    options = parser.parse_args()
    asyncio.run(main(options.port, options.heartbeat))
