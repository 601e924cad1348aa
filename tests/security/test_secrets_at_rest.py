"""Secrets stay secret at rest.

The attack (as reported): "one-time codes and link tokens sit in plain text in the outbox table
for good; the SQLite file and uploads are world-readable; the secret-key file is written before
its mode is set; one secret signs links, sessions and code hashes alike."

Reproduced through the running service (`python main.py serve` with the Twilio stand-in, started
under umask 000 with a world-readable DATA_DIR and no SECRET_KEY): a citizen logs in over USSD and
asks for the certificate link; the code and the link reach the phone (the stand-in), and then the
outbox table and the raw bytes of the database files are read. Before the fix the code stood in
`outbox.params` as `{"code": "123456", ...}` and the link with its whole token, for good; now
neither is anywhere in the files. File modes are read with os.stat; tokens signed the old way
(with SECRET_KEY itself) or for another purpose are refused by the routes.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shutil
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from alembic import command
from itsdangerous import URLSafeSerializer
from sqlalchemy import create_engine, insert, select, text, update

from certificates.links import LinkSigner
from conversations.upload_links import make_upload_link
from db.base import make_async_engine, make_sessionmaker
from db.migrate import alembic_config, migrate
from db.private_files import read_or_create_secret, write_secret_file
from db.secret_keys import PURPOSES, SecretKeys, derive_key
from outbox.sealing import OutboxSeal, SealBroken
from outbox.store import LOCAL_KEEP, OutboundMessage, Outbox, open_row
from outbox.tables import OutboxRow
from outbox.worker import OutboxWorker
from settings import Settings
from sms_gateway.sender import TwilioSender
from sms_gateway.simulator import OutboxWatcher, UssdPhone
from tests.conftest import PG_ADMIN_URL
from tests.console.conftest import AN as AN_ID
from tests.console.conftest import Console, cheap_argon2, console  # noqa: F401 - fixtures
from tests.conversations.conftest import demo_template  # noqa: F401 - shared session fixture
from tests.fakes.twilio_api import TwilioStandIn
from tests.security.running_service import RunningService, running_service
from web.console.auth import SESSION_COOKIE

AN_PHONE = "+84901234567"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 2000
CODE = re.compile(r"\b(\d{6})\b")
LINK = re.compile(r"(http://\S+/c/(\S+))")
UPLOAD = re.compile(r"(http://\S+/upload/\S+)")


@dataclass
class Served:
    service: RunningService
    twilio: TwilioStandIn
    root: Path
    data_dir: Path
    settings: Settings  # what the simulator of this install reads (same DATA_DIR, same DATABASE_URL)
    code: str | None = None  # the one-time code of the first login (the phone stays bound)

    @property
    def database(self) -> Path:
        return self.root / "vax.db"

    def database_bytes(self) -> bytes:
        """Every byte SQLite keeps: the database file and its -wal and -shm files."""
        files = (self.database, Path(f"{self.database}-wal"), Path(f"{self.database}-shm"))
        return b"".join(f.read_bytes() for f in files if f.exists())

    def outbox_rows(self, phone: str) -> list[Any]:
        engine = create_engine(f"sqlite:///{self.database}")
        try:
            with engine.connect() as conn:
                query = select(OutboxRow).where(OutboxRow.address == phone).order_by(OutboxRow.id)
                return list(conn.execute(query).all())
        finally:
            engine.dispose()

    def wait_until_sent(self, phone: str, count: int) -> list[Any]:
        deadline = time.monotonic() + 15
        while True:
            rows = self.outbox_rows(phone)
            if len(rows) >= count and all(r.status in ("sent", "delivered") for r in rows):
                return rows
            assert time.monotonic() < deadline, [(r.kind, r.status) for r in rows]
            time.sleep(0.1)


@pytest.fixture(scope="module")
def served(demo_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:  # noqa: F811
    """The real service with Twilio, started under umask 000, no SECRET_KEY and a DATA_DIR that an
    earlier install left world-readable."""
    root = tmp_path_factory.mktemp("at-rest")
    shutil.copy(demo_template, root / "vax.db")
    os.chmod(root / "vax.db", 0o644)  # as an older version left it
    data_dir = root / "data"
    data_dir.mkdir(mode=0o755)
    os.chmod(data_dir, 0o755)
    previous = os.umask(0)  # the service must not rely on its parent's umask
    try:
        with TwilioStandIn() as twilio:
            env = {
                "SECRET_KEY": "",  # generated into DATA_DIR/secret_key
                "TWILIO_ACCOUNT_SID": twilio.account_sid,
                "TWILIO_AUTH_TOKEN": twilio.auth_token,
                "TWILIO_FROM": twilio.from_number,
                "TWILIO_API_BASE": twilio.base_url,
                "OUTBOX_POLL_SECONDS": "0.1",
            }
            with running_service(root, **env) as service:
                os.umask(previous)
                settings = Settings(database_url=f"sqlite:///{root / 'vax.db'}", data_dir=data_dir)
                yield Served(service, twilio, root, data_dir, settings)
    finally:
        os.umask(previous)


def _phone(served: Served, client: httpx.Client) -> UssdPhone:
    """An's phone on USSD, logged in with the code that reached it by SMS (once: it stays bound)."""
    phone = UssdPhone(client, served.service.base, AN_PHONE, served.settings.resolved_gateway_token)
    if served.code is None:
        phone.dial()
        phone.send("1")
        phone.send(AN_ID)
        assert "Ma 6 so da gui" in phone.send("14031985")
        sms = served.twilio.wait_for(to=AN_PHONE, contains="ma xac thuc", timeout=10)
        code = CODE.search(sms.body)
        assert code is not None
        assert "Da xac thuc: Nguyen Van An" in phone.send(code[1])
        served.code = code[1]
    return phone


