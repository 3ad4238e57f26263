"""Random message text for the generator and the seed demo (no HTTP layer here)."""

from __future__ import annotations

import secrets
import string

__all__ = ["random_text"]

_ALPHABET = string.ascii_uppercase + string.digits


def random_text(size: int = 6) -> str:
    """A random ``[A-Z0-9]{size}`` string, as the seed's ``id_generator``."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(size))
