"""The systemd units of tornado_lp/systemd/, as ``python -m tornado_lp unit`` prints them.

``systemd-analyze verify`` checks both without a running systemd (it needs the
ExecStart programs to exist, which the printed units point at); the server
unit's command line and environment start a real server; the kiosk unit's
Chromium command line, plus headless flags, shows a live ticker of a real
server. Without systemd-analyze (Debian: ``systemd``), Chromium or Playwright
those tests skip; with ``CI=true`` they fail instead.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import urllib.request
import zipfile
from pathlib import Path
from typing import NoReturn

import pytest

from .serverproc import REPO, ServerProcess, run_cli

CHROMIUM = Path("/usr/bin/chromium")
HEADLESS = ["--headless", "--no-sandbox", "--disable-gpu"]
#: A guard against a hang, not a timing claim.
WAIT = 60.0
UNIT_FILES = {"tornado-lp.service", "tornado-lp-kiosk.service", "tornado_lp.env"}


def _missing(what: str) -> NoReturn:
    message = f"needs {what}"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(message + " (CI=true: not skipping)", pytrace=False)
    pytest.skip(message)


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        _missing("systemd-analyze: install the Debian package systemd (.ci/run does)")
    return path


def unit(*args: str) -> str:
    done = run_cli(["unit", *args])
    assert done.returncode == 0, done.stderr
    return done.stdout


def directives(text: str) -> dict[str, list[str]]:
    """``Section.Key`` -> every value given (continuation lines joined)."""
    found: dict[str, list[str]] = {}
    section = ""
    for line in re.sub(r"\\\n", " ", text).splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key}", []).append(value)
    return found


def env_file(text: str) -> dict[str, str]:
    """The assignments of an EnvironmentFile (comments and blank lines skipped)."""
    pairs = (line.split("=", 1) for line in text.splitlines()
             if line.strip() and not line.lstrip().startswith(("#", ";")))
    return {key.strip(): value.strip().strip('"') for key, value in pairs}


def exec_argv(text: str, environment: dict[str, str]) -> list[str]:
    """ExecStart as systemd runs it: words, with ${VAR} from the unit's environment."""
    (command,) = directives(text)["Service.ExecStart"]
    words = shlex.split(command)
    expanded = [re.sub(r"\$\{(\w+)\}", lambda m: environment[m.group(1)], w) for w in words]
    return [word.replace("%%", "%") for word in expanded]


def unit_environment(text: str) -> dict[str, str]:
    """The unit's own Environment= lines (``%%`` is a literal ``%``)."""
    pairs = (value.split("=", 1) for value in directives(text).get("Service.Environment", []))
    return {key: value.replace("%%", "%") for key, value in pairs}


def verify(tmp_path: Path, name: str, text: str, *, user: bool = False) -> str:
    """``systemd-analyze [--user] verify`` on ``text`` saved as ``name``; its complaints."""
    path = tmp_path / name
    path.write_text(text)
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    done = subprocess.run(
        [systemd_analyze(), *(["--user"] if user else []), "verify", "--man=no", str(path)],
        capture_output=True, text=True, timeout=120,
        # A user manager's paths come from XDG_RUNTIME_DIR; no running systemd is needed.
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_COLOR": "0"},
    )
    complaints = [line for line in (done.stdout + done.stderr).splitlines() if name in line]
    if done.returncode != 0 and not complaints:
        complaints = [done.stderr.strip() or f"exit status {done.returncode}"]
    return "\n".join(complaints)


# ------------------------------------------------------------------ verify


def test_server_unit_verifies(tmp_path: Path) -> None:
    text = unit("server")
    assert verify(tmp_path, "tornado-lp.service", text) == ""
    # The check can fail: a misspelt value and an unknown key are reported.
    broken = text.replace("ProtectSystem=strict", "ProtectSystem=strcit") + "Bogus=1\n"
    complaints = verify(tmp_path, "tornado-lp.service", broken)
    assert "protect system" in complaints.lower() and "Bogus" in complaints


def test_kiosk_unit_verifies_as_a_user_unit(tmp_path: Path) -> None:
    text = unit("kiosk", "--url", "http://10.0.0.5:8888/?channel=a,b&title=Lobby%201",
                "--chromium", sys.executable)  # any program that exists
    assert verify(tmp_path, "tornado-lp-kiosk.service", text, user=True) == ""


