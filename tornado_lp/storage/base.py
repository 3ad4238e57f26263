"""The storage contract: what every backend (memory, SQLite, Redis) must do.

A backend keeps, per channel, an ordered run of messages numbered 1, 2, 3, …
(``seq``) without gaps, trimmed only from the oldest end. It remembers the
newest ``seq`` it ever gave a channel even after trimming removed that message,
so a cursor stays meaningful. The protocol logic (reset, missed, more) lives in
the hub; a backend only answers :meth:`Storage.read` and :meth:`Storage.append`.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..protocol import format_cursor

__all__ = [
    "ChannelLimitError",
    "Limits",
    "Message",
    "Slice",
    "Storage",
    "StorageConfigError",
    "StorageError",
    "StorageUnavailable",
]


class StorageError(Exception):
    """Base class of storage failures."""


class StorageConfigError(StorageError):
    """The storage cannot start as configured (bad URL, unusable file); fatal at start."""


class StorageUnavailable(StorageError):
    """The storage cannot serve right now (locked, disk full, connection lost); answered 503."""


class ChannelLimitError(StorageError):
    """A publish would create a channel beyond ``max_channels``; answered 507."""


@dataclass(frozen=True)
class Limits:
    """What a backend retains.

    ``max_messages`` per channel; ``max_age`` seconds (``None``: no age limit);
    ``max_channels`` channels in the store.
    """

    max_messages: int = 1000
    max_age: float | None = None
    max_channels: int = 10000

    def __post_init__(self) -> None:
        if self.max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        if self.max_age is not None and not self.max_age > 0:
            raise ValueError("max_age must be a positive number of seconds")
        if self.max_channels < 1:
            raise ValueError("max_channels must be at least 1")


class Message:
    """One stored message. ``encoded`` is its JSON, computed once and shared by every answer."""

    __slots__ = ("body", "channel", "encoded", "id", "seq", "ts")

    def __init__(self, epoch: str, channel: str, seq: int, body: str, ts: float) -> None:
        self.id = format_cursor(epoch, seq)
        self.channel = channel
        self.seq = seq
        self.body = body
        self.ts = ts
        self.encoded = json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "channel": self.channel, "body": self.body, "ts": self.ts}

    def __repr__(self) -> str:
        return f"Message({self.id!r}, {self.channel!r}, {self.body[:40]!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (self.id, self.channel, self.body, self.ts) == (
            other.id, other.channel, other.body, other.ts
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Slice:
    """The answer to :meth:`Storage.read`, taken at one instant.

    ``messages``: oldest first. ``last_seq``: the newest seq the channel ever
    had (0 if none). ``first_seq``: the oldest retained seq, or ``last_seq + 1``
    when nothing is retained. ``epoch``: the store's epoch when the slice was
    taken, for stores whose epoch can change while running (a shared store
    that was wiped); ``None`` means :attr:`Storage.epoch`. ``end``: the seq the
    read covered up to, the reader's position after it; ``None``: the seq of
    the last message returned, or ``last_seq`` when none is.
    """

    messages: list[Message]
    last_seq: int
    first_seq: int
    epoch: str | None = None
    end: int | None = None


class Storage(abc.ABC):
    """Abstract storage. All methods may be called only after :meth:`open`."""

    #: The store's epoch (16 hex digits), set by :meth:`open`. A shared store
    #: updates it when it finds the store wiped and recreated (Redis FLUSHALL).
    epoch: str
    #: Human-readable location for logs, without secrets.
    description: str = ""
    #: True if several processes may serve one store at once (``--processes``,
    #: several machines): the store is shared and :meth:`watch` reports
    #: publishes made by the other processes.
    shared: bool = False

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect or create files and load/create the epoch; idempotent.

        Raises :class:`StorageConfigError` when the store can never work as configured.
        """

    @abc.abstractmethod
    async def append(self, channel: str, body: str) -> Message:
        """Store one message and return it; durable when this returns.

        Raises :class:`ChannelLimitError` or :class:`StorageUnavailable`; on
        any error nothing is stored.
        """

    @abc.abstractmethod
    async def read(self, channel: str, after: int | None, limit: int) -> Slice:
        """Messages of ``channel`` with ``seq > after``, oldest first, at most ``limit``.

        ``after=None``: the newest ``limit`` retained messages. Applies
        ``max_age`` before answering. An unknown channel reads as empty.
        """

    @abc.abstractmethod
    async def channel_count(self) -> int:
        """How many channels the store holds."""

    async def ping(self) -> None:  # noqa: B027 - optional hook
        """Raise :class:`StorageUnavailable` if the store cannot answer."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release files and connections; idempotent."""

    def watch(self, wake: Callable[[str | None], None]) -> None:  # noqa: B027 - optional hook
        """Call ``wake(channel)`` when another process publishes to ``channel``.

        ``wake(None)`` re-checks every held poll (after a reconnect, when
        notices may have been missed). Single-process stores need nothing
        here: the hub wakes its own pollers.
        """
