"""The permission matrix: every console route × role × own/other site (and anonymous)."""

from __future__ import annotations

from typing import Any

import pytest

from registry_client.models import CaseKind
from tests.console.conftest import AN, BINH, CUONG, PNG, Console, csrf_of, demo_case_ref, file_case

# principals: anonymous, agent lan, site minh (HCM07), site hoa (HN001), admin quan
PRINCIPALS = ("anon", "lan", "minh", "hoa", "quan")
AGENT_ADMIN = {"lan", "quan"}
ADMIN = {"quan"}
ALL = {"lan", "minh", "hoa", "quan"}
HCM07 = {"minh", "quan"}  # may see the HCM07 report (own site + admin)
HOTLINE = {"lan", "quan"}  # may see the hotline report

# (name, method, path, form data, who is allowed, the exact answer to an allowed user: 200, or the
# place a 303 sends them); {hcm} = a report routed to HCM07, {hot} = a report in the hotline
# queue, {att} = the HCM07 report's photo, {pid} = a person. Allowed posts carry input that is
# refused as invalid (and sent back where they came from), so the matrix changes nothing — but for
# "start review", which has no input and is answered the same way the second time.
HOME = {"lan": "/agent/search", "minh": "/agent/queue", "hoa": "/agent/queue", "quan": "/agent/admin"}
ROUTES: list[tuple[str, str, str, dict[str, Any] | str | None, set[str], Any]] = [
    ("home", "GET", "/agent/", None, ALL, HOME),
    ("notifications", "GET", "/agent/notifications", None, ALL, 200),
    ("notifications-read", "POST", "/agent/notifications/read", {}, ALL, "/agent/notifications"),
    ("search", "GET", "/agent/search?phone=0938111222", None, AGENT_ADMIN, 200),
    ("person", "GET", "/agent/persons/{pid}", None, AGENT_ADMIN, 200),
    (
        "send-link",
        "POST",
        "/agent/persons/{pid}/send-link",
        {"channel": "fax"},
        AGENT_ADMIN,
        "/agent/persons/{pid}",
    ),
    (
        "file-report",
        "POST",
        "/agent/persons/{pid}/report",
        {"kind": "bogus"},
        AGENT_ADMIN,
        "/agent/persons/{pid}",
    ),
    (
        "phone-change",
        "POST",
        "/agent/persons/{pid}/phone",
        {"new_phone": "x"},
        AGENT_ADMIN,
        "/agent/persons/{pid}",
    ),
    ("queue-own", "GET", "/agent/queue", None, ALL, 200),
    ("queue-HCM07", "GET", "/agent/queue?site=HCM07", None, HCM07, 200),
    ("queue-hotline", "GET", "/agent/queue?site=hotline", None, HOTLINE, 200),
    ("case-HCM07", "GET", "/agent/cases/{hcm}", None, HCM07, 200),
    ("case-hotline", "GET", "/agent/cases/{hot}", None, HOTLINE, 200),
    ("photo-HCM07", "GET", "/agent/cases/{hcm}/attachments/{att}", None, HCM07, 200),
    (
        "approve-HCM07",
        "POST",
        "/agent/cases/{hcm}/approve",
        {"record_dose": "yes", "vaccine": "nope"},
        HCM07,
        "/agent/cases/{hcm}",
    ),
    (
        "approve-hotline",
        "POST",
        "/agent/cases/{hot}/approve",
        {"record_dose": "yes", "vaccine": "nope"},
        ADMIN,
        "/agent/cases/{hot}",
    ),
    ("reject-HCM07", "POST", "/agent/cases/{hcm}/reject", {"reason": ""}, HCM07, "/agent/cases/{hcm}"),
    ("reject-hotline", "POST", "/agent/cases/{hot}/reject", {"reason": ""}, ADMIN, "/agent/cases/{hot}"),
    (
        "reassign-HCM07",
        "POST",
        "/agent/cases/{hcm}/reassign",
        {"target": "HCM07"},
        HCM07,
        "/agent/cases/{hcm}",
    ),
    (
        "reassign-hotline",
        "POST",
        "/agent/cases/{hot}/reassign",
        {"target": "hotline"},
        HOTLINE,
        "/agent/cases/{hot}",
    ),
    ("start-review-HCM07", "POST", "/agent/cases/{hcm}/start-review", {}, HCM07, "/agent/cases/{hcm}"),
    ("start-review-hotline", "POST", "/agent/cases/{hot}/start-review", {}, ADMIN, "/agent/cases/{hot}"),
    ("upload-HCM07", "POST", "/agent/cases/{hcm}/attachments", "empty-file", HCM07, "/agent/cases/{hcm}"),
    (
        "bulk-approve",
        "POST",
        "/agent/bulk-approve",
        {"vaccine": "nope"},
        {"minh", "hoa", "quan"},
        "/agent/queue",
    ),
    ("dashboard", "GET", "/agent/admin", None, ADMIN, 200),
    ("users", "GET", "/agent/admin/users", None, ADMIN, 200),
    (
        "user-create",
        "POST",
        "/agent/admin/users",
        {"username": "!", "role": "agent"},
        ADMIN,
        "/agent/admin/users",
    ),
    ("user-disable", "POST", "/agent/admin/users/99999/disable", {}, ADMIN, "/agent/admin/users"),
    ("user-enable", "POST", "/agent/admin/users/99999/enable", {}, ADMIN, "/agent/admin/users"),
    (
        "user-password",
        "POST",
        "/agent/admin/users/99999/password",
        {"password": "x"},
        ADMIN,
        "/agent/admin/users",
    ),
    ("sites", "GET", "/agent/admin/sites", None, ADMIN, 200),
    ("site-save", "POST", "/agent/admin/sites", {"code": "", "name": ""}, ADMIN, "/agent/admin/sites"),
    ("sla", "GET", "/agent/admin/sla", None, ADMIN, 200),
    ("sla-save", "POST", "/agent/admin/sla", {"days": "abc"}, ADMIN, "/agent/admin/sla"),
    ("outbox", "GET", "/agent/admin/outbox", None, ADMIN, 200),
]


