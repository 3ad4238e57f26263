"""docs/DEPLOY.md's nginx example, for real: nginx in front of two servers on one Redis.

The ``nginx`` block is taken from the document itself, so the tested config
and the documented one cannot drift apart. Only the addresses are replaced by
loopback ports. Without nginx (Debian: ``nginx-light``) the test skips; with
``CI=true`` it fails instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .redis_server import free_port, session_server
from .serverproc import REPO, ServerProcess
from .test_redis_processes import call, publish, start_cursor

DEPLOY = REPO / "docs" / "DEPLOY.md"


def nginx_binary() -> str:
    path = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None
    )
    if path is not None:
        return path
    message = "nginx is not installed: install the Debian package nginx-light (.ci/run does)"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(message + " (CI=true: a missing nginx fails the run)", pytrace=False)
    pytest.skip(message)


def documented_config() -> str:
    blocks = re.findall(r"```nginx\n(.*?)```", DEPLOY.read_text(), re.S)
    assert len(blocks) == 1, "docs/DEPLOY.md should hold exactly one nginx block"
    return blocks[0]


def test_documented_config_has_what_long_polling_needs() -> None:
    config = documented_config()
    read_timeout = re.search(r"proxy_read_timeout (\d+)s;", config)
    assert read_timeout and int(read_timeout.group(1)) > 60, "must outlast --poll-timeout-max"
    assert "proxy_buffering off;" in config
    assert "proxy_http_version 1.1;" in config


@pytest.fixture
def nginx_front(tmp_path: Path) -> Iterator[tuple[str, list[ServerProcess]]]:
    """nginx (the documented config) on a loopback port, before two servers on one Redis."""
    binary = nginx_binary()
    redis = session_server()
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    nodes = [
        ServerProcess("--storage", redis.url, "--redis-prefix", prefix, "--xheaders")
        for _ in range(2)
    ]
    for node in nodes:
        node.start()
    port = free_port()
    site = documented_config()
    upstreams = "".join(f"    server {node.url[len('http://'):-1]};\n" for node in nodes)
    site, count = re.subn(r"(?m)^    server [\d.]+:\d+;\n", "", site)
    assert count == 2
    site = site.replace("keepalive 32;", "keepalive 32;\n" + upstreams, 1)
    site, count = re.subn(r"listen 80;", f"listen 127.0.0.1:{port};", site)
    assert count == 1
    (tmp_path / "site.conf").write_text(site)
    temp = {name: tmp_path / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for folder in temp.values():
        folder.mkdir()
    (tmp_path / "nginx.conf").write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"daemon off;\nworker_processes 1;\npid {tmp_path}/nginx.pid;\n"
        f"error_log {tmp_path}/error.log;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        f"    access_log {tmp_path}/access.log;\n"
        + "".join(f"    {name}_temp_path {path};\n" if name != "body" else
                  f"    client_body_temp_path {path};\n" for name, path in temp.items())
        + f"    include {tmp_path}/site.conf;\n}}\n"
    )
    proc = subprocess.Popen(
        [binary, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"),
         "-e", str(tmp_path / "error.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if call(url + "healthz", timeout=5)[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                error_log = (tmp_path / "error.log")
                raise RuntimeError(
                    f"nginx did not start: {error_log.read_text() if error_log.exists() else ''}"
                )
            time.sleep(0.05)
        yield url, nodes
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stderr is not None:
            proc.stderr.close()
        for node in nodes:
            node.stop()


def test_nginx_passes_held_polls_publishes_and_timeouts(
    nginx_front: tuple[str, list[ServerProcess]],
) -> None:
    url, nodes = nginx_front
    cursor = start_cursor(url, "lobby")
    answers: list[tuple[int, Any]] = []
    polls = [
        threading.Thread(target=lambda: answers.append(
            call(f"{url}channels/lobby/poll?timeout=30&cursor={cursor}")))
        for _ in range(4)
    ]
    for poll in polls:
        poll.start()
    deadline = time.monotonic() + 10
    # waiters counts the fleet: every node sees all four.
    while min(call(f"{node.url}channels/lobby")[1]["waiters"] for node in nodes) < 4:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    began = time.monotonic()
    message = publish(url, "lobby", "Doors open at 9")  # through nginx, to either server
    for poll in polls:
        poll.join(10)
    assert time.monotonic() - began < 2, "an answer was held back (buffering?)"
    assert [answer for _, answer in answers] == [
        {"messages": [message], "cursor": message["id"], "more": False, "missed": False,
         "reset": False}
    ] * 4
    status, quiet = call(f"{url}channels/lobby/poll?timeout=1&cursor={message['id']}")
    assert status == 200 and quiet["messages"] == [] and quiet["cursor"] == message["id"]


def test_nginx_moves_polls_to_the_other_server_when_one_stops(
    nginx_front: tuple[str, list[ServerProcess]],
) -> None:
    url, nodes = nginx_front
    first = publish(url, "up", "one")
    assert nodes[0].terminate(timeout=10) == 0  # an upgrade: SIGTERM one server
    origin = first["id"].rsplit("-", 1)[0] + "-0"
    for _ in range(4):  # whichever server nginx tries first, the answer comes
        status, answer = call(f"{url}channels/up/poll?timeout=0&cursor={origin}")
        assert status == 200 and answer["messages"] == [first]
    assert publish(url, "up", "two")["id"].endswith("-2")