def test_server_unit_is_an_unprivileged_hardened_service(tmp_path: Path) -> None:
    text = unit("server")
    found = directives(text)
    for key, value in {
        "Service.DynamicUser": "yes", "Service.User": "tornado_lp",
        "Service.Restart": "on-failure", "Service.StateDirectory": "tornado_lp",
        "Service.EnvironmentFile": "/etc/tornado_lp/tornado_lp.env",
        "Service.ProtectSystem": "strict", "Service.ProtectHome": "yes",
        "Service.PrivateTmp": "yes", "Service.NoNewPrivileges": "yes",
        "Service.CapabilityBoundingSet": "", "Service.KillMode": "mixed",
        "Install.WantedBy": "multi-user.target",
    }.items():
        assert found.get(key) == [value], key
    (exec_start,) = found["Service.ExecStart"]
    assert Path(shlex.split(exec_start)[0]).is_file()  # this installation's tornado-lp
    path = tmp_path / "tornado-lp.service"
    path.write_text(text)
    # systemd's own judgement of the sandbox: exposure at most 2.0 ("OK").
    done = subprocess.run(
        [systemd_analyze(), "security", "--offline=true", "--threshold=20", "--man=no",
         str(path)], capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr


def test_kiosk_unit_restarts_chromium_whenever_it_dies() -> None:
    found = directives(unit("kiosk"))
    assert found["Service.Restart"] == ["always"]
    assert found["Unit.StartLimitIntervalSec"] == ["0"]  # never gives up
    assert found["Install.WantedBy"] == ["graphical-session.target"]
    assert found["Unit.PartOf"] == ["graphical-session.target"]
    argv = exec_argv(unit("kiosk"), unit_environment(unit("kiosk")))
    assert "--kiosk" in argv and argv[-1] == "http://127.0.0.1:8888/?channel=default"


def test_unit_command_exits_2_on_bad_usage() -> None:
    for args in (["unit"], ["unit", "nope"], ["unit", "kiosk", "--url", "javascript:x"],
                 ["unit", "server", "--url", "http://h/"]):
        done = run_cli(args)
        assert done.returncode == 2, (args, done)
        assert len(done.stderr.splitlines()) == 1 and "error" in done.stderr, done.stderr
    assert env_file(unit("env"))["TORNADO_LP_PORT"] == "8888"


# ------------------------------------------------------------ command lines


def test_server_unit_command_line_and_environment_serve(tmp_path: Path) -> None:
    """ExecStart with the unit's Environment= and the example EnvironmentFile starts a
    server that keeps its messages in the state directory (here a temporary one)."""
    text = unit("server")
    state = tmp_path / "state"
    state.mkdir()
    environment = {**unit_environment(text), **env_file(unit("env"))}  # the file wins
    environment = {key: value.replace("/var/lib/tornado_lp", str(state))
                   for key, value in environment.items()}
    assert environment["TORNADO_LP_ADDRESS"] == "0.0.0.0"
    environment.update(TORNADO_LP_ADDRESS="127.0.0.1", TORNADO_LP_PORT="0")  # for the test
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORNADO_LP_")}
    proc = subprocess.Popen(exec_argv(text, environment), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**env, **environment},
                            cwd=tmp_path)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "storage sqlite" in line and str(state) in line, line
        url = re.search(r"http://\S+/", line).group(0)  # type: ignore[union-attr]
        request = urllib.request.Request(url + "channels/lobby/messages", b"Doors open")
        with urllib.request.urlopen(request, timeout=WAIT) as answer:
            assert json.loads(answer.read())["body"] == "Doors open"
        assert (state / "ticker.db").is_file()
        proc.send_signal(signal.SIGTERM)  # what `systemctl stop` sends (KillMode=mixed)
        assert proc.wait(WAIT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=WAIT)


def test_kiosk_command_line_shows_a_live_ticker_in_headless_chromium(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        _missing("the Debian package chromium (/usr/bin/chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the Python package playwright (no 'playwright install' needed)")
    with ServerProcess() as server:
        request = urllib.request.Request(server.url + "channels/lobby/messages", b"Backlog")
        urllib.request.urlopen(request, timeout=WAIT).close()
        ticker = f"{server.url}?channel=lobby&title=Lobby%201"
        text = unit("kiosk", "--url", ticker, "--chromium", str(CHROMIUM))
        argv = exec_argv(text, unit_environment(text))
        assert argv[0] == str(CHROMIUM) and argv[-1] == ticker
        # The unit's arguments, but a fresh profile, headless, and a debugging port.
        argv = [arg for arg in argv if not arg.startswith("--user-data-dir=")]
        argv[1:1] = [*HEADLESS, f"--user-data-dir={tmp_path / 'profile'}",
                     "--remote-debugging-port=0"]
        chromium = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    text=True, start_new_session=True)
        reader = None
        try:
            endpoint, reader = devtools_endpoint(chromium)
            with sync_playwright() as playwright:
                browser = playwright.chromium.connect_over_cdp(endpoint)
                (page,) = browser.contexts[0].pages
                page.wait_for_function(
                    "() => document.getElementById('status').dataset.state === 'live'",
                    timeout=WAIT * 1000)
                assert page.title() == "Lobby 1"
                assert page.inner_text("#latest-body") == "Backlog"
                request = urllib.request.Request(server.url + "channels/lobby/messages",
                                                 b"Doors open")
                urllib.request.urlopen(request, timeout=WAIT).close()
                page.wait_for_function(
                    "() => document.getElementById('latest-body').textContent === 'Doors open'",
                    timeout=WAIT * 1000)
                browser.close()
        finally:
            os.killpg(chromium.pid, signal.SIGKILL)
            chromium.wait(WAIT)
            if reader is not None:
                reader.join(WAIT)  # it reads stderr to its end: every Chromium process is gone
            assert chromium.stderr is not None
            chromium.stderr.close()


def devtools_endpoint(chromium: subprocess.Popen[str]) -> tuple[str, threading.Thread]:
    """The DevTools URL Chromium prints on stderr when it listens, and the thread that
    goes on reading its stderr (so Chromium never blocks on a full pipe)."""
    found: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert chromium.stderr is not None
        for line in chromium.stderr:
            match = re.search(r"DevTools listening on ws://([^/\s]+)/", line)
            if match and not found:
                found.append(f"http://{match.group(1)}")
                ready.set()
        ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert ready.wait(WAIT) and found, "Chromium printed no DevTools address"
    return found[0], reader


# --------------------------------------------------------------- packaging


def test_units_ship_in_the_wheel(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path),
         str(REPO)], check=True, capture_output=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("tornado_lp-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"tornado_lp/systemd/{name}" for name in UNIT_FILES} <= names
    assert {p.name for p in (REPO / "tornado_lp" / "systemd").iterdir()} == UNIT_FILES