def _certificate_link(served: Served, phone: UssdPhone) -> tuple[str, str]:
    """(url, token) of the certificate link the phone asks for over USSD and gets by SMS."""
    already = len(served.twilio.messages)
    phone.dial()
    assert phone.send("2").startswith("CON Link chung nhan da gui qua SMS")
    sms = served.twilio.wait_for(to=AN_PHONE, contains="/c/", timeout=10, after=already)
    link = LINK.search(sms.body)
    assert link is not None
    return link[1], link[2]


def test_the_code_and_the_link_reach_the_phone_but_never_rest_in_the_database(served: Served) -> None:
    with httpx.Client(timeout=10) as client:
        phone = _phone(served, client)
        url, token = _certificate_link(served, phone)
        assert client.get(url).status_code == 200  # the honest user's link opens the certificate
    code = served.code
    assert code is not None

    rows = served.wait_until_sent(AN_PHONE, 2)
    assert {r.kind for r in rows} >= {"otp", "link"}
    for row in rows:
        stored = json.dumps([row.text, row.params, row.sealed], ensure_ascii=False)
        assert code not in stored and token not in stored and token[:12] not in stored
        assert row.sealed is None  # sent: nothing kept to open
    otp = next(r for r in rows if r.kind == "otp")
    cert = next(r for r in rows if r.kind == "link")
    assert otp.params["code"] == "••••••"
    assert cert.params["link"].startswith(url[: -len(token)]) and cert.params["link"].endswith("…")

    everything = served.database_bytes()
    # the rows just read are in these bytes (the search can see them) ...
    assert b"sms.cert_link" in everything and b"sms.otp" in everything
    # ... and neither the code (as a JSON value, how it stood in `outbox.params`) nor the token is
    assert f'"{code}"'.encode() not in everything
    assert token.encode() not in everything and token.split(".")[1].encode() not in everything


def test_data_dir_secret_key_database_and_uploads_are_private(served: Served) -> None:
    with httpx.Client(timeout=10) as client:
        phone = _phone(served, client)
        phone.dial()
        for answer in ("3", "1", "2", "9", "9", "9", "9", "1"):
            screen = phone.send(answer)
        done = phone.send("1")
        ref = re.search(r"PA-[0-9A-Z]{4}-[0-9A-Z]{2}", done)
        assert ref is not None, (screen, done)
        sms = served.twilio.wait_for(to=AN_PHONE, contains=ref[0], timeout=10)
        upload = UPLOAD.search(sms.body)
        assert upload is not None
        sent = client.post(upload[1], files={"file": ("card.jpg", JPEG, "image/jpeg")})
        assert sent.status_code == 200, sent.text

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(served.data_dir) == 0o700  # was 0755: tightened at start, and said so
    assert "readable by others" in (served.root / "serve.log").read_text()
    assert mode(served.data_dir / "secret_key") == 0o600
    for name in ("vax.db", "vax.db-wal", "vax.db-shm"):
        assert mode(served.root / name) == 0o600, name  # vax.db was 0644 before the start
    uploads = [p for p in (served.data_dir / "uploads").rglob("*") if p.is_file()]
    assert uploads and {p.read_bytes() for p in uploads} == {JPEG}
    # nothing under DATA_DIR is open to others: files 0600, folders 0700 (started under umask 000)
    for path in [served.data_dir, *served.data_dir.rglob("*")]:
        assert mode(path) & 0o077 == 0, (path, oct(mode(path)))


