"""Certificate benchmark (issue 3): signatures/s, QR PNG renders/s against plain qrcode + Pillow
on the same strings, cached renders/s, verifications/s. One process, one core.

    python bench/certificates.py [--n 300] [--baseline-n 40]

Goals: first render >= 10x the qrcode baseline; >= 1,000 verifications/s.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import qrcode  # noqa: E402

from certificates import hcert, qr  # noqa: E402
from certificates.keys import DocumentSignerStore  # noqa: E402
from certificates.names import dcc_name  # noqa: E402
from certificates.service import build_certificate_service  # noqa: E402
from certificates.uvci import new_uvci  # noqa: E402
from db.base import make_async_engine, make_sessionmaker  # noqa: E402
from db.migrate import migrate  # noqa: E402
from settings import Settings  # noqa: E402

GIVEN = ("Văn An", "Thị Bình", "Minh Đức", "Ngọc Lan", "Quang Hải", "Thu Trang")
FAMILY = ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Đặng")


@dataclass(frozen=True)
class Holder:
    id: str
    national_id: str
    date_of_birth: date
    full_name: str


@dataclass(frozen=True)
class Dose:
    dose_number: int
    product: str
    administered_on: date
    lot: str | None
    site_code: str


def holder(i: int) -> Holder:
    name = f"{FAMILY[i % len(FAMILY)]} {GIVEN[(i // len(FAMILY)) % len(GIVEN)]}"
    return Holder(str(i + 1), f"001{i:09d}", date(1950, 1, 1) + timedelta(days=97 * i % 25000), name)


def doses(i: int) -> list[Dose]:
    first = date(2021, 6, 1) + timedelta(days=i % 120)
    return [
        Dose(1, "EU/1/21/1529", first, f"AZ{i}", "HN001"),
        Dose(2, "EU/1/21/1529", first + timedelta(days=70), f"AZ{i + 1}", "HN001"),
        Dose(3, "EU/1/20/1528", first + timedelta(days=250), f"PF{i}", "HN002"),
    ][: 1 + i % 3]


def rate(fn: Callable[[int], Any], n: int) -> float:
    started = time.process_time()
    for i in range(n):
        fn(i)
    elapsed = time.process_time() - started
    return n / elapsed if elapsed else float("inf")


def qrcode_baseline(text: str) -> bytes:
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_Q, box_size=6, border=4)
    code.add_data(text)
    code.make(fit=True)
    out = io.BytesIO()
    code.make_image().save(out, format="PNG")
    return out.getvalue()


def claims_for(i: int, now: datetime) -> dict[int, Any]:
    h, latest = holder(i), doses(i)[-1]
    dcc = hcert.dcc_payload(
        dcc_name(h.full_name), h.date_of_birth, hcert.vaccination_entry(latest, new_uvci())
    )
    return hcert.cwt_claims(dcc, now, now + timedelta(days=365))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--baseline-n", type=int, default=40)
    args = parser.parse_args()
    n = args.n
    work = Path(tempfile.mkdtemp(prefix="bench-certificates-"))
    print(f"certificate benchmark: n={n}, qrcode baseline n={args.baseline_n}, pid {os.getpid()}, CPU time")

    now = datetime.now(UTC).replace(microsecond=0)
    es256 = DocumentSignerStore(work / "es", "ES256", 365).current()
    ps256 = DocumentSignerStore(work / "ps", "PS256", 365).current()
    claims = [claims_for(i, now) for i in range(n)]
    strings: list[str] = []
    es_rate = rate(lambda i: strings.append(hcert.encode_hc1(claims[i], es256)), n)
    ps_rate = rate(lambda i: hcert.encode_hc1(claims[i], ps256), max(n // 3, 20))
    print(
        f"signatures (HC1 encode incl. CBOR, zlib, base45): ES256 {es_rate:8.0f}/s   PS256 {ps_rate:8.0f}/s"
    )
    print(f"  HC1 length {min(map(len, strings))}-{max(map(len, strings))} characters")

    ours = rate(lambda i: qr.render_png_uncached(strings[i]), n)
    base_n = min(args.baseline_n, n)
    baseline = rate(lambda i: qrcode_baseline(strings[i]), base_n)
    print(
        f"first QR render (PNG): zxing-cpp {ours:8.0f}/s   qrcode+Pillow {baseline:8.1f}/s   "
        f"ratio {ours / baseline:5.1f}x (goal >= 10x)"
    )
    for text in strings:
        qr.render_png(text)
    cached = rate(lambda i: qr.render_png(strings[i % n]), n * 20)
    print(f"cached QR renders: {cached:10.0f}/s")

    database = f"sqlite:///{work / 'bench.db'}"
    migrate(database)
    settings = Settings(database_url=database, data_dir=work / "data", secret_key="bench")

    async def service_part() -> None:
        engine = make_async_engine(database)
        service = build_certificate_service(settings, make_sessionmaker(engine))
        started = time.process_time()
        issued = [await service.issue(holder(i), doses(i)) for i in range(n)]
        issue_rate = n / (time.process_time() - started)
        texts = [c.hc1 for c in issued]
        at = datetime.now(UTC)
        pure = rate(lambda i: service.verifier.check(texts[i % n], at), n * 3)
        assert all(service.verifier.check(t, at).valid for t in texts[:20])
        started = time.process_time()
        for i in range(n):
            result = await service.verify(texts[i], at)
            assert result.valid, result.reason
        full = n / (time.process_time() - started)
        print(f"issue (sign + DB row + first PNG, SQLite): {issue_rate:8.0f}/s")
        print(
            f"verifications: decode+signature+checks {pure:8.0f}/s   with revocation lookup (SQLite) {full:8.0f}/s"
        )
        print(f"  goal >= 1000/s on one core: {'met' if min(pure, full) >= 1000 else 'NOT met'}")
        await engine.dispose()

    asyncio.run(service_part())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
