"""The test server refuses what MemoryRepository cannot evaluate, and every HTTP failure becomes the
right registry error (RegistryUnavailable, RecordNotFound, InvalidRequest, Conflict)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from registry_client.check import registry_check_cli
from registry_client.errors import Conflict, InvalidRequest, RecordNotFound, RegistryUnavailable
from registry_client.fhir.http import FhirHttp, parse_auth
from registry_client.fhir.registry import FhirRegistry
from settings import Settings
from tests.fhir.server import TEST_BASIC_AUTH, FhirTestServer
from tests.registry_client.contract import seed_person

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "params, why",
    [
        ([("name", "Nguyen")], "not supported"),  # string search: memory does "contains", not "starts with"
        ([("bogus", "1")], "Unknown search parameter"),
        ([("general-practitioner", "123")], "Type/id"),
        ([("identifier:text", "x")], "not supported"),
        ([("_include", "Patient:organization")], "not supported"),
        ([("organization.name", "x")], "not supported"),
    ],
)
async def test_unsupported_search_is_refused(
    fhir_server: FhirTestServer, params: list[tuple[str, str]], why: str
) -> None:
    http = FhirHttp(fhir_server.base_url, auth=fhir_server.auth)
    try:
        with pytest.raises(InvalidRequest, match=why):
            await http.search("Patient", params)
    finally:
        await http.close()


async def test_invalid_resource_is_refused_with_the_outcome_text(fhir_server: FhirTestServer) -> None:
    http = FhirHttp(fhir_server.base_url, auth=fhir_server.auth)
    try:
        with pytest.raises(InvalidRequest, match="foo"):
            await http.create({"resourceType": "Patient", "foo": 1})
    finally:
        await http.close()


async def test_search_follows_next_links(fhir_server: FhirTestServer, fhir_registry: FhirRegistry) -> None:
    for i in range(5):
        await seed_person(fhir_registry, f"00108500{i:04d}", "+84912000111", date(1985, 1, i + 1))
    http = FhirHttp(fhir_server.base_url, auth=fhir_server.auth)
    try:
        found = await http.search("Patient", [("telecom", "phone|+84912000111"), ("_count", "2")])
    finally:
        await http.close()
    assert len({p["id"] for p in found}) == 5
    assert len(await fhir_registry.find_persons_by_phone("+84912000111")) == 5


@pytest.mark.parametrize(
    "status, error",
    [
        (503, RegistryUnavailable),
        (500, RegistryUnavailable),
        ("reset", RegistryUnavailable),
        (409, Conflict),
        (422, InvalidRequest),
        (400, InvalidRequest),
        (404, RecordNotFound),
    ],
)
async def test_http_failures_map_to_registry_errors(
    fhir_server: FhirTestServer, fhir_registry: FhirRegistry, status: int | str, error: type[Exception]
) -> None:
    person = await seed_person(fhir_registry)
    fhir_server.fail_next(status)
    with pytest.raises(error) as caught:
        await fhir_registry.get_person(person.id)
    if isinstance(status, int):
        assert f"injected failure {status}" in str(caught.value)
    assert (await fhir_registry.get_person(person.id)).id == person.id  # the next call goes through


async def test_connection_refused_is_unavailable() -> None:
    registry = FhirRegistry("http://127.0.0.1:9/fhir", timeout=1.0)
    try:
        with pytest.raises(RegistryUnavailable) as caught:
            await registry.find_person("001085001234", date(1985, 3, 14))
        assert caught.value.retryable
        info = await registry.info()
        assert not info.reachable
    finally:
        await registry.close()


async def test_wrong_credentials(fhir_server: FhirTestServer) -> None:
    registry = FhirRegistry(fhir_server.base_url, auth="bearer:wrong", timeout=2.0)
    try:
        with pytest.raises(RegistryUnavailable, match="credentials") as caught:
            await registry.find_person("001085001234", date(1985, 3, 14))
        assert not caught.value.retryable  # retrying a refused credential is pointless
        info = await registry.info()
        assert not info.reachable and "401" in info.detail
    finally:
        await registry.close()


def test_auth_parsing() -> None:
    assert parse_auth("bearer:abc") == (None, {"Authorization": "Bearer abc"})
    auth, headers = parse_auth("basic:user:pa:ss")
    assert headers == {} and auth is not None
    with pytest.raises(ValueError):
        parse_auth("token abc")


async def test_basic_auth_against_the_server(fhir_server: FhirTestServer) -> None:
    registry = FhirRegistry(fhir_server.base_url, auth=TEST_BASIC_AUTH)
    try:
        person = await seed_person(registry)
        assert (await registry.get_person(person.id)).national_id == "001085001234"
    finally:
        await registry.close()
    wrong = FhirRegistry(fhir_server.base_url, auth="basic:registry:wrong")
    try:
        with pytest.raises(RegistryUnavailable, match="401"):
            await wrong.get_person(person.id)
    finally:
        await wrong.close()


async def test_info_lists_declared_capabilities(fhir_registry: FhirRegistry) -> None:
    info = await fhir_registry.info()
    assert info.reachable and info.backend == "fhir"
    assert "FHIR 4.0.1" in info.detail and "NOT declared" not in info.detail
    by_type = {line.split(":")[0]: line for line in info.capabilities}
    assert "search-type" in by_type["Patient"] and "identifier birthdate telecom" in by_type["Patient"]
    assert "update" in by_type["Task"]
    assert info.capabilities[-1].startswith("(+")


def test_registry_check_cli(fhir_server: FhirTestServer, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "REGISTRY_BACKEND": "fhir",
        "REGISTRY_URL": fhir_server.base_url,
        "REGISTRY_AUTH": fhir_server.auth or "",
        "DATABASE_URL": f"sqlite:///{tmp_path}/check.db",
        "DATA_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "main.py", "registry", "check"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "registry backend : fhir" in done.stdout
    assert "reachable        : yes" in done.stdout
    assert "Immunization: " in done.stdout and "Task: " in done.stdout


def test_registry_check_reports_an_unreachable_or_unconfigured_registry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = {
        "registry_backend": "fhir",
        "database_url": f"sqlite:///{tmp_path}/check.db",
        "data_dir": tmp_path,
    }
    assert registry_check_cli(Settings(**base, registry_url="http://127.0.0.1:9/fhir")) == 1
    assert "reachable        : NO" in capsys.readouterr().out
    assert registry_check_cli(Settings(**base)) == 1
    assert "REGISTRY_URL" in capsys.readouterr().out
