"""`python main.py registry check`: does the configured registry answer, and what does it declare?"""

from __future__ import annotations

import asyncio
from typing import Any

from db.base import make_async_engine
from db.migrate import migrate
from registry_client.factory import build_backend


def registry_check_cli(settings: Any) -> int:
    migrate(settings.database_url)

    async def check() -> int:
        engine = make_async_engine(settings.database_url)
        try:
            backend = build_backend(settings, engine)
        except ValueError as exc:  # e.g. REGISTRY_BACKEND=fhir without REGISTRY_URL, malformed REGISTRY_AUTH
            await engine.dispose()
            print(f"registry backend : {settings.registry_backend}")
            print(f"reachable        : NO (misconfigured: {exc})")
            return 1
        try:
            info = await backend.info()
        finally:
            await backend.close()
            await engine.dispose()
        print(f"registry backend : {info.backend}")
        print(f"reachable        : {'yes' if info.reachable else 'NO'}")
        print(f"detail           : {info.detail}")
        if info.capabilities:
            print("capabilities     : " + "\n                   ".join(info.capabilities))
        return 0 if info.reachable else 1

    return asyncio.run(check())
