"""Logging: one access line per request, as text or JSON, with secrets redacted.

Nothing that carries a token is logged: the ``token`` query parameter is
replaced by ``REDACTED``, and headers (``Authorization``) are never logged.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode

from tornado.web import RequestHandler

__all__ = [
    "JSONFormatter", "access_log_function", "configure_logging", "log_access", "redacted_uri",
]

access_log = logging.getLogger("tornado.access")
SECRET_PARAMETERS = frozenset({"token"})


def redacted_uri(path: str, query: str) -> str:
    """``path?query`` with the values of secret parameters replaced."""
    if not query:
        return path
    if not any(f"{name}=" in query for name in SECRET_PARAMETERS):
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


def configure_logging(level: str, fmt: str, with_pid: bool = False) -> None:
    """Root logging for the server process: ``fmt`` is ``text`` or ``json``.

    ``with_pid`` (several worker processes) adds the process id to every line.
    """
    handler = logging.StreamHandler()
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
