"""What the certificate layer needs to know about a person and a dose.

Structural types: `registry_client.models.Person` and `Dose` satisfy them without this
package importing the registry client (certificates is the bottom layer).
"""

from __future__ import annotations

from datetime import date
from typing import Protocol


class HolderLike(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def national_id(self) -> str: ...

    @property
    def date_of_birth(self) -> date: ...

    @property
    def full_name(self) -> str: ...


class DoseLike(Protocol):
    @property
    def dose_number(self) -> int: ...

    @property
    def product(self) -> str: ...  # EU DCC medicinal-product code

    @property
    def administered_on(self) -> date: ...

    @property
    def lot(self) -> str | None: ...

    @property
    def site_code(self) -> str: ...
