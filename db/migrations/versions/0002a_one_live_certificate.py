"""one live certificate per person, kept by the database

Revision ID: 0002a
Revises: 0002

A partial unique index on `issued_certificates(person_id) WHERE revoked_at IS NULL`: two workers
issuing for one person at the same moment cannot both leave a live certificate. Rows that already
break the rule (left by earlier versions) are revoked first, keeping each person's newest.
"""
from datetime import UTC, datetime

from alembic import op
import sqlalchemy as sa

revision = '0002a'
down_revision = '0002'
branch_labels = None
depends_on = None

LIVE = sa.text("revoked_at IS NULL")


def upgrade() -> None:
    op.get_bind().execute(
        sa.text(
            "UPDATE issued_certificates SET revoked_at = :now, revoke_reason = :reason "
            "WHERE revoked_at IS NULL AND id NOT IN ("
            "SELECT MAX(id) FROM issued_certificates WHERE revoked_at IS NULL GROUP BY person_id)"
        ).bindparams(
            sa.bindparam("now", datetime.now(UTC), type_=sa.DateTime(timezone=True)),
            sa.bindparam("reason", "superseded by correction/import"),
        )
    )
    with op.batch_alter_table('issued_certificates', schema=None) as batch_op:
        batch_op.create_index(
            'uq_issued_certificates_live_person',
            ['person_id'],
            unique=True,
            sqlite_where=LIVE,
            postgresql_where=LIVE,
        )


def downgrade() -> None:
    with op.batch_alter_table('issued_certificates', schema=None) as batch_op:
        batch_op.drop_index('uq_issued_certificates_live_person')
