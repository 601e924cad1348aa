"""Telegram adapter benchmark (issue 5): updates/s through POST /telegram/webhook of the real app
(real engine, embedded registry on a fresh SQLite file) with the Bot API stand-in over real HTTP.

    python bench/telegram_webhook.py [--n 200]

Measured in the same run, one update at a time (Telegram delivers a chat's updates in order):
- ignored: an edited message (secret check, JSON parse, processed-update row) — the adapter's floor;
- sendMessage: the Bot API call alone, through the same PTB Bot;
- /help: one engine turn (session load/save) + one sendMessage;
- /status: a logged-in user's doses (binding, registry read, audit) + one sendMessage.
Printed: per kind, updates/s, p50 and p99 latency (ms), and the ratio to the `ignored` floor.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from app import create_app  # noqa: E402
from bot.local_bot_api import LocalBotApi  # noqa: E402
from bot.simulated_updates import SimulatedUser  # noqa: E402
from db.migrate import migrate  # noqa: E402
from registry_client.embedded.demo import DEMO_PEOPLE, load_demo  # noqa: E402
from registry_client.embedded.registry import EmbeddedRegistry  # noqa: E402
from settings import Settings  # noqa: E402

SECRET = "bench-secret"


async def measure(n: int, one: Callable[[], Awaitable[Any]]) -> list[float]:
    timings = []
    for _ in range(n):
        start = time.perf_counter()
        await one()
        timings.append(time.perf_counter() - start)
    return timings


async def main(n: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-telegram-"))
    url = f"sqlite:///{tmp}/bench.db"
    migrate(url)
    with LocalBotApi() as api:
        settings = Settings(
            database_url=url,
            data_dir=tmp,
            run_workers=False,
            secret_key="bench",
            telegram_bot_token="1:bench",
            telegram_api_base=api.base_url,
            telegram_webhook_secret=SECRET,
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            await load_demo(EmbeddedRegistry(app.state.db_engine), ordinary=0)
            an = DEMO_PEOPLE[0]
            user = SimulatedUser(an.phone)
            person = await app.state.registry.find_person(an.national_id, an.date_of_birth)
            await app.state.conversations.bindings.bind("telegram", str(user.user_id), person.id)
            bot = app.state.telegram.bot
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}

                async def post(update: dict[str, Any]) -> None:
                    response = await client.post("/telegram/webhook", json=update, headers=headers)
                    assert response.status_code == 200, response.text

                def edited() -> dict[str, Any]:
                    update = user.text("hello")
                    update["edited_message"] = update.pop("message")
                    return update

                kinds: dict[str, Callable[[], Awaitable[Any]]] = {
                    "ignored": lambda: post(edited()),
                    "sendMessage": lambda: bot.send_message(user.user_id, "bench"),
                    "/help": lambda: post(user.text("/help")),
                    "/status": lambda: post(user.text("/status")),
                }
                results = {}
                for name, one in kinds.items():
                    await measure(min(20, n), one)  # warm-up
                    results[name] = await measure(n, one)
    floor = statistics.mean(results["ignored"])
    print(
        f"Telegram webhook, one update at a time, n={n} each (SQLite, in-process app, HTTP Bot API stand-in)"
    )
    print(f"{'kind':<12} {'updates/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'x floor':>8}")
    for name, timings in results.items():
        ordered = sorted(timings)
        p50 = ordered[len(ordered) // 2] * 1000
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
        mean = statistics.mean(timings)
        print(f"{name:<12} {1 / mean:>10.0f} {p50:>8.1f} {p99:>8.1f} {mean / floor:>8.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    asyncio.run(main(parser.parse_args().n))
