"""What a subscription yields: :class:`Message`, :class:`Missed`, :class:`Reset`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._client_errors import UnexpectedAnswer

__all__ = ["Event", "Message", "Missed", "Reset", "message_from_json"]

_CORE = ("id", "channel", "body", "ts")


@dataclass(frozen=True)
class Message:
    """A stored message. ``data`` is the object exactly as the server sent it.

    ``id`` is the message's cursor in its channel; ``ts`` the server's clock at
    publish time (Unix seconds). Fields beyond the four (say ``priority``) are
    in :attr:`fields`.
    """

    id: str
    channel: str
    body: str
    ts: float
    data: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def fields(self) -> dict[str, Any]:
        """The fields other than ``id``, ``channel``, ``body`` and ``ts``."""
        return {k: v for k, v in self.data.items() if k not in _CORE}


@dataclass(frozen=True)
class Missed:
    """Messages of ``channel`` were trimmed away before they were read: there is a gap here."""

    channel: str


@dataclass(frozen=True)
class Reset:
    """The server no longer knows the position in ``channel`` (its store was replaced or
    emptied): forget what you showed from it; what follows is the channel anew."""

    channel: str


Event = Message | Missed | Reset


def message_from_json(data: Any) -> Message:
    """A :class:`Message` from a decoded message object; UnexpectedAnswer if it is not one."""
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("id"), str)
        or not isinstance(data.get("channel"), str)
        or not isinstance(data.get("body"), str)
        or not isinstance(data.get("ts"), int | float)
        or isinstance(data.get("ts"), bool)
    ):
        raise UnexpectedAnswer(f"not a message object: {str(data)[:200]}")
    return Message(data["id"], data["channel"], data["body"], float(data["ts"]), data)
