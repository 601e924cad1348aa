"""EU DCC value sets used on Viet Nam's certificates (schema 1.3.0).

Codes checked against ehn-dcc-development/eu-dcc-valuesets: `vaccine-medicinal-product.json`
(mp), `vaccine-mah-manf.json` (ma), `vaccine-prophylaxis.json` (vp) and the encoding
instructions (`vaccine-encoding-instructions.json`) that pair a product with its manufacturer
and SNOMED CT type. Where the instructions list a specific SNOMED code, it is used; products
listed with only the generic code (Abdala) carry the SNOMED CT `28531000087107` "COVID-19
vaccine" — the ATC code `J07BX03` is inactive in the value set and is never written.
tests/certificates/test_valuesets.py checks every code in use against the value sets' flags.

`series_doses` is the length of the primary series; what a person's doses prove, and the dn/sd
a certificate encodes, is decided in one place: `certificates.dose_series`.
"""

from __future__ import annotations

from dataclasses import dataclass

DISEASE_COVID19 = "840539006"  # tg: COVID-19 (SNOMED CT)

# vp — vaccine-prophylaxis
MRNA = "1119349007"  # SARS-CoV-2 mRNA vaccine
ANTIGEN = "1119305005"  # SARS-CoV-2 antigen vaccine
VIRAL_VECTOR = "29061000087103"  # COVID-19 non-replicating viral vector vaccine
INACTIVATED = "1157024006"  # Inactivated whole SARS-CoV-2 antigen vaccine
RECOMBINANT_SPIKE = "1162643001"  # SARS-CoV-2 recombinant spike protein antigen vaccine
COVID19_VACCINE = "28531000087107"  # COVID-19 vaccine (SNOMED CT; the generic code in use)
ATC_COVID19 = "J07BX03"  # covid-19 vaccines (ATC): deprecated in the value set, never written

PROPHYLAXIS = {
    MRNA: "SARS-CoV-2 mRNA vaccine",
    ANTIGEN: "SARS-CoV-2 antigen vaccine",
    VIRAL_VECTOR: "COVID-19 non-replicating viral vector vaccine",
    INACTIVATED: "Inactivated whole SARS-CoV-2 antigen vaccine",
    RECOMBINANT_SPIKE: "SARS-CoV-2 recombinant spike protein antigen vaccine",
    COVID19_VACCINE: "COVID-19 vaccine",
    ATC_COVID19: "covid-19 vaccines (deprecated)",
}

# ma — vaccine-mah-manf
MANUFACTURERS = {
    "ORG-100001699": "AstraZeneca AB",
    "ORG-100030215": "Biontech Manufacturing GmbH",
    "ORG-100001417": "Janssen-Cilag International",
    "ORG-100031184": "Moderna Biotech Spain S.L.",
    "ORG-100020693": "China Sinopharm International Corp. - Beijing location",
    "ORG-100001981": "Serum Institute Of India Private Limited",
    "ORG-100032020": "Novavax CZ a.s.",
    "ORG-100023050": "Gulf Pharmaceutical Industries",
    "Gamaleya-Research-Institute": "Gamaleya Research Institute",
    "Sinovac-Biotech": "Sinovac Biotech",
    "Bharat-Biotech": "Bharat Biotech",
    "CIGB": "Center for Genetic Engineering and Biotechnology",
    "Sinopharm-WIBP": "Sinopharm - Wuhan Institute of Biological Products",
}


@dataclass(frozen=True)
class VaccineProduct:
    code: str  # mp
    display: str
    manufacturer: str  # ma
    prophylaxis: str  # vp
    series_doses: int


PRODUCTS: tuple[VaccineProduct, ...] = (
    VaccineProduct("EU/1/20/1528", "Comirnaty", "ORG-100030215", MRNA, 2),
    VaccineProduct("EU/1/20/1507", "Spikevax", "ORG-100031184", MRNA, 2),
    VaccineProduct("EU/1/21/1529", "Vaxzevria", "ORG-100001699", VIRAL_VECTOR, 2),
    VaccineProduct("EU/1/20/1525", "Jcovden", "ORG-100001417", VIRAL_VECTOR, 1),
    VaccineProduct("EU/1/21/1618", "Nuvaxovid", "ORG-100032020", RECOMBINANT_SPIKE, 2),
    VaccineProduct("Covishield", "Covishield", "ORG-100001981", VIRAL_VECTOR, 2),
    VaccineProduct("BBIBP-CorV", "BBIBP-CorV", "ORG-100020693", INACTIVATED, 2),
    VaccineProduct("WIBP-CorV", "WIBP-CorV", "Sinopharm-WIBP", INACTIVATED, 2),
    VaccineProduct("Sputnik-V", "Sputnik-V", "Gamaleya-Research-Institute", VIRAL_VECTOR, 2),
    VaccineProduct("Sputnik-Light", "Sputnik Light", "Gamaleya-Research-Institute", VIRAL_VECTOR, 1),
    VaccineProduct("CoronaVac", "CoronaVac", "Sinovac-Biotech", INACTIVATED, 2),
    VaccineProduct("Covaxin", "Covaxin", "Bharat-Biotech", INACTIVATED, 2),
    VaccineProduct("Hayat-Vax", "Hayat-Vax", "ORG-100023050", INACTIVATED, 2),
    VaccineProduct("Abdala", "Abdala", "CIGB", COVID19_VACCINE, 3),
)

_BY_CODE = {p.code.lower(): p for p in PRODUCTS}


def product(code: str) -> VaccineProduct | None:
    """The value-set entry of a medicinal-product code (case-insensitive); None when unknown."""
    return _BY_CODE.get((code or "").strip().lower())


def product_display(code: str) -> str:
    """A human name for an mp code (foreign certificates may carry codes we do not list)."""
    found = product(code)
    return found.display if found else code

