"""``python -m tornado_lp unit server|kiosk|env``: print a systemd unit, ready to install.

The units ship in the package (``tornado_lp/systemd/``). ``server`` is the
system unit with ``ExecStart`` pointing at the installation that runs this
command; ``kiosk`` the user unit that keeps Chromium on a ticker, with
``--url`` as its page and the Chromium found on this machine; ``env`` the
example environment file for the server unit.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from ._cli_common import Parser, fail

__all__ = ["UNITS", "unit_main", "unit_text"]

PROG = "tornado-lp unit"

#: What each name prints: a file of tornado_lp/systemd/.
UNITS = {
    "server": "tornado-lp.service",
    "kiosk": "tornado-lp-kiosk.service",
    "env": "tornado_lp.env",
}
SERVER_EXEC = "/opt/tornado_lp/bin/tornado-lp"
CHROMIUM_EXEC = "/usr/bin/chromium"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome-stable", "google-chrome")
_URL = re.compile(r"https?://[^\s\"'\\]+")


def unit_text(name: str) -> str:
    """The shipped file for ``name`` (a key of :data:`UNITS`), as it is."""
    return (resources.files("tornado_lp") / "systemd" / UNITS[name]).read_text(encoding="utf-8")


def _quoted(path: str) -> str:
    return f'"{path}"' if any(ch.isspace() for ch in path) else path


def server_command() -> str:
    """This installation's ``tornado-lp``, or ``python -m tornado_lp`` if it has no script."""
    script = Path(sys.executable).parent / "tornado-lp"
    if script.is_file():
        return _quoted(str(script))
    return f"{_quoted(sys.executable)} -m tornado_lp"


def find_chromium() -> str:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return CHROMIUM_EXEC


def _replace_exec(text: str, old: str, new: str) -> str:
    return text.replace(f"ExecStart={old}", f"ExecStart={new}", 1)


def unit_main(argv: Sequence[str]) -> int:
    """Print the unit; exit 2 on bad usage."""
    parser = Parser(prog=PROG, description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("name", choices=sorted(UNITS), help="which file to print")
    parser.add_argument("--url", help="kiosk: the ticker page to show "
                        "(default http://127.0.0.1:8888/?channel=default)")
    parser.add_argument("--chromium", help="kiosk: the browser to run "
                        "(default: the chromium on PATH, else /usr/bin/chromium)")
    options = parser.parse_args(argv)
    if options.name != "kiosk" and (options.url is not None or options.chromium is not None):
        parser.error("--url and --chromium are for the kiosk unit")
    text = unit_text(options.name)
    if options.name == "server":
        text = _replace_exec(text, SERVER_EXEC, server_command())
    elif options.name == "kiosk":
        text = _replace_exec(text, CHROMIUM_EXEC, _quoted(options.chromium or find_chromium()))
        if options.url is not None:
            if not _URL.fullmatch(options.url):
                return fail(PROG, f"--url must be an http:// or https:// URL, got {options.url!r}",
                            2)
            # In a unit file % starts a specifier: a literal one is %%.
            url = options.url.replace("%", "%%")
            text = re.sub(r"(?m)^Environment=TORNADO_LP_TICKER_URL=.*$",
                          lambda _: f"Environment=TORNADO_LP_TICKER_URL={url}", text, count=1)
    sys.stdout.write(text)
    return 0
