"""One channel using every issue-14 feature, written before a restart and checked after it.

The SQLite and Redis restart tests share it: ``write(storage)`` stores keyed,
alert and expiring messages and a retraction; ``check(storage, written)``
asserts, on a store reopened from the same data, that every field, the
tombstone, the retracted mark and the expiries came back exactly.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import pytest

from tornado_lp.storage import Message, NotRetained, Storage

CHANNEL = "life"
HOUR = 3600.0


@dataclass
class Written:
    epoch: str
    messages: list[Message]  # what a cursor reader at 0 saw before the restart
    soon: Message  # expires shortly after the restart


async def write(storage: Storage) -> Written:
    alert = await storage.append(CHANNEL, "Leave by the east exit", priority="alert")  # 1
    await storage.append(CHANNEL, "Gate 2: delayed", key="gate2")  # 2
    await storage.append(CHANNEL, "Gate 2: boarding", key="gate2", expires=time.time() + HOUR)
    typo = await storage.append(CHANNEL, "Lunch is srved")  # 4
    await storage.append(CHANNEL, "Gone already", expires=time.time() - 1)  # 5
    await storage.retract(CHANNEL, typo.seq)  # 6
    soon = await storage.append(CHANNEL, "Until shortly", expires=time.time() + 1.0)  # 7
    chunk = await storage.read(CHANNEL, 0, 100)
    assert [m.seq for m in chunk.messages] == [1, 2, 3, 6, 7]
    assert alert.priority == "alert"
    return Written(storage.epoch, chunk.messages, soon)


async def check(storage: Storage, written: Written) -> None:
    assert storage.epoch == written.epoch
    chunk = await storage.read(CHANNEL, 0, 100)
    now = time.time()
    assert chunk.messages == [m for m in written.messages if not m.expired(now)]
    assert [m.encoded for m in chunk.messages] == [
        m.encoded for m in written.messages if not m.expired(now)
    ]
    # First paint: the alert, only the newest of key gate2, no tombstone, no retracted.
    first = await storage.read(CHANNEL, None, 100)
    assert [m.seq for m in first.messages][:2] == [1, 3]
    with pytest.raises(NotRetained) as refused:
        await storage.retract(CHANNEL, 4)
    assert refused.value.reason == "retracted"
    with pytest.raises(NotRetained) as refused:
        await storage.retract(CHANNEL, 6)
    assert refused.value.reason == "tombstone"
    with pytest.raises(NotRetained) as refused:
        await storage.retract(CHANNEL, 5)
    assert refused.value.reason == "expired"
    # The short expiry passes after the restart, judged by the clock, not by the restart.
    assert written.soon.expires is not None
    await asyncio.sleep(max(0.0, written.soon.expires - time.time()) + 0.02)
    chunk = await storage.read(CHANNEL, 0, 100)
    assert [m.seq for m in chunk.messages] == [1, 2, 3, 6]
    assert [m.seq for m in (await storage.read(CHANNEL, None, 100)).messages] == [1, 3]
    assert (chunk.first_seq, chunk.last_seq, chunk.end) == (1, 7, 7)
    # And the channel goes on where it was.
    tombstone = await storage.retract(CHANNEL, 3)
    assert (tombstone.seq, tombstone.retract) == (8, f"{storage.epoch}-3")
    assert [m.seq for m in (await storage.read(CHANNEL, None, 100)).messages] == [1]
