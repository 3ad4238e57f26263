"""The benchmark's own parts (bench/): parser, bookkeeping, report. No servers started.

The benchmark itself is not a test (issue 7); these keep its arithmetic honest.
"""

import asyncio
import io
import json
import time
from pathlib import Path
from typing import Any, cast

import pytest

from bench.client import HTTPResponse, ProtocolError, _ClientProtocol, request_bytes
from bench.floor import FLOOR_BODY
from bench.judge import (
    FLOOR,
    LP,
    LP_QUIET,
    NCHAN,
    SEED,
    SSE_FLOOR,
    Verdict,
    markdown_verdicts,
    verdicts,
    write_verdicts,
)
from bench.measure import Tracker, percentile
from bench.records import Result, Spec
from bench.report import checks, combine, markdown_table
from bench.sse import Dechunker, SSEEvent, SSEParser, SSEStream, StreamRefused
from bench.streams import StreamSink, channels_for
from bench.targets import ACCESS_LOG_OFF, Nchan, TornadoLP, all_targets, parse_seed_answer
from tornado_lp.hub import PollResult
from tornado_lp.storage import Message


def test_request_bytes() -> None:
    assert request_bytes("GET", "/x?a=1") == b"GET /x?a=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    raw = request_bytes("POST", "/p", {"Content-Type": "text/plain"}, b"hi")
    assert raw.endswith(b"Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi")


class _Transport:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def abort(self) -> None:
        self.aborted = True


async def _exchange(pieces: list[bytes], requests: int = 1) -> list[HTTPResponse]:
    proto = _ClientProtocol()
    proto.connection_made(cast(Any, _Transport()))
    answers = []
    for _ in range(requests):
        waiter = proto.send(b"GET / HTTP/1.1\r\n\r\n")
        while pieces and not waiter.done():
            proto.data_received(pieces.pop(0))
        answers.append(await waiter)
    return answers


def test_parse_content_length_split_anywhere() -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nEtag: 0\r\n\r\nhello"
    for cut in range(1, len(raw)):
        (resp,) = asyncio.run(_exchange([raw[:cut], raw[cut:]]))
        assert (resp.status, resp.body, resp.headers["etag"]) == (200, b"hello", "0")


def test_parse_chunked_and_two_answers_in_one_read() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    plain = b"HTTP/1.1 304 Not Modified\r\n\r\n"
    first, second = asyncio.run(_exchange([chunked + plain], requests=2))
    assert first.body == b"abcde"
    assert (second.status, second.body) == (304, b"")


def test_parse_refuses_garbage() -> None:
    with pytest.raises(ProtocolError):
        asyncio.run(_exchange([b"SSH-2.0-OpenSSH\r\n\r\n"]))


def test_tracker_counts_duplicates_order_and_latency() -> None:
    async def run() -> Tracker:
        tracker = Tracker(pollers=2)
        tracker.publisher_of.update({1: 0, 2: 1, 3: 0})
        now = time.monotonic_ns()
        tracker.record(0, [f"1:{now}", f"2:{now}", f"3:{now}"], now + 1_000_000)
        tracker.record(1, [f"3:{now}", f"1:{now}"], now + 2_000_000)  # 1 after 3: same publisher
        tracker.record(1, [f"3:{now}", "not-ours"], now + 3_000_000)
        tracker.expected = 6
        tracker.check_done()
        return tracker

    tracker = asyncio.run(run())
    assert (tracker.delivered, tracker.duplicates, tracker.out_of_order) == (5, 1, 1)
    assert tracker.foreign == 1
    assert sorted(tracker.latencies_ns)[0] == 1_000_000
    assert not tracker.done.is_set()


def test_percentile_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert percentile(values, 1.0) == 100
    assert percentile([7], 0.9) == 7


def _result(run: int, **fields: Any) -> Result:
    return Result("tornado_lp memory", "fanout N=1000 M=100 R=10", "fanout", "fanout-a", run,
                  {"pollers": 1000}, **fields)  # fmt: skip


def test_combine_takes_medians_and_the_worst_loss() -> None:
    runs = [
        _result(1, cpu_us_per_delivery=300.0, lost=0, expected=10),
        _result(2, cpu_us_per_delivery=100.0, lost=3, expected=10),
        _result(3, cpu_us_per_delivery=200.0, lost=0, expected=10),
    ]
    (row,) = combine(runs)
    assert row.cpu_us_per_delivery == 200.0
    assert row.lost == 3
    assert row.run == 3
    assert "tornado_lp memory" in markdown_table([row])


def test_checks_judge_ratios() -> None:
    floor = Result("floor (bare RequestHandler)", "f", "fanout", "fanout-a", 1, {},
                   cpu_us_per_delivery=150.0)  # fmt: skip
    rows = [_result(1, cpu_us_per_delivery=120.0), floor]
    first = checks(rows)[0]
    assert first.met is True
    assert "0.80x" in first.measured


def test_floor_body_is_the_size_of_a_one_message_answer() -> None:
    message = Message("5f0c9a3e1b2d4c6a", "bench-fanout-1", 42, f"42:{time.monotonic_ns()}",
                      time.time())  # fmt: skip
    real = PollResult([message], message.id).encode()
    assert abs(len(real) - len(FLOOR_BODY)) <= 8


def test_nchan_config(tmp_path: Path) -> None:
    target = Nchan(buffer_length=2000)
    command = target._command(tmp_path)
    conf = (tmp_path / "nginx.conf").read_text()
    assert "nchan_message_buffer_length 2000;" in conf
    assert "daemon off;" in conf and f"listen 127.0.0.1:{target.port}" in conf
    assert command[-1] == str(tmp_path / "nginx.conf")


# -- targets: who runs what ---------------------------------------------------------


def _spec(role: str) -> Spec:
    kinds = {"sse-fanout": "sse", "sse-16ch": "sse", "sse-hold": "sse-hold"}
    kind = kinds.get(role, role.split("-")[0])
    return Spec(kind, role, role)


def test_every_target_runs_what_its_protocol_allows() -> None:
    targets = {t.name: t for t in all_targets()}
    roles = ["fanout-a", "burst", "hold-a", "publish-1", "publish-woken", "sse-fanout",
             "sse-hold", "sse-16ch"]  # fmt: skip
    runs = {name: [r for r in roles if t.runs(_spec(r))] for name, t in targets.items()}
    assert runs[LP] == roles
    assert runs["tornado_lp sqlite"] == roles[:5]  # streams are measured on memory only
    assert runs[SEED] == ["fanout-a", "burst", "hold-a", "publish-woken"]
    assert runs[FLOOR] == ["fanout-a"]
    assert runs[SSE_FLOOR] == ["sse-fanout", "sse-hold", "sse-16ch"]
    assert runs[NCHAN] == roles
    # The access-log A/B is always there, for fanout-a only ...
    assert runs[LP_QUIET] == ["fanout-a"]
    # ... unless it is asked for as a variant: then it runs every long-poll scenario.
    asked = {t.name: t for t in all_targets(variants=[ACCESS_LOG_OFF])}
    assert [r for r in roles if asked[LP_QUIET].runs(_spec(r))] == roles[:5]
    assert sum(1 for n in asked if n == LP_QUIET) == 1


def test_seed_answer_parsing() -> None:
    # Exactly what the seed's generate_json_data() returns: str() of a dict.
    answer = str({"html": "<div>1:100</div><div>2:200</div>", "id": "6b1f-uuid"}).encode()
    assert parse_seed_answer(answer) == (["1:100", "2:200"], "6b1f-uuid")
    assert parse_seed_answer(b"<!doctype html><html>") is None


def test_nchan_config_has_a_multiplexed_eventsource_location(tmp_path: Path) -> None:
    target = Nchan(heartbeat_s=7)
    target._command(tmp_path)
    conf = (tmp_path / "nginx.conf").read_text()
    assert "nchan_subscriber eventsource;" in conf
    assert 'nchan_channel_id_split_delimiter ",";' in conf
    assert "nchan_eventsource_ping_interval 7;" in conf
    assert target.stream_path(["a", "b"]) == "/es/a,b"
    assert target.stream_body(SSEEvent("message", "1:2", "x")) == "1:2"
    assert channels_for("ch", 1) == ["ch"]
    assert channels_for("ch", 3) == ["ch-c0", "ch-c1", "ch-c2"]


# -- the SSE client ------------------------------------------------------------------

