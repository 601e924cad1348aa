"""CertificateService: issue (with reuse, reissue and revocation), verify, links, QR, lookups.

Stored at `app.state.certificates` (built by `build_certificate_service`). A person has at most
one unrevoked certificate: asking again with the same holder and dose data returns it; when the
data changed (a correction approved, an import) a new UVCI is issued and the previous one is
revoked, so `/api/verify` reports it as not valid.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from certificates import hcert, qr, valuesets
from certificates.code_secrets import CodeSecrets
from certificates.code_store import CertificateCodes, CodeVerdict
from certificates.dose_series import CountedDose, read_series
from certificates.keys import DocumentSignerStore, KeyRing, TrustStore
from certificates.links import LinkGrant, LinkSigner
from certificates.names import dcc_name
from certificates.plain_codes import seal_plain_codes
from certificates.protocols import DoseLike, HolderLike
from certificates.revocation import Revocation, RevocationList, RevocationUnavailable
from certificates.tables import IssuedCertificateRow
from certificates.uvci import new_uvci
from certificates.verification import (
    EXPIRED,
    INTERNAL,
    NOT_YET_VALID,
    REVOKED,
    VALID,
    VerificationResult,
    Verifier,
)
from db.base import make_sync_engine
from db.clock import Clock, as_utc, utc_now
from settings import Settings

log = logging.getLogger(__name__)

SUPERSEDED = "superseded by correction/import"
# Part of every fingerprint: certificates signed under an earlier dose-numbering rule are reissued.
SERIES_RULE = "dose-series/2"
RENEWED = "superseded by renewal"
_ISSUE_ATTEMPTS = 5


class CertificateError(Exception):
    """A certificate cannot be issued for this person (a user-facing condition, not a bug)."""


class _IssuedMeanwhile(Exception):
    """Another worker changed the person's live certificate between our read and our write."""


class NoDoses(CertificateError):
    def __init__(self) -> None:
        super().__init__("no dose on record")


class UnknownProduct(CertificateError):
    def __init__(self, code: str) -> None:
        super().__init__(f"the vaccine {code!r} has no EU DCC code")
        self.code = code


@dataclass(frozen=True)
class DoseSummary:
    """One dose as the certificate reads it (certificates.dose_series): dn/sd, not the filing number."""

    dose_number: int  # dn: its place among the doses given
    total_doses: int  # sd
    product: str  # mp code
    product_name: str
    administered_on: date
    lot: str | None
    site_code: str
    recorded_number: int = 0  # the number the registry files it under (differs where there is a gap)
    booster: bool = False
    site_name: str = ""


@dataclass(frozen=True)
class IssuedCertificate:
    hc1: str
    uvci: str
    png: bytes
    kid: str  # base64, as /api/certificates/keys lists it
    issued_at: datetime
    expires_at: datetime
    holder_name: str
    date_of_birth: date
    doses: tuple[DoseSummary, ...]
    reused: bool  # True: the person's current certificate was still right
    missing_doses: tuple[int, ...] = ()  # dose numbers the record skips (certificates.dose_series)


@dataclass(frozen=True)
class CertificateRecord:
    """One issued certificate as stored (for lookups by UVCI or person, e.g. certificate codes)."""

    person_id: str
    uvci: str
    kid: str  # hex
    issued_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    revoke_reason: str | None
    dose_count: int
    latest_dose_on: date
    hc1: str

    def status(self, at: datetime) -> Literal["valid", "revoked", "expired"]:
        if self.revoked_at is not None and self.revoked_at <= at:
            return "revoked"
        if at > self.expires_at:
            return "expired"
        return "valid"

    @classmethod
    def from_row(cls, row: IssuedCertificateRow) -> CertificateRecord:
        return cls(
            row.person_id,
            row.uvci,
            row.kid,
            as_utc(row.issued_at),
            as_utc(row.expires_at),
            as_utc(row.revoked_at) if row.revoked_at else None,
            row.revoke_reason,
            row.dose_count,
            row.latest_dose_on,
            row.hc1,
        )


def dose_summaries(doses: Sequence[DoseLike]) -> tuple[DoseSummary, ...]:
    """The doses in the order given, numbered by the one rule (certificates.dose_series)."""
    return tuple(
        DoseSummary(
            c.dn,
            c.sd,
            c.dose.product,
            valuesets.product_display(c.dose.product),
            c.dose.administered_on,
            c.dose.lot,
            c.dose.site_code,
            c.recorded_number,
            c.role == "booster",
            str(getattr(c.dose, "site_name", "") or c.dose.site_code),
        )
        for c in read_series(doses).counted
    )


def fingerprint(holder: HolderLike, doses: Sequence[DoseLike]) -> str:
    """SHA-256 over everything a certificate is made of: a change means a new certificate."""
    data: list[Any] = [SERIES_RULE, " ".join(holder.full_name.split()), holder.date_of_birth.isoformat()]
    for d in sorted(doses, key=lambda d: (d.dose_number, d.administered_on)):
        data.append([d.dose_number, d.product, d.administered_on.isoformat(), d.lot, d.site_code])
    return hashlib.sha256(json.dumps(data, ensure_ascii=False).encode()).hexdigest()


