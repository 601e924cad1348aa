"""Every product, manufacturer and prophylaxis code the service writes is active in the EU DCC
value sets (data file: the active flags of vaccine-medicinal-product, vaccine-mah-manf and
vaccine-prophylaxis), and PS256 signer keys are RSA-2048 (HCERT §3.3.2)."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from certificates import valuesets
from certificates.keys import DocumentSignerStore
from registry_client import vaccines

STATUS = json.loads((Path(__file__).parent / "data" / "dcc_valueset_status.json").read_text())["value_sets"]


def test_every_code_in_use_is_active() -> None:
    used = {"mp": set(), "ma": set(), "vp": set()}
    for product in [*valuesets.PRODUCTS, *vaccines.PRODUCTS]:
        used["mp"].add(product.code)
        used["ma"].add(product.manufacturer)
        used["vp"].add(product.prophylaxis)
    inactive = {
        (kind, code) for kind, codes in used.items() for code in codes if not STATUS[kind]["active"].get(code)
    }
    assert inactive == set()
    # the issue: Abdala was written with vp J07BX03, deprecated; the encoding instructions give this
    assert valuesets.product("Abdala").prophylaxis == "28531000087107"
    assert STATUS["vp"]["active"]["J07BX03"] is False


def test_ps256_keys_are_rsa_2048(tmp_path: Path) -> None:
    store = DocumentSignerStore(tmp_path, "PS256", 365)
    key = store.current().public_key
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048
