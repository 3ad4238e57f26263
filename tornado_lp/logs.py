"""Logging: one access line per request, as text or JSON, with secrets redacted.

Nothing that carries a token is logged: the ``token`` query parameter is
replaced by ``REDACTED``, and headers (``Authorization``) are never logged.

The access line is cheap, because a fleet makes one request per delivery:
:func:`configure_logging` (the server's) installs a :class:`BatchingHandler`
that writes what the event loop logged in one turn with one ``write``, and
successful access lines are formatted directly into it — the same text the
formatter would produce, without a :class:`~logging.LogRecord` (frame
inspection, thread and process lookups) per request. Whenever someone else
has configured ``tornado.access`` or the root logger (an embedder, a test),
lines go through :mod:`logging` as usual.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO
from urllib.parse import parse_qsl, urlencode

from tornado.web import RequestHandler

__all__ = [
    "BatchingHandler", "JSONFormatter", "access_log_function", "configure_logging",
    "flush_logs", "log_access", "redacted_uri",
]

access_log = logging.getLogger("tornado.access")
SECRET_PARAMETERS = frozenset({"token"})
_SECRET_MARKERS = tuple(f"{name}=" for name in SECRET_PARAMETERS)


def redacted_uri(path: str, query: str) -> str:
    """``path?query`` with the values of secret parameters replaced."""
    if not query:
        return path
    for marker in _SECRET_MARKERS:
        if marker in query:
            break
    else:
        return f"{path}?{query}"
    pairs = [
        (key, "REDACTED" if key in SECRET_PARAMETERS else value)
        for key, value in parse_qsl(query, keep_blank_values=True)
    ]
    return f"{path}?{urlencode(pairs, safe='')}"


def log_access(
    json_lines: bool, status: int, method: str, path: str, query: str,
    remote_ip: str | None, seconds: float,
) -> None:
    """One access line: INFO below 400, WARNING for 4xx, ERROR for 5xx."""
    if status < 400:
        level = logging.INFO
    elif status < 500:
        level = logging.WARNING
    else:
        level = logging.ERROR
    if not access_log.isEnabledFor(level):
        return
    uri = redacted_uri(path, query)
    duration_ms = 1000.0 * seconds
    fast = _fast_lines
    if (fast is not None and level == logging.INFO and not access_log.handlers
            and fast.owns_root()):
        fast.access(status, method, uri, remote_ip, duration_ms)
        return
    if json_lines:
        access_log.log(level, "request", extra={"fields": {
            "status": status, "method": method, "uri": uri,
            "remote_ip": remote_ip, "duration_ms": round(duration_ms, 2),
        }})
    else:
        access_log.log(level, "%d %s %s (%s) %.2fms", status, method, uri, remote_ip,
                       duration_ms)


def access_log_function(json_lines: bool) -> Callable[[RequestHandler], None]:
    """Tornado ``log_function``: status, method, redacted URI, client, duration."""

    def log_request(handler: RequestHandler) -> None:
        request = handler.request
        log_access(json_lines, handler.get_status(), request.method or "", request.path,
                   request.query, request.remote_ip, request.request_time())

    return log_request


class JSONFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, plus any ``extra={"fields": …}``."""

    def __init__(self, with_pid: bool = False) -> None:
        super().__init__()
        self.with_pid = with_pid

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.with_pid:
            entry["pid"] = record.process
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class BatchingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes at most once per turn of the event loop.

    Lines logged on a thread with a running asyncio loop are kept until the
    end of that turn, then written together; lines from other threads, or
    with no loop running, are written at once (after what was kept), so the
    order of the lines is the order they were logged in. :meth:`flush` writes
    whatever is kept (logging calls it at exit; so does the server's shutdown).
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self._kept: list[str] = []
        self._scheduled = False
        self._kept_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.write_line(line)

    def write_line(self, line: str) -> None:
        with self._kept_lock:
            self._kept.append(line)
            if self._scheduled:
                return
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                self._scheduled = True
                loop.call_soon(self.flush)
                return
        self.flush()

    def flush(self) -> None:
        with self._kept_lock:
            kept, self._kept, self._scheduled = self._kept, [], False
        if kept:
            try:
                self.stream.write("\n".join(kept) + "\n")
            except Exception:  # a closed or broken stream must not break the server
                pass
        super().flush()


class _FastLines:
    """Successful access lines formatted straight into the server's handler.

    The text is exactly what the handler's formatter makes of an access
    record: ``text`` as ``<asctime> INFO tornado.access[<pid>]: <message>``,
    ``json`` as :class:`JSONFormatter` would write it.
    """

    def __init__(self, handler: BatchingHandler, json_lines: bool, with_pid: bool) -> None:
        self.handler = handler
        self.json_lines = json_lines
        self.pid = os.getpid() if with_pid else None
        self._second = -1
        self._stamp = ""
        self._pid_text = ""

    def owns_root(self) -> bool:
        """True while the root logger still has only our handler (nobody reconfigured it)."""
        handlers = logging.root.handlers
        return len(handlers) == 1 and handlers[0] is self.handler and not self.handler.filters

    def access(
        self, status: int, method: str, uri: str, remote_ip: str | None, duration_ms: float
    ) -> None:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            pid = os.getpid() if self.pid is not None else None
            if self.json_lines:
                self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
                self._pid_text = f', "pid": {pid}' if pid is not None else ""
            else:
                self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
                self._pid_text = f"[{pid}]" if pid is not None else ""
        msecs = int((now - second) * 1000)
        if self.json_lines:
            line = (
                f'{{"ts": {round(now, 3)}, "time": "{self._stamp}.{msecs:03d}Z", '
                f'"level": "info", "logger": "tornado.access", "message": "request"'
                f'{self._pid_text}, "status": {status}, '
                f'"method": {json.dumps(method, ensure_ascii=False)}, '
                f'"uri": {json.dumps(uri, ensure_ascii=False)}, '
                f'"remote_ip": {json.dumps(remote_ip)}, '
                f'"duration_ms": {round(duration_ms, 2)}}}'
            )
        else:
            line = (f"{self._stamp},{msecs:03d} INFO tornado.access{self._pid_text}: "
                    f"{status} {method} {uri} ({remote_ip}) {duration_ms:.2f}ms")
        self.handler.write_line(line)


_fast_lines: _FastLines | None = None


def flush_logs() -> None:
    """Write every kept log line now (before the loop stops, or a fork)."""
    for handler in logging.root.handlers:
        handler.flush()


def configure_logging(level: str, fmt: str, with_pid: bool = False) -> None:
    """Root logging for the server process: ``fmt`` is ``text`` or ``json``.

    ``with_pid`` (several worker processes) adds the process id to every line.
    """
    global _fast_lines
    handler = BatchingHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JSONFormatter(with_pid=with_pid))
    else:
        pid = "[%(process)d]" if with_pid else ""
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s %(name)s{pid}: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    _fast_lines = _FastLines(handler, fmt == "json", with_pid)