_STREAM = (
    "\ufeffretry: 2500\r\n"
    ": hi\n\n"
    'id: e1~a1\r\ndata: {"body": "1:5"}\r\n\r\n'
    'event: missed\rid: e1~a2\rdata: {"channel": "a"}\r\r'
    "data:no space\ndata:  two spaces\ndata\n\n"
    "id: bad\0id\ndata: x\n\n"
    "id\ndata: empty id\n\n"
    "event: nodata\nid: kept\n\n"
    ": hb\n\n"
    "data: \u00e9t\u00e9\n\n"
).encode()

_EXPECTED = [
    SSEEvent("message", '{"body": "1:5"}', "e1~a1"),
    SSEEvent("missed", '{"channel": "a"}', "e1~a2"),
    SSEEvent("message", "no space\n two spaces\n", None),
    SSEEvent("message", "x", None),  # an id holding NUL is ignored
    SSEEvent("message", "empty id", ""),
    SSEEvent("message", "\u00e9t\u00e9", None),  # "event: nodata" had no data: not dispatched
]


def _parse_all(pieces: list[bytes]) -> tuple[list[SSEEvent], SSEParser]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    for piece in pieces:
        events += parser.feed(piece)
    return events, parser


def test_sse_parser_whole_stream() -> None:
    events, parser = _parse_all([_STREAM])
    assert events == _EXPECTED
    assert (parser.comments, parser.retry_ms, parser.last_event_id) == (2, 2500, "kept")


def test_sse_parser_split_at_every_byte_and_pair() -> None:
    for cut in range(len(_STREAM)):
        assert _parse_all([_STREAM[:cut], _STREAM[cut:]])[0] == _EXPECTED, cut
    # CR and LF (and the UTF-8 of "é") split across three reads
    for a in range(0, len(_STREAM), 7):
        for b in range(a, len(_STREAM), 11):
            assert _parse_all([_STREAM[:a], _STREAM[a:b], _STREAM[b:]])[0] == _EXPECTED
    assert _parse_all([bytes([c]) for c in _STREAM])[0] == _EXPECTED


def _chunked(payload: bytes, sizes: list[int]) -> bytes:
    out, pos = b"", 0
    for i, size in enumerate(sizes):
        piece = payload[pos : pos + size]
        pos += size
        ext = b";name=value" if i == 1 else b""
        out += f"{len(piece):X}".encode() + ext + b"\r\n" + piece + b"\r\n"
    return out + b"0\r\nX-Trailer: 1\r\n\r\n"


def test_dechunker_split_at_every_byte() -> None:
    sizes = [5, 40, 1, len(_STREAM)]
    raw = _chunked(_STREAM, sizes)
    for cut in range(len(raw)):
        dechunk = Dechunker()
        assert dechunk.feed(raw[:cut]) + dechunk.feed(raw[cut:]) == _STREAM, cut
        assert dechunk.done
    dechunk = Dechunker()
    assert b"".join(dechunk.feed(bytes([c])) for c in raw) == _STREAM
    assert dechunk.done


def test_dechunker_refuses_garbage() -> None:
    with pytest.raises(ProtocolError):
        Dechunker().feed(b"zz\r\n")
    with pytest.raises(ProtocolError):
        Dechunker().feed(b"3\r\nabcXY")


async def _stream_events(pieces: list[bytes]) -> tuple[SSEStream, list[SSEEvent], list[int]]:
    seen: list[SSEEvent] = []
    receipts: list[int] = []

    def sink(stream: SSEStream, events: list[SSEEvent], received_ns: int) -> None:
        seen.extend(events)
        receipts.append(received_ns)

    stream = SSEStream(0, b"GET /events HTTP/1.1\r\n\r\n", sink)
    transport = _Transport()
    stream.connection_made(cast(Any, transport))
    assert transport.sent == [b"GET /events HTTP/1.1\r\n\r\n"]
    for piece in pieces:
        stream.data_received(piece)
    return stream, seen, receipts


def test_sse_stream_chunked_split_anywhere() -> None:
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    raw = head + _chunked(_STREAM, [3, 17, len(_STREAM)])
    for cut in range(0, len(raw), 3):
        stream, events, receipts = asyncio.run(_stream_events([raw[:cut], raw[cut:]]))
        assert stream.opened.done() and stream.status == 200
        assert events == _EXPECTED, cut
        assert stream.events == len(_EXPECTED)
        assert receipts == sorted(receipts)
        assert stream.is_closed  # the last chunk ends the stream even on a kept connection
    stream, _, _ = asyncio.run(_stream_events([raw[: raw.rindex(b"0\r\n")]]))
    assert not stream.is_closed


