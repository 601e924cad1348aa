"""Console person URLs use opaque handles, and an agent's person views have a budget.

The attack: person pages lived at `/agent/persons/<registry id>` with sequential ids, so any
agent could walk `/agent/persons/1…N` and read everyone's record without a caller on the line.
Now the URL carries an AES-SIV handle of the id: raw ids and guesses are 404s (nothing viewed,
nothing in the audit log), and more than 60 person views in 10 minutes get a clear 429 page,
audited. The honest agent still finds a caller by national ID and date of birth.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from registry_client.embedded.tables import AuditRow
from tests.console.conftest import AN, BINH, Console, cheap_argon2, start_console  # noqa: F401
from web.console.person_handles import VIEW_LIMIT


@pytest.fixture
def console(sqlite_url: str, tmp_path: Path) -> Iterator[Console]:
    yield from start_console(sqlite_url, tmp_path / "data")


def audited(console: Console, action: str) -> list[tuple[str, str | None]]:
    async def rows() -> list[tuple[str, str | None]]:
        async with console.state.db_sessions() as session:
            found = await session.scalars(select(AuditRow).where(AuditRow.action == action))
            return [(r.actor, r.person_id) for r in found.all()]

    result: list[tuple[str, str | None]] = console.call(rows)
    return result


def test_walking_raw_ids_finds_nothing(console: Console) -> None:
    console.as_user("lan")
    raw_ids = sorted(console.people.values())
    walked = [f"/agent/persons/{n}" for n in range(1, 40)] + [f"/agent/persons/{pid}" for pid in raw_ids]
    answers = {console.client.get(path).status_code for path in walked}
    assert answers == {404}
    for pid in raw_ids:  # the actions too
        assert console.post(f"/agent/persons/{pid}/send-link", {"channel": "sms"}).status_code == 404
    assert audited(console, "person.view") == []


def test_the_honest_agent_reaches_the_caller_by_search(console: Console) -> None:
    console.as_user("lan")
    page = console.client.get("/agent/search", params={"national_id": "001085012345", "dob": "14/03/1985"})
    assert page.status_code == 200 and "Nguyễn Văn An" in page.text
    handle = str(page.url).rsplit("/", 1)[1]
    assert handle == console.handle(console.people[AN])  # stable: the same person, the same URL
    assert console.people[AN] not in handle and len(handle) >= 22
    assert audited(console, "person.view") == [("agent:lan", console.people[AN])]
    # one changed character is another value nobody made
    tampered = handle[:-2] + ("A" if handle[-2] != "A" else "B") + handle[-1]
    assert console.client.get(f"/agent/persons/{tampered}").status_code == 404
    assert console.handle(console.people[AN]) != console.handle(console.people[BINH])


def test_more_than_the_view_budget_gets_429_and_is_audited(console: Console) -> None:
    console.as_user("lan")
    path = f"/agent/persons/{console.handle(console.people[AN])}"
    answers = [console.client.get(path).status_code for _ in range(VIEW_LIMIT)]
    assert answers == [200] * VIEW_LIMIT
    refused = console.client.get(path)
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    assert "quá nhiều hồ sơ" in refused.text and "Nguyễn Văn An" not in refused.text
    assert audited(console, "person.view_refused") == [("agent:lan", console.people[AN])]
    assert len(audited(console, "person.view")) == VIEW_LIMIT
    console.as_user("quan")  # another user has a budget of their own
    assert console.client.get(path).status_code == 200
