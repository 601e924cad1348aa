"""The upload link of a report takes at most 5 files and 20 MB in all (10 MB each).

The attack: one upload link (sent by SMS, valid 14 days) took any number of 10 MB files, so
whoever held it could fill the disk. Now the sixth file gets a clear 429 page, a file that
would pass 20 MB a 413 page, parallel posts cannot slip past together — and the files already
sent stay attached.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date

from fastapi.testclient import TestClient

from conversations.upload_links import make_upload_link
from registry_client.models import CaseKind, ClaimedDose, DosesConcerned, NewCorrection
from sms_gateway.upload import MAX_BYTES_PER_REPORT, MAX_FILES_PER_REPORT
from tests.conversations.conftest import demo_template, demo_url  # noqa: F401 (fixtures)
from tests.sms_gateway.conftest import PUBLIC, make_client  # noqa: F401 (fixture)

MB = 1024 * 1024


def jpeg(size: int) -> bytes:
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * (size - 11)


def open_case(client: TestClient, national_id: str, dob: date) -> tuple[str, str]:
    """A new report; returns (its reference, the path of its upload link)."""
    registry = client.app.state.registry  # type: ignore[attr-defined]

    async def submit() -> str:
        person = await registry.find_person(national_id, dob)
        case = await registry.submit_correction(
            NewCorrection(
                kind=CaseKind.MISSING_DOSE,
                doses_concerned=DosesConcerned.FIRST,
                claimed=ClaimedDose(),
                channel="sms",
                channel_address="+84987654321",
                person_id=person.id,
            )
        )
        return case.ref

    ref = asyncio.run(submit())
    settings = client.app.state.settings  # type: ignore[attr-defined]
    return ref, make_upload_link(PUBLIC, settings.secret_keys.upload_links, ref).removeprefix(PUBLIC)


def attached(client: TestClient, ref: str) -> list[int]:
    case = asyncio.run(client.app.state.registry.get_correction(ref))  # type: ignore[attr-defined]
    return [a.size for a in case.attachments]


def test_the_sixth_file_is_refused_and_the_five_stay(make_client: Callable[..., TestClient]) -> None:  # noqa: F811
    client = make_client()
    ref, path = open_case(client, "048095006789", date(1995, 11, 30))
    for i in range(MAX_FILES_PER_REPORT):
        answer = client.post(path, files={"file": (f"card{i}.jpg", jpeg(1000 + i), "image/jpeg")})
        assert answer.status_code == 200, answer.text
    sixth = client.post(path, files={"file": ("more.jpg", jpeg(500), "image/jpeg")})
    assert sixth.status_code == 429
    assert f"already has {MAX_FILES_PER_REPORT} files" in sixth.text and "Traceback" not in sixth.text
    assert sorted(attached(client, ref)) == [1000, 1001, 1002, 1003, 1004]
    assert client.get(path).status_code == 200  # the page still opens


def test_more_than_20_mb_in_all_is_refused(make_client: Callable[..., TestClient]) -> None:  # noqa: F811
    client = make_client()
    ref, path = open_case(client, "048095006789", date(1995, 11, 30))
    for name in ("a.jpg", "b.jpg"):
        assert client.post(path, files={"file": (name, jpeg(9 * MB), "image/jpeg")}).status_code == 200
    over = client.post(path, files={"file": ("c.jpg", jpeg(3 * MB), "image/jpeg")})
    assert over.status_code == 413 and "20 MB" in over.text
    assert attached(client, ref) == [9 * MB, 9 * MB]
    small = client.post(path, files={"file": ("d.jpg", jpeg(MAX_BYTES_PER_REPORT - 18 * MB), "image/jpeg")})
    assert small.status_code == 200  # what still fits is taken


def test_parallel_posts_cannot_pass_the_quota_together(make_client: Callable[..., TestClient]) -> None:  # noqa: F811
    client = make_client()
    ref, path = open_case(client, "048095006789", date(1995, 11, 30))
    with ThreadPoolExecutor(10) as pool:
        answers = list(
            pool.map(
                lambda i: (
                    client.post(path, files={"file": (f"{i}.jpg", jpeg(2000), "image/jpeg")}).status_code
                ),
                range(12),
            )
        )
    assert answers.count(200) == MAX_FILES_PER_REPORT and set(answers) == {200, 429}
    assert len(attached(client, ref)) == MAX_FILES_PER_REPORT
