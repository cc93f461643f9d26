"""review queue, audit of the review work, frozen data releases, IVOA ObsCore table

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 05:34:36.669271

Besides the tables of :mod:`musewise.archive.schema_review`, this creates triggers
that make the database itself refuse any UPDATE or DELETE of ``releases``,
``release_items`` and ``ivoa_obscore`` rows (SQLite: ``RAISE(ABORT)`` triggers;
PostgreSQL: one PL/pgSQL function raising ``check_violation``), so a release stays
frozen whatever client writes to the registry.
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

FROZEN = ("releases", "release_items", "ivoa_obscore")
MESSAGE = "data releases are frozen: their rows cannot be changed or deleted"


def upgrade():
    op.create_table('releases',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('version', sa.String(length=32), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=False),
    sa.Column('manifest', sa.Text(), nullable=False),
    sa.Column('manifest_sha256', sa.String(length=64), nullable=False),
    sa.Column('n_products', sa.Integer(), nullable=False),
    sa.Column('total_bytes', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name', 'version', name='uq_release_name_version')
    )
    op.create_table('ivoa_obscore',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('dataproduct_type', sa.String(length=32), nullable=True),
    sa.Column('dataproduct_subtype', sa.String(length=64), nullable=True),
    sa.Column('calib_level', sa.Integer(), nullable=False),
    sa.Column('obs_collection', sa.String(length=128), nullable=False),
    sa.Column('obs_id', sa.String(length=128), nullable=False),
    sa.Column('obs_title', sa.String(length=256), nullable=True),
    sa.Column('obs_publisher_did', sa.String(length=256), nullable=False),
    sa.Column('obs_creator_did', sa.String(length=256), nullable=True),
    sa.Column('obs_release_date', sa.DateTime(), nullable=True),
    sa.Column('access_url', sa.String(length=512), nullable=True),
    sa.Column('access_format', sa.String(length=64), nullable=True),
    sa.Column('access_estsize', sa.BigInteger(), nullable=True),
    sa.Column('target_name', sa.String(length=80), nullable=True),
    sa.Column('s_ra', sa.Float(), nullable=True),
    sa.Column('s_dec', sa.Float(), nullable=True),
    sa.Column('s_fov', sa.Float(), nullable=True),
    sa.Column('s_region', sa.Text(), nullable=True),
    sa.Column('s_resolution', sa.Float(), nullable=True),
    sa.Column('s_xel1', sa.BigInteger(), nullable=True),
    sa.Column('s_xel2', sa.BigInteger(), nullable=True),
    sa.Column('t_min', sa.Float(), nullable=True),
    sa.Column('t_max', sa.Float(), nullable=True),
    sa.Column('t_exptime', sa.Float(), nullable=True),
    sa.Column('t_resolution', sa.Float(), nullable=True),
    sa.Column('t_xel', sa.BigInteger(), nullable=True),
    sa.Column('em_min', sa.Float(), nullable=True),
    sa.Column('em_max', sa.Float(), nullable=True),
    sa.Column('em_res_power', sa.Float(), nullable=True),
    sa.Column('em_xel', sa.BigInteger(), nullable=True),
    sa.Column('em_ucd', sa.String(length=64), nullable=True),
    sa.Column('o_ucd', sa.String(length=64), nullable=True),
    sa.Column('pol_states', sa.String(length=32), nullable=True),
    sa.Column('pol_xel', sa.BigInteger(), nullable=True),
    sa.Column('facility_name', sa.String(length=64), nullable=True),
    sa.Column('instrument_name', sa.String(length=64), nullable=True),
    sa.Column('release_id', sa.Integer(), nullable=False),
    sa.Column('dataset_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], ),
    sa.ForeignKeyConstraint(['release_id'], ['releases.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('obs_publisher_did'),
    sa.UniqueConstraint('release_id', 'dataset_id', name='uq_obscore_release_dataset')
    )
    op.create_table('qc_claims',
    sa.Column('dataset_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('claimed', sa.DateTime(), nullable=False),
    sa.Column('expires', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('dataset_id')
    )
    op.create_table('qc_review_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('dataset_id', sa.Integer(), nullable=True),
    sa.Column('ifu', sa.Integer(), nullable=True),
    sa.Column('release_id', sa.Integer(), nullable=True),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['release_id'], ['releases.id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('qc_review_events', schema=None) as batch_op:
        batch_op.create_index('ix_qc_review_events_dataset', ['dataset_id'], unique=False)

    op.create_table('qc_review_states',
    sa.Column('dataset_id', sa.Integer(), nullable=False),
    sa.Column('ifu', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('source_dataset_id', sa.Integer(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('updated', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['source_dataset_id'], ['datasets.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('dataset_id', 'ifu')
    )
    with op.batch_alter_table('qc_review_states', schema=None) as batch_op:
        batch_op.create_index('ix_qc_review_states_state', ['state'], unique=False)

    op.create_table('release_items',
    sa.Column('release_id', sa.Integer(), nullable=False),
    sa.Column('dataset_id', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('path', sa.String(length=512), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], ),
    sa.ForeignKeyConstraint(['release_id'], ['releases.id'], ),
    sa.PrimaryKeyConstraint('release_id', 'dataset_id')
    )
    with op.batch_alter_table('release_items', schema=None) as batch_op:
        batch_op.create_index('ix_release_items_dataset', ['dataset_id'], unique=False)

    _create_freeze_triggers()


def _create_freeze_triggers():
    if op.get_bind().dialect.name == "sqlite":
        for table in FROZEN:
            for what in ("UPDATE", "DELETE"):
                op.execute(f"CREATE TRIGGER frozen_{table}_{what.lower()} BEFORE {what} ON {table} "
                           f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END")
        return
    op.execute(f"""
        CREATE FUNCTION musewise_refuse_release_change() RETURNS trigger AS $$
        BEGIN
            RAISE EXCEPTION '{MESSAGE} (table %)', TG_TABLE_NAME USING ERRCODE = 'check_violation';
        END
        $$ LANGUAGE plpgsql""")
    for table in FROZEN:
        op.execute(f"CREATE TRIGGER frozen_{table} BEFORE UPDATE OR DELETE ON {table} "
                   f"FOR EACH ROW EXECUTE FUNCTION musewise_refuse_release_change()")


def downgrade():
    if op.get_bind().dialect.name == "sqlite":
        for table in FROZEN:
            for what in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS frozen_{table}_{what}")
    else:
        for table in FROZEN:
            op.execute(f"DROP TRIGGER IF EXISTS frozen_{table} ON {table}")
        op.execute("DROP FUNCTION IF EXISTS musewise_refuse_release_change()")
    with op.batch_alter_table('release_items', schema=None) as batch_op:
        batch_op.drop_index('ix_release_items_dataset')
    op.drop_table('release_items')
    with op.batch_alter_table('qc_review_states', schema=None) as batch_op:
        batch_op.drop_index('ix_qc_review_states_state')
    op.drop_table('qc_review_states')
    with op.batch_alter_table('qc_review_events', schema=None) as batch_op:
        batch_op.drop_index('ix_qc_review_events_dataset')
    op.drop_table('qc_review_events')
    op.drop_table('qc_claims')
    op.drop_table('ivoa_obscore')
    op.drop_table('releases')
