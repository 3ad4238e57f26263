"""Who may publish: a bearer token when one is configured, else loopback clients only."""

from __future__ import annotations

import functools
import hmac
import ipaddress

__all__ = ["PublishDenied", "check_publisher", "is_loopback"]


class PublishDenied(Exception):
    """Carries the HTTP status (401 or 403) and a message that never contains a token."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@functools.lru_cache(maxsize=1024)
def is_loopback(address: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped loopback addresses."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def check_publisher(token: str | None, authorization: str | None, remote_ip: str | None) -> None:
    """Raise :class:`PublishDenied` unless the request may publish."""
    if token is None:
        if not is_loopback(remote_ip):
            raise PublishDenied(
                403,
                "publishing is only allowed from loopback when no --publish-token is set",
            )
        return
    scheme, _, offered = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not offered:
        raise PublishDenied(401, "publishing needs an 'Authorization: Bearer <token>' header")
    if not hmac.compare_digest(offered.strip().encode(), token.encode()):
        raise PublishDenied(401, "the publish token is wrong")
