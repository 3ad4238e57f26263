"""Raw HTTP/1.1 over a socket: send exact bytes, read one answer, time it.

For tests that must send what no HTTP client would (invalid UTF-8, NUL bytes,
odd framing) and see exactly what comes back.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from .serverproc import ServerProcess


def address(server: ServerProcess) -> tuple[str, int]:
    host, port = server.url[len("http://"):].strip("/").rsplit(":", 1)
    return host, int(port)


@dataclass
class Answer:
    """One response; ``status`` 0 when the server closed without answering."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    elapsed: float = 0.0
    raw: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


def parse(raw: bytes, elapsed: float = 0.0) -> Answer:
    """Parse one response (headers lower-cased; a repeated header keeps its last value)."""
    if not raw:
        return Answer(0, elapsed=elapsed)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    assert version in ("HTTP/1.1", "HTTP/1.0"), f"not an HTTP status line: {lines[0]!r}"
    status = int(rest.split(" ", 1)[0])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(status, headers, body, elapsed, raw)


def exchange(
    server: ServerProcess, payload: bytes, timeout: float = 10.0, *, head: bool = False
) -> Answer:
    """Send ``payload`` (which should ask for ``Connection: close``) and read the answer.

    Reads until the server closes, or until a complete answer (by
    ``Content-Length``) has arrived; raises ``TimeoutError`` if neither happens
    within ``timeout`` seconds. ``head``: the request was a HEAD (no body follows).
    """
    started = time.monotonic()
    deadline = started + timeout
    data = b""
    with socket.create_connection(address(server), timeout=timeout) as sock:
        try:
            sock.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before reading everything
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no complete answer within {timeout} s: {data[:300]!r}")
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            except TimeoutError:
                raise TimeoutError(
                    f"no complete answer within {timeout} s: {data[:300]!r}"
                ) from None
            if not chunk:
                break
            data += chunk
            if _complete(data, head):
                break
    return parse(data, time.monotonic() - started)


def _complete(data: bytes, head: bool) -> bool:
    if b"\r\n\r\n" not in data:
        return False
    answer = parse(data)
    if head or answer.status in (204, 304):
        return True
    length = answer.headers.get("content-length")
    return length is not None and len(answer.body) >= int(length)


def request(
    method: str,
    target: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes | None = None,
) -> bytes:
    """Bytes of one request that asks the server to close afterwards."""
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1"]
    for name, value in headers or []:
        lines.append(f"{name}: {value}")
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
