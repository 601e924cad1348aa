"""Storage plumbing shared by every package: SQLAlchemy base, engines, migrations."""
