"""Fixtures of the FHIR tests: the Medplum-based FHIR server (tests/fhir_server) and a FhirRegistry on it."""

from tests.fhir.fixtures import fhir_registry, fhir_server  # noqa: F401 - fixtures
