"""The JSON API (docs/http-api.md): tokens, send-link, corrections list, resolve — same permissions
as the pages."""

from __future__ import annotations

from registry_client.models import CaseKind, CaseStatus, DoseSource
from tests.console.conftest import AN, BINH, CUONG, PASSWORD, Console, demo_case_ref, file_case
from tests.console.test_agent import outbox_rows


def test_token_endpoint(console: Console) -> None:
    ok = console.client.post("/api/agent/token", json={"username": "lan", "password": PASSWORD})
    assert ok.status_code == 200 and ok.json()["token"].startswith("vxt_") and ok.json()["expires_in"] > 3600
    bad = console.client.post("/api/agent/token", json={"username": "lan", "password": "wrong"})
    assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"
    assert console.client.post("/api/agent/token", json={"username": "lan"}).status_code == 422
    assert (
        console.client.post(
            "/api/agent/token", content=b"not json", headers={"content-type": "application/json"}
        ).status_code
        == 422
    )


def test_calls_need_a_valid_bearer_token(console: Console) -> None:
    for headers in ({}, {"Authorization": "Bearer vxt_forged"}, {"Authorization": "Basic bGFuOng="}):
        response = console.client.get("/api/corrections", headers=headers)
        assert response.status_code == 401 and response.json() == {"detail": "not_authenticated"}
    # a browser session cookie is not a bearer token
    console.as_user("quan")
    assert console.client.get("/api/corrections").status_code == 401


def test_send_link(console: Console) -> None:
    headers = console.bearer("lan")
    accepted = console.client.post(
        "/api/agent/send-link",
        headers=headers,
        json={"national_id": AN, "date_of_birth": "1985-03-14", "channel": "sms"},
    )
    assert accepted.status_code == 202 and accepted.json() == {
        "status": "queued",
        "channel": "sms",
        "sent_to": "09******67",
    }
    [row] = outbox_rows(console)
    assert (row.address, row.template) == ("+84901234567", "sms.cert_link")
    unknown = console.client.post(
        "/api/agent/send-link",
        headers=headers,
        json={"national_id": AN, "date_of_birth": "1985-03-15", "channel": "sms"},
    )
    assert unknown.status_code == 404 and "no person" in unknown.json()["detail"]
    no_dose = console.client.post(
        "/api/agent/send-link",
        headers=headers,
        json={"national_id": CUONG, "date_of_birth": "1995-11-30", "channel": "sms"},
    )
    assert no_dose.status_code == 409
    for body in (
        {"national_id": "12345", "date_of_birth": "1985-03-14", "channel": "sms"},
        {"national_id": AN, "date_of_birth": "14th of March", "channel": "sms"},
        {"national_id": AN, "date_of_birth": "1985-03-14", "channel": "fax"},
        {"national_id": AN},
        {"national_id": AN, "date_of_birth": "1985-03-14", "channel": "sms", "phone": 1}
        | {"national_id": ["x"]},
    ):
        assert console.client.post("/api/agent/send-link", headers=headers, json=body).status_code == 422, (
            body
        )
    assert len(outbox_rows(console)) == 1
    site = console.client.post(
        "/api/agent/send-link",
        headers=console.bearer("minh"),
        json={"national_id": AN, "date_of_birth": "1985-03-14", "channel": "sms"},
    )
    assert site.status_code == 403


