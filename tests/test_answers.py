"""Answers: per-channel results, multi-channel answers, their shared encodings."""

from __future__ import annotations

import json
from collections.abc import Callable

from tornado_lp.answers import Answer, PollResult
from tornado_lp.protocol import parse_stream_cursor
from tornado_lp.storage import Message

EPOCH = "0123456789abcdef"


def message(channel: str, seq: int, ts: float, body: str = "") -> Message:
    return Message(EPOCH, channel, seq, body or f"{channel}{seq}", ts)


def test_poll_result_encodes_the_single_channel_answer_once() -> None:
    result = PollResult.at("a", EPOCH, 2, [message("a", 1, 1.0), message("a", 2, 2.0, 'q"\\')],
                           True, False, True)
    encoded = result.encode()
    assert result.encode() is encoded
    assert json.loads(encoded) == {
        "messages": [m.to_dict() for m in result.messages], "cursor": f"{EPOCH}-2",
        "more": True, "missed": False, "reset": True}
    assert PollResult([], f"{EPOCH}-7").seq == 7


def test_with_reset_is_shared_and_keeps_everything_else() -> None:
    result = PollResult.at("a", EPOCH, 1, [message("a", 1, 1.0)], False, True, False)
    flagged = result.with_reset()
    assert flagged is result.with_reset() and flagged.reset and flagged.missed
    assert flagged.messages is result.messages and flagged.cursor == result.cursor
    assert flagged.with_reset() is flagged


def test_answer_merges_channels_by_publication_time() -> None:
    a = PollResult.at("a", EPOCH, 3, [message("a", 2, 1.0), message("a", 3, 3.0)],
                      False, False, False)
    b = PollResult.at("b", EPOCH, 1, [message("b", 1, 2.0)], True, False, False)
    answer = Answer((a, b), (("a", EPOCH, 3, False), ("b", EPOCH, 1, False),
                             ("c", EPOCH, None, False)), {"a": 1, "b": 0}, EPOCH)
    assert [m.body for m in answer.messages] == ["a2", "b1", "a3"]
    payload = json.loads(answer.encode())
    assert answer.encode() is answer.encode()
    assert [m["body"] for m in payload["messages"]] == ["a2", "b1", "a3"]
    assert (payload["more"], payload["missed"], payload["reset"]) == (True, False, False)
    assert payload["channels"] == {
        "a": {"cursor": f"{EPOCH}-3", "more": False, "missed": False, "reset": False},
        "b": {"cursor": f"{EPOCH}-1", "more": True, "missed": False, "reset": False},
        "c": {"cursor": None, "more": False, "missed": False, "reset": False},
    }
    assert parse_stream_cursor(payload["cursor"], ["a", "b", "c"]) == (EPOCH, {"a": 3, "b": 1})
    # The cursor between two events: a channel at another seq, or not known yet.
    between = answer.cursor_with({"a": 2, "b": None})
    assert parse_stream_cursor(between, ["a", "b", "c"]) == (EPOCH, {"a": 2})


def test_a_position_from_another_epoch_is_written_as_foreign() -> None:
    answer = Answer((), (("a", "f" * 16, 4, False), ("b", EPOCH, 2, False)), {}, EPOCH)
    assert parse_stream_cursor(answer.cursor, ["a", "b"]) == (EPOCH, {"a": None, "b": 2})


def test_memo_computes_once_per_name() -> None:
    answer = Answer((), (("a", EPOCH, 0, False),), {}, EPOCH)
    calls: list[str] = []

    def encoder(name: str, value: int) -> Callable[[Answer], int]:
        def encode(_: Answer) -> int:
            calls.append(name)
            return value
        return encode

    assert answer.memo("x", encoder("x", 1)) == 1
    assert answer.memo("x", encoder("x", 2)) == 1
    assert answer.memo("y", encoder("y", 3)) == 3
    assert calls == ["x", "y"]


def test_the_part_of_a_one_channel_answer_without_news() -> None:
    answer = Answer((), (("a", EPOCH, 5, True),), {}, EPOCH)
    part = answer.part
    assert (part.cursor, part.messages, part.reset) == (f"{EPOCH}-5", [], True)
