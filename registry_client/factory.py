"""Builds the configured Registry (embedded or FHIR), always behind the resilience wrapper."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from registry_client.embedded.registry import EmbeddedRegistry
from registry_client.protocol import Registry
from registry_client.resilience import PendingWrites, ResilientRegistry


def build_backend(settings: Any, engine: AsyncEngine) -> Registry:
    if settings.registry_backend == "fhir":
        from registry_client.fhir.registry import FhirRegistry  # noqa: PLC0415 - optional backend

        fhir: Registry = FhirRegistry.from_settings(settings)
        return fhir
    return EmbeddedRegistry(engine, sla_working_days=settings.sla_working_days)


def build_registry(settings: Any, engine: AsyncEngine) -> ResilientRegistry:
    pending = PendingWrites(
        async_sessionmaker(engine, expire_on_commit=False), Path(settings.data_dir) / "pending_writes.jsonl"
    )
    return ResilientRegistry(
        build_backend(settings, engine),
        pending,
        timeout=settings.registry_timeout_seconds,
        sla_working_days=settings.sla_working_days,
    )
