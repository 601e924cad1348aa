"""Identifier systems, code systems and extension URLs of the FHIR mapping, plus the CVX table."""

from __future__ import annotations

from dataclasses import dataclass

from registry_client.vaccines import Product, lookup_product

NS = "http://vaxchannel.vn/fhir"

# identifier systems (logical keys)
SITE_CODE = f"{NS}/sid/site-code"  # default site-code system (FHIR_IDENTIFIER_SYSTEM_SITE overrides)
CASE_REF = f"{NS}/sid/case-ref"  # Task.identifier = the report reference (secondary: aliases)
DOSE_KEY = f"{NS}/sid/dose-key"  # Immunization.identifier = "<Patient id>/<dose number>"
ATTACHMENT_KEY = f"{NS}/sid/attachment-key"  # DocumentReference.identifier (idempotent upload)
CLAIMED_PERSON = f"{NS}/sid/claimed-person"  # Task.groupIdentifier = "<national id>/<date of birth>"

# code systems
CASE_KIND = f"{NS}/CodeSystem/case-kind"  # Task.code
CASE_STATUS = f"{NS}/CodeSystem/case-status"  # Task.businessStatus (our finer status)
CASE_INPUT = f"{NS}/CodeSystem/case-input"  # Task.input.type / Task.output.type
AUDIT_ACTION = f"{NS}/CodeSystem/audit-action"  # AuditEvent.subtype
# EU DCC "mp" value set: EU-authorised products (EU/1/…) are coded in the Union Register's system;
# the others (BBIBP-CorV, CoronaVac, Sputnik-V, …) in the value set's own temporary system.
DCC_PRODUCT = "https://ec.europa.eu/health/documents/community-register/html/"
DCC_PRODUCT_OTHER = "http://ec.europa.eu/temp/vaccineproductname"
CVX = "http://hl7.org/fhir/sid/cvx"
SNOMED = "http://snomed.info/sct"
ATC = "http://www.whocc.no/atc"
PERFORMER_FUNCTION = "http://terminology.hl7.org/CodeSystem/v2-0443"  # AP: administering provider
COMMUNICATION_CATEGORY = f"{NS}/CodeSystem/notice-kind"  # Communication.category (our notices)
AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"

# extensions
EXT_CONTACT = f"{NS}/StructureDefinition/contact-verification"  # on Patient.telecom
EXT_DOSE_SOURCE = f"{NS}/StructureDefinition/dose-source"  # on Immunization (import|correction|console)
EXT_RECORDED_BY = f"{NS}/StructureDefinition/recorded-by"  # on Immunization
EXT_EVENT_ACTION = f"{NS}/StructureDefinition/case-event-action"  # on Task.note
EXT_LOCAL_COPY = f"{NS}/StructureDefinition/local-copy"  # on DocumentReference: our stored file

# CVX codes of the catalogue's products (CDC CVX table); products without one carry only the DCC code.
CVX_BY_PRODUCT = {
    "EU/1/20/1528": "208",  # Pfizer-BioNTech 30 mcg/0.3 mL
    "EU/1/20/1507": "207",  # Moderna 100 mcg/0.5 mL
    "EU/1/21/1529": "210",  # AstraZeneca rS-ChAdOx1
    "EU/1/20/1525": "212",  # Janssen rS-Ad26
    "EU/1/21/1618": "211",  # Nuvaxovid (Novavax)
    "BBIBP-CorV": "510",  # Sinopharm BIBP (Vero Cell)
    "CoronaVac": "511",  # Sinovac
    "Covaxin": "502",
    "Sputnik-V": "505",
}
_PRODUCT_BY_CVX = {cvx: code for code, cvx in CVX_BY_PRODUCT.items()}


def dcc_product_system(code: str) -> str:
    """The mp system of a product code: the Union Register for EU/1/…, the temporary one otherwise."""
    return DCC_PRODUCT if code.startswith("EU/") else DCC_PRODUCT_OTHER


def product_from_coding(codings: list[dict[str, str]], text: str | None) -> str | None:
    """The DCC product code of a vaccineCode: DCC coding (either mp system), else CVX, else the text."""
    by_system = {c.get("system"): c.get("code") for c in codings}
    code = by_system.get(DCC_PRODUCT) or by_system.get(DCC_PRODUCT_OTHER)
    if code:
        found = lookup_product(code)
        return found.code if found is not None else code
    cvx = by_system.get(CVX)
    if cvx and cvx in _PRODUCT_BY_CVX:
        return _PRODUCT_BY_CVX[cvx]
    for candidate in [*(c.get("display") for c in codings), text]:
        if candidate:
            found = lookup_product(candidate)
            if found is not None:
                return found.code
    return None


def vaccine_code(product: Product) -> dict[str, object]:
    """vaccineCode: the DCC product (mp), CVX where the product has a code, and the vaccine type
    (the DCC vp: SNOMED CT, or ATC J07BX03 where the value set gives only that)."""
    system = dcc_product_system(product.code)
    coding: list[dict[str, str]] = [{"system": system, "code": product.code, "display": product.name}]
    cvx = CVX_BY_PRODUCT.get(product.code)
    if cvx:
        coding.append({"system": CVX, "code": cvx})
    if product.prophylaxis:
        kind = SNOMED if product.prophylaxis.isdigit() else ATC
        coding.append({"system": kind, "code": product.prophylaxis})
    return {"coding": coding, "text": product.name}


@dataclass(frozen=True)
class IdentifierSystems:
    """The registry's identifier systems. National IDs: 12 digits → CCCD, 9 digits → the old CMND;
    `site`: the vaccination site code on Location and/or Organization."""

    cccd: str = "urn:vn:cccd"
    cmnd: str = "urn:vn:cmnd"
    site: str = SITE_CODE

    def for_id(self, national_id: str) -> str | None:
        if national_id.isdigit() and len(national_id) == 12:
            return self.cccd
        if national_id.isdigit() and len(national_id) == 9:
            return self.cmnd
        return None
