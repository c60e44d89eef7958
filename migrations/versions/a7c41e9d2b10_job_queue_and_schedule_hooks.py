"""jobs on a queue (the error class of a failed job) and the schedule's webhook and heartbeat

Revision ID: a7c41e9d2b10
Revises: f209e07b3636
Create Date: 2026-12-02 06:00:00.000000

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

# Timestamps keep microseconds on MariaDB too (its DATETIME drops them by default).
TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mysql', 'mariadb')


# revision identifiers, used by Alembic.
revision = 'a7c41e9d2b10'
down_revision = 'f209e07b3636'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('backup_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('error_type', sa.String(length=64), nullable=True))
    with op.batch_alter_table('backup_schedule', schema=None) as batch_op:
        batch_op.add_column(sa.Column('webhook_url', sa.String(length=2048), nullable=True))
        batch_op.add_column(sa.Column('heartbeat_url', sa.String(length=2048), nullable=True))
    op.create_table('hook_deliveries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', TIMESTAMP, nullable=False),
    sa.Column('target', sa.String(length=16), nullable=False),
    sa.Column('event', sa.String(length=32), nullable=False),
    sa.Column('url', sa.String(length=2048), nullable=False),
    sa.Column('ok', sa.Boolean(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_hook_deliveries')),
    info={'operational': True}
    )
    with op.batch_alter_table('hook_deliveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_hook_deliveries_created_at'), ['created_at'], unique=False)


def downgrade():
    with op.batch_alter_table('hook_deliveries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_hook_deliveries_created_at'))
    op.drop_table('hook_deliveries')
    with op.batch_alter_table('backup_schedule', schema=None) as batch_op:
        batch_op.drop_column('heartbeat_url')
        batch_op.drop_column('webhook_url')
    with op.batch_alter_table('backup_jobs', schema=None) as batch_op:
        batch_op.drop_column('error_type')
