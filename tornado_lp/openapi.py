"""``GET /openapi.yaml``: the OpenAPI 3.1 document of the HTTP API.

The document ships inside the package (``[options.package_data]`` in setup.cfg),
so it is found with :mod:`importlib.resources` wherever the package is
installed; ``docs/openapi.yaml`` is an identical copy for readers of the repository.
"""

from __future__ import annotations

import functools
from importlib.resources import files

from .base import JSONHandler

__all__ = ["OPENAPI_TYPE", "OpenAPIHandler", "openapi_document"]

OPENAPI_TYPE = "application/yaml; charset=utf-8"


@functools.cache
def openapi_document() -> bytes:
    """The document's bytes (read once)."""
    return files(__package__).joinpath("openapi.yaml").read_bytes()


class OpenAPIHandler(JSONHandler):
    """``GET /openapi.yaml``; errors stay JSON like everywhere else."""

    def get(self) -> None:
        self.set_header("Content-Type", OPENAPI_TYPE)
        self.finish(openapi_document())
