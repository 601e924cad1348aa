"""Keys of a SMART backend client for the tests: a private key file (0600) for the service and
the public JWKS the registry registers for the client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from registry_client.fhir.smart import load_client_key


def write_key(path: Path, kind: str = "EC") -> Path:
    """A new private key (EC P-384 for ES384, or RSA 2048 for RS384) as PEM, readable by its owner only."""
    key: Any = (
        ec.generate_private_key(ec.SECP384R1()) if kind == "EC" else rsa.generate_private_key(65537, 2048)
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(pem)
    path.chmod(0o600)
    return path


def jwks(path: Path) -> dict[str, Any]:
    """The public JWKS of a key file, with the kid the service puts in its assertions."""
    key, _ = load_client_key(path)
    return {"keys": [{**key.public_jwk, "kid": key.kid, "alg": key.algorithm, "use": "sig"}]}
