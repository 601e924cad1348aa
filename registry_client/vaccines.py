"""COVID-19 vaccine products: EU DCC value-set codes, common names, and schedules.

Codes from the eHealth Network value sets (vaccine-medicinal-product,
vaccine-mah-manf, vaccine-prophylaxis). `series_doses` is the primary series
length; `interval_days` the minimum gap before the next primary dose.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class Product:
    code: str  # mp
    name: str
    manufacturer: str  # ma (ORG-… code)
    prophylaxis: str  # vp (SNOMED CT)
    series_doses: int
    interval_days: int | None
    aliases: tuple[str, ...] = ()


MRNA = "1119349007"  # SARS-CoV-2 mRNA vaccine
ANTIGEN = "1119305005"  # SARS-CoV-2 antigen vaccine
VECTOR = "J07BX03"  # covid-19 vaccines (the value set has no viral-vector entry)

PRODUCTS: tuple[Product, ...] = (
    Product(
        "EU/1/20/1528",
        "Comirnaty (Pfizer-BioNTech)",
        "ORG-100030215",
        MRNA,
        2,
        21,
        ("pfizer", "comirnaty", "pfizer-biontech", "biontech"),
    ),
    Product("EU/1/20/1507", "Spikevax (Moderna)", "ORG-100031184", MRNA, 2, 28, ("moderna", "spikevax")),
    Product(
        "EU/1/21/1529",
        "Vaxzevria (AstraZeneca)",
        "ORG-100001699",
        VECTOR,
        2,
        56,
        ("astrazeneca", "vaxzevria", "az", "covishield"),
    ),
    Product(
        "EU/1/20/1525",
        "Jcovden (Janssen)",
        "ORG-100001417",
        VECTOR,
        1,
        None,
        ("janssen", "jcovden", "johnson"),
    ),
    Product(
        "BBIBP-CorV",
        "Vero Cell (Sinopharm)",
        "ORG-100020693",
        VECTOR,
        2,
        21,
        ("vero cell", "verocell", "sinopharm", "bbibp"),
    ),
    Product(
        "Sputnik-V", "Sputnik V", "ORG-100010771", VECTOR, 2, 21, ("sputnik v", "sputnik", "gam-covid-vac")
    ),
    Product("CIGB-66", "Abdala", "CIGB", ANTIGEN, 3, 14, ("abdala", "cigb-66")),
    Product(
        "Hayat-Vax", "Hayat-Vax", "ORG-100023064", ANTIGEN, 2, 21, ("hayat-vax", "hayat vax", "hayatvax")
    ),
    Product("Covaxin", "Covaxin", "ORG-100024420", ANTIGEN, 2, 28, ("covaxin", "bbv152")),
    Product("NVX-CoV2373", "Nuvaxovid (Novavax)", "ORG-100032020", ANTIGEN, 2, 21, ("novavax", "nuvaxovid")),
    Product("CoronaVac", "CoronaVac (Sinovac)", "ORG-100013793", ANTIGEN, 2, 28, ("sinovac", "coronavac")),
)

_BY_CODE = {p.code.lower(): p for p in PRODUCTS}
_BY_ALIAS = {a: p for p in PRODUCTS for a in p.aliases}


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return " ".join(text.lower().replace("_", " ").split())


def lookup_product(text: str) -> Product | None:
    """A product by DCC code or common name, case- and accent-insensitive; None when unknown."""
    key = _fold(text)
    if not key:
        return None
    return _BY_CODE.get(key) or _BY_ALIAS.get(key) or _BY_ALIAS.get(key.replace("-", " "))


def product(code: str) -> Product:
    found = _BY_CODE.get(code.lower())
    if found is None:
        raise KeyError(code)
    return found
