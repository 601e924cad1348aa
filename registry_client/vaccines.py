"""COVID-19 vaccine products: EU DCC value-set codes, common names, and schedules.

Product codes, manufacturers (ma), prophylaxis types (vp) and primary-series lengths come
from `certificates.valuesets` (the eHealth Network value sets); this module adds the common
names people type and `interval_days`, the minimum gap before the next primary dose.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from certificates import valuesets


@dataclass(frozen=True)
class Product:
    code: str  # mp
    name: str
    manufacturer: str  # ma (ORG-… code)
    prophylaxis: str  # vp (SNOMED CT)
    series_doses: int
    interval_days: int | None
    aliases: tuple[str, ...] = ()


def _product(code: str, name: str, interval_days: int | None, aliases: tuple[str, ...]) -> Product:
    """Manufacturer, prophylaxis and series length come from the DCC value sets (certificates)."""
    entry = valuesets.product(code)
    if entry is None:
        raise KeyError(code)
    return Product(
        code, name, entry.manufacturer, entry.prophylaxis, entry.series_doses, interval_days, aliases
    )


PRODUCTS: tuple[Product, ...] = (
    _product(
        "EU/1/20/1528",
        "Comirnaty (Pfizer-BioNTech)",
        21,
        ("pfizer", "comirnaty", "pfizer-biontech", "biontech"),
    ),
    _product("EU/1/20/1507", "Spikevax (Moderna)", 28, ("moderna", "spikevax")),
    _product("EU/1/21/1529", "Vaxzevria (AstraZeneca)", 56, ("astrazeneca", "vaxzevria", "az")),
    _product("EU/1/20/1525", "Jcovden (Janssen)", None, ("janssen", "jcovden", "johnson")),
    _product("Covishield", "Covishield (Serum Institute of India)", 56, ("covishield",)),
    _product("BBIBP-CorV", "Vero Cell (Sinopharm)", 21, ("vero cell", "verocell", "sinopharm", "bbibp")),
    _product("Sputnik-V", "Sputnik V", 21, ("sputnik v", "sputnik", "gam-covid-vac")),
    _product("Abdala", "Abdala", 14, ("abdala", "cigb-66", "cigb 66")),
    _product("Hayat-Vax", "Hayat-Vax", 21, ("hayat-vax", "hayat vax", "hayatvax")),
    _product("Covaxin", "Covaxin", 28, ("covaxin", "bbv152")),
    _product(
        "EU/1/21/1618", "Nuvaxovid (Novavax)", 21, ("novavax", "nuvaxovid", "nvx-cov2373", "nvx cov2373")
    ),
    _product("CoronaVac", "CoronaVac (Sinovac)", 28, ("sinovac", "coronavac")),
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
