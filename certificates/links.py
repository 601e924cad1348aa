"""Signed, expiring certificate links: `{PUBLIC_BASE_URL}/c/{token}`.

A token names one person and an expiry instant, signed with HMAC-SHA256 under the key derived
for links from SECRET_KEY (`SecretKeys.links`, HKDF): `<base64url(person_id|expiry)>.<base64url(mac[:16])>`. Nothing else is in
it (no name, no national ID), and it cannot be stretched to another person or a later expiry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from db.clock import Clock, utc_now

_CONTEXT = b"vaxchannel/certificate-link/v1"
MAX_TOKEN_CHARS = 300


class LinkInvalid(Exception):
    """Not a token we signed (garbled, tampered, foreign)."""


class LinkExpired(Exception):
    """A genuine token whose time is up."""

    def __init__(self, person_id: str, expired_at: datetime) -> None:
        super().__init__(f"link expired at {expired_at:%Y-%m-%d %H:%M}Z")
        self.person_id = person_id
        self.expired_at = expired_at


@dataclass(frozen=True)
class LinkGrant:
    person_id: str
    expires_at: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LinkSigner:
    def __init__(self, key: bytes, ttl: timedelta, clock: Clock = utc_now) -> None:
        self._key = hmac.new(key, _CONTEXT, hashlib.sha256).digest()
        self.ttl = ttl
        self._clock = clock

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:16]

    def token(self, person_id: str, ttl: timedelta | None = None) -> str:
        if not person_id or "|" in person_id:
            raise ValueError("a person id without '|' is required")
        expires = int((self._clock() + (ttl or self.ttl)).timestamp())
        body = f"{person_id}|{expires}".encode()
        return f"{_b64(body)}.{_b64(self._mac(body))}"

    def read(self, token: str) -> LinkGrant:
        """The person a token grants; LinkInvalid or LinkExpired otherwise."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
            raise LinkInvalid("malformed token")
        body_part, mac_part = token.split(".")
        try:
            body, mac = _unb64(body_part), _unb64(mac_part)
        except (ValueError, TypeError):
            raise LinkInvalid("malformed token") from None
        if _b64(body) != body_part or _b64(mac) != mac_part:  # one spelling per token
            raise LinkInvalid("non-canonical encoding")
        if not hmac.compare_digest(mac, self._mac(body)):
            raise LinkInvalid("bad signature")
        try:
            person_id, _, expires_text = body.decode().rpartition("|")
            expires_at = datetime.fromtimestamp(int(expires_text), UTC)
        except (UnicodeDecodeError, ValueError, OverflowError, OSError):
            raise LinkInvalid("malformed token") from None
        if not person_id:
            raise LinkInvalid("malformed token")
        if self._clock() >= expires_at:
            raise LinkExpired(person_id, expires_at)
        return LinkGrant(person_id, expires_at)
