"""The Registry contract on the FHIR backend, against a real FHIR R4 server (Medplum's FhirRouter
over MemoryRepository, tests/fhir_server), unchanged from the embedded registry's."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from registry_client.fhir.registry import FhirRegistry
from tests.fhir.fixtures import fhir_server  # noqa: F401 - fixture
from tests.fhir.server import FhirTestServer
from tests.registry_client.contract import RegistryContract


class TestFhirRegistry(RegistryContract):
    @pytest.fixture
    async def registry(self, fhir_server: FhirTestServer) -> AsyncIterator[FhirRegistry]:  # noqa: F811
        registry = FhirRegistry(fhir_server.base_url, auth=fhir_server.auth)
        yield registry
        await registry.close()
