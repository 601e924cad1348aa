"""The OpenAPI description (/openapi.json) is complete for every JSON route: a request schema for
every JSON body, a response schema for every success, and the refusals each route answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from app import create_app
from tests.faults.service import base_settings

JSON_ROUTES = {
    ("get", "/healthz"): {"200", "503"},
    ("get", "/api/certificates/keys"): {"200"},
    ("post", "/api/verify"): {"200", "415", "422"},
    ("post", "/api/verify-code"): {"200", "400", "413", "429"},
    ("post", "/api/agent/token"): {"200", "401", "429"},
    ("post", "/api/agent/send-link"): {"202", "401", "403", "404", "409"},
    ("post", "/api/agent/phone-change"): {"202", "401", "403", "404", "409", "429"},
    ("post", "/api/agent/phone-change/{change_id}/confirm"): {"200", "400", "401", "403", "404", "429"},
    ("get", "/api/corrections"): {"200", "401", "403"},
    ("post", "/api/corrections/{ref}/resolve"): {"200", "401", "403", "404", "409"},
}


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    return schema


def _properties(spec: dict[str, Any], content: dict[str, Any]) -> set[str]:
    schema = _resolve(spec, content["application/json"]["schema"])
    return set(schema.get("properties", {}))


async def test_every_json_route_documents_its_body_and_answers(sqlite_url: str, tmp_path: Path) -> None:
    app = create_app(base_settings(sqlite_url, tmp_path / "data"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            spec = (await client.get("/openapi.json")).json()
    documented = {
        (method, path)
        for path, operations in spec["paths"].items()
        for method in operations
        if path.startswith("/api/") or path == "/healthz"
    }
    assert documented == set(JSON_ROUTES)
    for (method, path), codes in JSON_ROUTES.items():
        operation = spec["paths"][path][method]
        answers = operation["responses"]
        assert codes <= set(answers), (method, path, sorted(answers))
        for code in codes:
            assert _properties(spec, answers[code]["content"]), (method, path, code)
        if method == "post":
            assert _properties(spec, operation["requestBody"]["content"]), (method, path)
    token = spec["paths"]["/api/agent/token"]["post"]["responses"]["200"]["content"]
    assert {"token", "expires_at"} <= _properties(spec, token)
    verify = spec["paths"]["/api/verify"]["post"]
    assert {"valid", "reason", "holder", "vaccinations"} <= _properties(spec, verify["responses"]["200"]["content"])
    assert {"hc1", "at"} <= _properties(spec, verify["requestBody"]["content"])
    resolve = spec["paths"]["/api/corrections/{ref}/resolve"]["post"]
    assert "override" in _properties(spec, resolve["requestBody"]["content"])
    assert {"problems", "override"} <= _properties(spec, resolve["responses"]["409"]["content"])
