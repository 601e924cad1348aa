"""outbox: sealed secrets

Revision ID: 0020
Revises: 0001

`outbox.sealed` keeps what a message needs to be sent (codes, link tokens) encrypted until it is
sent; `text` and `params` keep only masked copies. Rows written before this revision hold their
secrets in the clear: finished and locally kept ones are masked here (nobody sends them again);
pending ones are left as they are and still send.
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0001"
branch_labels = None
depends_on = None

FINISHED = ("sent", "delivered", "failed", "unreachable", "local")


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sealed", sa.Text(), nullable=True))
    _mask_finished_rows()


def _mask_finished_rows() -> None:
    from outbox.sealing import is_secret, mask_param, mask_text

    outbox = sa.table(
        "outbox",
        sa.column("id", sa.Integer),
        sa.column("status", sa.String),
        sa.column("text", sa.Text),
        sa.column("params", sa.JSON),
    )
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(outbox.c.id, outbox.c.text, outbox.c.params).where(outbox.c.status.in_(FINISHED))
    )
    for row_id, text, params in rows.all():
        shown_text = mask_text(text) if text else text
        shown_params = (
            {k: (mask_param(k, v) if is_secret(k, v) else v) for k, v in params.items()}
            if isinstance(params, dict)
            else params
        )
        if shown_text != text or shown_params != params:
            conn.execute(
                sa.update(outbox).where(outbox.c.id == row_id).values(text=shown_text, params=shown_params)
            )


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("sealed")
