import pytest

from tornado_lp.auth import PublishDenied, check_publisher, is_loopback


@pytest.mark.parametrize("address", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
def test_loopback(address: str) -> None:
    assert is_loopback(address)


@pytest.mark.parametrize("address", ["10.0.0.1", "192.168.1.2", "::ffff:10.0.0.1", "fe80::1",
                                     "", None, "localhost", "garbage"])
def test_not_loopback(address: str | None) -> None:
    assert not is_loopback(address)


def test_token_checks() -> None:
    check_publisher("t", "Bearer t", "203.0.113.1")
    check_publisher("t", "bearer t", None)
    with pytest.raises(PublishDenied) as denied:
        check_publisher("t", "Bearer x", "127.0.0.1")
    assert denied.value.status == 401 and "t" not in denied.value.message.split()
    with pytest.raises(PublishDenied) as denied:
        check_publisher(None, None, "203.0.113.1")
    assert denied.value.status == 403
    check_publisher(None, None, "127.0.0.1")