def test_sse_stream_until_close_as_nchan_sends_it() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n\r\n"
    body = b": hi\n\nid: 1796193355:0\ndata: 7:1\n\n"
    stream, events, _ = asyncio.run(_stream_events([head + body[:9], body[9:]]))
    assert events == [SSEEvent("message", "7:1", "1796193355:0")]
    assert stream.parser.comments == 1


def test_sse_stream_refused_with_the_servers_answer() -> None:
    async def run() -> tuple[BaseException | None, bool]:
        body = b'{"error": "bad channel"}'
        stream, _, _ = await _stream_events(
            [b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n" % len(body), body]
        )
        return stream.opened.exception(), cast(_Transport, stream.transport).aborted

    refused, aborted = asyncio.run(run())
    assert aborted
    assert isinstance(refused, StreamRefused)
    assert refused.status == 400 and b"bad channel" in refused.body


def test_stream_sink_counts_what_is_not_a_message() -> None:
    async def run() -> tuple[Tracker, StreamSink]:
        tracker = Tracker(pollers=1)
        sink = StreamSink(TornadoLP(), tracker)
        stream = SSEStream(0, b"", sink)
        now = time.monotonic_ns()
        sink(stream, [
            SSEEvent("message", json.dumps({"body": f"1:{now}"}), "c1"),
            SSEEvent("reset", '{"channel": "a"}', "c1"),
            SSEEvent("message", json.dumps({"body": f"2:{now}"}), None),
            SSEEvent("message", "not json", "c3"),
            SSEEvent("heartbeat", '{"server_time": 1.0}', None),
        ], now + 5)  # fmt: skip
        return tracker, sink

    tracker, sink = asyncio.run(run())
    assert (tracker.delivered, tracker.answers) == (2, 1)
    assert sink.other == {"reset": 1, "heartbeat": 1}
    assert (sink.without_id, sink.unreadable) == (1, 1)  # the heartbeat needs no id


# -- the targets of issues 11 and 12 ------------------------------------------------


def _row(target: str, role: str, **fields: Any) -> Result:
    kind = {"sse-fanout": "sse", "sse-16ch": "sse", "sse-hold": "sse-hold"}.get(
        role, role.split("-")[0]
    )
    return Result(target, f"{role} label", kind, role, 1, {"hold_s": 10}, **fields)


def _verdict(items: list[Verdict], issue: int, role: str, words: str) -> Verdict:
    """The one verdict of ``issue`` on ``role`` with ``words`` in its text or bound."""
    found = [v for v in items
             if v.issue == issue and v.role == role and words in f"{v.text} {v.bound}"]  # fmt: skip
    assert len(found) == 1, [v.line() for v in items]
    return found[0]


def test_verdicts_compare_with_the_peers_of_the_same_run() -> None:
    rows = [
        _row(
            LP,
            "fanout-a",
            cpu_us_per_delivery=150.2,
            lat_p99_ms=80.0,
            answers=1000,
            published=10,
            server_cpu_s=0.2,
        ),
        _row(
            LP_QUIET,
            "fanout-a",
            cpu_us_per_delivery=120.0,
            answers=1000,
            published=10,
            server_cpu_s=0.15,
        ),
        _row(SEED, "fanout-a", cpu_us_per_delivery=107.0),
        _row(FLOOR, "fanout-a", cpu_us_per_delivery=200.0),
        _row(LP, "hold-a", rss_per_held_kib=11.0, idle_cpu_s=0.0, wake_all_ms=130.0),
        _row(NCHAN, "hold-a", rss_per_held_kib=10.0, wake_all_ms=60.0),
        _row(LP, "burst", delivered=100, expected=100, answers=4, publish_rate=3100.0),
    ]
    items = verdicts(rows)
    seed = _verdict(items, 12, "fanout-a", "≤ seed")
    assert seed.met is False
    assert seed.line() == (
        "fanout-a label: tornado_lp memory µs/delivery 150.2 vs seed (gevent) 107.0 "
        "(≤ seed (gevent)): not met"
    )
    floor = _verdict(items, 12, "fanout-a", "0.8x floor")
    assert floor.met is True and "0.75x" in floor.measured
    assert _verdict(items, 12, "fanout-a", "p99").met is True
    kib = _verdict(items, 12, "hold-a", "KiB")
    assert kib.met is True and kib.bound == "≤ nchan + 1 KiB"
    assert _verdict(items, 12, "hold-a", "wake-all").met is False  # 130 > 2 x 60
    assert _verdict(items, 12, "hold-a", "idle").met is True
    assert _verdict(items, 12, "burst", "messages/answer").met is True  # 25 per answer
    assert _verdict(items, 12, "burst", "publishes/s").met is True
    assert _verdict(items, 12, "burst", "lost").met is True
    # The access log: (0.2 s - 0.15 s) / 1010 requests.
    log = _verdict(items, 12, "fanout-a", "access log")
    assert log.met is None and not log.why
    assert log.measured.startswith("49.5 µs per request = 33% of a delivery")
    assert "shown (no numeric bound)" in log.line()


def test_verdicts_say_which_peer_did_not_run() -> None:
    rows = [
        _row(LP, "burst", cpu_us_per_delivery=3.0, delivered=10, expected=10),
        _row(SEED, "burst", cpu_us_per_delivery=9.0, notes=["failed: OSError: refused"]),
        _row(LP, "sse-fanout", cpu_us_per_delivery=12.0, events_without_id=0),
    ]
    items = verdicts(rows)
    burst = _verdict(items, 12, "burst", "µs/delivered")
    assert burst.met is None and burst.why == "seed (gevent) failed on burst (see the notes)"
    assert burst.line().endswith("not judged: seed (gevent) failed on burst (see the notes)")
    sse = _verdict(items, 11, "sse-fanout", "µs/delivery")
    assert sse.why == "nchan did not run sse-fanout"
    assert _verdict(items, 12, "hold-b", "wake-all").why == "tornado_lp memory did not run hold-b"
    assert _verdict(items, 11, "sse-*", "id").met is True
    assert "not judged" in markdown_verdicts(items)


def test_stream_verdicts() -> None:
    rows = [
        _row(LP, "sse-fanout", cpu_us_per_delivery=13.0, lat_p99_ms=51.0, events_without_id=0),
        _row(NCHAN, "sse-fanout", cpu_us_per_delivery=8.0),
        _row(
            LP,
            "sse-hold",
            rss_per_held_kib=9.0,
            idle_cpu_s=0.035,
            heartbeats=1000,
            wake_all_ms=70.0,
            events_without_id=2,
        ),
        _row(NCHAN, "sse-hold", rss_per_held_kib=9.5),
        _row(NCHAN, "hold-a", wake_all_ms=60.0),
        _row(LP, "sse-16ch", cpu_us_per_delivery=12.5, delivered=16, expected=16, duplicates=1),
    ]
    items = verdicts(rows)
    cpu = _verdict(items, 11, "sse-fanout", "µs/delivery")
    assert cpu.met is False and "1.62x" in cpu.measured  # 13 > 1.5 x 8
    assert _verdict(items, 11, "sse-fanout", "p99").met is False
    assert _verdict(items, 11, "sse-hold", "KiB").met is True
    idle = _verdict(items, 11, "sse-hold", "idle")
    assert idle.met is True and "50.0 ms" in idle.bound  # 20 ms + 1000 x 30 µs
    wake = _verdict(items, 11, "sse-hold", "wake-all")
    assert wake.met is False and "nchan hold-a 60.0 ms" in wake.measured
    assert _verdict(items, 11, "sse-16ch", "lost").met is False  # one duplicate
    assert _verdict(items, 11, "sse-16ch", "µs/delivery").met is True
    ids = _verdict(items, 11, "sse-*", "id")
    assert ids.met is False and ids.measured == "2 in 2 rows"


def test_verdicts_go_into_the_json_lines() -> None:
    items = verdicts([_row(LP, "publish-woken", publish_rate=5200.0)])
    stream = io.StringIO()
    write_verdicts(items, stream, {"mode": "quick"})
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == len(items)
    woken = next(line for line in lines if line["role"] == "publish-woken")
    assert woken["record"] == "target" and woken["mode"] == "quick" and woken["met"] is True
    assert woken["line"].endswith("5,200 (≥ 5,000): met")
