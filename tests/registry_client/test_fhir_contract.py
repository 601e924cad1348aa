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

    @pytest.fixture
    def audit_lines(self, fhir_server: FhirTestServer):  # type: ignore[no-untyped-def]  # noqa: F811
        """AuditEvents about the patient, read from the FHIR server directly."""

        async def read(person_id: str) -> list[tuple[str, str, str | None]]:
            with fhir_server.client() as client:
                bundle = client.get("AuditEvent", params={"_count": "1000"}).json()
            lines = []
            for entry in bundle.get("entry", []):
                event = entry["resource"]
                [entity] = event.get("entity") or [{}]
                if (entity.get("what") or {}).get("reference") != f"Patient/{person_id}":
                    continue
                [agent] = event["agent"]
                lines.append((agent["altId"], event["subtype"][0]["code"], entity.get("description")))
            return lines

        return read
