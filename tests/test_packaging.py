"""A plain (non-editable) install ships and finds static/, templates/ and openapi.yaml."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

from .serverproc import REPO


def test_wheel_ships_static_and_templates_and_finds_them(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(REPO)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = dist.glob("tornado_lp-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped_static = {Path(n).name for n in names if "/share/tornado_lp/static/" in n}
    shipped_templates = {Path(n).name for n in names if "/share/tornado_lp/templates/" in n}
    assert {p.name for p in (REPO / "static").iterdir() if p.is_file()} <= shipped_static
    assert {p.name for p in (REPO / "templates").iterdir()
            if p.is_file() and not p.name.startswith(".")} <= shipped_templates
    assert not any(n.startswith(("tests/", "bench/")) for n in names)
    assert "tornado_lp/openapi.yaml" in names  # package data, served at /openapi.yaml

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    # Offline: let the new venv import tornado from the test environment.
    tornado_home = Path(__import__("tornado").__file__).parent.parent
    Path(purelib, "test-deps.pth").write_text(f"{tornado_home}\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
         str(wheel)],
        check=True, capture_output=True, timeout=300,
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.Popen(
        [str(python), "-m", "tornado_lp", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "http://" in line, proc.stderr.read() if proc.stderr else line
        url = line.split()[3]
        location = subprocess.run(
            [str(python), "-c", "import tornado_lp, tornado_lp.resources as r;"
             "print(tornado_lp.__file__); print(r.resource_dir('static'))"],
            check=True, capture_output=True, text=True, cwd=tmp_path, env=env,
        ).stdout.split()
        assert location[0].startswith(str(venv)) and location[1].startswith(str(venv))
        for name in shipped_static:
            with urllib.request.urlopen(f"{url}static/{name}", timeout=10) as response:
                assert response.status == 200
        with urllib.request.urlopen(f"{url}openapi.yaml", timeout=10) as response:
            assert response.read() == (REPO / "tornado_lp" / "openapi.yaml").read_bytes()
    finally:
        proc.kill()
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
