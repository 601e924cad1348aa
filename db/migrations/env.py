"""Alembic environment: runs migrations on the connection handed over by db.migrate."""

from __future__ import annotations

from alembic import context

from db.base import make_sync_engine

config = context.config


def include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Autogenerate only what the target metadata names: never drop other packages' tables."""
    return not (type_ == "table" and reflected and compare_to is None)


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection,
            render_as_batch=True,
            target_metadata=config.attributes.get("target_metadata"),
            include_object=include_object,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_sync_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        context.configure(
            conn,
            render_as_batch=True,
            target_metadata=config.attributes.get("target_metadata"),
            include_object=include_object,
        )
        with context.begin_transaction():
            context.run_migrations()


run()
