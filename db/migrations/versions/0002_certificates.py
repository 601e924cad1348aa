"""certificates

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('issued_certificates',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('person_id', sa.String(length=64), nullable=False),
    sa.Column('uvci', sa.String(length=80), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('kid', sa.String(length=16), nullable=False),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoke_reason', sa.String(length=200), nullable=True),
    sa.Column('dose_count', sa.Integer(), nullable=False),
    sa.Column('latest_dose_on', sa.Date(), nullable=False),
    sa.Column('hc1', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_issued_certificates')),
    sa.UniqueConstraint('uvci', name=op.f('uq_issued_certificates_uvci'))
    )
    with op.batch_alter_table('issued_certificates', schema=None) as batch_op:
        batch_op.create_index('ix_issued_certificates_person_id_id', ['person_id', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('issued_certificates', schema=None) as batch_op:
        batch_op.drop_index('ix_issued_certificates_person_id_id')
    op.drop_table('issued_certificates')
