"""Property tests of the HTTP layer with raw requests: never a 500, never a hang.

hypothesis builds requests no HTTP client would send (random paths and
methods, percent-encoded invalid UTF-8 and NUL bytes, 10 KB query strings,
huge numbers, duplicate parameters, odd Content-Types, random bodies) and sends
them on raw sockets to a real server process (holds capped at 0.2 s), once
per storage backend. Every
request must be answered within the hold time plus a margin, with a 2xx/3xx/4xx
status (a 5xx only as the documented 503 with Retry-After), with
``{"error": "..."}`` for every error and JSON wherever the route is JSON; the
server's log must show no traceback and no ERROR; and the server must still
deliver a normal publish to a normal poll afterwards.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tornado_lp import make_app
from tornado_lp.handlers import DisplaysPageHandler, MetricsHandler
from tornado_lp.openapi import OpenAPIHandler
from tornado_lp.seed import SeedUpdateHandler
from tornado_lp.server import MAX_HEADER_BYTES
from tornado_lp.staticfiles import StaticFiles

from .rawhttp import Answer, exchange, request
from .serverproc import ServerProcess
from .storages import SERVER_STORAGES, server_storage
from .test_openapi import handler_for

HOLD = 0.2  # --poll-timeout-max of the server under test
IDLE = 1.0  # --idle-timeout: an incomplete request head is cut off after this
MARGIN = 3.0  # seconds an answer may take beyond the hold (a slow CI machine)
EXAMPLES = int(os.environ.get("TORNADO_LP_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # the answer time is asserted per request, against the hold
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Handlers whose successful answers are not JSON objects (pages, files, text formats).
# The kiosk pages (branch ticker) are caught by their text/html Content-Type.
NOT_JSON_ON_SUCCESS = (StaticFiles, DisplaysPageHandler, MetricsHandler, OpenAPIHandler)
ROUTER = make_app()


class Server:
    """The server under test and how much of its stderr has been checked."""

    def __init__(self, process: ServerProcess) -> None:
        self.process = process
        self.checked = 0

    def new_log(self) -> str:
        text = self.process.stderr()
        new, self.checked = text[self.checked:], len(text)
        return new


@pytest.fixture(scope="module", params=SERVER_STORAGES)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    with ServerProcess("--poll-timeout-max", str(HOLD), "--idle-timeout", str(IDLE),
                       "--max-message-bytes", "20000", "--cors-origin", "https://kiosk.example",
                       *server_storage(request.param)) as process:
        yield Server(process)
        assert_serves_normal_poll(process)
        stderr = process.stderr()
    assert_clean_log(stderr)


def assert_clean_log(text: str) -> None:
    assert "Traceback" not in text, text[-4000:]
    bad = [line for line in text.splitlines() if " ERROR " in line or " CRITICAL " in line]
    assert not bad, "\n".join(bad[:20])


def assert_serves_normal_poll(process: ServerProcess) -> None:
    """A publish then a poll from the last cursor: the server still works."""
    first = exchange(process, request("GET", "/channels/after-fuzz/poll?timeout=0"))
    assert first.status == 200, first.raw[:500]
    cursor = first.json()["cursor"]
    published = exchange(process, request("POST", "/channels/after-fuzz/messages",
                                          [("Content-Type", "text/plain")], b"still alive"))
    assert published.status == 201, published.raw[:500]
    answer = exchange(process, request(
        "GET", f"/channels/after-fuzz/poll?cursor={cursor}&timeout=5"))
    assert answer.status == 200
    assert [m["body"] for m in answer.json()["messages"]] == ["still alive"]


def check_answer(
    server: Server, method: str, target: str, answer: Answer, head_size: int = 0
) -> None:
    """The properties every answer must have.

    A request head over the server's 16 KB limit is refused by Tornado's HTTP
    layer by closing the connection, without an answer (see the README).
    """
    context = f"{method} {target[:200]!r} -> {answer.raw[:400]!r}"
    if head_size > MAX_HEADER_BYTES and answer.status == 0:
        return
    assert answer.status, f"connection closed without an answer: {context}"
    assert answer.elapsed <= HOLD + MARGIN, f"answered after {answer.elapsed:.1f} s: {context}"
    assert answer.status < 500 or (
        answer.status == 503 and "retry-after" in answer.headers
    ), context
    path = target.partition("?")[0]
    handler = handler_for(ROUTER, path)
    no_body = method == "HEAD" or answer.status in (204, 304)
    if no_body:
        assert answer.body == b"", context
    elif answer.status >= 400 and not (handler is StaticFiles and answer.status == 416):
        assert answer.content_type == "application/json; charset=utf-8", context
        payload = answer.json()
        assert set(payload) == {"error"} and isinstance(payload["error"], str), context
    elif handler is SeedUpdateHandler:
        assert set(answer.json()) == {"html", "id"}, context
    elif not (
        (isinstance(handler, type) and issubclass(handler, NOT_JSON_ON_SUCCESS))
        or answer.content_type.startswith("text/html")
    ):
        assert answer.content_type == "application/json; charset=utf-8", context
        assert isinstance(answer.json(), dict), context
    log = server.new_log()
    assert "Traceback" not in log and " ERROR " not in log, f"{context}\n{log[-3000:]}"


def head_size(payload: bytes) -> int:
    return len(payload.partition(b"\r\n\r\n")[0]) + 4


# -- strategies ----------------------------------------------------------------

def pct(data: bytes) -> str:
    return urllib.parse.quote_from_bytes(data, safe="")


epochs = st.sampled_from(["0000000000000000", "ffffffffffffffff", "0123456789abcdef"])
cursors = st.one_of(
    st.builds(lambda e, n: f"{e}-{n}", epochs, st.integers(0, 10**30)),
    st.builds(lambda n: f"0000000000000000-{'9' * n}", st.integers(17, 400)),
    st.sampled_from(["", "-", "0-0", "ABCDEF0123456789-1", "0000000000000000-01",
                     "0000000000000000--1", "0000000000000000-1\x00"]),
    st.text(max_size=40),
)
numbers = st.one_of(
    st.integers(-(10**40), 10**40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "-nan", "inf", "-inf", "Infinity", "1e309", "-0", "0x10", "1_0",
                     " 5", "5 ", "+1", "0.0000001", "1e-400", "٣", "9" * 5000]),
)
unicode_text = st.text(max_size=60)
raw_values = st.one_of(
    numbers, cursors, unicode_text,
    st.binary(max_size=40),  # percent-encoded as is: mostly invalid UTF-8
    st.just(b"\x00"), st.just(b"\xff\xfe"), st.just(b"\xed\xa0\x80"),  # NUL, junk, a surrogate
    st.just("x" * 10_000),  # a 10 KB value
)
param_names = st.one_of(
    st.sampled_from(["cursor", "timeout", "limit", "display", "token", "id", "channel",
                     "speed", "theme", "max", "title", "hold"]),
    st.text(max_size=10),
    st.binary(max_size=6),
)


def encode_pair(pair: tuple[Any, Any]) -> str:
    name, value = pair
    def enc(part: Any) -> str:
        return pct(part if isinstance(part, bytes) else str(part).encode("utf-8", "surrogatepass"))
    return f"{enc(name)}={enc(value)}"


queries = st.lists(st.tuples(param_names, raw_values), max_size=6).map(
    lambda pairs: "&".join(encode_pair(p) for p in pairs)
)
channels = st.one_of(
    st.sampled_from(["lobby", "fz", "a" * 64, "a" * 65, "a.b_c-d", "..", ".", "%2F", "%00",
                     "%FF", "%C3%A9", "%ED%A0%80", "x%20y", "%25", "%", "%zz"]),
    st.binary(min_size=1, max_size=20).map(pct),
    st.text(min_size=1, max_size=70).map(lambda t: pct(t.encode("utf-8", "surrogatepass"))),
)
paths = st.one_of(
    st.builds(lambda c, tail: f"/channels/{c}{tail}", channels,
              st.sampled_from(["", "/poll", "/messages", "/poll/", "/x", "/"])),
    st.sampled_from(["/", "/publish", "/healthz", "/displays", "/displays.html", "/metrics",
                     "/update", "/create", "/new", "/openapi.yaml", "/static/displays.css",
                     "/static/", "/static/../setup.cfg", "/static/%2e%2e/setup.cfg",
                     "/static/favicon.svg", "/favicon.ico", "/robots.txt", "//", "/channels",
                     "/channels/", "/channels//poll", "*", "/%00", "/%FF", "/" + "a" * 8000]),
    st.lists(st.one_of(st.text(max_size=12).map(
        lambda t: pct(t.encode("utf-8", "surrogatepass"))), st.binary(max_size=8).map(pct)),
        max_size=5).map(lambda parts: "/" + "/".join(parts)),
)
methods = st.one_of(
    st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
    st.sampled_from(["get", "FOO", "CONNECT", "TRACE", "PROPFIND"]),
)
content_types = st.sampled_from([
    "text/plain", "text/plain; charset=utf-8", "text/plain; charset=utf-16", "application/json",
    "application/json; charset=latin-1", "APPLICATION/JSON", "application/json;;", "",
    ";", "multipart/form-data", "multipart/form-data; boundary=xx",
    "application/x-www-form-urlencoded", "application/octet-stream", "text/html",
    "application/json\tx", "a" * 3000,
])
header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=80,
)
extra_headers = st.lists(st.one_of(
    st.tuples(st.just("Content-Type"), content_types),
    st.tuples(st.sampled_from(["Origin", "Authorization", "User-Agent", "X-Forwarded-For",
                               "X-Real-Ip", "Range", "If-None-Match", "If-Modified-Since",
                               "Accept", "Accept-Encoding", "Cookie", "Expect",
                               "X-Whatever"]), header_text),
    st.tuples(st.just("Origin"), st.just("https://kiosk.example")),
    st.tuples(st.just("Authorization"), st.sampled_from(["Bearer", "Bearer ", "bearer x",
                                                         "Basic eDp5", "Bearer \xe9\xff"])),
    st.tuples(st.just("Range"), st.sampled_from(["bytes=0-1", "bytes=999999-", "bytes=-0",
                                                 "bytes=5-1", "bytes=x"])),
), max_size=5)


def json_documents() -> st.SearchStrategy[Any]:
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text())
    return st.recursive(
        scalars,
        lambda children: st.one_of(st.lists(children, max_size=4),
                                   st.dictionaries(st.text(max_size=8), children, max_size=4)),
        max_leaves=12,
    )


bodies = st.one_of(
    st.none(),
    st.binary(max_size=300),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    json_documents().map(lambda d: json.dumps(d).encode()),
    json_documents().map(lambda d: json.dumps({"body": d}).encode()),
    st.text(max_size=50).map(lambda t: json.dumps({"body": t}).encode()),
    st.sampled_from([b"\x00", b"a\x00b", b'{"body": "\\ud800"}', b'{"body": "a\\u0000"}',
                     b"[" * 5000, b'{"body": 1e999}', b'{"body": "x", "body": 5}',
                     b"id=%FF", b"id=" + b"9" * 5000, b"\xff" * 100, b"x" * 19_999,
                     b"x" * 20_001]),
)


# -- properties ----------------------------------------------------------------

@FUZZ
@given(method=methods, path=paths, query=queries, headers=extra_headers, body=bodies)
def test_any_request_gets_a_prompt_clean_answer(
    server: Server, method: str, path: str, query: str,
    headers: list[tuple[str, str]], body: bytes | None,
) -> None:
    target = f"{path}?{query}" if query else path
    payload = request(method, target, headers, body)
    answer = exchange(server.process, payload, timeout=HOLD + MARGIN + 1, head=method == "HEAD")
    check_answer(server, method, target, answer, head_size(payload))


@FUZZ
@given(channel=channels, query=queries, headers=extra_headers)
def test_polls_with_any_parameters(
    server: Server, channel: str, query: str, headers: list[tuple[str, str]]
) -> None:
    target = f"/channels/{channel}/poll?{query}"
    payload = request("GET", target, headers)
    answer = exchange(server.process, payload, timeout=HOLD + MARGIN + 1)
    check_answer(server, "GET", target, answer, head_size(payload))
    if answer.status == 200:
        payload = answer.json()
        assert set(payload) == {"messages", "cursor", "more", "missed", "reset"}
        assert re.fullmatch(r"[0-9a-f]{16}-(0|[1-9][0-9]*)", payload["cursor"])
        assert "x-server-time" in answer.headers


@FUZZ
@given(channel=channels, headers=extra_headers, body=bodies, chunked=st.booleans())
def test_publishes_with_any_body(
    server: Server, channel: str, headers: list[tuple[str, str]], body: bytes | None,
    chunked: bool,
) -> None:
    target = f"/channels/{channel}/messages"
    if chunked and body is not None:
        payload = request("POST", target, [*headers, ("Transfer-Encoding", "chunked")])
        pieces = [body[i:i + 700] for i in range(0, len(body), 700)]
        payload += b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    else:
        payload = request("POST", target, headers, body)
    answer = exchange(server.process, payload, timeout=HOLD + MARGIN + 1)
    check_answer(server, "POST", target, answer, head_size(payload))
    if answer.status == 201:
        message = answer.json()
        assert set(message) == {"id", "channel", "body", "ts"}
        poll = exchange(server.process, request(
            "GET", f"/channels/{pct(message['channel'].encode())}/poll?limit=1&timeout=0"))
        assert poll.status == 200, poll.raw[:400]  # what was stored can be served


# Requests that are not valid HTTP/1.1: the HTTP layer refuses them before any
# route (a bare 400, or a closed connection, at the latest after --idle-timeout
# for a head that never ends); the server must not log a traceback or stop serving.
MALFORMED = [
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n",
    b"GET /he\x00althz HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Fold: a\r\n folded\r\n\r\n",
    b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n",
    b"GET /healthz HTTP/1.1 extra\r\nHost: x\r\n\r\n",
    b"GET\r\n\r\n",
    b"\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,  # a TLS ClientHello
    b"POST /channels/m/messages HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST /channels/m/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 1e3\r\n\r\n",
    b"POST /channels/m/messages HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: 99999999999999999999\r\n\r\n",
    b"POST /channels/m/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
    b"Content-Length: 3\r\n\r\nabc",
    b"POST /channels/m/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
    b"POST /channels/m/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"zz\r\nhi\r\n0\r\n\r\n",
    b"POST /channels/m/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nhi",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",
    b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /healthz HTTP/1.1\nHost: x\n\n",  # bare LF line ends (tolerated: a real answer)
]


@pytest.mark.parametrize("payload", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_http_is_refused_without_a_trace(server: Server, payload: bytes) -> None:
    answer = exchange(server.process, payload, timeout=IDLE + MARGIN + 1)
    # 0: closed without an answer; 200: the bare-LF request is tolerated.
    assert answer.status in (0, 200) or 400 <= answer.status < 500, answer.raw[:400]
    assert answer.elapsed <= IDLE + MARGIN
    log = server.new_log()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
    follow = exchange(server.process, request("GET", "/healthz"))
    assert follow.status == 200


def test_server_still_serves_a_normal_poll(server: Server) -> None:
    assert_serves_normal_poll(server.process)
    assert_clean_log(server.process.stderr())
    metrics = exchange(server.process, request("GET", "/metrics"))
    held = re.search(rb"^tornado_lp_held_polls (\S+)$", metrics.body, re.M)
    assert held is not None and float(held.group(1)) == 0.0, "a poll is still held"
