"""schemathesis against a live server: every operation of the OpenAPI document.

The server is a real ``python -m tornado_lp`` process, once with a publish
token (memory store) and once with private channels (Redis), with holds
capped at 0.2 s (``--poll-timeout-max``) so polls answer quickly, and streams
ended after about 0.3 s (``--stream-max-age``) so an SSE answer completes.
schemathesis sends valid and invalid data to every operation and checks: no
5xx; status code, content type, headers and body as documented; invalid data
refused with a 4xx, valid data accepted; undocumented methods answered 405
with ``Allow``. The server's log must show no traceback and no ERROR.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from .serverproc import ServerProcess
from .storages import server_storage
from .test_openapi import CANONICAL

PUBLISH_TOKEN = "schemathesis-token"
# Examples per operation and phase: 25 keeps this module near 40 s, the same
# examples every run. A deeper hunt, new examples each time:
#   TORNADO_LP_FUZZ_EXAMPLES=300 TORNADO_LP_FUZZ_SEED=random python -m pytest tests/test_sch*
MAX_EXAMPLES = int(os.environ.get("TORNADO_LP_FUZZ_EXAMPLES", "25"))
DETERMINISTIC = os.environ.get("TORNADO_LP_FUZZ_SEED", "fixed") != "random"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    unsupported_method,
]


# Two deployments: publishing needs a token (channels open, memory store), and
# channels are private (polls need a subscribe token: the fuzzer has none, so
# they are 403s) while loopback clients publish without one, on Redis.
SERVERS = {
    "publish-token": ("memory", ("--publish-token", PUBLISH_TOKEN)),
    "private-redis": ("redis", ("--subscribe-secret", "schemathesis-secret",
                                "--cors-origin", "https://kiosk.example")),
}


@pytest.fixture(scope="module", params=list(SERVERS))
def live_server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    storage, options = SERVERS[request.param]
    server = ServerProcess(
        "--poll-timeout-max", "0.2", "--stream-max-age", "0.3",
        "--max-message-bytes", "8192", "--max-channels", "100000",
        *options, *server_storage(storage),
    )
    with server:
        yield server
        stderr = server.stderr()
    assert "Traceback" not in stderr, stderr[-4000:]
    assert " ERROR " not in stderr, stderr[-4000:]


def _load_schema() -> schemathesis.BaseSchema:
    # Loaded at import, from the package's copy (the live server serves the same
    # bytes, see below): schemathesis.pytest.from_fixture, the lazy loader, does
    # not work with pytest 9.2 (it sets Function._nodeid, which is gone there).
    loaded = schemathesis.openapi.from_path(CANONICAL)
    loaded.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        max_examples=MAX_EXAMPLES,
        deterministic=DETERMINISTIC,
        database="none",
    )
    return loaded


schema = _load_schema()


def test_document_is_valid_openapi() -> None:
    schema.validate()  # against the OpenAPI 3.1 meta-schema


def test_live_server_serves_the_document(live_server: ServerProcess) -> None:
    with urllib.request.urlopen(f"{live_server.url}openapi.yaml", timeout=10) as response:
        assert response.read() == CANONICAL.read_bytes()


@schema.parametrize()
def test_api_conforms_to_document(
    case: schemathesis.Case[Any], live_server: ServerProcess
) -> None:
    checks = CHECKS
    if case.operation.path == "/":
        # The ticker's title must be printable, which JSON Schema cannot say: a
        # schema-valid title may be refused there.
        checks = [c for c in CHECKS if c is not positive_data_acceptance]
    elif case.operation.path == "/ws":
        # A valid WebSocket request needs the handshake's headers (Upgrade,
        # Sec-WebSocket-Key), which no schema-generated request carries: it is a 400.
        checks = [c for c in CHECKS if c is not positive_data_acceptance]
    case.call_and_validate(
        base_url=live_server.url.rstrip("/"),
        headers={"Authorization": f"Bearer {PUBLISH_TOKEN}"},
        checks=checks,
        timeout=10,
    )
