"""Signed, expiring links to the photo upload page of a report (`/upload/{token}`).

Signed with the key derived for upload links (`SecretKeys.upload_links`), never SECRET_KEY."""

from __future__ import annotations

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

SALT = "vaxchannel-upload"
MAX_AGE_SECONDS = 14 * 24 * 3600


def make_upload_link(public_base_url: str, key: bytes, ref: str) -> str:
    token = URLSafeTimedSerializer(key, salt=SALT).dumps(ref)
    return f"{public_base_url.rstrip('/')}/upload/{token}"


def read_upload_token(key: bytes, token: str, max_age: int = MAX_AGE_SECONDS) -> tuple[str | None, bool]:
    """(the report reference, expired?) — (None, False) for a forged or garbled token."""
    serializer = URLSafeTimedSerializer(key, salt=SALT)
    try:
        return str(serializer.loads(token, max_age=max_age)), False
    except SignatureExpired:
        return None, True
    except BadSignature:
        return None, False
