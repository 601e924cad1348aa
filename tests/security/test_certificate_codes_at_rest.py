"""Certificate codes are never stored readable.

The attack (as reported): "the 12-symbol certificate code is stored in plain text in
`certificate_codes.code`; whoever reads the database (a backup, a replica) reads every citizen's
code and, with a birth year, their name and doses."

Reproduced through the real app: An logs in by SMS (`DK …`, the one-time code, Twilio-signed
requests to POST /sms/twilio), sends `MA` and gets his code by SMS. Then the `certificate_codes`
table and the raw bytes of the SQLite files are read. Before the fix the code stood in
`certificate_codes.code`; now the row holds only an HMAC under a key derived from SECRET_KEY and
a seal bound to the certificate's UVCI, and the code is nowhere in the files. The honest user
loses nothing: `MA` sends the same code again, `KT` by SMS and POST /api/verify-code accept it
with the right birth year, and a wrong year still costs the code's budget before any comparison.
Codes an earlier version stored in clear are sealed when the service starts (SQLite and
PostgreSQL), and keep working.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, insert, select, text, update

from certificates.code_store import UNKNOWN, VALID
from certificates.code_tables import CertificateCodeRow
from certificates.codes import canonical, format_code, generate_code
from certificates.service import build_certificate_service
from certificates.tables import IssuedCertificateRow
from db.base import make_async_engine, make_sessionmaker, make_sync_engine
from db.migrate import alembic_config, migrate
from db.secret_keys import CERTIFICATE_CODES, derive_key
from settings import Settings
from tests.conftest import PG_ADMIN_URL
from tests.conversations.conftest import demo_template, demo_url  # noqa: F401 - shared fixtures
from tests.sms_gateway.conftest import AUTH_TOKEN, PUBLIC, make_client, payload  # noqa: F401 - fixture

SECRET = "test-secret-key"  # what make_client gives the app
AN_PHONE, CHECKPOINT = "+84901234567", "+84987654321"
CODE = re.compile(r"\b[2-9A-HJKMNP-Z]{4}-[2-9A-HJKMNP-Z]{4}-[2-9A-HJKMNP-Z]{4}\b")
OTP = re.compile(r"\b(\d{6})\b")
INBOUND = payload("twilio_inbound_sms.form")


def _sms(client: TestClient, phone: str, body: str) -> str:
    """One SMS to the service, signed as Twilio signs it; returns the TwiML answer."""
    from tests.sms_gateway.test_twilio_webhook import sign, with_fields

    sid = f"SM{uuid.uuid4().hex}"
    form = with_fields(INBOUND, From=phone, Body=body, MessageSid=sid, SmsSid=sid, SmsMessageSid=sid)
    response = client.post("/sms/twilio", content=form, headers=sign("/sms/twilio", form))
    assert response.status_code == 200, response.text
    return response.text


def _received(client: TestClient, phone: str) -> list[str]:
    """The texts the phone got (the local outbox, opened as the simulator opens it)."""
    outbox = client.app.state.outbox  # type: ignore[attr-defined]
    rows = asyncio.run(outbox.messages_to("sms", phone))
    return [" ".join([row.text or "", *map(str, (row.params or {}).values())]) for row in rows]


def _an_code(client: TestClient) -> str:
    """An sends MA (logging in first when his phone is not bound yet); the code from his SMS."""
    answer = _sms(client, AN_PHONE, "MA")
    if "Ma chung nhan da gui" not in answer:
        assert "Ma 6 so da gui" in _sms(client, AN_PHONE, "DK 001085012345 14031985")
        [otp] = OTP.findall(_received(client, AN_PHONE)[-1])
        _sms(client, AN_PHONE, otp)
        answer = _sms(client, AN_PHONE, "MA")
    assert "Ma chung nhan da gui" in answer, answer
    [code] = set(CODE.findall(_received(client, AN_PHONE)[-1]))
    return code


def _database(url: str) -> Path:
    return Path(url.split(":///", 1)[1])


def _database_bytes(url: str) -> bytes:
    """Every byte SQLite keeps: the database file and its -wal and -shm files."""
    path = _database(url)
    files = (path, Path(f"{path}-wal"), Path(f"{path}-shm"))
    return b"".join(f.read_bytes() for f in files if f.exists())


def _code_rows(url: str) -> list[dict[str, Any]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(text("SELECT * FROM certificate_codes"))]
    finally:
        engine.dispose()


def _assert_nowhere(url: str, code: str) -> None:
    plain, shown = canonical(code), format_code(canonical(code))
    for row in _code_rows(url):
        assert not any(plain in str(value) or shown in str(value) for value in row.values()), row
    raw = _database_bytes(url)
    for form in (plain, shown, plain.lower()):
        assert form.encode() not in raw, f"{form} is readable in the database files"


def _verify(client: TestClient, code: str, year: int, status: int = 200) -> dict[str, Any]:
    response = client.post("/api/verify-code", json={"code": code, "birth_year": year})
    assert response.status_code == status, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_a_code_sent_by_sms_is_nowhere_in_the_database(
    make_client: Callable[..., TestClient],  # noqa: F811
    demo_url: str,  # noqa: F811
) -> None:
    client = make_client(twilio_auth_token=AUTH_TOKEN)
    code = _an_code(client)

    _assert_nowhere(demo_url, code)  # before the fix: certificate_codes.code held it in clear

    # the row holds a keyed digest (not a plain hash anyone could recompute from a guess) and a seal
    [row] = [r for r in _code_rows(demo_url) if r["person_id"]]
    key = derive_key(SECRET, CERTIFICATE_CODES)
    assert row["code_digest"] == hmac.new(key, canonical(code).encode(), hashlib.sha256).hexdigest()
    assert row["code_digest"] != hashlib.sha256(canonical(code).encode()).hexdigest()
    assert row["code_sealed"].startswith("v1.") and row["code"] is None

    # nothing lost for the honest user: the same code again, accepted with the right year only
    assert _an_code(client) == code
    assert "HOP LE: Nguyen V. An, sinh 1985" in _sms(client, CHECKPOINT, f"KT {code.lower()} 1985")
    assert _verify(client, code, 1985)["valid"] is True
    assert _verify(client, code.replace("-", " "), 1985)["valid"] is True
    assert _verify(client, code, 1986)["valid"] is False
    _assert_nowhere(demo_url, code)  # checking it left no trace either (counters are keyed)


def test_a_wrong_year_still_spends_the_codes_budget_before_any_comparison(
    make_client: Callable[..., TestClient],  # noqa: F811
) -> None:
    client = make_client(twilio_auth_token=AUTH_TOKEN)
    code = _an_code(client)
    for attempt in range(5):  # GuessingLimits.code_failures: each wrong year is counted
        assert _verify(client, code, 1900 + attempt)["valid"] is False
    answer = _verify(client, code, 1985, status=429)  # the right year now: the code is locked first
    assert answer["valid"] is False and answer["reason"].startswith("locked")
    assert answer["holder"] == {"name": "", "birth_year": None}  # nothing revealed


def test_codes_an_earlier_version_kept_in_clear_are_sealed_at_start(
    make_client: Callable[..., TestClient],  # noqa: F811
    demo_url: str,  # noqa: F811
) -> None:
    code = _an_code(make_client(twilio_auth_token=AUTH_TOKEN))
    engine = create_engine(demo_url)
    with engine.begin() as conn:  # the row as revision 0006a leaves one an earlier version wrote
        conn.execute(
            update(CertificateCodeRow.__table__).values(code=canonical(code), code_digest=None, code_sealed=None)
        )
    engine.dispose()
    assert canonical(code).encode() in _database_bytes(demo_url)  # the state being fixed

    client = make_client(twilio_auth_token=AUTH_TOKEN)  # the next start seals it
    _assert_nowhere(demo_url, code)
    assert _an_code(client) == code  # the code the citizen already has keeps working
    assert "HOP LE: Nguyen V. An, sinh 1985" in _sms(client, CHECKPOINT, f"KT {code} 1985")
    assert _verify(client, code, 1985)["valid"] is True
    _assert_nowhere(demo_url, code)


# -- the migration: an old database on SQLite and PostgreSQL ---------------------------------------
@pytest.fixture(params=["sqlite", "postgres"])
def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    name = f"vaxcodes_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _old_rows(count: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    now = datetime.now(UTC)
    certificates, codes = [], []
    for i in range(count):
        uvci = f"URN:UVCI:01:VN:OLD{i:06d}#X"
        certificates.append(
            {
                "person_id": f"p-old-{i}",
                "uvci": uvci,
                "fingerprint": f"{i:064d}",
                "kid": "00" * 8,
                "issued_at": now,
                "expires_at": now + timedelta(days=365),
                "revoked_at": now - timedelta(days=1) if i == 1 else None,
                "dose_count": 2,
                "latest_dose_on": date(2021, 10, 1),
                "hc1": "HC1:OLD",
            }
        )
        codes.append(
            {
                "code": generate_code(),
                "uvci": uvci,
                "person_id": f"p-old-{i}",
                "holder_name": "Nguyễn T. Ánh",
                "birth_year": 1960 + i,
                "dose_count": 2,
                "latest_dose_on": date(2021, 10, 1),
                "created_at": now,
            }
        )
    return certificates, codes


async def test_upgrading_seals_the_codes_of_an_old_database(old_database: str, tmp_path: Path) -> None:
    engine = make_sync_engine(old_database)
    certificates, codes = _old_rows(3)
    try:
        with engine.begin() as conn:  # the schema before this fix, with codes an older version wrote
            cfg = alembic_config(old_database)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, ["0002a", "0006"])
        with engine.begin() as conn:
            conn.execute(insert(IssuedCertificateRow.__table__), certificates)
            conn.execute(text(_insert_old_code_sql()), codes)
        migrate(old_database)
        with engine.connect() as conn:  # the migration alone cannot seal (no key): still there
            assert conn.scalar(text("SELECT count(*) FROM certificate_codes WHERE code IS NOT NULL")) == 3

        settings = Settings(database_url=old_database, data_dir=tmp_path / "data", secret_key=SECRET)
        async_engine = make_async_engine(old_database)
        reader = _long_reader(old_database)  # PostgreSQL: a snapshot that still sees the old rows
        try:
            service = build_certificate_service(settings, make_sessionmaker(async_engine))  # the start
            if reader is not None:
                reader.close()
            again = build_certificate_service(settings, make_sessionmaker(async_engine))  # idempotent
            with engine.connect() as conn:
                rows = conn.execute(select(CertificateCodeRow.__table__)).all()
            assert len(rows) == 3 and all(r.code is None and r.code_digest and r.code_sealed for r in rows)
            plain = {c["code"] for c in codes}
            assert not any(str(v) in plain for r in rows for v in r)
            raw = _database_bytes(old_database) if old_database.startswith("sqlite") else _pg_table_bytes(engine)
            assert not any(c.encode() in raw for c in plain), "an old code lingers in the files"
            # every old code still answers, with its certificate's status, and only with its year
            assert (await service.codes.check(codes[0]["code"], 1960)).reason == VALID
            assert (await again.codes.check(format_code(codes[1]["code"]), 1961)).reason == "revoked"
            assert (await service.codes.check(codes[2]["code"], 1999)).reason == UNKNOWN
            # and the same code is given again for its certificate (the seal opens for its UVCI)
            assert await service.codes._code_of(codes[2]["uvci"]) == codes[2]["code"]
        finally:
            if reader is not None:
                reader.close()
            await async_engine.dispose()
    finally:
        engine.dispose()


def _long_reader(url: str) -> psycopg.Connection[Any] | None:
    """A report running through the start on another table: its snapshot keeps the old row
    versions of certificate_codes alive for VACUUM (even VACUUM FULL copies them)."""
    if not url.startswith("postgresql"):
        return None
    conn = psycopg.connect(url)
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    conn.execute("SELECT count(*) FROM issued_certificates").fetchone()
    return conn


def _pg_table_bytes(engine: Any) -> bytes:
    """The files of `certificate_codes` and its indexes as PostgreSQL keeps them on disk (read
    after a checkpoint; the test user is the server's superuser). Dead row versions are in there
    until the table is rewritten."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("CHECKPOINT")
        files = conn.execute(
            text(
                "SELECT pg_relation_filepath(c.oid) FROM pg_class c WHERE c.oid = 'certificate_codes'::regclass "
                "OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'certificate_codes'::regclass)"
            )
        ).scalars()
        return b"".join(conn.scalar(text("SELECT pg_read_binary_file(:f)"), {"f": f}) for f in files.all())


def _insert_old_code_sql() -> str:
    return (
        "INSERT INTO certificate_codes "
        "(code, uvci, person_id, holder_name, birth_year, dose_count, latest_dose_on, created_at) "
        "VALUES (:code, :uvci, :person_id, :holder_name, :birth_year, :dose_count, :latest_dose_on, :created_at)"
    )


async def test_a_seal_opens_only_for_its_certificate_and_with_its_key(sqlite_url: str, tmp_path: Path) -> None:
    """A seal copied onto another certificate's row does not give its code away; after SECRET_KEY
    changed, the stored code can be neither found nor sent, so asking again issues a new one."""
    from tests.certificates.test_codes import ANH, ANH_DOSES, BAO, BAO_DOSES

    engine = make_async_engine(sqlite_url)
    sessions = make_sessionmaker(engine)
    try:
        settings = Settings(database_url=sqlite_url, data_dir=tmp_path / "data", secret_key=SECRET)
        service = build_certificate_service(settings, sessions)
        anh, bao = await service.code_for(ANH, ANH_DOSES), await service.code_for(BAO, BAO_DOSES)
        sync = create_engine(sqlite_url)
        with sync.begin() as conn:  # Bảo's row given Ánh's seal
            rows = {r.person_id: r for r in conn.execute(select(CertificateCodeRow.__table__)).all()}
            conn.execute(
                update(CertificateCodeRow.__table__)
                .where(CertificateCodeRow.__table__.c.person_id == BAO.id)
                .values(code_sealed=rows[ANH.id].code_sealed)
            )
        sync.dispose()
        again = await service.code_for(BAO, BAO_DOSES)
        assert again not in (anh, bao)  # not Ánh's code: a new one for Bảo's certificate
        assert (await service.codes.check(again, BAO.date_of_birth.year)).reason == VALID
        assert (await service.codes.check(anh, ANH.date_of_birth.year)).reason == VALID

        rotated = Settings(database_url=sqlite_url, data_dir=tmp_path / "data", secret_key="another-secret")
        other = build_certificate_service(rotated, sessions)
        assert (await other.codes.check(anh, ANH.date_of_birth.year)).reason == UNKNOWN
        fresh = await other.code_for(ANH, ANH_DOSES)
        assert fresh != anh and (await other.codes.check(fresh, ANH.date_of_birth.year)).reason == VALID
        assert await other.code_for(ANH, ANH_DOSES) == fresh
    finally:
        await engine.dispose()
