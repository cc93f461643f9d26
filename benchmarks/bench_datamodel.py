"""The archive's data model at scale: certified-calibration lookup and planning, SQLite and PostgreSQL.

A registry is filled straight into its tables (bulk inserts; PostgreSQL ``COPY``) with
realistic rows: one field observed over 250 nights (raw frames of 24 IFUs, its
reference reduction per IFU and exposure, each run in its own RUN collection chained
into the project's reference chain, master calibrations certified for their default
ranges), personal trials of a member (``alice``) on some of those nights, and filler:
other nights reduced by the reference reduction and re-reduced in the personal trials of
thirty users (private or shown to the consortium), up to the number of datasets asked
for. Files are shared between datasets (no FITS file is written: planning reads rows only).

For each registry size (10^4 beside 10^7 by default, filled in the same run) it prints:

1. the best-calibration lookup (:meth:`Archive.best_calibration`) as ``alice``, a
   non-admin consortium member (the privilege rule applies), median and p95 of 200
   lookups of a random category, IFU and MJD around the field's nights;
2. ``dpu.plan('scipost', night)`` as ``alice`` for every night of the field: per night
   (median, p95) and in total.

The ratio of the large to the small registry is the point: a lookup should not grow
with the archive (goal < 5 ms at 10^7), nor should planning (goal: the field's 250
nights in < 2 s at 10^7).

Usage::

    python benchmarks/bench_datamodel.py                       # 10^4 and 10^7, both backends (~40 min, ~12 GB)
    python benchmarks/bench_datamodel.py --sizes 10000,100000,1000000 --backends sqlite
    python benchmarks/bench_datamodel.py --workdir /data/bench  # the databases go there (deleted at the end)
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import time
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from musewise import dpu
from musewise.archive import Archive
from musewise.archive.schema import Base, Collection, User
from musewise.config import MusewiseConfig
from musewise.dpu.config import DpuConfig
from musewise.dpu.steps import STEPS
from musewise.exceptions import CalibrationNotFoundError
from musewise.recipes import get_recipe
from musewise.testing import TemporaryPostgres
from musewise.vocabulary import (
    DEFAULT_VALIDITY_DAYS,
    RAW_COLLECTION,
    STATIC_CALIB_COLLECTION,
    STATIC_COLLECTION,
    reference_calibrations,
    reference_chain,
    user_calibrations,
    user_chain,
)

PROJECT = "consortium"
MODE = "WFM-NOAO-N"
FIELD = "FIELD-A"
FIELD_NIGHTS = 250
IFUS = tuple(range(1, 25))
#: Nights of the filler: ~8 years (MJD 58849 is 2020-01-01).
MJD_FIRST, N_NIGHTS = 58849, 2920
TRIAL_USERS = tuple(f"u{i:02d}" for i in range(1, 30)) + ("alice",)
LOOKUP_CATEGORIES = ("MASTER_BIAS", "MASTER_FLAT", "TRACE_TABLE", "WAVECAL_TABLE")
STATIC = ("LINE_CATALOG", "GEOMETRY_TABLE", "EXTINCT_TABLE")
CALIB = {"MASTER_BIAS", "MASTER_FLAT", "TRACE_TABLE", "WAVECAL_TABLE", "WAVECAL_RESIDUALS"}
#: Datasets sharing one stored file (identity is the dataset, not the bytes).
DATASETS_PER_FILE = 10
BATCH = 50_000

COLUMNS = {
    "collections": ("id", "name", "type", "owner_id", "project_id", "description", "created"),
    "collection_chains": ("parent_id", "child_id", "position"),
    "files": ("id", "sha256", "size", "path", "original_name", "created"),
    "runs": ("id", "recipe", "parameters", "night", "ifu", "mode", "status", "pipeline_version",
             "musewise_version", "notebook_id", "user_id", "project_id", "privilege", "started", "ended",
             "error", "details", "collection_id", "is_reference", "collections"),
    "run_inputs": ("run_id", "dataset_id", "tag", "reason"),
    "datasets": ("id", "kind", "category", "file_id", "night", "date_obs", "mjd_obs", "exptime", "mode",
                 "object", "ifu", "pipeline_version", "header", "owner_id", "project_id", "privilege", "run_id",
                 "collection_id", "exposure", "is_valid", "flag", "comment", "validity_by", "validity_at",
                 "affected_by", "created"),
    "dataset_ifus": ("dataset_id", "ifu", "is_valid", "flag", "comment", "updated_by", "updated"),
    "certifications": ("id", "collection_id", "dataset_id", "category", "ifu", "mode", "begin_mjd", "end_mjd",
                       "certified_by", "certified", "comment"),
}
#: Tables whose secondary indexes are dropped during the fill and built after it.
BIG = ("collection_chains", "run_inputs", "datasets", "dataset_ifus", "certifications", "runs")


def _ts(mjd: float) -> str:
    # The text SQLAlchemy stores a DateTime as in SQLite (PostgreSQL parses it too).
    d = datetime(1858, 11, 17) + timedelta(days=mjd)
    return d.strftime("%Y-%m-%d %H:%M:%S.%f")


def _night(mjd_int: int) -> str:
    return (datetime(1858, 11, 17) + timedelta(days=mjd_int)).date().isoformat()


# ----------------------------------------------------------------------------- writers
class Writer:
    """Buffers rows per table and writes them in large batches."""

    def __init__(self, engine):
        self.engine = engine
        self.buf = {t: [] for t in COLUMNS}
        self.rows = 0

    def add(self, table, row):
        b = self.buf[table]
        b.append(row)
        if len(b) >= BATCH:
            self._write(table, b)
            self.rows += len(b)
            b.clear()

    def close(self):
        for t, b in self.buf.items():
            if b:
                self._write(t, b)
                self.rows += len(b)
                b.clear()
        self._finish()


class SqliteWriter(Writer):
    """``executemany`` in one connection, ``PRAGMA synchronous=OFF``, secondary indexes built afterwards."""

    def __init__(self, engine):
        super().__init__(engine)
        self.conn = engine.connect()
        for p in ("PRAGMA synchronous=OFF", "PRAGMA foreign_keys=OFF", "PRAGMA cache_size=-500000"):
            self.conn.exec_driver_sql(p)
        self.conn.commit()
        self.sql = {t: f"INSERT INTO {t} ({', '.join(c)}) VALUES ({', '.join('?' * len(c))})"
                    for t, c in COLUMNS.items()}
        self.indexes = drop_indexes(self.conn)

    def _write(self, table, rows):
        self.conn.exec_driver_sql(self.sql[table], rows)
        self.conn.commit()

    def _finish(self):
        create_indexes(self.conn, self.indexes)
        self.conn.exec_driver_sql("PRAGMA analysis_limit=2000")  # as `PRAGMA optimize` does
        self.conn.exec_driver_sql("ANALYZE")
        self.conn.exec_driver_sql("PRAGMA synchronous=NORMAL")
        self.conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.commit()
        self.conn.close()


class PostgresWriter(Writer):
    """``COPY ... FROM STDIN`` through psycopg, foreign-key triggers off, indexes built afterwards."""

    def __init__(self, engine):
        super().__init__(engine)
        self.sa = engine.connect()
        self.sa.exec_driver_sql("SET maintenance_work_mem = '1GB'")
        self.sa.exec_driver_sql("SET synchronous_commit = off")
        # Skip the per-row foreign-key checks (the rows are generated consistent); superuser only.
        self.sa.exec_driver_sql("SET session_replication_role = replica")
        self.indexes = drop_indexes(self.sa)
        self.sa.commit()
        self.raw = self.sa.connection.driver_connection

    def _write(self, table, rows):
        with self.raw.cursor() as cur:
            with cur.copy(f"COPY {table} ({', '.join(COLUMNS[table])}) FROM STDIN") as cp:
                for r in rows:
                    cp.write_row(r)
        self.raw.commit()

    def _finish(self):
        create_indexes(self.sa, self.indexes)
        for t, seq in (("collections", "collections_id_seq"), ("files", "files_id_seq"), ("runs", "runs_id_seq"),
                       ("datasets", "datasets_id_seq"), ("certifications", "certifications_id_seq")):
            self.sa.exec_driver_sql(f"SELECT setval('{seq}', (SELECT max(id) FROM {t}))")
        self.sa.exec_driver_sql("SET session_replication_role = origin")
        self.sa.commit()
        self.sa.close()
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql("VACUUM ANALYZE")


def drop_indexes(conn) -> list:
    """Drop the secondary (non-unique) indexes of the big tables; return them, to be built after the fill."""
    out = []
    for t in BIG:
        for ix in Base.metadata.tables[t].indexes:
            if not ix.unique:
                conn.exec_driver_sql(f"DROP INDEX IF EXISTS {ix.name}")
                out.append(ix)
    conn.commit()
    return out


def create_indexes(conn, indexes) -> None:
    for ix in indexes:
        ix.create(conn)
        conn.commit()


# ----------------------------------------------------------------------------- the registry's rows
class Registry:
    """Generates consistent rows (ids assigned here) and hands them to a :class:`Writer`."""

    def __init__(self, w: Writer, users: dict[str, int], project_id: int, existing: dict[str, int], seed: int = 0):
        self.w, self.users, self.project_id, self.existing = w, users, project_id, existing
        self.rng = random.Random(seed)
        self.ids = {"coll": max(existing.values(), default=0), "run": 0, "ds": 0, "cert": 0, "file": 0}
        self.chain_pos: dict[int, int] = {}
        self.n_files = 1
        dcfg = DpuConfig.from_config(MusewiseConfig.load(root="/nonexistent"))
        self.recipe = {}
        for step in ("bias", "flat", "wavecal", "scibasic", "scipost"):
            rec = get_recipe(STEPS[step].recipe)
            self.recipe[step] = (rec.name, rec.pipeline_version,
                                 json.dumps({"effective_parameters": rec.effective_params(
                                     dcfg.parameters_for(rec.name, None))}))
        now = self.now = _ts(MJD_FIRST + N_NIGHTS + 10)
        self.names = {v: k for k, v in users.items()}
        self.admin = users["bench"]
        c = self.collection
        self.raw_coll = c(RAW_COLLECTION, "run", now)
        self.static_coll = c(STATIC_COLLECTION, "run", now)
        self.static_calib = c(STATIC_CALIB_COLLECTION, "calibration", now)
        self.ref_chain = c(reference_chain(PROJECT), "chained", now, project_id=project_id)
        self.ref_calib = c(reference_calibrations(PROJECT), "calibration", now, project_id=project_id)
        self.user_chain = {u: c(user_chain(u), "chained", now, owner_id=users[u]) for u in TRIAL_USERS}
        self.user_calib = {u: c(user_calibrations(u), "calibration", now, owner_id=users[u]) for u in TRIAL_USERS}
        self.static = {}
        for cat in STATIC:
            did = self.dataset("static", cat, None, None, None, None, self.admin, 3, None, self.static_coll, now)
            self.certify(self.static_calib, did, cat, None, None, None, now)
            self.static[cat] = did

    def _next(self, k):
        self.ids[k] += 1
        return self.ids[k]

    def collection(self, name, type_, created, owner_id=None, project_id=None):
        if name in self.existing:  # made by the migrations
            return self.existing[name]
        cid = self._next("coll")
        self.w.add("collections", (cid, name, type_, owner_id, project_id, "", created))
        return cid

    def file_id(self):
        # A new file every DATASETS_PER_FILE datasets; the others share it.
        if self.ids["ds"] % DATASETS_PER_FILE == 1 or self.ids["file"] == 0:
            fid = self._next("file")
            self.w.add("files", (fid, f"{fid:064x}", 1000, f"bench/{fid:08d}.fits", f"f{fid}.fits", self.now))
        return self.ids["file"]

    def dataset(self, kind, category, night, mjd, ifu, exposure, owner, privilege, run_id, coll, created,
                ifus=None, exptime=None, obj=None, valid=True, pv=None):
        did = self._next("ds")
        self.w.add("datasets", (did, kind, category, self.file_id(), night, exposure and exposure.replace("T", " "),
                                mjd, exptime, MODE if kind != "static" else None, obj, ifu, pv, None, owner,
                                self.project_id, privilege, run_id, coll, exposure, valid,
                                "unchecked" if valid else "bad", "" if valid else "bench: bad", None, None, None,
                                created))
        for i in (ifus if ifus is not None else ((ifu,) if ifu else ())):
            self.w.add("dataset_ifus", (did, i, valid, "unchecked", "", None, None))
        return did

    def certify(self, coll, did, category, ifu, begin, end, created):
        self.w.add("certifications", (self._next("cert"), coll, did, category, ifu, MODE if begin else None, begin,
                                      end, self.admin, created, "default range"))

    def raw_night(self, mjd_int, n_exposures, obj):
        """The raw frames of one night: ``{tag: [(id, mjd, iso)]}``."""
        night = _night(mjd_int)
        out = {}
        t = mjd_int + 0.55  # 13:12 UT, the afternoon of the night at Paranal
        for tag, n, exptime in (("BIAS", 5, 0.0), ("FLAT", 5, 1.0), ("ARC", 5, 10.0),
                                ("OBJECT", n_exposures, 900.0)):
            if tag == "OBJECT":
                t = mjd_int + 1.05
            frames = []
            for _ in range(n):
                iso = _ts(t)[:19].replace(" ", "T")
                did = self.dataset("raw", tag, night, t, None, iso, self.admin, 3, None, self.raw_coll, _ts(t + 0.5),
                                   ifus=IFUS, exptime=exptime, obj=obj if tag == "OBJECT" else tag)
                frames.append((did, t, iso))
                t += (exptime + 120.0) / 86400.0
            out[tag] = frames
        return out

    def run(self, step, night, ifu, user, reference, privilege, created, inputs, pv=None, details=None):
        """A finished run with its own RUN collection (chained first) and notebook; returns (run, collection)."""
        uname = self.names[user]
        rid = self._next("run")
        name = f"{PROJECT}/run/{rid:06d}" if reference else f"u/{uname}/run/{rid:06d}"
        coll = self.collection(name, "run", created, owner_id=None if reference else user,
                               project_id=self.project_id if reference else None)
        chain = self.ref_chain if reference else self.user_chain[uname]
        pos = self.chain_pos[chain] = self.chain_pos.get(chain, 0) + 1
        self.w.add("collection_chains", (chain, coll, pos))
        recipe, pv0, det = self.recipe[step]
        if details:
            det = json.dumps({**json.loads(det), **details})
        nb = self.dataset("notebook", "NOTEBOOK", night, None, ifu, None, user, privilege, rid, coll, created,
                          obj=recipe, pv=pv or pv0)
        self.w.add("runs", (rid, recipe, "{}", night, ifu, MODE, "succeeded", pv or pv0, "bench", nb, user,
                            self.project_id, privilege, created, created, None, det, coll, reference, None))
        for did, tag in inputs:
            self.w.add("run_inputs", (rid, did, tag, "bench"))
        return rid, coll

    def product(self, run, category, night, mjd, ifu, user, privilege, created, reference, pv=None,
                exposure=None, valid=True):
        rid, coll = run
        kind = "calibration" if category in CALIB else "science"
        did = self.dataset(kind, category, night, mjd, ifu, exposure, user, privilege, rid, coll, created,
                           valid=valid, pv=pv or self.recipe["bias"][1])
        if kind == "calibration":
            before, after = DEFAULT_VALIDITY_DAYS[category]
            uname = self.names[user]
            self.certify(self.ref_calib if reference else self.user_calib[uname], did, category, ifu,
                         mjd - before, mjd + after, created)
        return did

    def reduce(self, mjd_int, raw, user, reference, privilege, ifus=IFUS, pv=None, with_inputs=True,
               steps=("bias", "flat", "wavecal", "scibasic", "scipost"), bad=0.0):
        """One reduction of a night: per IFU bias, flat, wavecal, scibasic; per exposure scipost."""
        night = _night(mjd_int)
        created_mjd = mjd_int + 1.5 + self.rng.random() * 30
        created = _ts(created_mjd)
        rng = self.rng
        P = dict(user=user, privilege=privilege, created=created, reference=reference, pv=pv)
        mid = {tag: fr[len(fr) // 2][1] for tag, fr in raw.items()}
        pix = {}

        def inp(pairs):
            return pairs if with_inputs else ()

        for ifu in ifus:
            prev = {}
            if "bias" in steps:
                r = self.run("bias", night, ifu, user, reference, privilege, created,
                             inp([(f[0], "BIAS") for f in raw["BIAS"]]), pv)
                prev["MASTER_BIAS"] = self.product(r, "MASTER_BIAS", night, mid["BIAS"], ifu, **P,
                                                   valid=rng.random() >= bad)
            if "flat" in steps:
                r = self.run("flat", night, ifu, user, reference, privilege, created,
                             inp([(f[0], "FLAT") for f in raw["FLAT"]] + [(v, k) for k, v in prev.items()]), pv)
                prev["MASTER_FLAT"] = self.product(r, "MASTER_FLAT", night, mid["FLAT"], ifu, **P,
                                                   valid=rng.random() >= bad)
                prev["TRACE_TABLE"] = self.product(r, "TRACE_TABLE", night, mid["FLAT"], ifu, **P)
            if "wavecal" in steps:
                r = self.run("wavecal", night, ifu, user, reference, privilege, created,
                             inp([(f[0], "ARC") for f in raw["ARC"]] + [(v, k) for k, v in prev.items()]
                                 + [(self.static["LINE_CATALOG"], "LINE_CATALOG")]), pv)
                prev["WAVECAL_TABLE"] = self.product(r, "WAVECAL_TABLE", night, mid["ARC"], ifu, **P)
                self.product(r, "WAVECAL_RESIDUALS", night, mid["ARC"], ifu, **P)
            if "scibasic" in steps:
                r = self.run("scibasic", night, ifu, user, reference, privilege, created,
                             inp([(f[0], "OBJECT") for f in raw["OBJECT"]] + [(v, k) for k, v in prev.items()]
                                 + [(self.static["GEOMETRY_TABLE"], "GEOMETRY_TABLE")]), pv)
                for did, t, iso in raw["OBJECT"]:
                    pix.setdefault(iso, []).append(
                        self.product(r, "PIXTABLE_OBJECT", night, t, ifu, **P, exposure=iso))
        if "scipost" in steps and len(ifus) == len(IFUS):
            for did, t, iso in raw["OBJECT"]:
                r = self.run("scipost", night, None, user, reference, privilege, created,
                             inp([(p, "PIXTABLE_OBJECT") for p in pix.get(iso, ())]
                                 + [(self.static["EXTINCT_TABLE"], "EXTINCT_TABLE")]), pv,
                             details={"ifus": list(ifus)})
                for cat in ("DATACUBE_FINAL", "IMAGE_FOV"):
                    self.product(r, cat, night, t, None, **P, exposure=iso)


def fill(arch: Archive, n_rows: int, seed: int = 0) -> dict:
    """Fill ``arch`` with about ``n_rows`` datasets (at least one night of the field); return what the bench needs."""
    rng = random.Random(seed)
    for u in TRIAL_USERS:
        arch.add_user(u, projects={PROJECT: "member"})
    with arch.session() as s:
        users = {u.name: u.id for u in s.scalars(select(User))}
        project_id = arch.project_row(s, PROJECT).id
        existing = {c.name: c.id for c in s.scalars(select(Collection))}
    backend = arch.engine.dialect.name
    w = SqliteWriter(arch.engine) if backend == "sqlite" else PostgresWriter(arch.engine)
    reg = Registry(w, users, project_id, existing, seed)
    per_field_night = 18 + 24 * 12 + 3 * 3  # raw frames, per-IFU products and notebooks, cubes
    n_field = max(1, min(FIELD_NIGHTS, n_rows // per_field_night))
    all_nights = list(range(MJD_FIRST, MJD_FIRST + N_NIGHTS))
    field = sorted(rng.sample(all_nights, n_field))
    taken = set(field)
    others = [m for m in all_nights if m not in taken]
    rng.shuffle(others)
    admin, alice = users["bench"], users["alice"]
    for m in field:
        raw = reg.raw_night(m, 3, FIELD)
        reg.reduce(m, raw, admin, True, 3)
        if rng.random() < 0.1:
            # alice re-made some flats of this night (her trials come first in her search path)
            reg.reduce(m, raw, alice, False, 1, ifus=tuple(sorted(rng.sample(IFUS, 2))), steps=("flat",))
        if rng.random() < 0.3:
            u = users[rng.choice(TRIAL_USERS[:-1])]
            reg.reduce(m, raw, u, False, rng.choice((1, 3)), ifus=tuple(sorted(rng.sample(IFUS, 4))),
                       steps=("bias", "flat", "wavecal"), with_inputs=False)
    raws, i = {}, 0
    while reg.ids["ds"] < n_rows:
        # Other fields: first every other night's reference reduction, then personal trials.
        m = others[i % len(others)]
        if m not in raws:
            raws[m] = reg.raw_night(m, 8, f"OTHER-{m % 97}")
            reg.reduce(m, raws[m], admin, True, 3, with_inputs=False, bad=0.02)
        else:
            u = rng.choice(TRIAL_USERS)
            ifus = IFUS if rng.random() < 0.2 else tuple(sorted(rng.sample(IFUS, rng.randint(1, 12))))
            reg.reduce(m, raws[m], users[u], False, rng.choice((1, 3)), ifus=ifus, with_inputs=False, bad=0.02,
                       pv=rng.choice((None, "muse/2.8.5")))
        i += 1
    w.close()
    return {"field": field, "counts": dict(reg.ids), "rows": w.rows}


# ----------------------------------------------------------------------------- measurements
def db_size(arch: Archive, root: Path) -> int:
    if arch.engine.dialect.name == "sqlite":
        return sum(p.stat().st_size for p in root.glob("*.sqlite*"))
    with arch.engine.connect() as c:
        return c.exec_driver_sql("SELECT pg_database_size(current_database())").scalar()


def time_lookups(arch: Archive, field, n: int = 200) -> dict:
    """Best-calibration lookups as a non-admin member at random IFU/MJD around the field's nights."""
    rng = random.Random(1)
    member = arch.as_user("alice")
    times, cpu, found, losers = [], [], 0, 0
    for k in range(n + 5):
        mjd = rng.choice(field) + 1.05 + rng.uniform(-1.0, 1.0)
        cat, ifu = rng.choice(LOOKUP_CATEGORIES), rng.choice(IFUS)
        t, c = time.perf_counter(), time.process_time()
        try:
            ch = member.best_calibration(cat, ifu=ifu, mjd=mjd, mode=MODE)
            found += 1
            losers += len(ch.losers)
        except CalibrationNotFoundError:
            pass
        if k >= 5:  # the first few warm the caches
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
    times.sort()
    return {"median": statistics.median(times), "cpu": statistics.median(cpu), "p95": times[int(0.95 * len(times)) - 1], "found": found / (n + 5),
            "losers": losers / max(found, 1)}


