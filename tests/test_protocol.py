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
