"""FhirRegistry: the Registry protocol over a remote FHIR R4 server (REGISTRY_BACKEND=fhir).

The resource mapping is documented in registry_client.fhir.mapping (persons, sites, doses, audit)
and registry_client.fhir.tasks (correction cases). Semantics follow the embedded registry:

- writes that must not happen twice use business identifiers and conditional create
  (If-None-Exist): a person (national ID + birth date), a dose (`<Patient id>/<dose number>`),
  a report (its reference), an attachment; a retried submission finds what the first stored;
- every update of an existing resource is a versioned PUT with If-Match (from the ETag /
  meta.versionId). On 412 the resource is read again and the change applied again to what is
  there now — never written over blindly; after a few lost races: Conflict;
- queries use only search parameters the FHIR spec defines for R4 (identifier, birthdate,
  telecom, patient, status, subject, owner, code, group-identifier, period, _id), so they run on
  any R4 server; the rest (current phones, exact case status, doses concerned) is filtered here.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from registry_client import refs
from registry_client.clock import Clock, utc_now
from registry_client.dose_validation import validated_dose
from registry_client.errors import Conflict, InvalidRequest, RecordNotFound, RegistryError
from registry_client.fhir import capabilities, codes, mapping, notices, sites, smart, tasks
from registry_client.fhir.codes import IdentifierSystems
from registry_client.fhir.http import FhirHttp, Json, PreconditionFailed, Versioned, escape_value, versioned
from registry_client.fhir.sites import SiteRecord
from registry_client.models import (
    OPEN_STATUSES,
    Attachment,
    AuditEntry,
    CaseNotice,
    CaseStatus,
    ContactChange,
    CorrectionCase,
    CorrectionQuery,
    Decision,
    Dose,
    DoseSource,
    NewAttachment,
    NewCorrection,
    NewDose,
    NewPerson,
    Person,
    RegistryInfo,
    Resolution,
    Site,
)
from registry_client.routing import add_working_days, route_case

log = logging.getLogger(__name__)
MAX_UPLOAD_BYTES = 12 * 1024 * 1024  # a photo sent to the registry as a Binary (uploads are <= 10 MB)


def _read_upload(path: str) -> bytes | None:
    """The bytes of a stored upload; None when it is gone or too big (the DocumentReference then
    carries no URL, only the description of the file)."""
    try:
        file = Path(path)
        if file.stat().st_size > MAX_UPLOAD_BYTES:
            return None
        return file.read_bytes()
    except OSError:
        log.warning("upload %s could not be read; stored in the registry without its content", path)
        return None


MAX_ATTEMPTS = 5  # versioned updates: tries before giving up with Conflict
SITES_SHOWN = 50  # `registry check` lists at most this many sites


class FhirRegistry:
    """See the module docstring. One pooled httpx.AsyncClient per instance; `close()` releases it."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: str | None = None,
        timeout: float = 5.0,
        systems: IdentifierSystems | None = None,
        sla_working_days: int = 5,
        clock: Clock = utc_now,
        http: FhirHttp | None = None,
        site_cache_seconds: float = 300.0,
        private_key_file: Path | None = None,
        scopes: str = "",
    ) -> None:
        self._http = http or FhirHttp(
            base_url, auth=auth, timeout=timeout, private_key_file=private_key_file, scopes=scopes
        )
        self._systems = systems or IdentifierSystems()
        self._sla_days = sla_working_days
        self._clock = clock
        self._site_ttl = site_cache_seconds
        self._sites: dict[str, SiteRecord] = {}
        self._site_refs: dict[str, str] = {}  # "Location/…" / "Organization/…" → site code
        self._not_sites: set[str] = set()  # references found to be no site at the last load
        self._sites_loaded_at: float | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> FhirRegistry:
        if not settings.registry_url:
            raise ValueError("REGISTRY_BACKEND=fhir needs REGISTRY_URL (the FHIR R4 base URL)")
        key_file = settings.registry_private_key_file or Path(settings.data_dir) / smart.DEFAULT_KEY_FILE
        return cls(
            settings.registry_url,
            auth=settings.registry_auth,
            private_key_file=Path(key_file),
            scopes=settings.registry_scopes,
            timeout=settings.registry_timeout_seconds,
            systems=IdentifierSystems(
                settings.fhir_identifier_system_cccd,
                settings.fhir_identifier_system_cmnd,
                settings.fhir_identifier_system_site,
            ),
            sla_working_days=settings.sla_working_days,
        )

    @property
    def base_url(self) -> str:
        return self._http.base_url

    def set_sla_working_days(self, days: int) -> None:
        """Working days to the due date of reports filed from now on (the console's SLA setting)."""
        self._sla_days = days

    # -- versioned updates ------------------------------------------------------------------------
    async def _update(
        self, load: Callable[[], Awaitable[Versioned]], change: Callable[[Json], Awaitable[Json | None]]
    ) -> Json:
        """Read, change, PUT with If-Match; on 412 read again and apply the change again."""
        for attempt in range(MAX_ATTEMPTS):
            current = await load()
            changed = await change(copy.deepcopy(current.resource))
            if changed is None or changed == current.resource:
                return current.resource
            try:
                return (await self._http.update(changed, current.version)).resource
            except PreconditionFailed:
                log.info(
                    "%s/%s changed meanwhile (attempt %d): re-reading",
                    changed["resourceType"],
                    changed.get("id"),
                    attempt + 1,
                )
        raise Conflict("the record kept changing while we updated it; try again")

    # -- persons ----------------------------------------------------------------------------------
    async def find_person(self, national_id: str, date_of_birth: date) -> Person:
        system = self._systems.for_id(national_id)
        if system is None:
            raise RecordNotFound("no person with this national ID and date of birth")
        hits = await self._http.search(
            "Patient",
            [
                ("identifier", f"{system}|{escape_value(national_id)}"),
                ("birthdate", date_of_birth.isoformat()),
            ],
        )
        hits = [p for p in hits if p.get("birthDate") == date_of_birth.isoformat()]
        if not hits:
            raise RecordNotFound("no person with this national ID and date of birth")
        return mapping.person_from_patient(hits[0], self._systems, prefer_id=national_id)

    async def get_person(self, person_id: str) -> Person:
        return mapping.person_from_patient(
            (await self._http.read("Patient", person_id)).resource, self._systems
        )

    async def find_persons_by_phone(self, phone: str) -> list[Person]:
        hits = await self._http.search(
            "Patient", [("telecom", f"phone|{escape_value(phone)}"), ("_count", "50")]
        )
        persons = [mapping.person_from_patient(p, self._systems) for p in hits if mapping.birth_date(p)]
        current = [p for p in persons if phone in p.current_phones]
        return sorted(current, key=lambda p: (p.date_of_birth, p.id))

    async def create_person(self, new: NewPerson, actor: str) -> Person:
        patient = mapping.patient_resource(new, self._systems, self._clock(), actor)
        system = patient["identifier"][0]["system"]
        condition = (
            f"identifier={system}|{escape_value(new.national_id)}&birthdate={new.date_of_birth.isoformat()}"
        )
        stored, created = await self._http.create(patient, if_none_exist=condition)
        if not created:
            raise Conflict("a person with this national ID and date of birth exists")
        return mapping.person_from_patient(stored.resource, self._systems)

    async def update_contact(self, person_id: str, change: ContactChange) -> Person:
        async def apply(patient: Json) -> Json:
            return mapping.apply_contact_change(patient, change, self._clock())

        stored = await self._update(lambda: self._http.read("Patient", person_id), apply)
        return mapping.person_from_patient(stored, self._systems)

    # -- sites ------------------------------------------------------------------------------------
    @property
    def _site_system(self) -> str:
        return self._systems.site

    def _remember(self, records: dict[str, SiteRecord], complete: bool) -> None:
        if complete:
            self._sites = dict(records)
            self._sites_loaded_at = time.monotonic()
        else:
            self._sites.update(records)
        self._site_refs = sites.by_reference(self._sites.values())

    async def _search_sites(self, value: str = "") -> dict[str, SiteRecord]:
        """Sites under the site system (all, or the one with code `value`): Locations and Organizations."""
        params = [("identifier", f"{self._site_system}|{escape_value(value)}"), ("_count", "500")]
        locations = await self._http.search("Location", params)
        organizations = await self._http.search("Organization", params)
        return sites.directory(locations, organizations, self._site_system)

    async def _load_sites(self) -> list[SiteRecord]:
        records = await self._search_sites()
        self._remember(records, complete=True)
        return list(records.values())

    async def _site_record(self, code: str) -> SiteRecord | None:
        """The site, fresh from the registry."""
        found = (await self._search_sites(code)).get(code)
        if found is None:
            self._sites.pop(code, None)
            return None
        self._remember({code: found}, complete=False)
        return found

    async def _known_site_refs(self, resources: Sequence[Json]) -> dict[str, str]:
        """References → site codes, reloading the directory when stale or when a reference is new
        (a reference to something that is no site, e.g. the registry's own department, is
        remembered until the next reload instead of causing one per call)."""
        stale = self._sites_loaded_at is None or time.monotonic() - self._sites_loaded_at > self._site_ttl
        unknown = sites.unresolved_references(resources, self._site_system, self._site_refs)
        if stale or unknown - self._not_sites:
            await self._load_sites()
            still = sites.unresolved_references(resources, self._site_system, self._site_refs)
            self._not_sites = still if stale else self._not_sites | still
        return self._site_refs

    async def _site_names(self, site_codes: set[str]) -> dict[str, str]:
        """Names for doses: from the site directory, refreshed when stale or missing a code."""
        stale = self._sites_loaded_at is None or time.monotonic() - self._sites_loaded_at > self._site_ttl
        if stale or not site_codes <= set(self._sites):
            await self._load_sites()
        return {code: self._sites[code].site.name for code in site_codes if code in self._sites}

    async def list_sites(self) -> list[Site]:
        return sorted((record.site for record in await self._load_sites()), key=lambda s: s.code)

    async def get_site(self, code: str) -> Site:
        record = await self._site_record(code)
        if record is None:
            raise RecordNotFound(f"no site {code}")
        return record.site

    async def upsert_site(self, site: Site) -> Site:
        existing = await self._site_record(site.code)
        if existing is None:
            stored, created = await self._http.create(
                sites.location_resource(site, self._site_system),
                if_none_exist=f"identifier={self._site_system}|{escape_value(site.code)}",
            )
            if not created:
                await self._update_location(stored.id, site, first=stored)
        elif existing.location_id is not None:
            await self._update_location(existing.location_id, site)
        else:  # only the registry's Organization: its record, not ours to rename
            return existing.site
        record = await self._site_record(site.code)
        if record is None:
            raise Conflict(f"site {site.code} vanished while we stored it; try again")
        return record.site

    async def _update_location(self, location_id: str, site: Site, first: Versioned | None = None) -> Json:
        loaded = [first] if first is not None else []

        async def load() -> Versioned:
            if loaded:
                return loaded.pop()
            return await self._http.read("Location", location_id)

        async def apply(resource: Json) -> Json:
            return sites.location_resource(site, self._site_system, resource)

        return await self._update(load, apply)

    # -- doses ------------------------------------------------------------------------------------
    async def _immunizations(self, person_id: str) -> list[Json]:
        hits = await self._http.search(
            "Immunization", [("patient", f"Patient/{person_id}"), ("status", "completed"), ("_count", "100")]
        )
        return [h for h in hits if h.get("status") == "completed"]

    async def _doses(self, immunizations: Sequence[Json]) -> list[Dose]:
        known = await self._known_site_refs(immunizations)
        codes_by_id = {
            str(i.get("id")): sites.immunization_site_code(i, self._site_system, known) for i in immunizations
        }
        names = await self._site_names({c for c in codes_by_id.values() if c})
        doses = []
        for immunization in immunizations:
            code = codes_by_id[str(immunization.get("id"))]
            doses.append(mapping.dose_from_immunization(immunization, code, names.get(code or "")))
        return sorted(doses, key=lambda d: (d.dose_number, d.administered_on))

    async def list_doses(self, person_id: str) -> list[Dose]:
        immunizations = await self._immunizations(person_id)
        if not immunizations:
            await self._http.read("Patient", person_id)  # RecordNotFound for an unknown person
            return []
        return await self._doses(immunizations)

    async def record_dose(self, person_id: str, dose: NewDose) -> Dose:
        return await self._record_dose(person_id, dose)

    async def _record_dose(self, person_id: str, new: NewDose) -> Dose:
        product, new = validated_dose(new)  # the rule every backend shares
        await self._http.read("Patient", person_id)
        record = await self._site_record(new.site_code)
        if record is None:
            if not new.site_name:
                raise InvalidRequest(f"unknown site {new.site_code!r}")
            await self.upsert_site(Site(new.site_code, new.site_name))
            record = self._sites[new.site_code]
        site = record.site

        def build(existing: Json | None) -> Json:
            return mapping.immunization_resource(
                person_id, new.dose_number, product, new.administered_on, new.lot,
                sites.immunization_site(record, self._site_system), new.source, new.recorded_by,
                self._clock(), existing=existing,
            )  # fmt: skip

        key = mapping.dose_key(person_id, new.dose_number)
        for _ in range(MAX_ATTEMPTS):
            same_number = [
                i for i in await self._immunizations(person_id) if mapping.dose_number(i) == new.dose_number
            ]
            if not same_number:
                stored, created = await self._http.create(
                    build(None), if_none_exist=f"identifier={codes.DOSE_KEY}|{escape_value(key)}"
                )
                if created:
                    return mapping.dose_from_immunization(stored.resource, site.code, site.name)
                continue  # created meanwhile by someone else: compare with it on the next round
            current = versioned(same_number[0])
            stored_dose = (await self._doses([current.resource]))[0]
            same = (
                stored_dose.product,
                stored_dose.administered_on,
                stored_dose.site_code,
                stored_dose.lot or None,
            )
            if same == (product.code, new.administered_on, new.site_code, new.lot or None):
                return (await self._doses([current.resource]))[0]
            if new.source != DoseSource.CORRECTION:
                raise Conflict(f"dose {new.dose_number} is recorded with other data")
            try:
                updated = await self._http.update(build(current.resource), current.version)
            except PreconditionFailed:
                continue
            return mapping.dose_from_immunization(updated.resource, site.code, site.name)
        raise Conflict(f"dose {new.dose_number} kept changing while we recorded it; try again")

    # -- correction cases: reading ----------------------------------------------------------------
    async def _task_by_ref(self, ref: str) -> Versioned | None:
        hits = await self._http.search("Task", [("identifier", f"{codes.CASE_REF}|{escape_value(ref)}")])
        if not hits:
            return None
        primary = [t for t in hits if tasks.primary_ref(t) == ref]
        return versioned((primary or hits)[0])

    async def _require_task(self, ref: str) -> Versioned:
        found = await self._task_by_ref(ref)
        if found is None:
            raise RecordNotFound(f"no report {ref}")
        return found

    async def _attachments(self, task_list: Sequence[Json]) -> dict[str, Attachment]:
        ids = sorted({d for t in task_list for d in tasks.document_ids(t)})
        found: dict[str, Attachment] = {}
        for start in range(0, len(ids), 50):
            chunk = ids[start : start + 50]
            for doc in await self._http.search("DocumentReference", [("_id", ",".join(chunk))]):
                found[str(doc["id"])] = tasks.attachment_from_document(doc)
        return found

    def _case_of(
        self, task: Json, attachments: dict[str, Attachment] | None = None, joined: bool = False
    ) -> CorrectionCase:
        return tasks.case_from_task(
            task, attachments or {}, joined, site_system=self._site_system, site_refs=self._site_refs
        )

    async def _case(self, task: Json, joined: bool = False) -> CorrectionCase:
        await self._known_site_refs([task])
        return self._case_of(task, await self._attachments([task]), joined)

    async def get_correction(self, ref: str) -> CorrectionCase:
        return await self._case((await self._require_task(ref)).resource)

    async def list_corrections(self, query: CorrectionQuery) -> list[CorrectionCase]:
        params: list[tuple[str, str]] = [("code", f"{codes.CASE_KIND}|"), ("_count", "200")]
        if query.statuses is not None:
            if not query.statuses:
                return []
            params.append(("status", tasks.fhir_statuses(query.statuses)))
        if query.hotline_queue:
            params.append(("owner:missing", "true"))
        elif query.site_code is not None:
            record = self._sites.get(query.site_code) or await self._site_record(query.site_code)
            if record is None:
                return []
            params.append(("owner", ",".join(record.references())))  # its Organization or Location
        if query.person_id is not None:
            params.append(("subject", f"Patient/{query.person_id}"))
        if query.resolved_since is not None:
            params.append(("period", f"ge{mapping.instant(query.resolved_since)}"))
        found = await self._http.search("Task", params)
        await self._known_site_refs(found)
        matching = [
            (case, task)
            for case, task in ((self._case_of(t), t) for t in found)
            if (query.statuses is None or case.status in query.statuses)
            and (not query.hotline_queue or case.site_code is None)
            and (query.hotline_queue or query.site_code is None or case.site_code == query.site_code)
            and (
                query.resolved_since is None
                or (case.resolved_at is not None and case.resolved_at >= query.resolved_since)
            )
        ]
        matching.sort(key=lambda pair: (pair[0].due_on, pair[0].created_at))
        keep = [task for _, task in matching[: query.limit]]
        attachments = await self._attachments(keep)
        return [self._case_of(t, attachments) for t in keep]

    # -- correction cases: submitting -------------------------------------------------------------
    async def submit_correction(self, new: NewCorrection) -> CorrectionCase:
        if new.ref is not None:
            already = await self._task_by_ref(new.ref)
            if already is not None:  # a retried submission (or one that joined a case): answer it
                return await self._case(
                    already.resource, joined=tasks.primary_ref(already.resource) != new.ref
                )
        person = await self.get_person(new.person_id) if new.person_id is not None else None
        joined = await self._join_open_case(new, person)
        if joined is not None:
            return joined
        return await self._create_case(new, person)

    async def _open_task_for(self, new: NewCorrection, person: Person | None) -> Versioned | None:
        params = [
            ("code", f"{codes.CASE_KIND}|{new.kind.value}"),
            ("status", tasks.fhir_statuses(OPEN_STATUSES)),
        ]
        if person is not None:
            params.append(("subject", f"Patient/{person.id}"))
        elif new.claimed_national_id:
            key = tasks.claimed_person_key(new.claimed_national_id, new.claimed_date_of_birth)
            params += [
                ("group-identifier", f"{codes.CLAIMED_PERSON}|{escape_value(key)}"),
                ("subject:missing", "true"),
            ]
        else:
            return None
        candidates = [t for t in await self._http.search("Task", params) if tasks.case_status(t).is_open]
        candidates.sort(key=lambda t: str(t.get("authoredOn") or ""))
        wanted = set(new.doses_concerned.dose_numbers()) if new.doses_concerned else None
        for task in candidates:
            theirs = tasks.case_from_task(task, {}).doses_concerned
            if wanted is None or theirs is None:
                if wanted is None and theirs is None:
                    return versioned(task)
                continue
            if wanted & set(theirs.dose_numbers()):
                return versioned(task)
        return None

    async def _store_attachments(
        self, ref: str, attachments: Sequence[NewAttachment], patient_id: str | None
    ) -> list[str]:
        ids = []
        for attachment in attachments:
            key = f"{codes.ATTACHMENT_KEY}|{tasks.attachment_key(ref, attachment)}"
            already = await self._http.search("DocumentReference", [("identifier", key)])
            if already:  # a retried upload: the photo is stored already
                ids.append(str(already[0]["id"]))
                continue
            data = await asyncio.to_thread(_read_upload, attachment.storage_path)
            binary_url = None
            if data is not None:
                binary, _ = await self._http.create(tasks.binary_resource(attachment.content_type, data))
                binary_url = self._http.url(f"Binary/{binary.id}")
            doc = tasks.document_reference(ref, attachment, patient_id, self._clock(), binary_url, data)
            stored, _ = await self._http.create(doc, if_none_exist=f"identifier={key}")
            ids.append(stored.id)
        return ids

    async def _join_open_case(self, new: NewCorrection, person: Person | None) -> CorrectionCase | None:
        for _ in range(MAX_ATTEMPTS):
            found = await self._open_task_for(new, person)
            if found is None:
                return None
            ref = tasks.primary_ref(found.resource) or found.id
            doc_ids = await self._store_attachments(ref, new.attachments, person.id if person else None)
            task = copy.deepcopy(found.resource)
            now = self._clock()
            note = new.description or (new.claimed.site and f"site: {new.claimed.site}") or None
            tasks.add_note(task, now, new.actor, "joined", note)
            if new.ref is not None:  # the citizen was already given this reference: keep it working
                tasks.add_alias(task, new.ref)
                tasks.add_note(task, now, "system", "alias", new.ref)
            for doc_id in doc_ids:
                tasks.add_document(task, doc_id)
            task["lastModified"] = mapping.instant(now)
            try:
                stored = await self._http.update(task, found.version)
            except PreconditionFailed:
                continue
            return await self._case(stored.resource, joined=True)
        raise Conflict("the open report kept changing while we joined it; try again")

    async def _create_case(self, new: NewCorrection, person: Person | None) -> CorrectionCase:
        records = await self._load_sites()
        doses = await self.list_doses(person.id) if person is not None else []
        site_code = route_case(new.claimed.site, [record.site for record in records], doses)
        owner = next(
            (sites.owner_reference(r, self._site_system) for r in records if r.code == site_code), None
        )
        concerned = set(new.doses_concerned.dose_numbers()) if new.doses_concerned else set()
        focus = next((d.id for d in doses if d.dose_number in concerned), None)
        now = self._clock()
        ref = new.ref
        while ref is None:
            candidate = refs.new_case_ref()
            ref = candidate if await self._task_by_ref(candidate) is None else None
        doc_ids = await self._store_attachments(ref, new.attachments, person.id if person else None)
        task = tasks.new_task(
            ref=ref,
            new=new,
            person=person,
            owner=owner,
            focus_dose_id=focus,
            due_on=add_working_days(now.date(), self._sla_days),
            now=now,
            document_ids=doc_ids,
        )
        stored, _ = await self._http.create(
            task, if_none_exist=f"identifier={codes.CASE_REF}|{escape_value(ref)}"
        )  # not created: the same submission got there first; answer with it
        return await self._case(stored.resource)

    # -- correction cases: changing ---------------------------------------------------------------
    async def _change_case(
        self, ref: str, change: Callable[[Json], Awaitable[Json | None]]
    ) -> CorrectionCase:
        async def load() -> Versioned:
            return await self._require_task(ref)

        async def apply(task: Json) -> Json | None:
            changed = await change(task)
            if changed is not None:
                changed["lastModified"] = mapping.instant(self._clock())
            return changed

        return await self._case(await self._update(load, apply))

    @staticmethod
    def _require_open(task: Json) -> CorrectionCase:
        case = tasks.case_from_task(task, {})
        if not case.is_open:
            raise InvalidRequest(f"report {case.ref} is already {case.status.value}")
        return case

    async def resolve_correction(self, ref: str, resolution: Resolution) -> CorrectionCase:
        async def change(task: Json) -> Json:
            case = self._require_open(task)
            now = self._clock()
            if resolution.decision == Decision.APPROVED and resolution.dose is not None:
                if case.person_id is None:
                    raise InvalidRequest("this report has no person on record; create the person first")
                dose = await self._record_dose(case.person_id, resolution.dose)
                tasks.record_dose_output(task, dose.id)
                detail = f"dose {dose.dose_number}: {dose.product} {dose.administered_on.isoformat()} {dose.site_code}"
                tasks.add_note(task, now, resolution.actor, "dose_recorded", detail)
            tasks.resolve(task, CaseStatus(resolution.decision.value), resolution.note, now)
            tasks.add_note(task, now, resolution.actor, resolution.decision.value, resolution.note)
            return task

        return await self._change_case(ref, change)

    async def reassign_correction(
        self, ref: str, site_code: str | None, actor: str, note: str
    ) -> CorrectionCase:
        owner: Json | None = None
        if site_code is not None:
            record = await self._site_record(site_code)
            if record is None:
                raise InvalidRequest(f"unknown site {site_code!r}")
            owner = sites.owner_reference(record, self._site_system)

        async def change(task: Json) -> Json:
            self._require_open(task)
            tasks.set_owner(task, owner)
            tasks.set_status(task, CaseStatus.ROUTED)
            detail = f"{site_code or 'hotline'}: {note}" if note else site_code
            tasks.add_note(task, self._clock(), actor, "reassigned", detail)
            return task

        return await self._change_case(ref, change)

    async def add_attachment(self, ref: str, attachment: NewAttachment, actor: str) -> CorrectionCase:
        async def change(task: Json) -> Json:
            case = tasks.case_from_task(task, {})
            doc_ids = await self._store_attachments(case.ref, [attachment], case.person_id)
            for doc_id in doc_ids:
                if doc_id not in tasks.document_ids(task):
                    tasks.add_document(task, doc_id)
            tasks.add_note(task, self._clock(), actor, "attachment", attachment.filename)
            return task

        return await self._change_case(ref, change)

    async def mark_in_review(self, ref: str, actor: str) -> CorrectionCase:
        async def change(task: Json) -> Json | None:
            if tasks.case_status(task) not in (CaseStatus.RECEIVED, CaseStatus.ROUTED):
                return None
            tasks.set_status(task, CaseStatus.IN_REVIEW)
            tasks.add_note(task, self._clock(), actor, "in_review", None)
            return task

        return await self._change_case(ref, change)

    # -- audit and health -------------------------------------------------------------------------
    async def audit(self, entry: AuditEntry) -> None:
        await self._http.create(mapping.audit_event(entry, entry.at or self._clock()))

    async def record_notice(self, notice: CaseNotice) -> None:
        """A Communication about the report's Task (once per notice: conditional create)."""
        task = await self._require_task(notice.ref)
        key = escape_value(notices.notice_key(notice))
        await self._http.create(
            notices.communication(notice, task.id), if_none_exist=f"identifier={notices.NOTICE_KEY}|{key}"
        )

    async def info(self) -> RegistryInfo:
        try:
            declared = capabilities.summarize(await self._http.metadata())
        except RegistryError as exc:
            return RegistryInfo("fhir", False, f"{self.base_url}: /metadata failed: {exc.message}")
        detail = f"{self.base_url} — {declared.software}, FHIR {declared.fhir_version}"
        if declared.missing:
            detail += "; NOT declared: " + ", ".join(declared.missing)
        try:  # /metadata is public; this checks our credentials too
            await self._http.search("Patient", [("_count", "1"), ("identifier", f"{self._systems.cccd}|0")])
        except RegistryError as exc:
            return RegistryInfo(
                "fhir", False, f"{detail}; search refused: {exc.message}", declared.capabilities
            )
        return RegistryInfo("fhir", True, detail, declared.capabilities)

    async def overview(self) -> list[tuple[str, str]]:
        """What `registry check` shows beyond info(): the identifier systems in use, how we
        authenticate, and the sites this registry holds (by our site system)."""
        lines = [
            ("systems", f"CCCD {self._systems.cccd} · CMND {self._systems.cmnd} · site {self._systems.site}"),
        ]
        auth = self._http.smart
        if auth is not None:
            try:
                key = auth.key
                lines.append(
                    (
                        "auth",
                        f"SMART Backend Services, client {auth.client_id}, {key.algorithm} key kid {key.kid}",
                    )
                )
                lines.append(
                    ("public key (JWK)", json.dumps({**key.public_jwk, "kid": key.kid, "alg": key.algorithm}))
                )
            except RegistryError as exc:
                lines.append(("auth", f"SMART Backend Services, client {auth.client_id}: {exc.message}"))
            lines += [("warning", w) for w in auth.warnings]
        try:
            records = sorted(await self._load_sites(), key=lambda r: r.code)
        except RegistryError as exc:
            lines.append(("sites", f"could not be listed: {exc.message}"))
            return lines
        if not records:
            lines.append(("sites", f"none with an identifier under {self._systems.site}"))
        for record in records[:SITES_SHOWN]:
            held = " + ".join(r.split("/")[0] for r in record.references())
            lines.append(("site", f"{record.code} {record.site.name} ({held})"))
        if len(records) > SITES_SHOWN:
            lines.append(("site", f"… and {len(records) - SITES_SHOWN} more ({len(records)} in all)"))
        return lines

    async def close(self) -> None:
        await self._http.close()
