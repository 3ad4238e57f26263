"""Find the ``static/`` and ``templates/`` folders at run time.

In a source checkout (or an editable install) they sit next to the package;
after ``pip install .`` setuptools put them under ``<prefix>/share/tornado_lp``
(``[options.data_files]`` in setup.cfg).
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

__all__ = ["resource_dir"]


def _candidates(name: str) -> list[Path]:
    package_parent = Path(__file__).resolve().parent.parent
    roots = [package_parent, Path(sys.prefix) / "share" / "tornado_lp"]
    data = sysconfig.get_path("data")
    if data:
        roots.append(Path(data) / "share" / "tornado_lp")
    return [root / name for root in roots]


def resource_dir(name: str) -> str:
    """Absolute path of ``static`` or ``templates``.

    Raises FileNotFoundError naming the places tried.
    """
    candidates = _candidates(name)
    for path in candidates:
        if path.is_dir():
            return str(path)
    tried = ", ".join(str(p) for p in candidates)
    raise FileNotFoundError(f"cannot find the {name!r} folder (tried {tried})")