def test_each_purpose_has_its_own_key_and_secret_key_itself_signs_nothing(served: Served) -> None:
    secret = (served.data_dir / "secret_key").read_text().strip()
    keys = SecretKeys.derive(secret)
    base = served.service.base
    week = timedelta(days=7)
    with httpx.Client(timeout=10) as client:
        _, token = _certificate_link(served, _phone(served, client))
        person = LinkSigner(keys.links, week).read(token).person_id  # signed with the links key
        assert client.get(f"{base}/c/{LinkSigner(keys.links, week).token(person)}").status_code == 200
        # signed with SECRET_KEY itself (as links were before) or with another purpose's key: refused
        for wrong in (secret.encode(), keys.console_sessions, keys.code_hashes, keys.upload_links):
            assert client.get(f"{base}/c/{LinkSigner(wrong, week).token(person)}").status_code == 404
        # the same for upload links (the page checks only the token)
        assert client.get(make_upload_link(base, keys.upload_links, "PA-7K3D-9Q")).status_code == 200
        for wrong in (secret.encode(), keys.links, keys.console_sessions, keys.outbox_seal):
            assert client.get(make_upload_link(base, wrong, "PA-7K3D-9Q")).status_code == 404


def test_derived_keys_differ_per_purpose_and_agree_across_processes() -> None:
    keys = SecretKeys.derive("one-secret")
    values = [
        keys.links,
        keys.console_sessions,
        keys.code_hashes,
        keys.outbox_seal,
        keys.upload_links,
        keys.certificate_codes,
        keys.certificate_code_seal,
    ]
    assert len(set(values)) == len(PURPOSES) == 7 and all(len(v) == 32 for v in values)
    assert b"one-secret" not in values and SecretKeys.derive("one-secret") == keys  # every worker agrees
    assert SecretKeys.derive("another-secret").links != keys.links
    assert [derive_key("one-secret", p) for p in PURPOSES] == values
    assert "one-secret" not in repr(keys) and keys.links.hex() not in repr(keys)
    with pytest.raises(ValueError):
        derive_key("", "links")
    # a certificate-link token is no console session and no upload link
    token = LinkSigner(keys.links, timedelta(days=1)).token("p-1")
    assert URLSafeSerializer(keys.console_sessions, salt="vx-console-session").loads_unsafe(token)[0] is False


# -- the console: a session cookie re-signed with SECRET_KEY is no session ------------------------
def test_a_session_cookie_signed_with_secret_key_itself_is_refused(console: Console) -> None:  # noqa: F811
    console.as_user("lan")
    genuine = console.client.cookies.get(SESSION_COOKIE, path="/agent")
    assert genuine is not None
    settings = console.state.settings
    session_id = URLSafeSerializer(settings.secret_keys.console_sessions, salt="vx-console-session").loads(
        genuine
    )
    assert console.client.get("/agent/notifications", follow_redirects=False).status_code == 200
    for key in (settings.resolved_secret_key, settings.secret_keys.links):  # the old way; another purpose
        console.client.cookies.clear()
        forged = URLSafeSerializer(key, salt="vx-console-session").dumps(session_id)
        console.client.cookies.set(SESSION_COOKIE, forged, path="/agent")
        refused = console.client.get("/agent/notifications", follow_redirects=False)
        assert refused.status_code in (302, 303) and "/agent/login" in refused.headers["location"]
    console.client.cookies.clear()
    console.client.cookies.set(SESSION_COOKIE, genuine, path="/agent")  # control: the genuine one works
    assert console.client.get("/agent/notifications", follow_redirects=False).status_code == 200


