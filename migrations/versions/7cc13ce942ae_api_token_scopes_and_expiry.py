"""API tokens get scopes and an expiry

Revision ID: 7cc13ce942ae
Revises: b6e2d4a8c1f0
Create Date: 2026-12-02 05:30:00.000000

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

# Timestamps keep microseconds on MariaDB too (its DATETIME drops them by default).
TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mysql', 'mariadb')


# revision identifiers, used by Alembic.
revision = '7cc13ce942ae'
down_revision = 'b6e2d4a8c1f0'
branch_labels = None
depends_on = None


def upgrade():
    # Tokens made before scopes existed could do everything: they keep the admin scope.
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scopes', sa.String(length=64), nullable=False, server_default='admin'))
        batch_op.add_column(sa.Column('expires_at', TIMESTAMP, nullable=True))


def downgrade():
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_column('expires_at')
        batch_op.drop_column('scopes')
