"""The storage contract: what every backend (memory, SQLite, Redis) must do.

A backend keeps, per channel, an ordered run of *entries* numbered 1, 2, 3, …
(``seq``), trimmed only from the oldest end. It remembers the newest ``seq``
it ever gave a channel even after trimming removed that entry, so a cursor
stays meaningful. The protocol logic (reset, missed, more) lives in the hub; a
backend answers :meth:`Storage.read`, :meth:`Storage.append` and
:meth:`Storage.retract`.

An entry is a message or a *tombstone* (the record that a message was
retracted, ``Message.retract`` set, no body). Messages may carry an expiry
(absolute Unix seconds), a priority (``"normal"`` or ``"alert"``) and a key.

Visibility (what :meth:`Storage.read` shows):

* an expired entry (``expires <= now``) and a retracted message are in no
  answer; they are *holes* in the run of seqs, and holes never make a reader
  see ``missed`` (``Slice.first_seq`` moves only by trimming);
* a reader following its cursor sees every other entry: tombstones, and
  keyed messages superseded by a newer one with the same key;
* a first paint (no cursor) sees only *current* messages: no tombstones,
  nothing retracted or expired, and per key only the channel's newest message
  with that key (nothing for the key if that one is retracted or expired);
  plus the channel's newest current alert when it is older than the rest.
"""

from __future__ import annotations

import abc
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..protocol import PRIORITIES, format_cursor
from .fleet import GONE_AFTER, FleetStore, MemoryFleetStore

__all__ = [
    "PRIORITIES",
    "ChannelLimitError",
    "Limits",
    "Message",
    "NotRetained",
    "Slice",
    "Storage",
    "StorageConfigError",
    "StorageError",
    "StorageUnavailable",
    "check_fields",
    "not_retained",
]

#: The priorities a message may have; ``"normal"`` is the default.


class StorageError(Exception):
    """Base class of storage failures."""


class StorageConfigError(StorageError):
    """The storage cannot start as configured (bad URL, unusable file); fatal at start."""


class StorageUnavailable(StorageError):
    """The storage cannot serve right now (locked, disk full, connection lost); answered 503."""


class ChannelLimitError(StorageError):
    """A publish would create a channel beyond ``max_channels``; answered 507."""


class NotRetained(StorageError):
    """:meth:`Storage.retract` names no message that can be retracted; answered 404.

    ``reason`` is one of ``"unknown"`` (no such channel or seq), ``"trimmed"``,
    ``"expired"``, ``"tombstone"`` (the seq is itself a retraction) and
    ``"retracted"`` (already retracted); the text says the same in words.
    """

    REASONS = ("unknown", "trimmed", "expired", "tombstone", "retracted")

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason


def not_retained(reason: str, channel: str, seq: int) -> NotRetained:
    """The :class:`NotRetained` every backend raises for ``reason``, in the same words."""
    name = f"message {seq} of channel {channel!r}"
    if reason == "unknown":
        text = f"{name} does not exist"
    elif reason == "trimmed":
        text = f"{name} was trimmed away (--max-messages, --max-age)"
    elif reason == "expired":
        text = f"{name} has expired"
    elif reason == "tombstone":
        text = f"{name} is a retraction, which cannot itself be retracted"
    elif reason == "retracted":
        text = f"{name} is already retracted"
    else:
        raise ValueError(f"unknown reason {reason!r}")
    return NotRetained(reason, text)


