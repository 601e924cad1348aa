"""`POST /ussd` against recorded Africa's Talking payloads."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode

import pytest
from fastapi.testclient import TestClient

from tests.sms_gateway.conftest import payload

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
DIAL = payload("ussd_dial.form")
CHAIN = payload("ussd_chain.form")


def with_fields(body: bytes, **fields: str | None) -> bytes:
    params = dict(parse_qsl(body.decode(), keep_blank_values=True))
    for key, value in fields.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    return urlencode(params).encode()


CASES = [
    ("dial", DIAL, 200, "CON Tiem chung COVID-19\n1 Mui da tiem"),
    ("chain in a new session", CHAIN, 200, "CON Nhap ngay sinh"),
    ("missing sessionId", with_fields(DIAL, sessionId=None), 400, ""),
    ("missing phoneNumber", with_fields(DIAL, phoneNumber=None), 400, ""),
    ("garbage phoneNumber", with_fields(DIAL, phoneNumber="abc"), 400, ""),
    ("missing text", with_fields(DIAL, text=None), 200, "CON Tiem chung COVID-19"),
    ("emoji input", with_fields(DIAL, text="😀"), 200, "CON Lua chon khong hop le"),
    ("only separators", with_fields(DIAL, text="***"), 200, "CON "),
    ("oversized body", with_fields(DIAL, text="1" * 70_000), 413, ""),
    ("non-UTF-8", DIAL.replace(b"text=", b"text=%FF%FE"), 400, ""),
]


@pytest.mark.parametrize(("name", "body", "status", "starts"), CASES, ids=[c[0] for c in CASES])
def test_ussd_table(
    make_client: Callable[..., TestClient], name: str, body: bytes, status: int, starts: str
) -> None:
    client = make_client()
    response = client.post("/ussd", content=body, headers=FORM)
    assert response.status_code == status, response.text
    if status == 200:
        assert response.headers["content-type"].startswith("text/plain")
        assert response.text.startswith(starts)
        assert len(response.text) <= 182


@pytest.mark.parametrize("configured", [True, False], ids=["USSD_GATEWAY_TOKEN", "generated"])
@pytest.mark.parametrize(
    ("where", "status"),
    [("none", 403), ("wrong header", 403), ("wrong query", 403), ("header", 200), ("query", 200)],
)
def test_gateway_token(
    make_client: Callable[..., TestClient], where: str, status: int, configured: bool
) -> None:
    client = make_client(ussd_gateway_token="s3cret-gw" if configured else None)
    token = client.headers.pop("X-Gateway-Token")  # the fixture's honest gateway header
    assert (token == "s3cret-gw") is configured
    headers = dict(FORM)
    url = "/ussd"
    if where == "header":
        headers["X-Gateway-Token"] = token
    elif where == "wrong header":
        headers["X-Gateway-Token"] = "nope"
    elif where == "wrong query":
        url += "?token=nope"
    elif where == "query":
        url += f"?token={token}"
    assert client.post(url, content=DIAL, headers=headers).status_code == status


def test_a_replayed_request_gets_the_same_answer(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    client.post("/ussd", content=DIAL, headers=FORM)
    first = client.post("/ussd", content=with_fields(DIAL, text="1"), headers=FORM)
    again = client.post("/ussd", content=with_fields(DIAL, text="1"), headers=FORM)
    assert first.text == again.text and first.text.startswith("CON Nhap so CCCD")
    nxt = client.post("/ussd", content=with_fields(DIAL, text="1*0"), headers=FORM)
    assert nxt.text.startswith("CON Tiem chung COVID-19")  # 0 went back to the menu
