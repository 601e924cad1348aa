"""`python main.py certificate NATIONAL_ID DATE_OF_BIRTH [--png FILE]`: prints the person's HC1 string.

The date of birth is DDMMYYYY (as on every channel) or YYYY-MM-DD.

It lives in web/ (not certificates/) because it needs the registry: certificates is the bottom
layer and never imports registry_client.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import date
from pathlib import Path

from certificates.service import CertificateError, build_certificate_service
from db.base import make_async_engine, make_sessionmaker
from db.migrate import migrate
from registry_client.errors import RecordNotFound, RegistryUnavailable
from registry_client.factory import build_registry
from registry_client.identity import mask_national_id, normalize_national_id
from registry_client.models import AuditEntry
from settings import Settings


def _fail(message: str) -> int:
    print(message, file=sys.stderr)
    return 1


async def _issue(settings: Settings, national_id: str, born: date, png_path: str | None) -> int:
    engine = make_async_engine(settings.database_url)
    registry = build_registry(settings, engine)
    try:
        service = build_certificate_service(settings, make_sessionmaker(engine))
        try:
            person = await registry.find_person(national_id, born)
            doses = await registry.list_doses(person.id)
        except RecordNotFound:
            return _fail(f"No person with national ID {mask_national_id(national_id)} born {born:%Y-%m-%d}.")
        except RegistryUnavailable as exc:
            return _fail(f"The registry does not answer ({exc}); try again later.")
        try:
            issued = await service.issue(person, doses)
        except CertificateError as exc:
            return _fail(f"No certificate for {mask_national_id(national_id)}: {exc}.")
        await registry.audit(AuditEntry(actor="cli", action="certificate.issue", person_id=person.id))
        current = service.signers.current()
        if issued.kid != current.kid_b64:
            print(
                f"Note: this is the stored certificate {issued.uvci}, signed by key {issued.kid}, which no "
                f"longer signs new certificates (now {current.kid_b64}); it still verifies until it expires.",
                file=sys.stderr,
            )
        print(issued.hc1)
        if png_path:
            Path(png_path).write_bytes(issued.png)
            print(f"QR code written to {png_path} ({issued.uvci}).", file=sys.stderr)
        return 0
    finally:
        await registry.close()
        await engine.dispose()


def parse_birth_date(text: str) -> date | None:
    """YYYY-MM-DD, or DDMMYYYY as every channel takes it (14031985)."""
    text = text.strip()
    try:
        if len(text) == 8 and text.isdigit():
            return date(int(text[4:]), int(text[2:4]), int(text[:2]))
        return date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        return None


def certificate_cli(
    settings: Settings, national_id: str, date_of_birth_iso: str, png_path: str | None
) -> int:
    nid = normalize_national_id(national_id)
    if nid is None:
        return _fail(f"{national_id!r} is not a national ID (12-digit CCCD or 9-digit CMND).")
    born = parse_birth_date(date_of_birth_iso)
    if born is None:
        return _fail(f"{date_of_birth_iso!r} is not a date of birth: use DDMMYYYY or YYYY-MM-DD.")
    migrate(settings.database_url)
    return asyncio.run(_issue(settings, nid, born, png_path))
