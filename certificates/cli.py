"""`python main.py keys {rotate,list}` and `python main.py trust {add FILE.pem,list}`.

Keys and the trust list are files in DATA_DIR (see certificates.keys), so these commands need
neither the database nor the registry. `python main.py certificate …` needs the registry and
lives in `web/certificate_cli.py`.
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path

from certificates.keys import DocumentSignerStore, KeyFileError, TrustStore, kid_of, load_certificate
from settings import Settings


def keys_cli(settings: Settings, action: str) -> int:
    store = DocumentSignerStore(settings.data_dir, settings.cert_signing_alg, settings.cert_validity_days)
    if action == "rotate":
        old = store.current()
        new = store.rotate()
        print(f"New document-signer key {new.kid_b64} ({new.alg}) signs new certificates from now on.")
        print(f"The previous key {old.kid_b64} keeps verifying the certificates it signed.")
    elif action != "list":
        print(f"Unknown action {action!r}: use rotate or list.", file=sys.stderr)
        return 2
    current = store.current()
    print("Published document-signer keys (GET /api/certificates/keys):")
    for key in store.live():
        marker = "*" if key.kid == current.kid else " "
        print(f" {marker} {key.describe()}")
    return 0


def trust_cli(settings: Settings, action: str, file: str | None) -> int:
    trust = TrustStore(settings.data_dir)
    if action == "add":
        if not file:
            print("Usage: python main.py trust add FILE.pem", file=sys.stderr)
            return 2
        try:
            data = Path(file).read_bytes()
        except OSError as exc:
            print(f"Cannot read {file}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        own = DocumentSignerStore(settings.data_dir, settings.cert_signing_alg, settings.cert_validity_days)
        try:
            candidate = load_certificate(data)
        except KeyFileError as exc:
            print(f"{file} was not added: {exc}", file=sys.stderr)
            return 1
        if own.by_kid(kid_of(candidate)):
            print(
                f"{file} was not added: it is this service's own document-signer certificate "
                "(kid " + base64.b64encode(kid_of(candidate)).decode() + "). Own keys are verified "
                "already; the trust list is for other issuers' signers.",
                file=sys.stderr,
            )
            return 1
        try:
            key = trust.add(data)
        except KeyFileError as exc:
            print(f"{file} was not added: {exc}", file=sys.stderr)
            return 1
        print(f"Trusted: {key.describe()}")
        return 0
    if action != "list":
        print(f"Unknown action {action!r}: use add or list.", file=sys.stderr)
        return 2
    keys = trust.all()
    if not keys:
        print(
            "The trust list is empty (add a foreign document signer with: python main.py trust add FILE.pem)."
        )
        return 0
    print(f"Trusted foreign document signers ({len(keys)}):")
    for key in sorted(keys, key=lambda k: k.kid):
        print(f"   {key.describe()}")
    return 0
