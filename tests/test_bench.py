"""The benchmark's own parts (bench/): parser, bookkeeping, report. No servers started.

The benchmark itself is not a test (issue 7); these keep its arithmetic honest.
"""

import asyncio
import time
from pathlib import Path
from typing import Any, cast

import pytest

from bench.client import HTTPResponse, ProtocolError, _ClientProtocol, request_bytes
from bench.floor import FLOOR_BODY
from bench.report import checks, combine, markdown_table
from bench.scenarios import Result, Tracker, percentile
from bench.targets import Nchan
from tornado_lp.hub import PollResult
from tornado_lp.storage import Message


def test_request_bytes() -> None:
    assert request_bytes("GET", "/x?a=1") == b"GET /x?a=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    raw = request_bytes("POST", "/p", {"Content-Type": "text/plain"}, b"hi")
    assert raw.endswith(b"Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi")


class _Transport:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.sent.append(data)


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
