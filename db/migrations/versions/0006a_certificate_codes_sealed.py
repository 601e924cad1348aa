"""certificate codes kept only as a keyed digest and a seal

Revision ID: 0006a
Revises: 0006

`certificate_codes.code_digest` (HMAC-SHA256 of the canonical code, unique: the lookup) and
`code_sealed` (AES-256-GCM bound to the row's UVCI: to send the code again) replace the code
kept in clear. Both keys are derived from SECRET_KEY, which Alembic does not have: rows written
by an earlier version are therefore converted at the service's next start
(certificates/code_store.py, `seal_plain_codes`: idempotent, logged), which empties `code` and
purges the old values from the database files. Here the plain column loses its unique
constraint and may be NULL; new rows never write it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006a"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("certificate_codes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("code_digest", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("code_sealed", sa.String(length=120), nullable=True))
        batch_op.drop_constraint("uq_certificate_codes_code", type_="unique")
        batch_op.alter_column("code", existing_type=sa.String(length=16), nullable=True)
        batch_op.create_unique_constraint("uq_certificate_codes_code_digest", ["code_digest"])


def downgrade() -> None:
    codes = sa.table("certificate_codes", sa.column("code", sa.String))
    sealed_only = op.get_bind().scalar(sa.select(sa.func.count()).select_from(codes).where(codes.c.code.is_(None)))
    if sealed_only:
        raise RuntimeError(
            f"{sealed_only} certificate codes are kept only sealed; the earlier schema would need "
            "them in clear. Not downgraded."
        )
    with op.batch_alter_table("certificate_codes", schema=None) as batch_op:
        batch_op.drop_constraint("uq_certificate_codes_code_digest", type_="unique")
        batch_op.alter_column("code", existing_type=sa.String(length=16), nullable=False)
        batch_op.create_unique_constraint("uq_certificate_codes_code", ["code"])
        batch_op.drop_column("code_sealed")
        batch_op.drop_column("code_digest")
