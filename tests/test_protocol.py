import pytest

from tornado_lp import protocol
from tornado_lp.protocol import Cursor, ProtocolError


@pytest.mark.parametrize("name", ["a", "default", "Lobby-1", "x.y_z", "A" * 64])
def test_valid_channels(name: str) -> None:
    assert protocol.valid_channel(name)


@pytest.mark.parametrize("name", ["", "A" * 65, "a b", "a/b", "é", "a\n", "a:b", "%41"])
def test_invalid_channels(name: str) -> None:
    assert not protocol.valid_channel(name)


def test_cursor_round_trip() -> None:
    epoch = protocol.new_epoch()
    assert len(epoch) == 16
    assert protocol.parse_cursor(protocol.format_cursor(epoch, 42)) == Cursor(epoch, 42)
    assert protocol.parse_cursor(protocol.format_cursor(epoch, 0)) == Cursor(epoch, 0)


def test_no_cursor() -> None:
    assert protocol.parse_cursor(None) is None
    assert protocol.parse_cursor("") is None


@pytest.mark.parametrize(
    "text",
    ["x", "0123456789abcdef", "0123456789abcdef-", "0123456789abcdef--1", "0123456789ABCDEF-1",
     "0123456789abcdef-01", "0123456789abcdef-1.5", "0123456789abcdef-1 ", "0123456789abcde-1",
     "0123456789abcdef-" + "9" * 19],
)
def test_malformed_cursor(text: str) -> None:
    with pytest.raises(ProtocolError, match="cursor"):
        protocol.parse_cursor(text)


def test_timeout_rules() -> None:
    assert protocol.parse_timeout(None, 60) == 25
    assert protocol.parse_timeout(None, 10) == 10
    assert protocol.parse_timeout("0", 60) == 0
    assert protocol.parse_timeout("2.5", 60) == 2.5
    assert protocol.parse_timeout("3600", 60) == 60  # capped, not refused
    assert protocol.parse_timeout("inf", 60) == 60


@pytest.mark.parametrize("text", ["-1", "abc", "", "nan", "-inf", "1e"])
def test_bad_timeout(text: str) -> None:
    with pytest.raises(ProtocolError, match="timeout"):
        protocol.parse_timeout(text, 60)


def test_limit_rules() -> None:
    assert protocol.parse_limit(None) == 50
    assert protocol.parse_limit("1") == 1
    assert protocol.parse_limit("1000") == 1000


@pytest.mark.parametrize("text", ["0", "1001", "-1", "x", "", "1.5", "٣", "99999999999"])
def test_bad_limit(text: str) -> None:
    with pytest.raises(ProtocolError, match="limit"):
        protocol.parse_limit(text)


# -- stream cursors and channel lists --------------------------------------------

EPOCH = "0123456789abcdef"


def test_stream_cursor_round_trip() -> None:
    channels = ("lobby", "news", "kitchen")
    text = protocol.format_stream_cursor(EPOCH, {"lobby": 12, "news": 0, "kitchen": 9_999_999})
    assert set(text) <= set("0123456789abcdef~")
    assert protocol.parse_stream_cursor(text, channels) == (
        EPOCH, {"lobby": 12, "news": 0, "kitchen": 9_999_999})
    # The order of the channels does not matter, in the cursor or the request.
    assert text == protocol.format_stream_cursor(EPOCH, {"kitchen": 9_999_999, "news": 0,
                                                         "lobby": 12})
    assert protocol.parse_stream_cursor(text, channels[::-1]) == protocol.parse_stream_cursor(
        text, channels)
    assert protocol.parse_stream_cursor(EPOCH, channels) == (EPOCH, {})
    assert protocol.parse_stream_cursor(None, channels) is None
    assert protocol.parse_stream_cursor("", channels) is None


def test_stream_cursor_marks_a_position_from_another_epoch() -> None:
    text = protocol.format_stream_cursor(EPOCH, {"a": None, "b": 3})
    assert f"~{protocol.channel_tag('a')}~" in text or text.endswith(protocol.channel_tag("a"))
    assert protocol.parse_stream_cursor(text, ["a", "b"]) == (EPOCH, {"a": None, "b": 3})


def test_stream_cursor_entries_of_channels_not_asked_for_are_ignored() -> None:
    text = protocol.format_stream_cursor(EPOCH, {"a": 1, "b": 2, "gone": 7})
    assert protocol.parse_stream_cursor(text, ["b", "new"]) == (EPOCH, {"b": 2})
    unknown = EPOCH + "~ffffffffff42"  # a tag no channel of the request has
    assert protocol.parse_stream_cursor(unknown, ["a"]) == (EPOCH, {})


@pytest.mark.parametrize(
    "text",
    [f"{EPOCH}-1", "x", EPOCH[:-1], EPOCH.upper(), f"{EPOCH}~", f"{EPOCH}~abc",
     f"{EPOCH}~{'0' * 9}g1", f"{EPOCH}~{'0' * 10}01", f"{EPOCH}~{'0' * 10}1 ",
     f"{EPOCH}~{'0' * 10}" + "9" * 19, f" {EPOCH}", f"{EPOCH}\n", f"{EPOCH}~~" + "0" * 10,
     EPOCH + f"~{'0' * 10}1" * 65],
)
def test_malformed_stream_cursors_are_refused_naming_cursor(text: str) -> None:
    with pytest.raises(ProtocolError, match="cursor"):
        protocol.parse_stream_cursor(text, ["a"])


def test_sixteen_channels_of_64_characters_stay_well_under_1_kb() -> None:
    channels = [f"{i:02d}" + "x" * 62 for i in range(16)]
    text = protocol.format_stream_cursor(EPOCH, {ch: 10**17 for ch in channels})
    assert len(text) < 500
    assert protocol.parse_stream_cursor(text, channels) == (EPOCH, {ch: 10**17 for ch in channels})


def test_parse_channels() -> None:
    assert protocol.parse_channels(["a,b", "c"]) == ("a", "b", "c")
    assert protocol.parse_channels(["only"]) == ("only",)
    assert len(protocol.parse_channels([",".join(f"c{i}" for i in range(16))])) == 16


@pytest.mark.parametrize(
    ("values", "word"),
    [([], "missing"), ([""], "missing"), ([",".join(f"c{i}" for i in range(17))], "at most 16"),
     (["a,b", "a"], "twice"), (["a,,b"], "not a valid"), (["a b"], "not a valid"),
     (["a,"], "not a valid"), (["x" * 65], "not a valid"), (["é"], "not a valid")],
)
def test_parse_channels_errors_name_channel(values: list[str], word: str) -> None:
    with pytest.raises(ProtocolError, match="channel") as error:
        protocol.parse_channels(values)
    assert word in str(error.value)
