"""How a certificate code is kept at rest: a keyed digest to find it, a seal to give it again.

The database never holds a code readable. `certificate_codes` keeps, per row:

    code_digest  hex(HMAC-SHA256(key "certificate-codes", canonical code))   the lookup (unique)
    code_sealed  "v1.<base64url(nonce | AES-256-GCM(code))>"                  bound to the row's UVCI

Both keys are derived from SECRET_KEY (db/secret_keys.py), each for this use only. A typed code
is canonicalised (12 symbols, upper case, no dashes) before it is hashed, so every way of typing
it finds the same row. The seal is opened only to send a citizen their own code again (the
`MA`/`CODE` keyword, the hotline); it names its UVCI as associated data, so a seal copied onto
another row does not open. The guessing counters (`certificate_code_attempts`) are keyed with
the digest key too: a plain hash of a phone number or a code could be reversed by trying them all.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from certificates.codes import canonical
from db.secret_keys import SecretKeys

SEAL_VERSION = "v1"
NONCE_BYTES = 12
DIGEST_CHARS = 64
ATTEMPT_KEY_CHARS = 40


class CodeSealBroken(Exception):
    """A sealed code that does not open with this key for this UVCI (SECRET_KEY changed, or the
    value was moved or tampered with)."""


class CodeSecrets:
    """The digest and the seal of certificate codes (never printed: `repr` names no key)."""

    def __init__(self, digest_key: bytes, seal_key: bytes) -> None:
        if len(digest_key) != 32 or len(seal_key) != 32:
            raise ValueError("certificate codes take two 32-byte keys")
        if digest_key == seal_key:
            raise ValueError("the digest and the seal of certificate codes take different keys")
        self._digest_key = digest_key
        self._aead = AESGCM(seal_key)

    @classmethod
    def from_keys(cls, keys: SecretKeys) -> CodeSecrets:
        return cls(keys.certificate_codes, keys.certificate_code_seal)

    def __repr__(self) -> str:
        return "CodeSecrets(<keys not shown>)"

    def digest(self, code: str) -> str:
        """The lookup value of a code, typed any way (`vx7k-3d9q-mrt4` = `VX7K3D9QMRT4`)."""
        return hmac.new(self._digest_key, canonical(code).encode(), hashlib.sha256).hexdigest()

    def attempt_key(self, kind: str, value: str) -> str:
        """A guessing counter's key: who asks (`ip:…`, `sms:+84…`) or which code, never readable."""
        mac = hmac.new(self._digest_key, f"attempts/{kind}:{value}".encode(), hashlib.sha256)
        return mac.hexdigest()[:ATTEMPT_KEY_CHARS]

    @staticmethod
    def _bound_to(uvci: str) -> bytes:
        return f"vaxchannel/certificate-code/{SEAL_VERSION}|{uvci}".encode()

    def seal(self, code: str, uvci: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        box = self._aead.encrypt(nonce, canonical(code).encode(), self._bound_to(uvci))
        return f"{SEAL_VERSION}.{base64.urlsafe_b64encode(nonce + box).decode('ascii').rstrip('=')}"

    def open(self, sealed: str, uvci: str) -> str:
        """The canonical code of a seal made for `uvci`; CodeSealBroken otherwise."""
        version, _, body = sealed.partition(".")
        if version != SEAL_VERSION or not body:
            raise CodeSealBroken("unknown seal format")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            code = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], self._bound_to(uvci))
        except (InvalidTag, ValueError) as exc:
            raise CodeSealBroken("the sealed code does not open with this key for this certificate") from exc
        return code.decode("ascii")