# -- the local outbox (no Twilio): the simulator sees the code, the console and the files do not -----
def test_local_outbox_shows_codes_to_the_simulator_only(console: Console) -> None:  # noqa: F811
    settings = console.state.settings
    watcher = OutboxWatcher(settings, AN_PHONE)  # the terminal simulator of this install
    console.as_user("lan")
    handle = console.handle(console.people[AN_ID])
    assert console.post(f"/agent/persons/{handle}/send-link", {"channel": "sms"}).status_code == 303
    assert console.post(f"/agent/persons/{handle}/send-code").status_code == 303
    assert console.call(console.state.outbox_worker.run_once) == 2  # no provider: kept locally

    shown = watcher.poll()
    watcher.stop()
    link = next(LINK.search(t) for t in shown if "/c/" in t)
    code = next(re.search(r"\b([0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4})\b", t) for t in shown if "KT" in t)
    assert link is not None and code is not None
    assert console.client.get(link[1].removeprefix("http://testserver")).status_code == 200

    async def stored() -> list[OutboxRow]:
        async with console.state.db_sessions() as session:
            return list((await session.scalars(select(OutboxRow).order_by(OutboxRow.id))).all())

    rows = console.call(stored)
    assert [r.status for r in rows] == ["local", "local"] and all(r.sealed for r in rows)
    for row in rows:
        assert link[2] not in json.dumps(row.params) and code[1] not in json.dumps(row.params)
    database = Path(settings.database_url.split(":///", 1)[1])
    everything = b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*"))
    assert b"sms.cert_code" in everything
    assert link[2].encode() not in everything and code[1].encode() not in everything

    console.as_user("quan")
    page = console.client.get("/agent/admin/outbox").text
    table = page[page.index("<tbody>") : page.index("</tbody>")]
    assert link[2] not in page and code[1] not in page and link[2][:4] + "…" in page
    assert "sms.cert_link" not in page and "sms.cert_code" not in page and '{"' not in table
    assert "Nguy" in table and "••••-••••-••••" in table  # the message as sent, its secrets masked

    # a day later the seals of locally kept messages are dropped: nothing readable is left
    outbox = console.state.outbox
    later = Outbox(console.state.db_sessions, seal=outbox.seal, clock=lambda: outbox.clock() + LOCAL_KEEP * 2)
    assert console.call(later.scrub) == 2
    assert all(r.sealed is None for r in console.call(stored))


# -- the outbox on SQLite and PostgreSQL: sealed while due, scrubbed once done ------------------------
@pytest.fixture
def twilio() -> Iterator[TwilioStandIn]:
    with TwilioStandIn() as stand_in:
        yield stand_in


async def test_outbox_seals_until_sent_or_failed(db_url: str, tmp_path: Path, twilio: TwilioStandIn) -> None:
    settings = Settings(
        data_dir=tmp_path,
        secret_key="at-rest-outbox",
        twilio_account_sid=twilio.account_sid,
        twilio_auth_token=twilio.auth_token,
        twilio_from=twilio.from_number,
        twilio_api_base=twilio.base_url,
    )
    engine = make_async_engine(db_url)
    try:
        seal = OutboxSeal(settings.secret_keys.outbox_seal)
        outbox = Outbox(make_sessionmaker(engine), seal=seal)
        worker = OutboxWorker(outbox, {"sms": TwilioSender(settings)}, _render)
        link = "https://vax.example.org/c/AbCdEfGhIjKlMnOp.QrStUvWxYz012345"
        ok = await outbox.put(_otp("+84901111111", "739164"))
        moved = await outbox.put(_otp("+84903333333", "551234"))

        async def row(row_id: int | None) -> OutboxRow:
            async with outbox.sessions() as session:
                found = await session.scalar(select(OutboxRow).where(OutboxRow.id == row_id))
                assert found is not None
                return found

        stored = await row(ok)
        assert stored.params == {"code": "••••••", "minutes": 5} and stored.sealed
        assert "739164" not in stored.sealed
        assert open_row(seal, stored).params == {"code": "739164", "minutes": 5}
        with pytest.raises(SealBroken):  # another SECRET_KEY does not open it
            open_row(OutboxSeal(SecretKeys.derive("other").outbox_seal), stored)
        # a seal copied onto another row (another phone) does not open there: nothing is sent to it
        async with outbox.sessions() as session, session.begin():
            await session.execute(update(OutboxRow).where(OutboxRow.id == moved).values(sealed=stored.sealed))
        assert await worker.run_once() == 2
        assert [(m.to, "739164" in m.body) for m in twilio.messages] == [("+84901111111", True)]

        doomed = await outbox.put(OutboundMessage("sms", "+84902222222", "link", text=f"Link: {link}"))
        assert (await row(doomed)).text == "Link: https://vax.example.org/c/AbCd…"
        twilio.fail_next(1, 21211)  # refused for good by the provider
        assert await worker.run_once() == 1
        for row_id, statuses in ((ok, {"sent"}), (moved, {"failed"}), (doomed, {"failed", "unreachable"})):
            done = await row(row_id)
            assert done.status in statuses and done.sealed is None, (row_id, done.status, done.last_error)
        assert (await row(moved)).error_code == "sealed"
        assert len(twilio.messages) == 1
    finally:
        await engine.dispose()