@pytest.fixture(scope="module")
def matrix(module_console: Console) -> dict[str, Any]:
    c = module_console
    assert demo_case_ref(c)
    photo_case = file_case(c, BINH, site="HCM07", photo=True, kind=CaseKind.OTHER, doses_concerned=None)
    assert photo_case.site_code == "HCM07" and not photo_case.joined
    hot = file_case(c, CUONG).ref
    assert c.call(c.state.registry.get_correction, hot).site_code is None
    case = c.call(c.state.registry.get_correction, photo_case.ref)
    sessions: dict[str, dict[str, str]] = {"anon": {}}
    tokens: dict[str, str] = {"anon": "no-session"}
    for user in PRINCIPALS[1:]:
        c.as_user(user)
        sessions[user] = dict(c.client.cookies)
        tokens[user] = c.token()
    c.client.cookies.clear()
    return {
        "ids": {
            "hcm": photo_case.ref,
            "hot": hot,
            "att": case.attachments[0].id,
            "pid": c.handle(c.people[AN]),
        },
        "sessions": sessions,
        "tokens": tokens,
    }


@pytest.mark.parametrize("who", PRINCIPALS)
@pytest.mark.parametrize(
    ("name", "method", "path", "data", "allowed", "answer"), ROUTES, ids=[r[0] for r in ROUTES]
)
def test_route_permission(
    module_console: Console,
    matrix: dict[str, Any],
    who: str,
    name: str,
    method: str,
    path: str,
    data: Any,
    allowed: set[str],
    answer: Any,
) -> None:
    client = module_console.client
    client.cookies.clear()
    for key, value in matrix["sessions"][who].items():
        client.cookies.set(key, value, path="/agent")
    url = path.format(**matrix["ids"])
    if method == "GET":
        response = client.get(url, follow_redirects=False)
    elif data == "empty-file":
        response = client.post(
            url,
            data={"csrf_token": matrix["tokens"][who]},
            files={"photo": ("x.png", b"", "image/png")},
            follow_redirects=False,
        )
    else:
        response = client.post(
            url, data={"csrf_token": matrix["tokens"][who], **data}, follow_redirects=False
        )
    if who == "anon":
        assert response.status_code == 303 and response.headers["location"].startswith("/agent/login"), (
            response.text[:300]
        )
    elif who in allowed:
        if isinstance(answer, dict):
            answer = answer[who]
        got = (response.status_code, response.headers.get("location"))
        if answer == 200:
            assert got == (200, None), f"{who} {name}: {got} {response.text[:300]}"
        else:
            assert got == (303, answer.format(**matrix["ids"])), f"{who} {name}: {got}"
    else:
        assert response.status_code == 403, f"{who} {name}: {response.status_code}"
        assert "text/html" in response.headers["content-type"]


def test_photo_bytes_reach_only_authorised_users(module_console: Console, matrix: dict[str, Any]) -> None:
    client = module_console.client
    url = "/agent/cases/{hcm}/attachments/{att}".format(**matrix["ids"])
    for who, expected in (("minh", 200), ("quan", 200), ("hoa", 403), ("lan", 403)):
        client.cookies.clear()
        for key, value in matrix["sessions"][who].items():
            client.cookies.set(key, value, path="/agent")
        response = client.get(url)
        assert response.status_code == expected
        if expected == 200:
            assert response.content == PNG
            assert response.headers["content-type"] == "image/png"
            assert response.headers["x-content-type-options"] == "nosniff"
        else:
            assert PNG not in response.content


def test_unknown_report_is_404_not_500(module_console: Console, matrix: dict[str, Any]) -> None:
    client = module_console.client
    client.cookies.clear()
    for key, value in matrix["sessions"]["quan"].items():
        client.cookies.set(key, value, path="/agent")
    assert client.get("/agent/cases/PA-0000-00").status_code == 404
    assert client.get("/agent/persons/not-a-person").status_code == 404
    assert client.get("/agent/persons/999999").status_code == 404
    assert "csrf_token" in client.get("/agent/notifications").text and csrf_of(
        client.get("/agent/notifications").text
    )
