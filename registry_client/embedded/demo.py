"""The demo data set: deterministic, loaded on the first start of an empty embedded registry.

The named identities (README lists them) tell the stories the service exists for; a few
hundred ordinary records make lists look real.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import select

from db.base import make_async_engine
from registry_client.embedded.registry import EmbeddedRegistry
from registry_client.embedded.tables import PersonRow
from registry_client.models import (
    CaseKind,
    ClaimedDose,
    ContactChange,
    DosesConcerned,
    DoseSource,
    NewCorrection,
    NewDose,
    NewPerson,
    Sex,
    Site,
)

SITES = (
    Site("HN001", "Trạm Y tế Phường Dịch Vọng", "Hà Nội"),
    Site("HN002", "Bệnh viện Bạch Mai", "Hà Nội"),
    Site("HCM07", "Trạm Y tế Phường Tân Phong, Quận 7", "TP Hồ Chí Minh"),
    Site("HCM01", "Bệnh viện Nhiệt đới TP HCM", "TP Hồ Chí Minh"),
    Site("DN003", "Trung tâm Y tế Quận Hải Châu", "Đà Nẵng"),
    Site("CT001", "Trung tâm Kiểm soát Bệnh tật Cần Thơ", "Cần Thơ"),
)


@dataclass(frozen=True)
class DemoPerson:
    story: str
    national_id: str
    date_of_birth: date
    full_name: str
    sex: Sex
    phone: str
    doses: tuple[tuple[int, str, date, str, str], ...] = ()  # number, vaccine, date, site, lot


DEMO_PEOPLE = (
    DemoPerson(
        "full series and a booster",
        "001085012345",
        date(1985, 3, 14),
        "Nguyễn Văn An",
        Sex.MALE,
        "+84901234567",
        (
            (1, "AstraZeneca", date(2021, 8, 2), "HN001", "AZ-NV4211"),
            (2, "AstraZeneca", date(2021, 10, 25), "HN001", "AZ-PX9034"),
            (3, "Pfizer", date(2022, 3, 10), "HN002", "FK5127"),
        ),
    ),
    DemoPerson(
        "one dose on record",
        "079190004321",
        date(1990, 7, 21),
        "Trần Thị Bình",
        Sex.FEMALE,
        "+84912345678",
        ((1, "Vero Cell", date(2021, 9, 10), "HCM07", "202107B2215"),),
    ),
    DemoPerson(
        "no dose on record (the missing-dose story)",
        "048095006789",
        date(1995, 11, 30),
        "Lê Văn Cường",
        Sex.MALE,
        "+84987654321",
    ),
    DemoPerson(
        "family phone: mother",
        "001182003333",
        date(1982, 5, 2),
        "Phạm Thị Dung",
        Sex.FEMALE,
        "+84938111222",
        (
            (1, "Moderna", date(2021, 9, 5), "HN002", "MD-3002"),
            (2, "Moderna", date(2021, 10, 3), "HN002", "MD-3107"),
        ),
    ),
    DemoPerson(
        "family phone: child",
        "001210004444",
        date(2010, 12, 24),
        "Phạm Minh Đức",
        Sex.MALE,
        "+84938111222",
        ((1, "Pfizer", date(2022, 4, 20), "HN001", "FL0711"),),
    ),
    DemoPerson(
        "family phone: grandfather",
        "001050005555",
        date(1950, 1, 8),
        "Phạm Văn Em",
        Sex.MALE,
        "+84938111222",
        (
            (1, "AstraZeneca", date(2021, 6, 15), "HN001", "AZ-MA1120"),
            (2, "AstraZeneca", date(2021, 8, 30), "HN001", "AZ-NV5521"),
            (3, "Moderna", date(2022, 1, 12), "HN002", "MD-4410"),
        ),
    ),
    DemoPerson(
        "phone changed (old +84909000111)",
        "031188007777",
        date(1988, 9, 9),
        "Hoàng Thị Giang",
        Sex.FEMALE,
        "+84909000111",
        (
            (1, "Moderna", date(2021, 8, 20), "DN003", "MD-2990"),
            (2, "Moderna", date(2021, 9, 17), "DN003", "MD-3055"),
        ),
    ),
)
CHANGED_PHONE_NEW = "+84909000222"

FAMILY = (
    "Nguyễn",
    "Trần",
    "Lê",
    "Phạm",
    "Hoàng",
    "Huỳnh",
    "Phan",
    "Vũ",
    "Võ",
    "Đặng",
    "Bùi",
    "Đỗ",
    "Hồ",
    "Ngô",
)
MIDDLE_M = ("Văn", "Hữu", "Đức", "Minh", "Quang", "Công")
MIDDLE_F = ("Thị", "Ngọc", "Thu", "Thanh", "Mai", "Kim")
GIVEN_M = ("Anh", "Bảo", "Dũng", "Hải", "Hùng", "Khoa", "Long", "Nam", "Phúc", "Quân", "Sơn", "Tuấn", "Việt")
GIVEN_F = ("Anh", "Châu", "Hà", "Hạnh", "Hoa", "Hương", "Lan", "Linh", "My", "Nga", "Phương", "Thảo", "Trang")
VACCINES = ("AstraZeneca", "Pfizer", "Moderna", "Vero Cell")


def cccd(province: int, sex: Sex, born: date, serial: int) -> str:
    century = (born.year // 100 - 19) * 2 + (1 if sex == Sex.FEMALE else 0)
    return f"{province:03d}{century}{born.year % 100:02d}{serial:06d}"


def ordinary_people(count: int = 300, seed: int = 2021) -> list[DemoPerson]:
    """Deterministic ordinary citizens with 0–3 doses each."""
    rng = random.Random(seed)
    people = []
    for i in range(count):
        sex = rng.choice((Sex.MALE, Sex.FEMALE))
        born = date(1940, 1, 1) + timedelta(days=rng.randrange(0, 365 * 70))
        name = " ".join(
            (
                rng.choice(FAMILY),
                rng.choice(MIDDLE_M if sex == Sex.MALE else MIDDLE_F),
                rng.choice(GIVEN_M if sex == Sex.MALE else GIVEN_F),
            )
        )
        phone = f"+849{rng.randrange(10_000_000, 99_999_999)}"
        vaccine = rng.choice(VACCINES)
        site_code = rng.choice(SITES).code
        first = date(2021, 6, 1) + timedelta(days=rng.randrange(0, 150))
        n = rng.choice((0, 1, 2, 2, 2, 3, 3))
        doses = []
        for k in range(1, n + 1):
            when = first + timedelta(days=(k - 1) * rng.randrange(28, 120))
            doses.append(
                (k, vaccine if k < 3 else "Pfizer", when, site_code, f"L{rng.randrange(1000, 9999)}")
            )
        people.append(
            DemoPerson(
                "ordinary",
                cccd(rng.randrange(1, 96), sex, born, 100000 + i),
                born,
                name,
                sex,
                phone,
                tuple(doses),
            )
        )
    return people


async def load_demo(registry: EmbeddedRegistry, ordinary: int = 300) -> int:
    for site in SITES:
        await registry.upsert_site(site)
    people = [*DEMO_PEOPLE, *ordinary_people(ordinary)]
    ids = {}
    for p in people:
        person = await registry.create_person(
            NewPerson(p.national_id, p.date_of_birth, p.full_name, p.sex, p.phone), actor="demo"
        )
        ids[p.national_id] = person.id
        for number, vaccine, when, site_code, lot in p.doses:
            await registry.record_dose(
                person.id,
                NewDose(number, vaccine, when, site_code, lot, source=DoseSource.IMPORT, recorded_by="demo"),
            )
    giang = DEMO_PEOPLE[6]
    await registry.update_contact(
        ids[giang.national_id],
        ContactChange(CHANGED_PHONE_NEW, giang.phone, evidence="demo: verified at the hotline", actor="demo"),
    )
    binh = DEMO_PEOPLE[1]
    await registry.submit_correction(
        NewCorrection(
            kind=CaseKind.MISSING_DOSE,
            doses_concerned=DosesConcerned.SECOND,
            claimed=ClaimedDose(date(2021, 10, 8), "Vero Cell", "HCM07", None),
            channel="sms",
            channel_address=binh.phone,
            person_id=ids[binh.national_id],
            workplace="Công ty May Việt Tiến",
            contact_phone=binh.phone,
            description="Second dose given at the ward station, not on record",
            actor="demo",
        )
    )
    return len(people)


def ensure_demo_data(settings: Any, ordinary: int = 300) -> int:
    """Loads the demo set when the embedded registry has no person yet; returns persons loaded."""

    async def run() -> int:
        engine = make_async_engine(settings.database_url)
        try:
            async with engine.connect() as conn:
                if (await conn.execute(select(PersonRow.id).limit(1))).first() is not None:
                    return 0
            return await load_demo(
                EmbeddedRegistry(engine, sla_working_days=settings.sla_working_days), ordinary
            )
        finally:
            await engine.dispose()

    return asyncio.run(run())
