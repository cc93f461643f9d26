"""collections, dataset identity apart from file bytes, dataset-level validity, certified calibrations

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 10:20:00

What changes for an archive made by revision 0002:

- every dataset belongs to a RUN collection: raw frames to ``MUSE/raw``, static tables
  to ``MUSE/static``, products to the collection of the run that made them
  (``<project>/run/NNNNNN`` for runs published at project level or wider - the old
  ``commit=True`` - chained into ``<project>/reference``; ``u/<user>/run/NNNNNN`` for
  private trials, chained into ``u/<user>``);
- several datasets may share one stored file (the unique ``(file_id, category)`` goes);
- every dataset gets its own ``is_valid``, ``flag`` and ``comment`` (a single-IFU product
  takes its IFU's; a multi-IFU file starts valid, its per-IFU rows stay as they were),
  and ``affected_by``;
- calibrations are certified for time ranges: static tables in ``MUSE/calib`` with no
  end, master calibrations in their chain's calibration collection (``<project>/calib`` or
  ``u/<user>/calib``) for the default range of their category around their MJD-OBS.

On SQLite the ``datasets`` table is rebuilt (batch mode); the archive runs migrations
with foreign keys switched off there, so the rebuild cascades nothing.
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

#: Default certified validity (days before, after MJD-OBS) at the time of this migration.
#: Frozen here on purpose: a migration must do tomorrow what it does today.
VALIDITY_DAYS = {
    "MASTER_BIAS": (7.0, 7.0), "MASTER_DARK": (30.0, 30.0), "MASTER_FLAT": (3.0, 3.0),
    "TRACE_TABLE": (3.0, 3.0), "WAVECAL_TABLE": (3.0, 3.0), "WAVECAL_RESIDUALS": (3.0, 3.0),
    "LSF_PROFILE": (30.0, 30.0), "TWILIGHT_CUBE": (5.0, 5.0), "STD_RESPONSE": (5.0, 5.0),
    "STD_TELLURIC": (5.0, 5.0), "BADPIX_TABLE": (180.0, 180.0),
}
FALLBACK_DAYS = (14.0, 14.0)


def upgrade():
    op.create_table(
        'collections',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=128), nullable=False),
        sa.Column('type', sa.String(length=16), nullable=False),
        sa.Column('owner_id', sa.Integer(), nullable=True),
        sa.Column('project_id', sa.Integer(), nullable=True),
        sa.Column('description', sa.Text(), nullable=True),
        sa.Column('created', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['owner_id'], ['users.id'], ),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name'),
    )
    op.create_table(
        'collection_chains',
        sa.Column('parent_id', sa.Integer(), nullable=False),
        sa.Column('child_id', sa.Integer(), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['child_id'], ['collections.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['parent_id'], ['collections.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('parent_id', 'child_id'),
    )
    op.create_index('ix_collection_chains_child', 'collection_chains', ['child_id'], unique=False)
    op.create_table(
        'certifications',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('collection_id', sa.Integer(), nullable=False),
        sa.Column('dataset_id', sa.Integer(), nullable=False),
        sa.Column('category', sa.String(length=32), nullable=False),
        sa.Column('ifu', sa.Integer(), nullable=True),
        sa.Column('mode', sa.String(length=16), nullable=True),
        sa.Column('begin_mjd', sa.Float(), nullable=True),
        sa.Column('end_mjd', sa.Float(), nullable=True),
        sa.Column('certified_by', sa.Integer(), nullable=True),
        sa.Column('certified', sa.DateTime(), nullable=True),
        sa.Column('comment', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['certified_by'], ['users.id'], ),
        sa.ForeignKeyConstraint(['collection_id'], ['collections.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('collection_id', 'dataset_id', name='uq_certification_collection_dataset'),
    )
    op.create_index('ix_certifications_lookup', 'certifications', ['category', 'ifu', 'begin_mjd'], unique=False)
    op.create_index('ix_certifications_dataset', 'certifications', ['dataset_id'], unique=False)
    op.create_table(
        'certification_events',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('collection_id', sa.Integer(), nullable=True),
        sa.Column('dataset_id', sa.Integer(), nullable=True),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.Column('at', sa.DateTime(), nullable=True),
        sa.Column('action', sa.String(length=16), nullable=True),
        sa.Column('begin_before', sa.Float(), nullable=True),
        sa.Column('end_before', sa.Float(), nullable=True),
        sa.Column('begin_after', sa.Float(), nullable=True),
        sa.Column('end_after', sa.Float(), nullable=True),
        sa.Column('comment', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['collection_id'], ['collections.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('runs') as b:
        b.add_column(sa.Column('collection_id', sa.Integer(), nullable=True))
        b.add_column(sa.Column('is_reference', sa.Boolean(), nullable=False, server_default=sa.false()))
        b.add_column(sa.Column('collections', sa.JSON(), nullable=True))
        b.create_foreign_key('fk_runs_collection', 'collections', ['collection_id'], ['id'])
    with op.batch_alter_table('validity_events') as b:
        b.alter_column('ifu', existing_type=sa.Integer(), nullable=True)
    with op.batch_alter_table('datasets') as b:
        b.add_column(sa.Column('collection_id', sa.Integer(), nullable=True))
        b.add_column(sa.Column('exposure', sa.String(length=32), nullable=True))
        b.add_column(sa.Column('is_valid', sa.Boolean(), nullable=False, server_default=sa.true()))
        b.add_column(sa.Column('flag', sa.String(length=16), nullable=False, server_default='unchecked'))
        b.add_column(sa.Column('comment', sa.Text(), nullable=False, server_default=''))
        b.add_column(sa.Column('validity_by', sa.Integer(), nullable=True))
        b.add_column(sa.Column('validity_at', sa.DateTime(), nullable=True))
        b.add_column(sa.Column('affected_by', sa.Integer(), nullable=True))

    _backfill(op.get_bind())

    with op.batch_alter_table('datasets') as b:
        b.drop_constraint('uq_dataset_file_category', type_='unique')
        b.alter_column('collection_id', existing_type=sa.Integer(), nullable=False)
        b.create_foreign_key('fk_datasets_collection', 'collections', ['collection_id'], ['id'])
        b.create_foreign_key('fk_datasets_validity_by', 'users', ['validity_by'], ['id'])
        b.create_index('ix_datasets_file', ['file_id'])
        b.create_index('ix_datasets_collection', ['collection_id', 'category'])


def _backfill(conn):
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc).replace(tzinfo=None)
    coll = sa.table('collections', sa.column('id'), sa.column('name'), sa.column('type'), sa.column('owner_id'),
                    sa.column('project_id'), sa.column('description'), sa.column('created'))
    chain = sa.table('collection_chains', sa.column('parent_id'), sa.column('child_id'), sa.column('position'))
    cert = sa.table('certifications', sa.column('collection_id'), sa.column('dataset_id'), sa.column('category'),
                    sa.column('ifu'), sa.column('mode'), sa.column('begin_mjd'), sa.column('end_mjd'),
                    sa.column('certified'), sa.column('comment'))
    ids: dict[str, int] = {}

    def collection(name, type_, owner=None, project=None, description=""):
        if name not in ids:
            conn.execute(coll.insert().values(name=name, type=type_, owner_id=owner, project_id=project,
                                              description=description, created=now))
            ids[name] = conn.execute(sa.select(coll.c.id).where(coll.c.name == name)).scalar_one()
        return ids[name]

    raw = collection("MUSE/raw", "run", description="raw frames as ingested")
    static = collection("MUSE/static", "run", description="static calibration tables as ingested")
    static_calib = collection("MUSE/calib", "calibration", description="static calibration tables, certified")
    users = dict(conn.execute(sa.text("SELECT id, name FROM users")).all())
    projects = dict(conn.execute(sa.text("SELECT id, name FROM projects")).all())
    runs = conn.execute(sa.text("SELECT id, user_id, project_id, privilege FROM runs ORDER BY id")).all()
    run_calib = {}
    for run_id, user_id, project_id, privilege in runs:
        reference = (privilege or 1) >= 2 and project_id is not None
        if reference:
            pname = projects[project_id]
            leaf = collection(f"{pname}/run/{run_id:06d}", "run", project=project_id)
            parent = collection(f"{pname}/reference", "chained", project=project_id,
                                description=f"reference reduction of project {pname}")
            run_calib[run_id] = collection(f"{pname}/calib", "calibration", project=project_id)
        else:
            uname = users[user_id]
            leaf = collection(f"u/{uname}/run/{run_id:06d}", "run", owner=user_id)
            parent = collection(f"u/{uname}", "chained", owner=user_id, description=f"trials of {uname}")
            run_calib[run_id] = collection(f"u/{uname}/calib", "calibration", owner=user_id)
        conn.execute(chain.insert().values(parent_id=parent, child_id=leaf, position=run_id))
        conn.execute(sa.text("UPDATE runs SET collection_id = :c, is_reference = :r WHERE id = :i"),
                     {"c": leaf, "r": reference, "i": run_id})
        conn.execute(sa.text("UPDATE datasets SET collection_id = :c WHERE run_id = :i"), {"c": leaf, "i": run_id})
    conn.execute(sa.text("UPDATE datasets SET collection_id = :c WHERE run_id IS NULL AND kind = 'static'"),
                 {"c": static})
    conn.execute(sa.text("UPDATE datasets SET collection_id = :c WHERE collection_id IS NULL"), {"c": raw})

    # A single-IFU dataset's verdict is its IFU's; multi-IFU files keep theirs per IFU.
    rows = conn.execute(sa.text(
        "SELECT d.id, i.is_valid, i.flag, i.comment, i.updated_by, i.updated FROM datasets d "
        "JOIN dataset_ifus i ON i.dataset_id = d.id AND i.ifu = d.ifu")).all()
    for did, valid, flag, comment, by, at in rows:
        conn.execute(sa.text("UPDATE datasets SET is_valid = :v, flag = :f, comment = :c, validity_by = :b, "
                             "validity_at = :a WHERE id = :i"),
                     {"v": bool(valid), "f": flag, "c": comment or "", "b": by, "a": at, "i": did})
    for did, date_obs in conn.execute(sa.text("SELECT id, date_obs FROM datasets WHERE date_obs IS NOT NULL")).all():
        if isinstance(date_obs, str):
            date_obs = datetime.fromisoformat(date_obs)
        conn.execute(sa.text("UPDATE datasets SET exposure = :e WHERE id = :i"),
                     {"e": date_obs.isoformat(timespec="seconds"), "i": did})

    for did, category, ifu, mode in conn.execute(sa.text(
            "SELECT id, category, ifu, mode FROM datasets WHERE kind = 'static'")).all():
        conn.execute(cert.insert().values(collection_id=static_calib, dataset_id=did, category=category, ifu=ifu,
                                          mode=None, begin_mjd=None, end_mjd=None, certified=now,
                                          comment="static table, certified by migration 0003"))
    for did, category, ifu, mode, mjd, run_id in conn.execute(sa.text(
            "SELECT id, category, ifu, mode, mjd_obs, run_id FROM datasets "
            "WHERE kind = 'calibration' AND run_id IS NOT NULL")).all():
        before, after = VALIDITY_DAYS.get(category, FALLBACK_DAYS)
        begin, end = (None, None) if mjd is None else (mjd - before, mjd + after)
        conn.execute(cert.insert().values(collection_id=run_calib[run_id], dataset_id=did, category=category,
                                          ifu=ifu, mode=mode, begin_mjd=begin, end_mjd=end, certified=now,
                                          comment="default range of its category, certified by migration 0003"))


def downgrade():
    with op.batch_alter_table('datasets') as b:
        b.drop_index('ix_datasets_collection')
        b.drop_index('ix_datasets_file')
        b.drop_constraint('fk_datasets_validity_by', type_='foreignkey')
        b.drop_constraint('fk_datasets_collection', type_='foreignkey')
        for col in ('affected_by', 'validity_at', 'validity_by', 'comment', 'flag', 'is_valid', 'exposure',
                    'collection_id'):
            b.drop_column(col)
        b.create_unique_constraint('uq_dataset_file_category', ['file_id', 'category'])
    with op.batch_alter_table('runs') as b:
        b.drop_constraint('fk_runs_collection', type_='foreignkey')
        for col in ('collections', 'is_reference', 'collection_id'):
            b.drop_column(col)
    op.drop_table('certification_events')
    op.drop_index('ix_certifications_dataset', table_name='certifications')
    op.drop_index('ix_certifications_lookup', table_name='certifications')
    op.drop_table('certifications')
    op.drop_index('ix_collection_chains_child', table_name='collection_chains')
    op.drop_table('collection_chains')
    op.drop_table('collections')
