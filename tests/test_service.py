"""The service as an operator meets it: settings, /healthz, /metrics, `python main.py`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from app import create_app
from settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_secret_key_generated_once_into_data_dir(tmp_path: Path) -> None:
    first = Settings(data_dir=tmp_path).resolved_secret_key
    again = Settings(data_dir=tmp_path).resolved_secret_key
    assert first == again and len(first) >= 40
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
    assert Settings(data_dir=tmp_path, secret_key="given").resolved_secret_key == "given"


def test_healthz_and_metrics(sqlite_url: str, tmp_path: Path) -> None:
    app = create_app(Settings(database_url=sqlite_url, data_dir=tmp_path, run_workers=False))
    from prometheus_client import REGISTRY

    def healthz_count() -> float:
        labels = {"method": "GET", "route": "/healthz", "status": "200"}
        return REGISTRY.get_sample_value("http_requests_total", labels) or 0.0

    with TestClient(app) as client:
        before = healthz_count()
        assert client.get("/healthz").json()["status"] == "ok"
        body = client.get("/metrics").text
        assert healthz_count() == before + 1  # counted under the route template
        assert 'http_requests_total{method="GET",route="/healthz",status="200"}' in body
        assert "http_request_duration_seconds_bucket" in body


def test_healthz_503_when_the_database_is_down(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/test?connect_timeout=1"
    app = create_app(Settings(database_url=url, data_dir=tmp_path, run_workers=False))
    with TestClient(app) as client:
        response = client.get("/healthz")
        assert response.status_code == 503
        assert response.json()["status"] == "unavailable"


def test_python_main_py_serves_with_demo_data(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "DATA_DIR": str(tmp_path / "var"),
        "DATABASE_URL": f"sqlite:///{tmp_path}/var/vaxchannel.db",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
    }
    env.pop("TWILIO_ACCOUNT_SID", None)
    proc = subprocess.Popen(
        [sys.executable, "main.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        else:
            raise AssertionError("service did not answer /healthz within 60 s")
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=20)
    assert "Loaded the demo data set" in output
    assert "/agent/" in output and "simulate" in output and "/docs" in output
    import sqlite3

    con = sqlite3.connect(tmp_path / "var" / "vaxchannel.db")
    assert con.execute("select count(*) from persons").fetchone()[0] > 300
    assert con.execute("select count(*) from persons where national_id='048095006789'").fetchone()[0] == 1
