"""Developer tool: write an Alembic revision creating the given tables from their models.

    python -m db.new_migration 0003 conversations conversations.tables sessions,otp_codes

Every package's revision branches from 0001 (the foundation), so packages never fight over
the order; `db.migrate` upgrades to all heads.
"""

from __future__ import annotations

import importlib
import sys
import tempfile

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData

from db.base import Base
from db.migrate import MIGRATIONS, migrate


def main(rev: str, message: str, modules: str, tables: str) -> None:
    for module in modules.split(","):
        importlib.import_module(module)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/autogen.db"
        migrate(url)  # the existing schema, so only the new tables are generated
        md = MetaData(naming_convention=Base.metadata.naming_convention)
        for name in tables.split(","):
            Base.metadata.tables[name].to_metadata(md)
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.set_main_option("sqlalchemy.url", url)
        cfg.attributes["target_metadata"] = md
        command.revision(cfg, message=message, autogenerate=True, rev_id=rev, head="0001", splice=True)
    for path in (MIGRATIONS / "versions").glob(f"{rev}_*.py"):
        print(path)


if __name__ == "__main__":
    main(*sys.argv[1:5])
