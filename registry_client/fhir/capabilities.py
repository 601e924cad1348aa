"""What a FHIR server declares in its CapabilityStatement (/metadata), against what we need."""

from __future__ import annotations

from dataclasses import dataclass

from registry_client.fhir.http import Json

# resource type → (interactions, search parameters) this backend uses
NEEDED: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Patient": (("read", "create", "update", "search-type"), ("identifier", "birthdate", "telecom")),
    "Immunization": (("create", "update", "search-type"), ("patient", "status", "identifier")),
    "Location": (("read", "create", "update", "search-type"), ("identifier",)),
    "Task": (
        ("create", "update", "search-type"),
        ("identifier", "subject", "owner", "code", "status", "group-identifier", "period"),
    ),
    "Organization": (("read", "search-type"), ("identifier",)),
    "DocumentReference": (("create", "search-type"), ("identifier",)),
    "Binary": (("create",), ()),
    "Communication": (("create", "search-type"), ("part-of",)),
    "AuditEvent": (("create",), ()),
}


@dataclass(frozen=True)
class Declared:
    software: str
    fhir_version: str
    capabilities: tuple[str, ...]  # one line per resource type we use, then a count of the others
    missing: tuple[str, ...]  # what we use and the server does not declare


def summarize(statement: Json) -> Declared:
    software = statement.get("software") or {}
    name = " ".join(str(x) for x in (software.get("name"), software.get("version")) if x) or "unnamed server"
    resources: dict[str, Json] = {}
    for rest in statement.get("rest") or []:
        if rest.get("mode", "server") == "server":
            for resource in rest.get("resource") or []:
                resources[str(resource.get("type"))] = resource
    lines: list[str] = []
    missing: list[str] = []
    for resource_type, (interactions, params) in NEEDED.items():
        declared = resources.get(resource_type)
        if declared is None:
            lines.append(f"{resource_type}: NOT DECLARED")
            missing.append(resource_type)
            continue
        have = [str(i.get("code")) for i in declared.get("interaction") or []]
        searchable = {str(p.get("name")) for p in declared.get("searchParam") or []}
        missing += [f"{resource_type}.{i}" for i in interactions if i not in have]
        missing += [f"{resource_type}?{p}" for p in params if searchable and p not in searchable]
        search = f"; search {' '.join(p for p in params if p in searchable)}" if params and searchable else ""
        lines.append(f"{resource_type}: {' '.join(have)}{search}")
    others = len(set(resources) - set(NEEDED))
    if others:
        lines.append(f"(+{others} other resource types declared)")
    return Declared(name, str(statement.get("fhirVersion") or "?"), tuple(lines), tuple(missing))
