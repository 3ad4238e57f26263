"""SQLite storage: durable channels that survive restarts and ``kill -9``.

``sqlite:///relative.db``, ``sqlite:////absolute/path.db`` (the SQLAlchemy
convention) or ``sqlite://:memory:``; query options ``synchronous=full|normal``
(default ``full``) and ``busy_timeout=<seconds>`` (default 1).

Thread model: every SQL statement runs on one dedicated worker thread that
owns the only connection (stdlib ``sqlite3``; see docs/STORAGE.md for why
not ``aiosqlite``). The event loop puts jobs on a queue and awaits a future;
the thread takes *everything* queued, commits all appends in it as one
transaction (group commit: 50 concurrent publishers pay one commit, not 50),
then resolves the futures with one wake-up of the loop. An append's future
resolves only after its transaction committed, so a 201 means durable; a
retraction is one transaction of its own. Between jobs the worker sweeps:
rows older than ``max_age``, and rows whose expiry passed (at most once a
second, a bounded batch each time).
``Message`` objects (and their JSON) are built on the loop, keeping the
worker's hold on the GIL short.

Durability, with the WAL journal: ``synchronous=full`` (default) syncs the WAL
on every commit, so an acknowledged message survives a power cut;
``synchronous=normal`` syncs only at checkpoints, so it survives a process
crash or ``kill -9`` but a power cut may lose the newest commits; the next
start then gives the store a new epoch (see :mod:`._sqlite_boot`).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from ._sqlite_db import EXPIRY_PERIOD, AppendItem, Database, Row
from .base import (
    Limits,
    Message,
    Slice,
    Storage,
    StorageConfigError,
    StorageUnavailable,
    check_fields,
)

__all__ = ["SqliteStorage"]

log = logging.getLogger("tornado_lp.storage.sqlite")

T = TypeVar("T")

SYNCHRONOUS = ("full", "normal")

# Job kinds on the worker's queue.
_APPEND, _CALL, _CLOSE = "append", "call", "close"

#: One append waiting for the worker: its fields, and the future of its (seq, ts).
_Append = tuple[AppendItem, "asyncio.Future[tuple[int, float]]"]
#: What the worker hands back: the future, its result, or the error to raise.
_Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]


class _Job:
    __slots__ = ("args", "future", "kind")

    def __init__(self, kind: str, args: Any, future: asyncio.Future[Any] | None) -> None:
        self.kind = kind
        self.args = args
        self.future = future


class SqliteStorage(Storage):
    """Messages in a SQLite file (WAL), written by one worker thread with group commit."""

    def __init__(
        self,
        path: str,
        limits: Limits | None = None,
        *,
        synchronous: str = "full",
        busy_timeout: float = 1.0,
    ) -> None:
        super().__init__(limits)
        if synchronous.lower() not in SYNCHRONOUS:
            raise StorageConfigError(
                f"synchronous must be one of {', '.join(SYNCHRONOUS)}, got {synchronous!r}"
            )
        if not busy_timeout >= 0:
            raise StorageConfigError(f"busy_timeout must be >= 0 seconds, got {busy_timeout!r}")
        self.path = path
        self.synchronous = synchronous.lower()
        self.busy_timeout = busy_timeout
        where = "sqlite://:memory:" if path == ":memory:" else f"sqlite:///{path}"
        self.description = f"{where} (synchronous={self.synchronous})"
        self.epoch = ""
        self._db = Database(path, self.limits, self.synchronous.upper(), busy_timeout)
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._opening: asyncio.Future[str] | None = None
        self._appends: list[_Append] = []
        self._ready = False
        self._closed = False
        self._closing: asyncio.Future[None] | None = None

    @classmethod
    def from_url(cls, url: str, limits: Limits | None = None) -> SqliteStorage:
        """``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``sqlite://:memory:``."""
        parts = urlsplit(url)
        if parts.netloc == ":memory:" and parts.path in ("", "/"):
            path = ":memory:"
        elif parts.netloc:
            raise StorageConfigError(
                f"bad SQLite URL {url!r}: use sqlite:///relative.db or sqlite:////absolute.db"
            )
        else:
            path = unquote(parts.path[1:])
            if not path or path.endswith("/"):
                raise StorageConfigError(f"bad SQLite URL {url!r}: it names no file")
        options: dict[str, Any] = {}
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key == "synchronous":
                options["synchronous"] = value
            elif key == "busy_timeout":
                try:
                    options["busy_timeout"] = float(value)
                except ValueError:
                    raise StorageConfigError(
                        f"bad SQLite URL {url!r}: busy_timeout must be seconds, got {value!r}"
                    ) from None
            else:
                raise StorageConfigError(
                    f"bad SQLite URL {url!r}: unknown option {key!r} "
                    f"(known: synchronous, busy_timeout)"
                )
        return cls(path, limits, **options)

    # -- lifecycle -------------------------------------------------------

    async def open(self) -> None:
        if self._closed:
            raise StorageUnavailable("the SQLite store is closed")
        if self._opening is None:
            self._opening = asyncio.get_running_loop().create_future()
            self._thread = threading.Thread(
                target=self._work, args=(self._opening,), name="tornado_lp-sqlite", daemon=True
            )
            self._thread.start()
        try:
            self.epoch = await asyncio.shield(self._opening)
        except StorageConfigError:
            self._opening = None  # a later open() may try again
            raise
        self._ready = True

    async def close(self) -> None:
        """Commit what is queued, checkpoint the WAL, close the file.

        Idempotent; a second call (also after the first was cancelled) waits
        for the same close to finish.
        """
        if self._closing is None:
            self._closed = True
            self._closing = asyncio.get_running_loop().create_future()
            if not self._ready:  # never opened (or opening failed): no worker is running
                self._closing.set_result(None)
            else:
                self._flush_appends()  # appends not handed over yet are committed first
                self._queue.put(_Job(_CLOSE, None, self._closing))
        # Set after the worker closed the connection; the thread then ends.
        await asyncio.shield(self._closing)

    # -- the contract ----------------------------------------------------

    async def append(
        self,
        channel: str,
        body: str,
        *,
        expires: float | None = None,
        priority: str = "normal",
        key: str | None = None,
    ) -> Message:
        plain = expires is None and priority == "normal" and key is None
        if not plain:
            expires = check_fields(expires, priority, key)
        self._check_open()
        future: asyncio.Future[tuple[int, float]] = asyncio.get_running_loop().create_future()
        self._appends.append(((channel, body, expires, priority == "alert", key), future))
        if len(self._appends) == 1:
            # Appends made in this turn of the loop go to the worker as one job.
            asyncio.get_running_loop().call_soon(self._flush_appends)
        seq, ts = await future
        if plain:
            return Message(self.epoch, channel, seq, body, ts)
        return Message(
            self.epoch, channel, seq, body, ts, expires=expires, priority=priority, key=key
        )

    async def retract(self, channel: str, seq: int) -> Message:
        tomb_seq, ts = await self._call(self._db.retract, channel, seq)
        return Message(self.epoch, channel, tomb_seq, None, ts, retract=seq)

    def _flush_appends(self) -> None:
        batch, self._appends = self._appends, []
        if batch:
            self._queue.put(_Job(_APPEND, batch, None))

    async def read(self, channel: str, after: int | None, limit: int) -> Slice:
        rows, last_seq, first_seq, end = await self._call(self._db.read, channel, after, limit)
        return Slice(self._messages(channel, rows), last_seq, first_seq, end=end)

    async def channel_count(self) -> int:
        return await self._call(self._db.channel_count)

    async def ping(self) -> None:
        await self._call(self._db.ping)

    def _messages(self, channel: str, rows: list[Any]) -> list[Message]:
        epoch = self.epoch
        if rows and len(rows[0]) == 3:  # a channel that only ever held plain messages
            return [Message(epoch, channel, seq, body, ts) for seq, ts, body in rows]
        typed: list[Row] = rows
        return [
            Message(epoch, channel, seq, body, ts)
            if expires is None and not alert and key is None and retract is None
            else Message(
                epoch, channel, seq, None if retract is not None else body, ts,
                expires=expires, priority="alert" if alert else "normal", key=key,
                retract=retract,
            )
            for seq, ts, body, expires, alert, key, retract in typed
        ]

    # -- the loop side of the worker -------------------------------------

    async def _call(self, func: Callable[..., T], *args: Any) -> T:
        """Run ``func(*args)`` on the worker thread, after everything queued before it."""
        result: T = await self._submit(_CALL, (func, args))
        return result

    async def _on_connection(self, func: Callable[[Any], T]) -> T:
        """Run ``func(connection)`` on the worker thread (tests: pragmas, trace callbacks)."""
        return await self._call(lambda: func(self._db.conn))

    def _check_open(self) -> None:
        if self._closed:
            raise StorageUnavailable("the SQLite store is closed")
        if not self._ready:
            raise StorageUnavailable("the SQLite store is not open")

    def _submit(self, kind: str, args: Any) -> asyncio.Future[Any]:
        self._check_open()
        future = asyncio.get_running_loop().create_future()
        self._queue.put(_Job(kind, args, future))
        return future

    @staticmethod
    def _resolve(outcomes: list[_Outcome]) -> None:
        for future, result, error in outcomes:
            if future.done():  # the awaiting request went away
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

    # -- the worker thread -----------------------------------------------

    def _work(self, opening: asyncio.Future[str]) -> None:
        """The worker: open, then serve the queue until a close job."""
        db = self._db
        try:
            epoch = db.open()
        except BaseException as error:  # handed to the awaiting open()
            _deliver([(opening, None, error)])
            return
        _deliver([(opening, epoch, None)])
        max_age = self.limits.max_age
        sweep_every = None if max_age is None else min(max(max_age / 4, 0.05), 60.0)
        next_sweep = time.monotonic()
        next_expiry_sweep = 0.0  # monotonic; expired rows are deleted at most once a period
        running = True
        while running:
            try:
                first = self._queue.get(timeout=self._idle_timeout(sweep_every, next_expiry_sweep))
            except queue.Empty:
                first = None
            jobs = [] if first is None else [first]
            while True:
                try:
                    jobs.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            appends = [item for job in jobs if job.kind is _APPEND for item in job.args]
            if appends:
                self._append_all(appends)
            outcomes: list[_Outcome] = []
            for job in jobs:
                if job.kind is _CALL:
                    func, args = job.args
                    try:
                        outcomes.append((job.future, func(*args), None))  # type: ignore[arg-type]
                    except Exception as error:  # handed to the caller
                        outcomes.append((job.future, None, error))  # type: ignore[arg-type]
                elif job.kind is _CLOSE:
                    running = False
            if sweep_every is not None and time.monotonic() >= next_sweep:
                db.expire()
                next_sweep = time.monotonic() + sweep_every
            due = db.next_expiry
            if due is not None and due <= time.time() and time.monotonic() >= next_expiry_sweep:
                db.delete_expired()  # a bounded batch; what is left waits for the next period
                next_expiry_sweep = time.monotonic() + EXPIRY_PERIOD
            if not running:
                db.close()
                outcomes.extend((job.future, None, None) for job in jobs
                                if job.kind is _CLOSE and job.future is not None)
            if outcomes:
                _deliver(outcomes)

    def _idle_timeout(self, sweep_every: float | None, next_expiry_sweep: float) -> float | None:
        """How long the worker may wait for a job before a sweep is due (None: forever)."""
        timeouts = [] if sweep_every is None else [sweep_every]
        due = self._db.next_expiry
        if due is not None:
            wall = due - time.time()
            timeouts.append(max(wall, next_expiry_sweep - time.monotonic(), 0.0))
        return min(timeouts) if timeouts else None

    def _append_all(self, appends: list[_Append]) -> None:
        """One transaction for every queued append, then one wake-up of the loop."""
        try:
            results = self._db.append_many([item for item, _ in appends])
        except Exception as error:  # a bug must not kill the worker and hang every caller
            log.exception("SQLite append failed")
            results = [StorageUnavailable(f"SQLite append failed: {error}")] * len(appends)
        outcomes: list[_Outcome] = []
        for (_, future), result in zip(appends, results, strict=True):
            if isinstance(result, BaseException):
                outcomes.append((future, None, result))
            else:
                outcomes.append((future, result, None))
        _deliver(outcomes)


def _deliver(outcomes: list[_Outcome]) -> None:
    """Hand results to their event loop(s): one thread-safe wake-up per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].get_loop(), []).append(outcome)
    for loop, mine in by_loop.items():
        try:
            loop.call_soon_threadsafe(SqliteStorage._resolve, mine)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass
