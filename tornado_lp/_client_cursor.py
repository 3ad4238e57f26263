"""Multi-channel cursors for the per-channel transport (servers without ``GET /poll``).

The format is the server's own (docs/PROTOCOL.md): ``<epoch>`` (16 hex digits),
then for each channel with a known position ``~<tag><seq>``, where ``tag`` is the
first 10 hex digits of blake2s(channel name, digest_size=5). Making the same
string here keeps one cursor valid on both transports. (An entry without a seq,
a position from another epoch, is read as no position: that channel's backlog.)
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping

__all__ = ["Positions", "channel_tag", "decode", "encode", "is_channel_cursor"]

_SINGLE = re.compile(r"([0-9a-f]{16})-(0|[1-9][0-9]{0,17})")
_MULTI = re.compile(r"([0-9a-f]{16})((?:~[0-9a-f]{10}(?:0|[1-9][0-9]{0,17})?)*)")


class Positions:
    """A store ``epoch`` and a position (a single-channel cursor) per channel."""

    def __init__(self, epoch: str | None = None, seqs: Mapping[str, int] | None = None) -> None:
        self.epoch = epoch
        self.seqs = dict(seqs or {})

    def cursor_for(self, channel: str) -> str | None:
        """The single-channel cursor to poll ``channel`` from (None: its backlog)."""
        seq = self.seqs.get(channel)
        return None if self.epoch is None or seq is None else f"{self.epoch}-{seq}"

    def advance(self, channel: str, cursor: str) -> Positions:
        """These positions with ``channel`` at ``cursor`` (a single-channel cursor).

        A new epoch forgets the other channels' positions: they are from another store.
        """
        match = _SINGLE.fullmatch(cursor)
        if match is None:
            raise ValueError(f"not a channel cursor: {cursor[:80]!r}")
        epoch, seq = match.group(1), int(match.group(2))
        seqs = dict(self.seqs) if epoch == self.epoch else {}
        seqs[channel] = seq
        return Positions(epoch, seqs)


def is_channel_cursor(cursor: str) -> bool:
    """True for a single-channel cursor ``<epoch>-<seq>`` (as a message's ``id``)."""
    return _SINGLE.fullmatch(cursor) is not None


def channel_tag(channel: str) -> str:
    return hashlib.blake2s(channel.encode(), digest_size=5).hexdigest()


def encode(positions: Positions, channels: Iterable[str]) -> str | None:
    """The multi-channel cursor of ``positions`` over ``channels`` (None: nothing known)."""
    if positions.epoch is None:
        return None
    entries = sorted(
        (channel_tag(channel), positions.seqs[channel])
        for channel in channels if channel in positions.seqs
    )
    return positions.epoch + "".join(f"~{tag}{seq}" for tag, seq in entries)


def decode(cursor: str | None, channels: Iterable[str]) -> Positions:
    """Positions of ``channels`` in a multi-channel cursor, or in a single-channel one
    (a message's ``id``, valid for its channel only). ValueError if it is neither."""
    channels = list(channels)
    if not cursor:
        return Positions()
    single = _SINGLE.fullmatch(cursor)
    if single is not None:
        if len(channels) != 1:
            raise ValueError("a single-channel cursor (a message id) resumes one channel only")
        return Positions(single.group(1), {channels[0]: int(single.group(2))})
    match = _MULTI.fullmatch(cursor)
    if match is None:
        raise ValueError(f"cursor {cursor[:80]!r} is malformed: pass back a cursor you got")
    by_tag = {channel_tag(channel): channel for channel in channels}
    seqs: dict[str, int] = {}
    for part in match.group(2).split("~")[1:]:
        channel = by_tag.get(part[:10])
        if channel is not None and part[10:]:  # no seq: another epoch's, so the backlog
            seqs[channel] = int(part[10:])
    return Positions(match.group(1), seqs)
