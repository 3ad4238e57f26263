"""tornado_lp: HTTP long-polling message server for kiosk ticker screens.

``make_app(storage=...)`` builds the Tornado application; ``python -m
tornado_lp`` runs it. See docs/PROTOCOL.md for the HTTP protocol.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .app import make_app
from .hub import Hub, PollResult
from .storage import Limits, MemoryStorage, Message, Storage, storage_from_url

__all__ = [
    "Hub",
    "Limits",
    "MemoryStorage",
    "Message",
    "PollResult",
    "Storage",
    "__version__",
    "make_app",
    "storage_from_url",
]
