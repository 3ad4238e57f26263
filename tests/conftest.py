from __future__ import annotations

import pytest

from .backends import Backend, backend_params


@pytest.fixture(params=backend_params(), ids=lambda b: b.name)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each storage backend in turn (see tests/backends.py)."""
    backend: Backend = request.param
    return backend
