"""Certificate codes left in clear by an earlier version: sealed at start, then purged from the files.

Revision 0006a added `code_digest` and `code_sealed` but cannot fill them: their keys come from
SECRET_KEY, which Alembic does not have. `seal_plain_codes` does it when the certificate service
is built (every start; after the first, one indexed count finds nothing to do). Each row gets its
digest and seal and loses its plain `code` in one guarded UPDATE, so several workers starting at
once convert each row once. Then the old values are purged from the database files, where an
UPDATE alone would leave them: SQLite is rewritten (`VACUUM`, the write-ahead log truncated),
PostgreSQL's table is rewritten by an ALTER TABLE
that keeps its schema (`code` stays varchar(16), now NULL everywhere): unlike VACUUM FULL, such a
rewrite copies live rows only, even while another transaction's snapshot still sees the old
versions. Backups and
archived logs taken before still hold the codes; they are the operator's to expire.
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine, Table, bindparam, func, select, update
from sqlalchemy.exc import DBAPIError

from certificates.code_secrets import CodeSecrets
from certificates.code_tables import CertificateCodeRow

log = logging.getLogger(__name__)

CODES: Table = CertificateCodeRow.__table__  # type: ignore[assignment]
BATCH = 1000


def plain_code_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(CODES).where(CODES.c.code.is_not(None))) or 0)


def seal_plain_codes(engine: Engine, secrets: CodeSecrets) -> int:
    """Seals every code still kept in clear; returns how many this call converted."""
    pending = plain_code_count(engine)
    if not pending:
        return 0
    log.warning("certificate codes: %d kept in clear by an earlier version; sealing them", pending)
    seal = (
        update(CODES)
        .where(CODES.c.id == bindparam("row_id"), CODES.c.code.is_not(None))
        .values(code_digest=bindparam("digest"), code_sealed=bindparam("sealed"), code=None)
    )
    converted, last_id = 0, None
    while True:
        with engine.begin() as conn:
            query = select(CODES.c.id, CODES.c.uvci, CODES.c.code).where(CODES.c.code.is_not(None))
            if last_id is not None:
                query = query.where(CODES.c.id > last_id)
            rows = conn.execute(query.order_by(CODES.c.id).limit(BATCH)).all()
            if not rows:
                break
            params = [
                {"row_id": row_id, "digest": secrets.digest(code), "sealed": secrets.seal(code, uvci)}
                for row_id, uvci, code in rows
            ]
            done = int(getattr(conn.execute(seal, params), "rowcount", -1))
            converted += done if done >= 0 else len(rows)
            last_id = rows[-1][0]
    _purge(engine)
    log.warning("certificate codes: %d sealed; none is kept in clear any more", converted)
    return converted


def _purge(engine: Engine) -> None:
    """Rewrites the table's storage so the replaced values leave the files."""
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            if engine.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA secure_delete=ON")
                conn.exec_driver_sql("VACUUM")
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            elif engine.dialect.name == "postgresql":
                conn.exec_driver_sql("SET lock_timeout = '10s'")
                conn.exec_driver_sql(
                    "ALTER TABLE certificate_codes ALTER COLUMN code TYPE varchar(16) USING NULL::varchar(16)"
                )
    except DBAPIError as exc:  # busy: the codes are sealed; only old bytes may linger
        log.warning("certificate codes: the database could not be compacted (%s); run VACUUM (SQLite) or VACUUM FULL (PostgreSQL)", exc)
