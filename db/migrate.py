"""Create or migrate a database to the newest schema (every branch head)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from db.base import make_sync_engine, sync_url

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    return cfg


def migrate(url: str) -> None:
    """Upgrades the database at `url` to all heads. Safe to call on every start."""
    engine = make_sync_engine(url)
    try:
        with engine.begin() as conn:
            cfg = alembic_config(url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "heads")
    finally:
        engine.dispose()