def _otp(phone: str, code: str) -> OutboundMessage:
    return OutboundMessage("sms", phone, "otp", template="sms.otp", params={"code": code, "minutes": 5})


def _render(row: OutboxRow) -> str:
    from conversations.outbound import make_renderer

    return make_renderer(strip_sms_diacritics=True, hotline="1900 9095")(row)


# -- generated secret files ----------------------------------------------------------------------
def _create(path: str) -> str:
    return read_or_create_secret(Path(path))


def test_generated_secrets_are_private_from_creation_and_one_per_install(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        folder = tmp_path / "data"
        with concurrent.futures.ProcessPoolExecutor(max_workers=6) as pool:  # workers starting at once
            values = set(pool.map(_create, [str(folder / "secret_key")] * 12))
        assert len(values) == 1 and len(values.pop()) >= 43
        assert stat.S_IMODE((folder / "secret_key").stat().st_mode) == 0o600
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert [p.name for p in folder.iterdir()] == ["secret_key"]  # no temporary file left behind
        write_secret_file(folder / "gateway_token", "replaced")
        assert stat.S_IMODE((folder / "gateway_token").stat().st_mode) == 0o600
    finally:
        os.umask(previous)
    loose = tmp_path / "loose"
    loose.write_text("kept\n")
    loose.chmod(0o644)  # written by an older version
    assert read_or_create_secret(loose) == "kept" and stat.S_IMODE(loose.stat().st_mode) == 0o600


# -- the migration: old rows on SQLite and PostgreSQL ----------------------------------------------
@pytest.fixture(params=["sqlite", "postgres"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    name = f"vaxrest_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_upgrading_masks_codes_left_in_finished_rows(empty_database: str) -> None:
    from db.base import make_sync_engine

    engine = make_sync_engine(empty_database)
    try:
        with engine.begin() as conn:  # the schema before sealing, with rows an older version wrote
            cfg = alembic_config(empty_database)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0001")
        with engine.begin() as conn:
            for status, code in (("sent", "604211"), ("local", "604212"), ("pending", "604213")):
                conn.execute(insert(OutboxRow.__table__).values(**_old_row(status, code)))
        migrate(empty_database)
        with engine.connect() as conn:
            rows = {r.status: r for r in conn.execute(select(OutboxRow)).all()}
            assert conn.execute(text("SELECT count(*) FROM outbox WHERE sealed IS NOT NULL")).scalar() == 0
    finally:
        engine.dispose()
    assert rows["sent"].params["code"] == "••••••" and rows["local"].params["code"] == "••••••"
    assert rows["sent"].params["link"] == "https://vax.example.org/c/AbCd…"
    assert rows["pending"].params["code"] == "604213"  # still to be sent: it still sends


def _old_row(status: str, code: str) -> dict[str, Any]:
    from registry_client.clock import utc_now

    now = utc_now()
    return {
        "channel": "sms",
        "address": "+84904444444",
        "kind": "otp",
        "template": "sms.otp",
        "params": {"code": code, "minutes": 5, "link": "https://vax.example.org/c/AbCdEfGhIjKlMnOp.Qr"},
        "language": "vi",
        "status": status,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
    }
