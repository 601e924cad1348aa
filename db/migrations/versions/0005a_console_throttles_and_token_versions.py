"""console: login throttles per (user, address) and per address; API tokens tied to a credentials version

Revision ID: 0005a
Revises: 0005

`console_login_throttles` replaces locking a user name (which let anyone lock anyone out) by
growing delays per (user, client address) and per address. `credentials_version` on users and
tokens: a password change or deactivation raises the user's value, and a token issued under
another value no longer works.
"""
from alembic import op
import sqlalchemy as sa

revision = '0005a'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('console_login_throttles',
    sa.Column('key', sa.String(length=160), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('last_failure_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('blocked_until', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_console_login_throttles'))
    )
    with op.batch_alter_table('console_users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('credentials_version', sa.Integer(), server_default='0', nullable=False))
    with op.batch_alter_table('console_api_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('credentials_version', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('console_api_tokens', schema=None) as batch_op:
        batch_op.drop_column('credentials_version')
    with op.batch_alter_table('console_users', schema=None) as batch_op:
        batch_op.drop_column('credentials_version')
    op.drop_table('console_login_throttles')
