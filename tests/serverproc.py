"""Start real ``python -m tornado_lp`` processes on loopback for tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_URL = re.compile(r"http://\S+/")


class ServerProcess:
    """A server subprocess; ``url`` ends with ``/``. Use as a context manager."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.args = ["--port", "0", *args]
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.stderr_path: Path | None = None

    def start(self) -> ServerProcess:
        """Start the process and wait for the line with its URL."""
        self.stderr_file = tempfile.NamedTemporaryFile(
            prefix="tornado_lp_err_", suffix=".log", delete=False
        )
        self.stderr_path = Path(self.stderr_file.name)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tornado_lp", *self.args],
            stdout=subprocess.PIPE,
            stderr=self.stderr_file,
            text=True,
            env=self.env,
            cwd=REPO,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the server prints its URL first (or exits)
        match = _URL.search(line)
        if match is None:
            self.stop()
            raise RuntimeError(f"server did not start: {line!r} {self.stderr()}")
        self.url = match.group(0)
        return self

    def stderr(self) -> str:
        """What the process wrote to stderr so far."""
        return self.stderr_path.read_text() if self.stderr_path else ""

    def terminate(self, timeout: float = 5.0) -> int:
        """SIGTERM and wait; returns the exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        if not self.stderr_file.closed:
            self.stderr_file.close()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_cli(
    args: Sequence[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m tornado_lp ARGS`` to completion (for options that exit at once)."""
    return subprocess.run(
        [sys.executable, "-m", "tornado_lp", *args],
        capture_output=True,
        text=True,
        timeout=20,
        env={**os.environ, **(env or {})},
        cwd=REPO,
    )
