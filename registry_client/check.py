"""`python main.py registry check`: does the configured registry answer, and what does it declare?
For a FHIR registry also: the identifier systems in use, the authentication, and the sites it holds."""

from __future__ import annotations

import asyncio
from typing import Any

from db.base import make_async_engine
from db.migrate import migrate
from registry_client.factory import build_backend

LABEL_WIDTH = 17


def _line(label: str, value: str) -> str:
    return f"{label.ljust(LABEL_WIDTH)}: {value}"


def registry_check_cli(settings: Any) -> int:
    migrate(settings.database_url)

    async def check() -> int:
        engine = make_async_engine(settings.database_url)
        try:
            backend = build_backend(settings, engine)
        except ValueError as exc:  # e.g. REGISTRY_BACKEND=fhir without REGISTRY_URL, malformed REGISTRY_AUTH
            await engine.dispose()
            print(_line("registry backend", str(settings.registry_backend)))
            print(_line("reachable", f"NO (misconfigured: {exc})"))
            return 1
        try:
            info = await backend.info()
            overview = getattr(backend, "overview", None)
            extra: list[tuple[str, str]] = await overview() if overview is not None else []
        finally:
            await backend.close()
            await engine.dispose()
        print(_line("registry backend", info.backend))
        print(_line("reachable", "yes" if info.reachable else "NO"))
        print(_line("detail", info.detail))
        for label, value in extra:
            print(_line(label, value))
        if info.capabilities:
            print(_line("capabilities", ("\n" + " " * (LABEL_WIDTH + 2)).join(info.capabilities)))
        return 0 if info.reachable else 1

    return asyncio.run(check())
