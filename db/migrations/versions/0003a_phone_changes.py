"""phone_changes, channel_bindings.via_phone

A binding remembers the phone its one-time code went to, so it ends when that phone stops being
the person's registered phone; agents' phone changes wait for a code read back from the new phone.

Revision ID: 0003a
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa

revision = '0003a'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('channel_bindings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('via_phone', sa.String(length=20), nullable=True))
    # SMS and USSD bindings made before: the code went to the registered phone, which for a
    # caller logged in on their own number is that number.
    op.execute(
        "UPDATE channel_bindings SET via_phone = address WHERE channel IN ('sms', 'ussd', 'voice', 'whatsapp')"
    )
    op.create_table('phone_changes',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('person_id', sa.String(length=64), nullable=False),
    sa.Column('new_phone', sa.String(length=20), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('requested_by', sa.String(length=120), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_phone_changes'))
    )
    with op.batch_alter_table('phone_changes', schema=None) as batch_op:
        batch_op.create_index('ix_phone_changes_person', ['person_id', 'created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('phone_changes', schema=None) as batch_op:
        batch_op.drop_index('ix_phone_changes_person')
    op.drop_table('phone_changes')
    with op.batch_alter_table('channel_bindings', schema=None) as batch_op:
        batch_op.drop_column('via_phone')
