"""Display names: a ticker names itself with ``?display=NAME`` on its reads.

The fleet of displays is kept by :mod:`tornado_lp.fleet` (this process) and
:mod:`tornado_lp.storage.fleet` (the store every process shares).
"""

from __future__ import annotations

import re

__all__ = ["valid_display"]

_NAME = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")


def valid_display(name: str) -> bool:
    """1-64 characters of ``[A-Za-z0-9_.:-]``."""
    return _NAME.fullmatch(name) is not None
