"""the sources of source catalogues (SOURCE_CATALOG), one row each, queryable in SQL

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 14:40:00

What changes for an archive made by revision 0003: a new table ``sources`` (empty; a
catalogue archived from now on fills it). Nothing else is touched.
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'sources',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('dataset_id', sa.Integer(), nullable=False),
        sa.Column('source_id', sa.Integer(), nullable=True),
        sa.Column('kind', sa.String(length=16), nullable=True),
        sa.Column('ra', sa.Float(), nullable=True),
        sa.Column('dec', sa.Float(), nullable=True),
        sa.Column('x', sa.Float(), nullable=True),
        sa.Column('y', sa.Float(), nullable=True),
        sa.Column('wavelength', sa.Float(), nullable=True),
        sa.Column('flux', sa.Float(), nullable=True),
        sa.Column('flux_err', sa.Float(), nullable=True),
        sa.Column('snr', sa.Float(), nullable=True),
        sa.Column('spectrum', sa.String(length=16), nullable=True),
        sa.Column('image', sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_sources_dataset', 'sources', ['dataset_id', 'source_id'], unique=False)
    op.create_index('ix_sources_wavelength', 'sources', ['kind', 'wavelength'], unique=False)


def downgrade():
    op.drop_index('ix_sources_wavelength', table_name='sources')
    op.drop_index('ix_sources_dataset', table_name='sources')
    op.drop_table('sources')