def test_corrections_listing_per_role(console: Console) -> None:
    demo = demo_case_ref(console)
    hotline = file_case(console, CUONG).ref
    minh, hoa, lan, quan = (console.bearer(u) for u in ("minh", "hoa", "lan", "quan"))
    own = console.client.get(
        "/api/corrections", params={"status": "open", "site": "HCM07"}, headers=minh
    ).json()
    assert [c["ref"] for c in own["corrections"]] == [demo] and own["site"] == "HCM07"
    first = own["corrections"][0]
    assert (
        first["status"] == "routed"
        and first["sla_state"] == "on_time"
        and first["person"]["national_id_masked"] == "079******321"
    )
    assert first["contact_phone_masked"] == "09******78" and first["claimed"]["vaccine"] == "Vero Cell"
    assert console.client.get("/api/corrections", headers=minh).json()["site"] == "HCM07"  # default: own site
    assert console.client.get("/api/corrections", params={"site": "HCM07"}, headers=hoa).status_code == 403
    assert console.client.get("/api/corrections", params={"site": "hotline"}, headers=hoa).status_code == 403
    assert [c["ref"] for c in console.client.get("/api/corrections", headers=lan).json()["corrections"]] == [
        hotline
    ]
    assert console.client.get("/api/corrections", params={"site": "HCM07"}, headers=lan).status_code == 403
    everything = console.client.get("/api/corrections", params={"status": "all"}, headers=quan).json()
    assert {c["ref"] for c in everything["corrections"]} == {demo, hotline}
    assert console.client.get("/api/corrections", params={"status": "bogus"}, headers=quan).status_code == 422


def approve_body() -> dict:
    return {
        "decision": "approved",
        "note": "confirmed from the site log",
        "dose": {
            "dose_number": 2,
            "vaccine": "Vero Cell",
            "lot": "202110A",
            "administered_on": "2021-10-08",
            "site_code": "HCM07",
        },
    }


def test_resolve_approved(console: Console) -> None:
    ref = demo_case_ref(console)
    minh, hoa, lan = console.bearer("minh"), console.bearer("hoa"), console.bearer("lan")
    assert (
        console.client.post(f"/api/corrections/{ref}/resolve", json=approve_body(), headers=hoa).status_code
        == 403
    )
    assert (
        console.client.post(f"/api/corrections/{ref}/resolve", json=approve_body(), headers=lan).status_code
        == 403
    )
    assert (
        console.client.post(
            "/api/corrections/PA-0000-00/resolve", json=approve_body(), headers=minh
        ).status_code
        == 404
    )
    no_dose = {"decision": "approved", "note": "x"}
    assert console.client.post(f"/api/corrections/{ref}/resolve", json=no_dose, headers=minh).json() == {
        "detail": "dose_required"
    }
    bad_vaccine = approve_body()
    bad_vaccine["dose"]["vaccine"] = "Unobtainium"
    assert (
        console.client.post(f"/api/corrections/{ref}/resolve", json=bad_vaccine, headers=minh).status_code
        == 422
    )
    assert (
        console.client.post(
            f"/api/corrections/{ref}/resolve", json={"decision": "maybe"}, headers=minh
        ).status_code
        == 422
    )
    assert console.call(console.state.registry.get_correction, ref).is_open
    done = console.client.post(f"/api/corrections/{ref}/resolve", json=approve_body(), headers=minh)
    assert done.status_code == 200, done.text
    body = done.json()
    assert (
        body["status"] == "approved" and body["citizen_told"] is True and body["certificate_reissued"] is True
    )
    dose = console.call(console.state.registry.list_doses, console.people[BINH])[1]
    assert (dose.product, dose.source, dose.recorded_by) == (
        "BBIBP-CorV",
        DoseSource.CORRECTION,
        "site:hcm07/minh",
    )
    [told] = [r for r in outbox_rows(console) if r.kind == "notification"]
    assert told.template == "sms.case_approved_link" and told.address == "+84912345678"
    again = console.client.post(f"/api/corrections/{ref}/resolve", json=approve_body(), headers=minh)
    assert again.status_code == 409


def test_resolve_rejected_by_admin_on_any_queue(console: Console) -> None:
    case = file_case(console, AN, site="HN001", kind=CaseKind.WRONG_PERSONAL_DATA, doses_concerned=None)
    quan = console.bearer("quan")
    response = console.client.post(
        f"/api/corrections/{case.ref}/resolve",
        json={"decision": "rejected", "note": "the data on record is right"},
        headers=quan,
    )
    assert response.status_code == 200 and response.json()["status"] == "rejected"
    assert console.call(console.state.registry.get_correction, case.ref).status == CaseStatus.REJECTED
    [told] = [r for r in outbox_rows(console) if r.kind == "notification"]
    assert told.template == "sms.case_rejected" and told.params["note"] == "the data on record is right"
