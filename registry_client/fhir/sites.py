"""Vaccination sites as a registry models them: a Location and/or an Organization carrying the site
code under the registry's site identifier system (FHIR_IDENTIFIER_SYSTEM_SITE).

| Site     | FHIR R4                                                                              |
|----------|--------------------------------------------------------------------------------------|
| code     | Location.identifier and/or Organization.identifier (the configured site system)      |
| name     | Location.name, else Organization.name                                                |
| province | address.state of the Location, else of the Organization                              |

A registry may hold a site as an Organization (who vaccinates) plus a Location (where), linked by
Location.managingOrganization, or as only one of the two. Both found under the same code are one
site. A site this service creates is a Location; it renames a Location it finds, never the
registry's Organization.

Immunizations name their site by `location` (a Location) and/or `performer.actor` (an Organization),
each by reference or by identifier. A Task belongs to a site through `owner`: the Organization when
the registry has one, else the Location, always with the site code as identifier and the name as
display, so a reader that resolves neither still sees the site.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from registry_client.fhir.http import Json
from registry_client.models import Site

ADMINISTERING = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0443", "code": "AP"}]}


@dataclass(frozen=True)
class SiteRecord:
    site: Site
    location_id: str | None = None
    organization_id: str | None = None

    @property
    def code(self) -> str:
        return self.site.code

    def references(self) -> list[str]:
        """Every reference that points at this site (`Organization/…`, `Location/…`)."""
        found = []
        if self.organization_id:
            found.append(f"Organization/{self.organization_id}")
        if self.location_id:
            found.append(f"Location/{self.location_id}")
        return found


def code_of(resource: Json, system: str) -> str | None:
    for identifier in resource.get("identifier") or []:
        if identifier.get("system") == system and identifier.get("value"):
            return str(identifier["value"])
    return None


def _address(resource: Json) -> Json:
    """Location.address is one Address, Organization.address a list of them."""
    address = resource.get("address") or {}
    if isinstance(address, list):
        address = address[0] if address else {}
    return address if isinstance(address, dict) else {}


def _site_of(resource: Json, code: str, fallback: Site | None = None) -> Site:
    """The site of a Location or Organization; what it lacks comes from `fallback`."""
    name = resource.get("name") or (fallback.name if fallback else None) or code
    state = _address(resource).get("state") or (fallback.province if fallback else None)
    return Site(code=code, name=str(name), province=state)


def directory(locations: Iterable[Json], organizations: Iterable[Json], system: str) -> dict[str, SiteRecord]:
    """Sites by code, merging a Location and an Organization that carry the same code."""
    found: dict[str, SiteRecord] = {}
    for org in organizations:
        code = code_of(org, system)
        if code and code not in found:
            found[code] = SiteRecord(_site_of(org, code), organization_id=str(org["id"]))
    for loc in locations:
        code = code_of(loc, system)
        if not code:
            continue
        known = found.get(code)
        if known is not None and known.location_id is not None:
            continue
        site = _site_of(loc, code, known.site if known else None)
        found[code] = SiteRecord(site, str(loc["id"]), known.organization_id if known else None)
    return found


def by_reference(records: Iterable[SiteRecord]) -> dict[str, str]:
    """`Location/…` / `Organization/…` → site code."""
    return {ref: record.code for record in records for ref in record.references()}


# -- writing references -------------------------------------------------------------------------------


def _reference(resource_type: str, resource_id: str, record: SiteRecord, system: str) -> Json:
    return {
        "reference": f"{resource_type}/{resource_id}",
        "identifier": {"system": system, "value": record.code},
        "display": record.site.name,
    }


def owner_reference(record: SiteRecord, system: str) -> Json:
    """Task.owner: the site's Organization when the registry has one, else its Location."""
    if record.organization_id:
        return _reference("Organization", record.organization_id, record, system)
    if record.location_id:
        return _reference("Location", record.location_id, record, system)
    return {"identifier": {"system": system, "value": record.code}, "display": record.site.name}


def immunization_site(record: SiteRecord, system: str) -> Json:
    """The Immunization elements naming the site: `location` (a Location) and the administering
    Organization as `performer`."""
    elements: Json = {}
    if record.location_id:
        elements["location"] = _reference("Location", record.location_id, record, system)
    if record.organization_id:
        elements["performer"] = [
            {
                "function": ADMINISTERING,
                "actor": _reference("Organization", record.organization_id, record, system),
            }
        ]
    if not elements:
        elements["location"] = {
            "identifier": {"system": system, "value": record.code},
            "display": record.site.name,
        }
    return elements


def location_resource(site: Site, system: str, existing: Json | None = None) -> Json:
    location: Json = dict(existing or {"resourceType": "Location", "status": "active", "mode": "instance"})
    others = [i for i in location.get("identifier") or [] if i.get("system") != system]
    location["identifier"] = [{"system": system, "value": site.code}, *others]
    location["name"] = site.name
    province = site.province or ((existing or {}).get("address") or {}).get("state")
    if province:
        location["address"] = {**(location.get("address") or {}), "state": province, "country": "VN"}
    return location


# -- reading references ---------------------------------------------------------------------------------


def _code_in(reference: Json | None, system: str, known: dict[str, str]) -> str | None:
    if not reference:
        return None
    identifier = reference.get("identifier") or {}
    if identifier.get("value") and identifier.get("system") in (system, None):
        return str(identifier["value"])
    ref = str(reference.get("reference") or "").split("/_history")[0]
    return known.get(ref)


def immunization_site_code(immunization: Json, system: str, known: dict[str, str]) -> str | None:
    """The site code of an Immunization, from its location, else from a performer's actor."""
    code = _code_in(immunization.get("location"), system, known)
    if code:
        return code
    for performer in immunization.get("performer") or []:
        code = _code_in(performer.get("actor"), system, known)
        if code:
            return code
    return None


def owner_site_code(task: Json, system: str, known: dict[str, str]) -> str | None:
    return _code_in(task.get("owner"), system, known)


def unresolved_references(resources: Iterable[Json], system: str, known: dict[str, str]) -> set[str]:
    """Location/Organization references (of Immunizations or Tasks) naming no site we know yet."""
    missing: set[str] = set()
    for resource in resources:
        refs = [resource.get("location"), resource.get("owner")]
        refs += [p.get("actor") for p in resource.get("performer") or []]
        for ref in refs:
            if ref and not _code_in(ref, system, known) and ref.get("reference"):
                target = str(ref["reference"]).split("/_history")[0]
                if target.startswith(("Location/", "Organization/")):
                    missing.add(target)
    return missing
