"""Pytest fixtures of the FHIR tests (imported by the test modules that need them)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from registry_client.fhir.registry import FhirRegistry
from tests.fhir.server import FhirTestServer, shared_server


@pytest.fixture
def fhir_server() -> FhirTestServer:
    """The session's FHIR server, emptied for this test."""
    server = shared_server()
    server.reset()
    return server


@pytest.fixture
async def fhir_registry(fhir_server: FhirTestServer) -> AsyncIterator[FhirRegistry]:
    registry = FhirRegistry(fhir_server.base_url, auth=fhir_server.auth, timeout=5.0)
    yield registry
    await registry.close()
