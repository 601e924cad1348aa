"""Opaque person handles for console URLs (`/agent/persons/{handle}`), and the per-agent budget
of person views.

A handle is the registry's person id encrypted with AES-SIV under a key of its own (derived from
SECRET_KEY for this one purpose): the same person always gets the same handle (bookmarks and
history keep working), nobody can make the handle of another id, and a handle says nothing about
the id. Walking `/agent/persons/1…N` (or any guessed value) therefore finds only 404s; a person
is reached through the search (national ID + date of birth, or a phone), which is audited.

An agent may open at most VIEW_LIMIT person pages in VIEW_WINDOW; past that the page answers
429 and the refusal is audited. The budget is one atomic counter per agent, shared by every
worker (SQL, or Redis when REDIS_URL is set).
"""

from __future__ import annotations

import base64
import binascii
from datetime import timedelta
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from conversations.limits import Counters, RateCounters
from db.secret_keys import derive_key

PURPOSE = "console-person-handles"
ASSOCIATED = b"console person handle"
VIEW_LIMIT = 60
VIEW_WINDOW = timedelta(minutes=10)
MAX_HANDLE = 200


class PersonHandles:
    def __init__(self, secret_key: str | bytes) -> None:
        self._siv = AESSIV(derive_key(secret_key, PURPOSE))

    def handle(self, person_id: object) -> str:
        sealed = self._siv.encrypt(str(person_id).encode(), [ASSOCIATED])
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()

    def person_id(self, handle: str) -> str | None:
        """The person id behind a handle; None for anything this service did not make."""
        if not handle or len(handle) > MAX_HANDLE:
            return None
        try:
            sealed = base64.urlsafe_b64decode(handle + "=" * (-len(handle) % 4))
            return self._siv.decrypt(sealed, [ASSOCIATED]).decode()
        except (binascii.Error, ValueError, InvalidTag, UnicodeDecodeError):
            return None


class ViewBudget:
    def __init__(self, counters: Counters) -> None:
        self.counters = counters

    async def take(self, user_id: int) -> bool:
        """One person view for this agent; False when the budget of the window is spent."""
        return await self.counters.take(
            f"console-person-views:{user_id}", limit=VIEW_LIMIT, window=VIEW_WINDOW
        )


def view_counters(state: Any) -> Counters:
    """The conversation service's counters (SQL or Redis, shared by every worker) when wired,
    else SQL counters over the app's database."""
    conversations = getattr(state, "conversations", None)
    counters = getattr(getattr(conversations, "services", None), "counters", None)
    return counters if counters is not None else RateCounters(state.db_sessions)


def handles_of(state: Any) -> PersonHandles:
    """The app's handle maker (made once per app, from its settings)."""
    handles: PersonHandles | None = getattr(state, "person_handles", None)
    if handles is None:
        handles = state.person_handles = PersonHandles(state.settings.resolved_secret_key)
    return handles


def view_budget_of(state: Any) -> ViewBudget:
    budget: ViewBudget | None = getattr(state, "person_view_budget", None)
    if budget is None:
        budget = state.person_view_budget = ViewBudget(view_counters(state))
    return budget
