"""What an outbox row needs to send, kept sealed until it is sent, then dropped.

A one-time code, a certificate code or a link with a token is a secret for as long as it is
valid. The outbox row keeps it only sealed (AES-256-GCM under the key derived for the outbox,
bound to the row's channel and address) next to a masked copy for people to look at:

    params  {"code": "••••••", "minutes": 5}         what the console shows
    sealed  "v1.<base64url(nonce | ciphertext)>"      {"params": {"code": "482915"}, "text": …}

The sender opens the seal just before sending; once the message is sent or has finally failed
the seal is set to NULL (`Outbox` does it), so nothing readable is left. Which values are
secret: a parameter named code, link, url, token or otp (or ending in `_code`, `_link`, `_url`,
`_token`), any string value holding a URL, and a free text that contains a URL or a run of
four or more digits.
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = "v1"
NONCE_BYTES = 12
MASK = "•"
SECRET_NAMES = frozenset({"code", "link", "url", "token", "otp"})
SECRET_SUFFIXES = ("_code", "_link", "_url", "_token")
_URL = re.compile(r"https?://[^\s<>\"']+")
_URL_OR_DIGITS = re.compile(r"(https?://[^\s<>\"']+)|\d{4,}")


class SealBroken(Exception):
    """The seal was not made with this key for this channel and address (SECRET_KEY changed,
    or the value was tampered with)."""


def is_secret(name: str, value: object) -> bool:
    if name in SECRET_NAMES or name.endswith(SECRET_SUFFIXES):
        return True
    return isinstance(value, str) and _URL.search(value) is not None


def mask_value(value: str) -> str:
    """`482915` → `••••••`; `VX7K-3D9Q-MRT4` → `••••-••••-••••` (separators stay)."""
    return "".join(MASK if ch.isalnum() else ch for ch in value)


def mask_url(url: str) -> str:
    """`https://vax.vn/c/eyJ0b2tlbi...` → `https://vax.vn/c/eyJ0…`: host and path kept, the
    last path segment (the token) cut to its first 4 characters, no query or fragment."""
    parts = urlsplit(url)
    head, _, last = parts.path.rstrip("/").rpartition("/")
    if last.endswith("…") or set(last) == {MASK}:
        shown = last  # masked already
    else:
        shown = last[:4] + "…" if len(last) > 8 else (MASK * 3 if last else "")
    query = "…" if parts.query else ""
    return urlunsplit((parts.scheme, parts.netloc, f"{head}/{shown}" if head or last else "", query, ""))


def mask_text(text: str) -> str:
    """A free text with every URL masked and every run of 4+ digits hidden."""
    return _URL_OR_DIGITS.sub(lambda m: mask_url(m[0]) if m[1] else MASK * len(m[0]), text)


def mask_param(name: str, value: Any) -> Any:
    if isinstance(value, str) and _URL.search(value):
        return mask_text(value)
    if isinstance(value, str):
        return mask_value(value)
    return MASK * 3


def mask_message(text: str | None, params: dict[str, Any] | None) -> tuple[str | None, dict[str, Any] | None]:
    """The text and params as people may see them: every secret value masked."""
    shown_text = mask_text(text) if text else text
    shown_params = (
        {k: (mask_param(k, v) if is_secret(k, v) else v) for k, v in params.items()}
        if params is not None
        else None
    )
    return shown_text, shown_params


@dataclass(frozen=True)
class Split:
    """A message's shown (masked) text and params, and the sealed payload (None: nothing secret)."""

    text: str | None
    params: dict[str, Any] | None
    sealed: str | None


class OutboxSeal:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the outbox seal takes a 32-byte key")
        self._aead = AESGCM(key)

    @staticmethod
    def _bound_to(channel: str, address: str) -> bytes:
        return f"vaxchannel/outbox/{VERSION}|{channel}|{address}".encode()

    def seal(self, channel: str, address: str, payload: dict[str, Any]) -> str:
        nonce = os.urandom(NONCE_BYTES)
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        box = self._aead.encrypt(nonce, data, self._bound_to(channel, address))
        return f"{VERSION}.{base64.urlsafe_b64encode(nonce + box).decode('ascii').rstrip('=')}"

    def open(self, channel: str, address: str, sealed: str) -> dict[str, Any]:
        version, _, body = sealed.partition(".")
        if version != VERSION or not body:
            raise SealBroken("unknown seal format")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            data = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], self._bound_to(channel, address))
        except (InvalidTag, ValueError) as exc:
            raise SealBroken("the seal does not open with this key") from exc
        payload = json.loads(data)
        if not isinstance(payload, dict):
            raise SealBroken("unknown seal payload")
        return payload

    def split(self, channel: str, address: str, text: str | None, params: dict[str, Any] | None) -> Split:
        """Separates what may be shown from what must be sealed."""
        secret_params = {k: v for k, v in (params or {}).items() if is_secret(k, v)}
        shown_text, shown_params = mask_message(text, params)
        secret_text = text if text and shown_text != text else None
        if not secret_params and secret_text is None:
            return Split(text, params, None)
        payload: dict[str, Any] = {"params": secret_params}
        if secret_text is not None:
            payload["text"] = secret_text
        return Split(shown_text, shown_params, self.seal(channel, address, payload))

    def join(
        self, channel: str, address: str, text: str | None, params: dict[str, Any] | None, sealed: str
    ) -> tuple[str | None, dict[str, Any] | None]:
        """The original text and params of a split message."""
        payload = self.open(channel, address, sealed)
        secret_params = payload.get("params") or {}
        if secret_params:
            params = {**(params or {}), **secret_params}
        return payload.get("text", text), params
