"""What the engine needs from other services, as Protocols (the host injects implementations).

`CertificatePort` is satisfied by `certificates.service.CertificateService` (app.state.certificates):
the engine never imports the web or certificate-rendering layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol, runtime_checkable

from registry_client.models import Dose, Person


class IssuedCertificateLike(Protocol):
    @property
    def hc1(self) -> str: ...

    @property
    def uvci(self) -> str: ...

    @property
    def png(self) -> bytes: ...

    @property
    def expires_at(self) -> datetime: ...


class CertificatePort(Protocol):
    def make_link(self, person_id: str, lang: str = "vi") -> str:
        """A signed, expiring link to the person's certificate page (`/c/{token}`), in `lang`."""
        ...

    async def issue(self, person: Person, doses: Sequence[Dose]) -> IssuedCertificateLike: ...


@dataclass(frozen=True)
class CodeCheck:
    """`reason`: "valid", "revoked", "expired" (the holder fields are filled: the year matched),
    "unknown" (no such code, or a wrong year: nothing is revealed), "check the code" (mistyped:
    the check character failed), "locked" / "too many attempts" (guessing limits).
    `certificates.code_store.CodeVerdict` has these fields and more (person_id, retry_after)."""

    valid: bool
    reason: str
    holder_name: str | None = None
    birth_year: int | None = None
    doses: int = 0
    latest_dose_date: date | None = None


@runtime_checkable
class CertificateCodePort(Protocol):
    """Short certificate codes (`VX7K-3D9Q-MRT4`) shown with a birth year at checkpoints."""

    async def code_for(self, person: Person, doses: Sequence[Dose]) -> str: ...

    async def verify_code(self, code: str, birth_year: int, *, caller: str | None = None) -> CodeCheck:
        """`caller` (`sms:+8490…`, `ussd:+8490…`) counts failed checks per caller."""
        ...
