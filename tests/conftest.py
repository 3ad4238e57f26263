from __future__ import annotations

import pytest

from .backends import Backend, backend_params
from .redis_server import stop_session_server


@pytest.fixture(params=backend_params(), ids=lambda b: b.name)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each storage backend in turn (see tests/backends.py)."""
    backend: Backend = request.param
    return backend


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    stop_session_server()
