"""certificate_codes

Revision ID: 0006
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = '0006'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('certificate_code_attempts',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('window_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('blocked_until', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_certificate_code_attempts'))
    )
    op.create_table('certificate_codes',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('uvci', sa.String(length=80), nullable=False),
    sa.Column('person_id', sa.String(length=64), nullable=False),
    sa.Column('holder_name', sa.String(length=120), nullable=False),
    sa.Column('birth_year', sa.SmallInteger(), nullable=False),
    sa.Column('dose_count', sa.Integer(), nullable=False),
    sa.Column('latest_dose_on', sa.Date(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_certificate_codes')),
    sa.UniqueConstraint('code', name=op.f('uq_certificate_codes_code')),
    sa.UniqueConstraint('uvci', name=op.f('uq_certificate_codes_uvci'))
    )
    with op.batch_alter_table('certificate_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_certificate_codes_person_id'), ['person_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('certificate_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_certificate_codes_person_id'))

    op.drop_table('certificate_codes')
    op.drop_table('certificate_code_attempts')
