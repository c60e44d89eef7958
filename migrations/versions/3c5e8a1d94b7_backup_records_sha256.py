"""backup_records.sha256: the SHA-256 of each archive, recorded when it is made or accepted

Revision ID: 3c5e8a1d94b7
Revises: 7cc13ce942ae
Create Date: 2026-11-27 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '3c5e8a1d94b7'
down_revision = '7cc13ce942ae'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('backup_records', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sha256', sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table('backup_records', schema=None) as batch_op:
        batch_op.drop_column('sha256')