def check_fields(expires: float | None, priority: str, key: str | None) -> float | None:
    """Refuse fields no backend could store faithfully; returns ``expires`` as a float.

    Ranges (how far ahead an expiry may be, what a key may contain) are the
    HTTP layer's to check; storage only needs a finite number, a known
    priority and a non-empty string.
    """
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}, got {priority!r}")
    if key is not None and (not isinstance(key, str) or not key):
        raise ValueError(f"key must be a non-empty string or None, got {key!r}")
    if expires is None:
        return None
    if isinstance(expires, bool) or not isinstance(expires, (int, float)):
        raise TypeError(f"expires must be Unix seconds (a number), got {expires!r}")
    value = float(expires)
    if not math.isfinite(value):
        raise ValueError(f"expires must be a finite number, got {expires!r}")
    return value


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
    """One stored entry: a message, or a tombstone (``retract`` set, ``body`` None).

    ``encoded`` is its JSON, computed once and shared by every answer:
    ``{"id","channel","body","ts"}`` for a plain message, plus ``"expires"``
    when it has one, ``"priority": "alert"`` for an alert and ``"key"`` when
    keyed; a tombstone is ``{"id","channel","ts","retract"}``.

    ``retract`` is given as the *seq* of the retracted message (same channel
    and epoch); the attribute ``retract`` is then that message's id, as in the
    JSON, and ``retract_seq`` its seq.
    """

    __slots__ = (
        "body", "channel", "encoded", "expires", "id", "key", "priority", "retract",
        "retract_seq", "seq", "ts",
    )

    def __init__(
        self,
        epoch: str,
        channel: str,
        seq: int,
        body: str | None,
        ts: float,
        *,
        expires: float | None = None,
        priority: str = "normal",
        key: str | None = None,
        retract: int | None = None,
    ) -> None:
        self.id = format_cursor(epoch, seq)
        self.channel = channel
        self.seq = seq
        self.body = body
        self.ts = ts
        self.expires = expires
        self.priority = priority
        self.key = key
        self.retract_seq = retract
        self.retract = None if retract is None else format_cursor(epoch, retract)
        self.encoded = json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @property
    def tombstone(self) -> bool:
        """True for the record of a retraction."""
        return self.retract_seq is not None

    def expired(self, now: float) -> bool:
        """True once ``now`` (Unix seconds) has reached the expiry."""
        return self.expires is not None and self.expires <= now

    def to_dict(self) -> dict[str, Any]:
        if self.retract is not None:
            return {"id": self.id, "channel": self.channel, "ts": self.ts, "retract": self.retract}
        data: dict[str, Any] = {
            "id": self.id, "channel": self.channel, "body": self.body, "ts": self.ts
        }
        if self.expires is not None:
            data["expires"] = self.expires
        if self.priority == "alert":
            data["priority"] = "alert"
        if self.key is not None:
            data["key"] = self.key
        return data

    def __repr__(self) -> str:
        if self.retract is not None:
            return f"Message({self.id!r}, {self.channel!r}, retract={self.retract!r})"
        return f"Message({self.id!r}, {self.channel!r}, {(self.body or '')[:40]!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (
            self.id, self.channel, self.body, self.ts,
            self.expires, self.priority, self.key, self.retract,
        ) == (
            other.id, other.channel, other.body, other.ts,
            other.expires, other.priority, other.key, other.retract,
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Slice:
    """The answer to :meth:`Storage.read`, taken at one instant.

    ``messages``: oldest first. ``last_seq``: the newest seq the channel ever
    had (0 if none). ``first_seq``: one more than the newest seq removed by
    *trimming* (``max_messages``, ``max_age``), so 1 while nothing was trimmed
    and ``last_seq + 1`` once everything was; holes (expired entries,
    retracted messages) never move it, so ``first_seq > after + 1`` means
    exactly that a reader at ``after`` missed something. ``epoch``: the
    store's epoch when the slice was taken, for stores whose epoch can change
    while running (a shared store that was wiped); ``None`` means
    :attr:`Storage.epoch`.

    ``end``: the seq this answer covers up to, i.e. the reader's cursor after
    it. For a first paint (``after=None``) always ``last_seq``; for a cursor
    read ``last_seq`` when no visible entry follows the returned ones, else
    the seq of the last one returned, so hidden entries at the end of the run
    do not leave a reader polling again for nothing. ``None`` (slices made by
    code that predates it) means the old rule, which :attr:`position` applies.
    """

    messages: list[Message]
    last_seq: int
    first_seq: int
    epoch: str | None = None
    end: int | None = None

    @property
    def position(self) -> int:
        """``end``, or for a slice without it the seq of the last message (``last_seq`` if none)."""
        if self.end is not None:
            return self.end
        return self.messages[-1].seq if self.messages else self.last_seq


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
    async def append(
        self,
        channel: str,
        body: str,
        *,
        expires: float | None = None,
        priority: str = "normal",
        key: str | None = None,
    ) -> Message:
        """Store one message and return it, with every field; durable when this returns.

        ``expires``: absolute Unix seconds (the message is hidden from then
        on); ``priority``: one of :data:`PRIORITIES`; ``key``: a message with
        a key supersedes the channel's earlier ones with the same key for
        first paints. Raises :class:`ChannelLimitError` or
        :class:`StorageUnavailable`, and ``ValueError``/``TypeError`` from
        :func:`check_fields`; on any error nothing is stored.
        """

    async def retract(self, channel: str, seq: int) -> Message:
        """Retract message ``seq``: append a tombstone for it, atomically; return the tombstone.

        The tombstone gets the next seq and ``ts`` now, and counts as an entry
        for trimming; the message is hidden from every reader from then on.
        Durable like :meth:`append`. Raises :class:`NotRetained` when ``seq``
        is unknown, trimmed, expired, a tombstone or already retracted, and
        :class:`StorageUnavailable`; on any error nothing changes.

        Every backend here implements it; this default, for wrappers written
        before retraction existed, refuses.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot retract messages")

    @abc.abstractmethod
    async def read(self, channel: str, after: int | None, limit: int) -> Slice:
        """Entries of ``channel`` that a reader at ``after`` may see, oldest first.

        ``after`` given: the visible entries with ``seq > after``, at most
        ``limit``. ``after=None`` (first paint): the newest ``limit`` current
        messages, plus the newest current alert if it is older than those (so
        up to ``limit + 1``). See the module docstring for what is visible and
        :class:`Slice` for ``first_seq`` and ``end``. Applies ``max_age`` and
        expiries before answering. An unknown channel reads as empty.
        """

    @abc.abstractmethod
    async def channel_count(self) -> int:
        """How many channels the store holds."""

    async def ping(self) -> None:  # noqa: B027 - optional hook
        """Raise :class:`StorageUnavailable` if the store cannot answer."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release files and connections; idempotent."""

    def fleet_store(
        self, max_displays: int = 10_000, *, stale_after: float = 0.0,
        gone_after: float = GONE_AFTER,
    ) -> FleetStore:
        """Where the processes serving this store record their displays and readers.

        A store that is not :attr:`shared` keeps them in the process
        (:class:`~.fleet.MemoryFleetStore`); a shared one where all processes see them.
        """
        return MemoryFleetStore(max_displays, stale_after=stale_after, gone_after=gone_after)

    def watch(self, wake: Callable[[str | None], None]) -> None:  # noqa: B027 - optional hook
        """Call ``wake(channel)`` when another process publishes to ``channel``.

        ``wake(None)`` re-checks every held poll (after a reconnect, when
        notices may have been missed). Single-process stores need nothing
        here: the hub wakes its own pollers.
        """
