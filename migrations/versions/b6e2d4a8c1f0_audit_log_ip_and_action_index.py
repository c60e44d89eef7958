"""The audit log records the client's IP, and is filtered by action through an index

Revision ID: b6e2d4a8c1f0
Revises: a7c41e9d2b10
Create Date: 2026-12-02 06:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b6e2d4a8c1f0'
down_revision = 'a7c41e9d2b10'
branch_labels = None
depends_on = None


def upgrade():
    # Entries written before this revision have no IP: the column stays nullable.
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ip', sa.String(length=45), nullable=True))
        batch_op.create_index(batch_op.f('ix_audit_log_action'), ['action'], unique=False)


def downgrade():
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_action'))
        batch_op.drop_column('ip')