def time_planning(arch: Archive, field) -> dict:
    member = arch.as_user("alice")
    times, todo, items = [], 0, 0
    c = time.process_time()
    for m in field:
        t = time.perf_counter()
        p = dpu.plan("scipost", _night(m), archive=member)
        times.append(time.perf_counter() - t)
        todo += len(p.todo)
        items += len(p.items)
    times.sort()
    return {"total": sum(times), "cpu": time.process_time() - c, "median": statistics.median(times), "p95": times[max(0, int(0.95 * len(times)) - 1)],
            "nights": len(field), "todo": todo, "items": items}


#: Disk a registry takes, per dataset (bytes; measured: 0.66 GB SQLite, 0.81 GB PostgreSQL per 10^6), with margin.
BYTES_PER_DATASET = 1200


def bench(backend: str, n: int, workdir: Path, pg) -> dict | None:
    need, free = n * BYTES_PER_DATASET, shutil.disk_usage(workdir).free
    if need > free:
        print(f"  {backend:10s} {n:>11,d} skipped: needs ~{need / 1e9:.0f} GB, {free / 1e9:.0f} GB free", flush=True)
        return None
    root = workdir / f"{backend}-{n}"
    url = f"sqlite:///{root / 'registry.sqlite'}" if backend == "sqlite" else pg.create_database()
    arch = Archive(MusewiseConfig.load(root=str(root), db_url=url, user="bench", project=PROJECT), user="bench")
    t = time.perf_counter()
    info = fill(arch, n)
    t_fill = time.perf_counter() - t
    size = db_size(arch, root)
    c = info["counts"]
    print(f"  {backend:10s} {c['ds']:>11,d} datasets ({c['run']:,d} runs, {c['coll']:,d} collections, "
          f"{c['cert']:,d} certifications, {c['file']:,d} files; {info['rows']:,d} rows): filled in {t_fill:.0f} s, "
          f"{size / 1e9:.2f} GB", flush=True)
    lk = time_lookups(arch, info["field"])
    print(f"  {backend:10s} {c['ds']:>11,d} best_calibration: median {lk['median'] * 1e3:6.2f} ms, "
          f"p95 {lk['p95'] * 1e3:6.2f} ms (client CPU median {lk['cpu'] * 1e3:.2f} ms; {lk['found']:.0%} found, {lk['losers']:.1f} losers reported)", flush=True)
    pl = time_planning(arch, info["field"])
    print(f"  {backend:10s} {c['ds']:>11,d} plan('scipost') over the field's {pl['nights']} nights: "
          f"total {pl['total']:.2f} s (client CPU {pl['cpu']:.2f} s), per night median {pl['median'] * 1e3:.0f} ms, p95 {pl['p95'] * 1e3:.0f} ms "
          f"({pl['items']} planned runs, {pl['todo']} to do)", flush=True)
    arch.close()
    shutil.rmtree(root, ignore_errors=True)
    return {"n": c["ds"], "fill": t_fill, "size": size, "lookup": lk, "plan": pl}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,10000000", help="registry sizes (datasets), comma-separated")
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--workdir", default="/work/mwbench-datamodel",
                    help="where the databases go (a big disk, not /tmp); removed at the end")
    args = ap.parse_args()
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=False)
    free = shutil.disk_usage(workdir).free
    print(f"data model at scale: {len(sizes)} sizes, free disk {free / 1e9:.0f} GB in {workdir}", flush=True)
    try:
        for backend in args.backends.split(","):
            pg = TemporaryPostgres(dir=workdir).start() if backend == "postgresql" else None
            try:
                res = [bench(backend, n, workdir, pg) for n in sizes]
            finally:
                if pg is not None:
                    pg.stop()
            res = [r for r in res if r is not None]
            small = res[0] if res else None
            for r in res[1:]:
                print(f"  {backend:10s} ratio {r['n']:,d} / {small['n']:,d} datasets: lookup median "
                      f"{r['lookup']['median'] / small['lookup']['median']:.2f}, plan per night "
                      f"{r['plan']['median'] / small['plan']['median']:.2f}", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
