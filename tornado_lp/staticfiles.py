"""Static files whose errors are JSON, like every other error of the server.

Tornado's :class:`~tornado.web.StaticFileHandler` answers a missing file (and
``/favicon.ico``, ``/robots.txt`` when there is none) with an HTML error page;
the protocol promises ``{"error": ...}`` for every error.
"""

from __future__ import annotations

from typing import Any

import tornado.web
from tornado.escape import json_encode

__all__ = ["StaticFiles"]

_MESSAGES = {
    403: "not a file: {path}",
    404: "no such file: {path}",
}


class StaticFiles(tornado.web.StaticFileHandler):
    """``/static/…``, ``/favicon.ico``, ``/robots.txt`` (Application ``static_handler_class``)."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        path = self.request.path[:200]
        if status_code == 405:
            self.set_header("Allow", "GET, HEAD")
            message = f"method {self.request.method} is not allowed here"
        else:
            message = _MESSAGES.get(status_code, self._reason).format(path=path)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(json_encode({"error": message}))
