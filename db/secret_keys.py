"""One key per purpose, derived from SECRET_KEY with HKDF-SHA256 (RFC 5869).

SECRET_KEY itself signs nothing. Each use gets its own 32-byte key
(`info = b"vaxchannel/<purpose>"`), so a value made for one purpose never passes for another:
a certificate-link MAC is not a console session signature, an outbox seal key does not hash
one-time codes, and a leaked derived key gives away neither SECRET_KEY nor its siblings.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32

LINKS = "certificate-links"
CONSOLE_SESSIONS = "console-sessions"
CODE_HASHES = "code-hashes"
OUTBOX_SEAL = "outbox-seal"
UPLOAD_LINKS = "upload-links"
CERTIFICATE_CODES = "certificate-codes"
CERTIFICATE_CODE_SEAL = "certificate-code-seal"
PURPOSES = (
    LINKS,
    CONSOLE_SESSIONS,
    CODE_HASHES,
    OUTBOX_SEAL,
    UPLOAD_LINKS,
    CERTIFICATE_CODES,
    CERTIFICATE_CODE_SEAL,
)


def derive_key(secret: str | bytes, purpose: str) -> bytes:
    if not secret:
        raise ValueError("an empty secret derives no key")
    material = secret.encode() if isinstance(secret, str) else secret
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=f"vaxchannel/{purpose}".encode())
    return hkdf.derive(material)


@dataclass(frozen=True, repr=False)
class SecretKeys:
    """The derived keys of one SECRET_KEY (never printed: `repr` names no key)."""

    links: bytes  # certificate links /c/{token}
    console_sessions: bytes  # console session cookie, login CSRF, flash messages
    code_hashes: bytes  # one-time codes (login, phone change) stored as HMACs
    outbox_seal: bytes  # AEAD for what an outbox row needs to send (codes, links)
    upload_links: bytes  # /upload/{token}
    certificate_codes: bytes  # certificate codes stored as HMACs (lookup), and their guess counters
    certificate_code_seal: bytes  # AEAD for a certificate code the service must send again

    @classmethod
    def derive(cls, secret: str | bytes) -> SecretKeys:
        return cls(
            links=derive_key(secret, LINKS),
            console_sessions=derive_key(secret, CONSOLE_SESSIONS),
            code_hashes=derive_key(secret, CODE_HASHES),
            outbox_seal=derive_key(secret, OUTBOX_SEAL),
            upload_links=derive_key(secret, UPLOAD_LINKS),
            certificate_codes=derive_key(secret, CERTIFICATE_CODES),
            certificate_code_seal=derive_key(secret, CERTIFICATE_CODE_SEAL),
        )

    def __repr__(self) -> str:
        return "SecretKeys(<derived, not shown>)"
