"""SMART Backend Services (OAuth 2.0 client credentials with a JWT client assertion) for
REGISTRY_AUTH=smart:<client_id>.

- The token endpoint is discovered from `<REGISTRY_URL>/.well-known/smart-configuration`.
- The client assertion is a JWT signed with the client's private key (PEM: RSA → RS384, EC P-384 →
  ES384), header `kid` = the RFC 7638 thumbprint of the public key (the `kid` to register with the
  registry's JWKS for this client), claims iss = sub = client_id, aud = the token endpoint,
  exp = now + 5 minutes, a fresh random jti.
- The access token is kept until shortly before `expires_in` runs out; a 401 from the registry
  drops it and the request is sent once more with a new one.
- Neither the token nor the assertion is ever logged or put in an error message.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import secrets
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from registry_client.errors import RegistryUnavailable

log = logging.getLogger(__name__)
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 300  # seconds: the most SMART allows
RENEW_BEFORE = 30  # seconds before expiry a token is replaced
DEFAULT_KEY_FILE = "registry_private_key.pem"


def refused(message: str) -> RegistryUnavailable:
    """An authorization problem: retrying changes nothing until the configuration does."""
    error = RegistryUnavailable(message)
    error.retryable = False
    return error


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class ClientKey:
    algorithm: str  # RS384 or ES384
    kid: str
    private_key: Any
    public_jwk: dict[str, str]


def public_jwk(private_key: Any) -> dict[str, str]:
    """The public key as a JWK (kty, crv/x/y or n/e), without kid/alg."""
    numbers = private_key.public_key().public_numbers()
    if isinstance(private_key, rsa.RSAPrivateKey):
        size = (numbers.n.bit_length() + 7) // 8
        e_size = (numbers.e.bit_length() + 7) // 8
        return {
            "kty": "RSA",
            "n": _b64(numbers.n.to_bytes(size, "big")),
            "e": _b64(numbers.e.to_bytes(e_size, "big")),
        }
    return {
        "kty": "EC",
        "crv": "P-384",
        "x": _b64(numbers.x.to_bytes(48, "big")),
        "y": _b64(numbers.y.to_bytes(48, "big")),
    }


def thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url)."""
    members = ("e", "kty", "n") if jwk["kty"] == "RSA" else ("crv", "kty", "x", "y")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return _b64(hashlib.sha256(canonical.encode()).digest())


def load_client_key(path: Path) -> tuple[ClientKey, list[str]]:
    """The client key from a PEM file, and warnings (e.g. the file is readable by others).
    RegistryUnavailable (not retryable) when it cannot be used."""
    warnings: list[str] = []
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise refused(
            f"SMART private key {path} cannot be read ({exc.strerror or type(exc).__name__})"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        warnings.append(
            f"SMART private key {path} is accessible to others (mode {stat.filemode(mode)}); chmod 600 it"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        reason = (
            "it is encrypted"
            if "encrypted" in str(exc).lower() or isinstance(exc, TypeError)
            else "not a PEM private key"
        )
        raise refused(f"SMART private key {path} is unusable: {reason}") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 2048:
            raise refused(f"SMART private key {path}: RSA keys must have at least 2048 bits")
        algorithm = "RS384"
    elif isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP384R1):
        algorithm = "ES384"
    else:
        raise refused(f"SMART private key {path}: needs an RSA key (RS384) or an EC P-384 key (ES384)")
    jwk = public_jwk(key)
    return ClientKey(algorithm, thumbprint(jwk), key, jwk), warnings


def client_assertion(client_id: str, token_endpoint: str, key: ClientKey, now: float) -> str:
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_endpoint,
        "iat": int(now),
        "exp": int(now) + ASSERTION_LIFETIME,
        "jti": secrets.token_urlsafe(24),
    }
    return jwt.encode(
        claims, key.private_key, algorithm=key.algorithm, headers={"kid": key.kid, "typ": "JWT"}
    )


@dataclass
class _Token:
    value: str
    renew_at: float


class SmartAuth:
    """Access tokens for one client of one FHIR server. Safe to share between concurrent requests."""

    def __init__(
        self,
        client_id: str,
        key_file: Path,
        scopes: str,
        fhir_base_url: str,
        client: httpx.AsyncClient,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client_id, self.key_file, self.scopes = client_id, key_file, " ".join(scopes.split())
        self.fhir_base_url = fhir_base_url.rstrip("/")
        self._client, self._clock = client, clock
        self._key: ClientKey | None = None
        self.warnings: list[str] = []
        self._token_endpoint: str | None = None
        self._token: _Token | None = None
        self._lock = asyncio.Lock()
        self.tokens_fetched = 0

    @property
    def key(self) -> ClientKey:
        if self._key is None:
            self._key, self.warnings = load_client_key(self.key_file)
            for warning in self.warnings:
                log.warning("%s", warning)
        return self._key

    async def authorization(self) -> tuple[str, str]:
        """(Authorization header value, the token it carries) — the token only to hand back to
        `expire` after a 401."""
        token = self._token
        if token is None or self._clock() >= token.renew_at:
            async with self._lock:
                token = self._token
                if token is None or self._clock() >= token.renew_at:
                    token = self._token = await self._fetch()
        return f"Bearer {token.value}", token.value

    def expire(self, value: str) -> None:
        """The registry refused this token (revoked, expired early): the next call fetches one."""
        if self._token is not None and self._token.value == value:
            self._token = None

    async def _discover(self) -> str:
        if self._token_endpoint is None:
            url = f"{self.fhir_base_url}/.well-known/smart-configuration"
            response = await self._post_or_get("GET", url)
            try:
                endpoint = response.json().get("token_endpoint") if response.is_success else None
            except ValueError:
                endpoint = None
            if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
                raise refused(
                    f"SMART: {url} answered {response.status_code} without a token_endpoint "
                    "(is this registry set up for SMART Backend Services?)"
                )
            self._token_endpoint = endpoint
        return self._token_endpoint

    async def _post_or_get(self, method: str, url: str, data: dict[str, str] | None = None) -> httpx.Response:
        try:
            return await self._client.request(method, url, data=data, headers={"Accept": "application/json"})
        except httpx.TimeoutException as exc:
            raise RegistryUnavailable(f"SMART token service timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise RegistryUnavailable(f"SMART token service unreachable ({type(exc).__name__})") from None

    async def _fetch(self) -> _Token:
        key = self.key
        endpoint = await self._discover()
        now = self._clock()
        form = {
            "grant_type": "client_credentials",
            "scope": self.scopes,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": client_assertion(self.client_id, endpoint, key, now),
        }
        response = await self._post_or_get("POST", endpoint, form)
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        if response.status_code >= 500 or response.status_code == 429:
            raise RegistryUnavailable(f"SMART token service error {response.status_code}")
        if not response.is_success:
            error = str(body.get("error") or f"HTTP {response.status_code}")
            description = str(body.get("error_description") or "")[:200]
            raise refused(
                f"SMART token request refused ({error}{': ' + description if description else ''}); "
                f"check that client {self.client_id} is registered with the public key kid {key.kid}"
            )
        value = body.get("access_token")
        if not isinstance(value, str) or not value:
            raise refused("SMART token service answered without an access_token")
        try:
            lifetime = float(body.get("expires_in") or 300)
        except (TypeError, ValueError):
            lifetime = 300.0
        self.tokens_fetched += 1
        log.info("SMART access token obtained for client %s (valid %d s)", self.client_id, lifetime)
        return _Token(value, now + max(lifetime - min(RENEW_BEFORE, lifetime / 5), 1.0))
