"""What the subscription core hands a transport: answers, with shared encodings.

A :class:`PollResult` is what one read of one channel gives every reader that
held the same position: the messages after it, the position after them, and
the ``more``/``missed``/``reset`` flags. It is shared by all those readers,
and so is its JSON (:meth:`PollResult.encode`, the single-channel poll answer).

An :class:`Answer` is what one reader of several channels (a multiplexed poll,
an SSE stream, a WebSocket) gets at once: the parts of the channels that had
news, the reader's positions after them and its stream cursor. Readers that
held the same positions and got the same parts share one Answer, so a
transport's framing of it (:meth:`Answer.memo`) is computed once for all of
them.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping
from typing import TypeVar

from .protocol import format_cursor, format_stream_cursor
from .storage import Message

__all__ = ["Answer", "PollResult"]

_JSON_BOOL = {True: "true", False: "false"}
T = TypeVar("T")


class PollResult:
    """One channel's answer at one position. ``encode()`` gives the poll's JSON, once."""

    __slots__ = (
        "_encoded", "_flagged", "channel", "cursor", "epoch", "messages", "missed", "more",
        "reset", "seq",
    )

    def __init__(
        self,
        messages: list[Message],
        cursor: str,
        more: bool = False,
        missed: bool = False,
        reset: bool = False,
        *,
        channel: str = "",
    ) -> None:
        self.messages = messages
        self.cursor = cursor
        self.epoch, _, seq = cursor.rpartition("-")
        self.seq = int(seq)
        self.channel = channel
        self.more = more
        self.missed = missed
        self.reset = reset
        self._encoded: bytes | None = None
        self._flagged: PollResult | None = None

    @classmethod
    def at(
        cls, channel: str, epoch: str, seq: int, messages: list[Message],
        more: bool, missed: bool, reset: bool,
    ) -> PollResult:
        """The answer that leaves a reader of ``channel`` at ``epoch``/``seq``."""
        result = cls.__new__(cls)
        result.messages = messages
        result.channel = channel
        result.epoch = epoch
        result.seq = seq
        result.cursor = format_cursor(epoch, seq)
        result.more = more
        result.missed = missed
        result.reset = reset
        result._encoded = None
        result._flagged = None
        return result

    @property
    def news(self) -> bool:
        """True if a reader has something to be told: messages, a gap or a reset."""
        return bool(self.messages) or self.missed or self.reset

    def with_reset(self) -> PollResult:
        """This answer with ``reset`` set (shared too): for a reader whose reset came earlier."""
        if self.reset:
            return self
        if self._flagged is None:
            self._flagged = PollResult.at(self.channel, self.epoch, self.seq, self.messages,
                                          self.more, self.missed, True)
        return self._flagged

    def encode(self) -> bytes:
        if self._encoded is None:
            body = ",".join(m.encoded for m in self.messages)
            self._encoded = (
                f'{{"messages":[{body}],"cursor":"{self.cursor}",'
                f'"more":{_JSON_BOOL[self.more]},"missed":{_JSON_BOOL[self.missed]},'
                f'"reset":{_JSON_BOOL[self.reset]}}}'
            ).encode()
        return self._encoded

    def __repr__(self) -> str:
        return (f"PollResult({len(self.messages)} messages, cursor={self.cursor!r}, "
                f"more={self.more}, missed={self.missed}, reset={self.reset})")


#: A reader's position in one channel: (channel, epoch, seq or None, reset not told yet).
PositionView = tuple[str, str, "int | None", bool]


class Answer:
    """One answer to one reader, shared by every reader that held the same positions.

    ``parts``: the channels that have something this time (none: an answer
    without news, at a deadline or at shutdown). ``positions``: every channel
    of the reader, in its order, as (channel, epoch, seq, reset) *after* this
    answer; ``before``: the seq each part's channel had before it (``None``: no
    position in this epoch). ``epoch``: the store epoch the stream cursor is
    written in.
    """

    __slots__ = ("_cursor", "_memo", "before", "epoch", "parts", "positions")

    def __init__(
        self,
        parts: tuple[PollResult, ...],
        positions: tuple[PositionView, ...],
        before: Mapping[str, int | None],
        epoch: str,
    ) -> None:
        self.parts = parts
        self.positions = positions
        self.before = before
        self.epoch = epoch
        self._cursor: str | None = None
        self._memo: dict[str, object] = {}

    def memo(self, name: str, encode: Callable[[Answer], T]) -> T:
        """``encode(self)``, computed once per ``name`` for every reader sharing this answer."""
        try:
            return self._memo[name]  # type: ignore[return-value]
        except KeyError:
            value = self._memo[name] = encode(self)
            return value

    @property
    def cursor(self) -> str:
        """The stream cursor after this answer."""
        if self._cursor is None:
            self._cursor = self.cursor_with({})
        return self._cursor

    def cursor_with(self, seqs: Mapping[str, int | None]) -> str:
        """The stream cursor with some channels at other seqs (``None``: no position)."""
        epoch = self.epoch
        positions: dict[str, int | None] = {}
        for channel, channel_epoch, seq, _reset in self.positions:
            if channel in seqs:
                seq = seqs[channel]
                if seq is not None:
                    positions[channel] = seq
            elif seq is not None:
                positions[channel] = seq if channel_epoch == epoch else None
        return format_stream_cursor(epoch, positions)

    @property
    def part(self) -> PollResult:
        """The answer of a one-channel reader as a single-channel poll answer."""
        if self.parts:
            return self.parts[0]
        channel, epoch, seq, reset = self.positions[0]
        return PollResult.at(channel, epoch, seq or 0, [], False, False, reset)

    @property
    def messages(self) -> list[Message]:
        """Every part's messages, by publication time (each channel's oldest first)."""
        if len(self.parts) == 1:
            return self.parts[0].messages
        return list(heapq.merge(*(part.messages for part in self.parts), key=_ts))

    def encode(self) -> bytes:
        """The multiplexed poll's JSON (also each WebSocket frame); see docs/PROTOCOL.md."""
        return self.memo("json", _encode_json)


def _ts(message: Message) -> float:
    return message.ts


def _encode_json(answer: Answer) -> bytes:
    parts = {part.channel: part for part in answer.parts}
    channels = []
    for channel, epoch, seq, _reset in answer.positions:
        part = parts.get(channel)
        cursor = "null" if seq is None else f'"{format_cursor(epoch, seq)}"'
        more = part is not None and part.more
        missed = part is not None and part.missed
        reset = part is not None and part.reset
        channels.append(
            f'"{channel}":{{"cursor":{cursor},"more":{_JSON_BOOL[more]},'
            f'"missed":{_JSON_BOOL[missed]},"reset":{_JSON_BOOL[reset]}}}'
        )
    any_more = any(part.more for part in answer.parts)
    any_missed = any(part.missed for part in answer.parts)
    any_reset = any(part.reset for part in answer.parts)
    body = ",".join(m.encoded for m in answer.messages)
    return (
        f'{{"messages":[{body}],"cursor":"{answer.cursor}","more":{_JSON_BOOL[any_more]},'
        f'"missed":{_JSON_BOOL[any_missed]},"reset":{_JSON_BOOL[any_reset]},'
        f'"channels":{{{",".join(channels)}}}}}'
    ).encode()
