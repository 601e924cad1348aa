"""voice calls (the voice line's count of calls and hand-overs)

Revision ID: 0030
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "voice_calls",
        sa.Column("call_sid", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("handed_over", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("duration_seconds", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("call_sid", name=op.f("pk_voice_calls")),
    )
    op.create_index("ix_voice_calls_started", "voice_calls", ["started_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_voice_calls_started", table_name="voice_calls")
    op.drop_table("voice_calls")
