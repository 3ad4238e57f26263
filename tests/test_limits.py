"""Limits and overload, with raw sockets against real processes and the in-process app."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.request
from typing import Any

from tornado.testing import gen_test

from .httpcase import AppCase, error_of
from .serverproc import ServerProcess


def _address(server: ServerProcess) -> tuple[str, int]:
    host, port = server.url[len("http://"):].strip("/").rsplit(":", 1)
    return host, int(port)


def _raw(server: ServerProcess, payload: bytes, timeout: float = 20) -> bytes:
    """Send ``payload`` and read until the server closes or answers in full."""
    with socket.create_connection(_address(server), timeout=timeout) as sock:
        sock.sendall(payload)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            if b"Content-Length:" in head:
                length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                if len(body) >= length:
                    return data


def _info(server: ServerProcess, channel: str) -> Any:
    with urllib.request.urlopen(f"{server.url}channels/{channel}", timeout=10) as response:
        return json.loads(response.read())


def test_max_waiters_answers_503_with_jittered_retry_after() -> None:
    with ServerProcess("--max-waiters", "3") as server:
        held = []
        for _ in range(3):
            sock = socket.create_connection(_address(server), timeout=20)
            sock.sendall(b"GET /channels/full/poll?timeout=60 HTTP/1.1\r\nHost: x\r\n\r\n")
            held.append(sock)
        while _info(server, "full")["waiters"] < 3:
            time.sleep(0.01)
        retry_after = set()
        for _ in range(8):
            answer = _raw(server, b"GET /channels/other/poll?timeout=5 HTTP/1.1\r\nHost: x\r\n"
                                  b"Connection: close\r\n\r\n")
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503"), head
            assert "max-waiters" in json.loads(body)["error"]
            value = int(head.split(b"Retry-After: ")[1].split(b"\r\n")[0])
            assert 2 <= value <= 15
            retry_after.add(value)
        assert len(retry_after) > 1, "Retry-After carries no jitter"
        # A poll that needs no hold is still answered.
        answer = _raw(server, b"GET /channels/other/poll?timeout=0 HTTP/1.1\r\nHost: x\r\n"
                              b"Connection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200")
        held[0].close()
        while _info(server, "full")["waiters"] > 2:
            time.sleep(0.01)
        answer = _raw(server, b"GET /channels/other/poll?timeout=0.01 HTTP/1.1\r\nHost: x\r\n"
                              b"Connection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200")
        for sock in held[1:]:
            sock.close()


def test_slow_request_head_is_cut_off() -> None:
    with ServerProcess("--idle-timeout", "0.5") as server:
        with socket.create_connection(_address(server), timeout=20) as sock:
            sock.sendall(b"GET /channels/x/poll HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            assert sock.recv(1024) == b""  # the server hung up on the slow client
        assert _raw(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").startswith(
            b"HTTP/1.1 200"
        )


def test_slow_body_is_cut_off_and_stores_nothing() -> None:
    with ServerProcess("--body-timeout", "0.5") as server:
        with socket.create_connection(_address(server), timeout=20) as sock:
            sock.sendall(b"POST /channels/slow/messages HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Length: 100\r\n\r\nonly a part")
            data = b""
            while chunk := sock.recv(1024):
                data += chunk
            assert b"201" not in data
        assert _info(server, "slow")["retained"] == 0


def test_huge_head_is_refused_and_server_keeps_serving() -> None:
    with ServerProcess() as server:
        try:
            answer = _raw(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "
                                  + b"a" * 40000 + b"\r\n\r\n")
        except ConnectionResetError:
            # Cut off while the rest of the head was still unread (the server reads
            # 4 KB at a time): the kernel resets the connection instead of closing it.
            answer = b""
        assert not answer.startswith(b"HTTP/1.1 200")
        ten_kb = (b"GET /channels/q/poll?timeout=0&pad=" + b"p" * 10000
                  + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _raw(server, ten_kb).startswith(b"HTTP/1.1 200")


def test_chunked_oversize_publish_is_413_and_stores_nothing() -> None:
    with ServerProcess("--max-message-bytes", "1000") as server:
        chunk = b"x" * 600
        payload = (b"POST /channels/ch/messages HTTP/1.1\r\nHost: x\r\n"
                   b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                   + b"%x\r\n%s\r\n" % (len(chunk), chunk) * 2 + b"0\r\n\r\n")
        answer = _raw(server, payload)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert _info(server, "ch")["retained"] == 0


class ShutdownTest(AppCase):
    @gen_test
    async def test_polls_during_shutdown_get_503_with_retry_after(self) -> None:
        await self.hub.close()
        response = await self.request("GET", "/channels/x/poll?timeout=5")
        assert response.code == 503 and "shutting down" in error_of(response)
        assert 1 <= int(response.headers["Retry-After"]) <= 5


class ChurnTest(AppCase):
    @gen_test(timeout=120)
    async def test_5000_polls_dropped_mid_hold_leave_no_trace(self) -> None:
        port = self.get_http_port()
        request = b"GET /channels/quiet/poll?timeout=60 HTTP/1.1\r\nHost: x\r\n\r\n"
        for _round in range(2):
            writers = []
            for _ in range(5000):
                _reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(request)
                writers.append(writer)
            while self.hub.holding("quiet") < 5000:
                await asyncio.sleep(0.01)
            assert self.hub.pending_deadlines() == 5000
            for writer in writers:
                writer.close()
            while self.hub.waiters("quiet") > 0:
                await asyncio.sleep(0.01)
            for writer in writers:
                await writer.wait_closed()
            # Nothing published on the channel, and yet nothing is left behind.
            assert self.hub.pending_deadlines() == 0
            assert self.hub.total_waiters() == 0
            assert self.hub._channels == {}
