"""Runs the independent verifier `dcc-utils` (PyPI, with its own `cose` 0.9 library) in its own
process: `python dcc_utils_verify.py` reads {"hc1", "certificate_pem"} on standard input and
prints {"signature_valid": bool, "dcc": {...}} or {"error": "..."}.

dcc-utils pins old versions of its dependencies, so it is installed apart from the project
(`pip install --no-deps --target tests/dcc_verifier/site dcc-utils==0.2.1 cose==0.9.dev8
ecdsa`, done by .ci/run) and run with that directory first on the path. It imports pyzbar (a
QR reader needing the zbar C library) for images only; a text HC1 never reaches it, so an empty
stand-in module takes its place here.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "site"))
_pyzbar = types.ModuleType("pyzbar")
_pyzbar.pyzbar = types.ModuleType("pyzbar.pyzbar")  # type: ignore[attr-defined]
sys.modules.setdefault("pyzbar", _pyzbar)
sys.modules.setdefault("pyzbar.pyzbar", _pyzbar.pyzbar)  # type: ignore[attr-defined]


def main() -> None:
    request = json.loads(sys.stdin.read())
    try:
        from dcc_utils import dcc

        certificate = dcc.from_raw(request["hc1"])
        valid = certificate.check_signature(request["certificate_pem"].encode())
        print(json.dumps({"signature_valid": bool(valid), "dcc": certificate.payload}, default=str))
    except Exception as exc:  # the verifier's own failure is the answer (issue 13: OverflowError)
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))


if __name__ == "__main__":
    main()