class CertificateService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        signers: DocumentSignerStore,
        trust: TrustStore,
        links: LinkSigner,
        *,
        public_base_url: str,
        validity: timedelta,
        code_secrets: CodeSecrets,
        clock: Clock = utc_now,
    ) -> None:
        self.sessions = sessions
        self.signers = signers
        self.trust = trust
        self.links = links
        self.keys = KeyRing(signers, trust)
        self.verifier = Verifier(self.keys)
        self.revocations = RevocationList(sessions)
        self.public_base_url = public_base_url.rstrip("/")
        self.validity = validity
        self._clock = clock
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        # short codes (certificates/code_store.py), kept only digested and sealed (code_secrets.py)
        self.codes = CertificateCodes(sessions, self, secrets=code_secrets, clock=clock)

    # -- issuing -------------------------------------------------------------------------------
    def _lock(self, person_id: str) -> asyncio.Lock:
        lock = self._locks.get(person_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[person_id] = lock
        return lock

    async def issue(self, holder: HolderLike, doses: Sequence[DoseLike]) -> IssuedCertificate:
        """The person's certificate: the current one when still right, else a new UVCI."""
        if not doses:
            raise NoDoses()
        summaries = dose_summaries(doses)
        reading = read_series(doses)
        latest = reading.latest
        assert latest is not None
        if valuesets.product(latest.dose.product) is None:
            raise UnknownProduct(latest.dose.product)
        digest = fingerprint(holder, doses)
        async with self._lock(holder.id):  # this worker's callers queue; other workers meet the index
            for attempt in range(_ISSUE_ATTEMPTS):
                try:
                    issued = await self._issue_once(holder, latest, summaries, digest)
                    return replace(issued, missing_doses=reading.missing)
                except (IntegrityError, _IssuedMeanwhile):
                    # another worker issued for this person meanwhile: the database kept one live
                    # certificate (uq_issued_certificates_live_person); look again, it may be ours too
                    log.info("concurrent issue for one person, retrying (attempt %d)", attempt + 1)
            raise CertificateError("the certificate could not be stored, try again")

    async def _issue_once(
        self, holder: HolderLike, latest: CountedDose, summaries: tuple[DoseSummary, ...], digest: str
    ) -> IssuedCertificate:
        now = self._clock()
        async with self.sessions() as session, session.begin():
            current = await session.scalar(
                select(IssuedCertificateRow)
                .where(
                    IssuedCertificateRow.person_id == holder.id,
                    IssuedCertificateRow.revoked_at.is_(None),
                )
                .order_by(IssuedCertificateRow.id.desc())
                .limit(1)
            )
            if current and current.fingerprint == digest and as_utc(current.expires_at) > now:
                record = CertificateRecord.from_row(current)
                return self._issued(record, holder, summaries, reused=True)
            record = self._sign(holder, latest, summaries, now)
            reason = RENEWED if current is not None and current.fingerprint == digest else SUPERSEDED
            # revoke first, then insert: the partial unique index allows one live row per person
            superseded = (
                await session.scalars(
                    update(IssuedCertificateRow)
                    .where(
                        IssuedCertificateRow.person_id == holder.id,
                        IssuedCertificateRow.revoked_at.is_(None),
                    )
                    .values(revoked_at=now, revoke_reason=reason)
                    .returning(IssuedCertificateRow.uvci)
                )
            ).all()
            if sorted(superseded) != ([current.uvci] if current is not None else []):
                raise _IssuedMeanwhile()  # rolls back: what we read is no longer the live set
            session.add(
                IssuedCertificateRow(
                    person_id=holder.id,
                    uvci=record.uvci,
                    fingerprint=digest,
                    kid=record.kid,
                    issued_at=record.issued_at,
                    expires_at=record.expires_at,
                    dose_count=record.dose_count,
                    latest_dose_on=record.latest_dose_on,
                    hc1=record.hc1,
                )
            )
            await session.flush()
        for uvci in superseded:  # after the commit
            self.revocations.note(Revocation(uvci, now, reason))
        return self._issued(record, holder, summaries, reused=False)

    def _sign(
        self,
        holder: HolderLike,
        latest: CountedDose,
        summaries: tuple[DoseSummary, ...],
        now: datetime,
    ) -> CertificateRecord:
        key = self.signers.current()
        uvci = new_uvci()
        issued_at = now.replace(microsecond=0)
        expires_at = issued_at + self.validity
        dcc = hcert.dcc_payload(
            dcc_name(holder.full_name), holder.date_of_birth, hcert.vaccination_entry(latest.dose, uvci, latest.dn, latest.sd)
        )
        hc1 = hcert.encode_hc1(hcert.cwt_claims(dcc, issued_at, expires_at), key)
        return CertificateRecord(
            holder.id,
            uvci,
            key.kid.hex(),
            issued_at,
            expires_at,
            None,
            None,
            len(summaries),
            summaries[-1].administered_on,
            hc1,
        )

    def _issued(
        self,
        record: CertificateRecord,
        holder: HolderLike,
        summaries: tuple[DoseSummary, ...],
        reused: bool,
    ) -> IssuedCertificate:
        return IssuedCertificate(
            hc1=record.hc1,
            uvci=record.uvci,
            png=qr.render_png(record.hc1),
            kid=kid_b64(record.kid),
            issued_at=record.issued_at,
            expires_at=record.expires_at,
            holder_name=" ".join(holder.full_name.split()),
            date_of_birth=holder.date_of_birth,
            doses=summaries,
            reused=reused,
        )

    def render_png(self, hc1: str) -> bytes:
        return qr.render_png(hc1)

    # -- lookups (certificate codes, console) --------------------------------------------------
    async def current_for_person(self, person_id: str) -> CertificateRecord | None:
        """The person's newest certificate (check `.status(at)`: it may be revoked or expired)."""
        async with self.sessions() as session:
            row = await session.scalar(
                select(IssuedCertificateRow)
                .where(IssuedCertificateRow.person_id == person_id)
                .order_by(IssuedCertificateRow.id.desc())
                .limit(1)
            )
            return CertificateRecord.from_row(row) if row else None

    async def find_by_uvci(self, uvci: str) -> CertificateRecord | None:
        async with self.sessions() as session:
            row = await session.scalar(
                select(IssuedCertificateRow).where(IssuedCertificateRow.uvci == uvci.strip().upper())
            )
            return CertificateRecord.from_row(row) if row else None

    # -- verifying -----------------------------------------------------------------------------
    async def verify(self, hc1: object, at: datetime | None = None) -> VerificationResult:
        """Signature, time and schema (Verifier), then revocation of our own certificates."""
        at = as_utc(at) if at is not None else self._clock()
        result = self.verifier.check(hc1, at)
        if result.signer != "own" or result.code not in (VALID, EXPIRED, NOT_YET_VALID):
            return result
        try:
            revocation = await self.revocations.find(result.certificate_ids)
        except RevocationUnavailable:
            log.exception("revocation list unavailable")
            return result.invalid(INTERNAL, "revocation status unavailable, try again")
        if revocation is not None and revocation.revoked_at <= at:
            return result.invalid(REVOKED, revocation.reason)
        return result

    def public_keys(self) -> list[dict[str, str]]:
        """GET /api/certificates/keys: every own document signer that may have signed a live HCERT."""
        return [{"kid": k.kid_b64, "certificate_pem": k.certificate_pem} for k in self.signers.live()]

    # -- certificate codes (the engine's CertificateCodePort; certificates/code_store.py) -----
    async def code_for(self, holder: HolderLike, doses: Sequence[DoseLike]) -> str:
        return await self.codes.code_for(holder, doses)

    async def verify_code(self, code: str, birth_year: int, *, caller: str | None = None) -> CodeVerdict:
        return await self.codes.check(code, birth_year, caller=caller)

    # -- links ---------------------------------------------------------------------------------
    def make_link(self, person_id: str, lang: str = "vi") -> str:
        """The page opens in `lang` (the language the person chose on their channel)."""
        suffix = "?lang=en" if lang == "en" else ""
        return f"{self.public_base_url}/c/{self.links.token(person_id)}{suffix}"

    def read_link(self, token: str) -> LinkGrant:
        """The person a link token grants; LinkInvalid / LinkExpired (certificates.links)."""
        return self.links.read(token)


def kid_b64(kid_hex: str) -> str:
    return base64.b64encode(bytes.fromhex(kid_hex)).decode()


def build_certificate_service(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], clock: Clock = utc_now
) -> CertificateService:
    signers = DocumentSignerStore(settings.data_dir, settings.cert_signing_alg, settings.cert_validity_days)
    service = CertificateService(
        sessions,
        signers,
        TrustStore(settings.data_dir),
        LinkSigner(settings.secret_keys.links, timedelta(days=settings.cert_link_ttl_days), clock),
        public_base_url=settings.public_base_url,
        validity=timedelta(days=settings.cert_validity_days),
        code_secrets=CodeSecrets.from_keys(settings.secret_keys),
        clock=clock,
    )
    signers.current()  # the first start generates the document-signer key
    _seal_plain_codes(sessions, service.codes.secrets)
    return service


def _seal_plain_codes(sessions: async_sessionmaker[AsyncSession], secrets: CodeSecrets) -> None:
    """Codes an earlier version kept in clear are sealed before the service answers (plain_codes.py)."""
    bind = sessions.kw.get("bind")
    if bind is None or bind.url.database in (None, "", ":memory:"):
        return  # a private in-memory database: created by this version, nothing to convert
    engine = make_sync_engine(bind.url.render_as_string(hide_password=False))
    try:
        seal_plain_codes(engine, secrets)
    except SQLAlchemyError as exc:  # the database is down: the service still starts (and says 503)
        log.warning(
            "certificate codes not checked for clear-text rows (%s); checked again at the next start",
            type(exc).__name__,
        )
    finally:
        engine.dispose()
