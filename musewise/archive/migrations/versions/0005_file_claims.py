"""file claims: users who showed the writer service a stored file's bytes

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 01:40:00

What changes for an archive made by revision 0004: a new table ``file_claims`` (empty).
Row-level security (``rls.install``) lets a user's role add a dataset only over a file
it may see or has a claim on. Nothing else is touched.
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'file_claims',
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('file_id', sa.Integer(), nullable=False),
        sa.Column('created', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['file_id'], ['files.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('user_id', 'file_id'),
    )


def downgrade():
    op.drop_table('file_claims')
