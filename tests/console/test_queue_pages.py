"""A site with more open reports than one query used to fetch (500): filters and search find every
one of them, the queue says how many there are, and pages through them."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

from registry_client.case_pages import QueueQuery
from registry_client.models import CaseKind, ClaimedDose, CorrectionQuery, DosesConcerned, NewCorrection
from tests.console.conftest import Console, demo_case_ref

MANY = 530
ROW = re.compile(r'<a href="/agent/cases/(PA-[0-9A-Z-]+)">')


def report(n: int, name: str, kind: CaseKind = CaseKind.MISSING_DOSE) -> NewCorrection:
    return NewCorrection(
        kind=kind,
        doses_concerned=DosesConcerned.SECOND if kind == CaseKind.MISSING_DOSE else None,
        claimed=ClaimedDose(date(2021, 9, 1), "AstraZeneca", "HCM07"),
        channel="sms",
        channel_address=f"+8491{n:07d}",
        claimed_national_id=f"0791{n:08d}",
        claimed_date_of_birth=date(1990, 1, 1),
        claimed_name=name,
        contact_phone=f"+8491{n:07d}",
    )


def file_many(console: Console) -> str:
    """MANY reports routed to HCM07, filed a minute apart; the last one is the odd one out."""
    registry = console.state.registry
    inner = registry.inner
    start = datetime.now().astimezone() - timedelta(minutes=MANY + 5)
    last = ""
    for n in range(MANY):
        inner._clock = lambda n=n: start + timedelta(minutes=n)  # filed in this order
        odd = n == MANY - 1
        new = report(
            n, "Lê Văn Kim Ngân" if odd else f"Người số {n}", CaseKind.OTHER if odd else CaseKind.MISSING_DOSE
        )
        case = console.call(registry.submit_correction, new)
        assert case.site_code == "HCM07", case
        last = case.ref
    return last


def test_a_long_site_queue_is_filtered_and_counted_in_full(console: Console) -> None:
    demo = demo_case_ref(console)
    odd = file_many(console)
    total = MANY + 1  # and the demo data set's report
    console.as_user("minh")

    # the report filed last (501st and later by due date) is found by search and by kind
    found = console.client.get("/agent/queue", params={"q": "kim ngân"}).text
    assert ROW.findall(found) == [odd]
    assert "Phản ánh 1–1 trên tổng 1" in found
    by_kind = console.client.get("/agent/queue", params={"kind": "other"}).text
    assert ROW.findall(by_kind) == [odd]
    by_ref = console.client.get("/agent/queue", params={"q": odd.lower()}).text
    assert ROW.findall(by_ref) == [odd]

    # the whole queue: the total, and pages that together hold every report once, in due order
    first = console.client.get("/agent/queue").text
    assert f"Phản ánh 1–50 trên tổng {total}" in first
    seen, url = [], "/agent/queue"
    while url:
        page = console.client.get(url).text
        seen += ROW.findall(page)
        nxt = re.search(r'<a href="([^"]+)" rel="next">', page)
        url = nxt[1].replace("&amp;", "&") if nxt else ""
    assert len(seen) == total and len(set(seen)) == total
    assert seen.index(odd) >= 500 and demo in seen  # beyond what one query used to fetch
    assert f"Phản ánh 501–{total} trên tổng {total}" in console.client.get("/agent/queue?page=11").text

    # filters and paging together: the next link keeps the filters
    kind_pages = console.client.get("/agent/queue", params={"kind": "missing_dose", "page": "2"}).text
    assert re.search(r'rel="next"', kind_pages) and "kind=missing_dose" in kind_pages
    assert "Phản ánh 51–100 trên tổng 530" in kind_pages  # every report but the odd one


def test_the_registry_counts_what_it_filters(console: Console) -> None:
    odd = file_many(console)
    registry = console.state.registry
    hcm = CorrectionQuery(site_code="HCM07")
    whole = console.call(registry.page_corrections, QueueQuery(hcm, offset=500, limit=200))
    assert whole.total == MANY + 1 and len(whole.cases) == MANY + 1 - 500
    assert odd in [c.ref for c in whole.cases]  # the 501st or later
    text = console.call(registry.page_corrections, QueueQuery(hcm, text="  KIM   Ngân "))
    assert [c.ref for c in text.cases] == [odd] and text.total == 1
    due = next(c.due_on for c in whole.cases if c.ref == odd)
    window = console.call(registry.page_corrections, QueueQuery(hcm, due_from=due, due_to=due, limit=5))
    assert window.total >= 1 and all(c.due_on == due for c in window.cases)
    nothing = console.call(registry.page_corrections, QueueQuery(hcm, text="100%_"))
    assert nothing.total == 0 and nothing.cases == []  # LIKE wildcards are searched as text
