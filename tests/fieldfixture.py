"""The 2-night field reduced once with the real pipeline: a pytest plugin (``conftest.pytest_plugins``).

Fixtures
--------
field (session)
    A 2-night programme of one field (:data:`FIELD`) simulated by the instrument model
    (:func:`field_programme`): night 1 with its calibrations (bias, flats, arcs,
    twilight flats, a spectrophotometric standard) and an OB of 2 dithered exposures;
    night 2 without calibrations of its own and an OB of 2 more exposures, 4 in all,
    at position angle 0 (on one IFU, a 2.4 arcsec strip, rotated exposures would
    overlap in a few spaxels only: no source would be in all four). The science is
    simulated and reduced for IFU 1; the calibrations and the standard star for IFUs
    1-2 (:data:`STD_IFUS`): muse_standard cannot integrate the star's flux on one IFU's
    strip (a 1-IFU run fails: "No valid data found for object 1"). Ingested and
    reduced, on SQLite (:func:`build_field`):

    1. ``make('standard', NIGHT1, ifus=STD_IFUS)``: bias, flat, wavecal, twilight,
       scibasic of the standard, standard;
    2. ``make('scibasic')`` and ``make('lsf')`` for the target (``target=FIELD, ifus=IFUS``):
       both nights' pixel tables (night 2 borrows night 1's calibrations) and the LSF;
    3. ``make('exp_combine', target=FIELD)``: the field's grid (``field_grid``: the
       OUTPUT_WCS covering the 4 exposures, from their pointings), the 4 exposures' cubes
       on that grid (with their reduced pixel tables), exp_align, exp_combine on the same grid;
    4. ``make('combine_cubes', target=FIELD)``: the same 4 cubes combined.

    Both combined cubes share one grid, built from 4 scipost runs, and the plan of both
    ends is empty.
    A :class:`Field` (a dict) with the archive (read-only: tests must not change it;
    :func:`field_copy` gives an archive of one's own), the simulation's truth (the
    programme's field), the records of both combined cubes and the exposure cubes,
    and the wall time of each stage (s).

    The pytest option ``--field-root=DIR`` builds the field in ``DIR`` and keeps it
    there; a later run with the same option reuses it (to work on the tests: the
    build takes ~20 min on the shared 2-core machine, QC of every product included).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

#: The field's target name (``OBJECT``).
FIELD = "SIM-FIELD-2N"
NIGHT1, NIGHT2 = "2026-11-20", "2026-11-21"
#: IFUs of the science exposures, and of the calibrations and the standard star.
IFUS = (1,)
STD_IFUS = (1, 2)
#: Telescope offsets (arcsec West, North): two per night, four different pointings. Small in y:
#: IFU 1 is a 2.4 arcsec (12-spaxel) strip, and the Lyman-alpha emitter (1 spaxel below its
#: middle) and the star on it must stay 4 spaxels inside it in every exposure.
DITHERS = {NIGHT1: [[0.0, 0.0], [1.2, 0.1]], NIGHT2: [[-0.9, -0.2], [0.5, -0.3]]}
#: muse_exp_align on one IFU (a 2.4 arcsec strip) finds 2-3 sources, not the 5 it wants by default.
#: Its first search radius (default 30 arcsec) is cut to 4: the strip's stars are 13 arcsec
#: apart (x = 14 and 27), and with 30 it matched one to the other in night 2 (13 arcsec
#: "offsets" for exposures whose header pointings are exact). The dithers are < 2 arcsec.
EXP_ALIGN = {"srcmin": 1, "threshold": 10.0, "rsearch": "4.,2.,0.8"}
SCIPOST = {"crsigma": 20}
STEP_PARAMS = {"exp_align": EXP_ALIGN, "scipost": SCIPOST}


def pytest_addoption(parser):
    parser.addoption("--field-root", default=None,
                     help="build the 2-night field of tests/fieldfixture.py in this folder and keep it; "
                          "reuse it if it is there")


def field_programme(calibrations: bool = False):
    """The programme of the field (see the module docstring).

    ``calibrations`` False: the science OBs of both nights, no calibration; True: night
    1's calibrations only (simulated for :data:`STD_IFUS`).
    """
    from musewise.inm import Programme

    nights = [{"night": NIGHT1, "calibrations": calibrations,
               "obs": [] if calibrations else [{"posang": 0, "dithers": DITHERS[NIGHT1]}]}]
    if not calibrations:
        nights.append({"night": NIGHT2, "calibrations": False, "obs": [{"posang": 0, "dithers": DITHERS[NIGHT2]}]})
    return Programme.from_dict({
        "name": "field-2n", "seed": 5,
        "field": {"name": FIELD},
        "calibrations": {"n_bias": 3, "n_dark": 0, "n_flat": 3, "n_arc_per_lamp": 1, "n_skyflat": 3,
                         "n_std": 1},
        "nights": nights,
    })


#: Runs of the "heavy" recipes (scipost, exp_combine...) that may run at once: on one or two
#: IFUs they hold < 1 GB each, not the ~12 GB of 24 IFUs the default of 1 guards against.
HEAVY_CONCURRENCY = 2


def open_archive(root: Path):
    """The field's archive (SQLite in ``root/archive``), opened by ``admin``."""
    from traitlets.config import Config

    from musewise.archive import Archive
    from musewise.config import MusewiseConfig

    cfg = MusewiseConfig.load(root=str(root / "archive"), user="admin", project="consortium")
    conf = Config()
    conf.DpuConfig.heavy_concurrency = HEAVY_CONCURRENCY
    cfg.config = conf
    return Archive(cfg, user="admin")


def made_by(arch, category, recipe, valid=True):
    """Products of ``category`` made by runs of ``recipe``, oldest first."""
    recs = [r for r in arch.query(category=category) if (r.is_valid or not valid) and r.run_id is not None]
    runs = arch.get_runs({r.run_id for r in recs})
    return sorted((r for r in recs if runs[r.run_id].recipe == recipe), key=lambda r: r.id)


def on_grid(arch, rec) -> bool:
    """Was ``rec`` made by a run that had an OUTPUT_WCS?"""
    return "OUTPUT_WCS" in {i.tag for i in arch.get_run(rec.run_id).inputs}


def build_field(root: Path) -> dict:
    """Simulate, ingest and reduce the field into ``root`` (see the module docstring).

    Returns the stage times (s); the products are in the archive of ``root/archive``.
    """
    from musewise import dpu
    from musewise.inm import simulate_programme

    times = {}
    t0 = time.perf_counter()
    # The static calibrations (ASTROMETRY_WCS) are those of the science IFUs.
    files = simulate_programme(root / "raw", field_programme(), ifus=IFUS, progress=False)
    cal = simulate_programme(root / "raw", field_programme(calibrations=True), ifus=STD_IFUS, progress=False,
                             static=False)
    raw = [p for d in (files, cal) for v in d.values() for p in v] + sorted((root / "raw" / "static").glob("*.fits"))
    times["simulate"] = time.perf_counter() - t0
    arch = open_archive(root)
    try:
        t0 = time.perf_counter()
        rep = arch.ingest_many(raw, progress=False)
        assert not rep.refused, rep.refused
        times["ingest"] = time.perf_counter() - t0
        # the instrument model's truth about its stars stays, for the QC of the known star's flux
        shutil.move(root / "raw" / "STAR_CATALOG.ecsv", root / "STAR_CATALOG.ecsv")
        shutil.rmtree(root / "raw")  # archived: the datastore holds a copy (keeps the build under ~2 GB)
        kw = dict(target=FIELD, ifus=list(IFUS), dry_run=False, commit=True, archive=arch, progress=False,
                  step_params=STEP_PARAMS)
        t0 = time.perf_counter()
        dpu.make("standard", NIGHT1, list(STD_IFUS), dry_run=False, commit=True, archive=arch, progress=False)
        times["make standard (IFUs 1-2)"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        dpu.make("scibasic", **kw)
        dpu.make("lsf", **kw)  # scipost's sky model needs it (not a step before scibasic)
        times["make scibasic, lsf (the rest of the calibrations, 2 nights)"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        dpu.make("exp_combine", **kw)
        times["make exp_combine (field_grid, 4 scipost onto its OUTPUT_WCS, exp_align, exp_combine)"] = (
            time.perf_counter() - t0)
        t0 = time.perf_counter()
        dpu.make("combine_cubes", **kw)
        times["make combine_cubes"] = time.perf_counter() - t0
        for run in arch.runs():
            if run.ended and run.started:
                times.setdefault(f"runs of {run.recipe}", 0.0)
                times[f"runs of {run.recipe}"] += (run.ended - run.started).total_seconds()
    finally:
        arch.close()
    return times


class Field(dict):
    """What the ``field`` fixture yields (keys in :func:`_describe`)."""


def _describe(root: Path, times: dict) -> Field:
    arch = open_archive(root)
    # the newest: what the planner holds current (a --field-root kept over changes may hold more)
    exp_cube = made_by(arch, "DATACUBE_FINAL", "muse_exp_combine")[-1]
    list_cube = made_by(arch, "DATACUBE_FINAL", "combine_cubes")[-1]
    used = {i.dataset_id for i in arch.get_run(list_cube.run_id).inputs if i.tag == "DATACUBE_FINAL"}
    return Field(
        root=root, arch=arch, programme=field_programme(), times=times,
        exp_cube=exp_cube,                  # muse_exp_combine of the 4 reduced pixel tables
        list_cube=list_cube,                # combine_cubes of the 4 exposures' cubes
        exposures=sorted((arch.get(i) for i in used), key=lambda r: r.mjd_obs),  # on the OUTPUT_WCS
    )


@pytest.fixture(scope="session")
def field(request, tmp_path_factory):
    """The 2-night, 4-exposure field of IFU 1, reduced once up to both combined cubes."""
    from conftest import fixture_tmp, need

    need(shutil.which("esorex") is not None, "esorex not installed (apt-get install esorex cpl-plugin-muse)")
    keep = request.config.getoption("--field-root")
    if keep:
        root = Path(keep)
        done = root / "built.json"
        import json

        if not done.exists():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            done.write_text(json.dumps(build_field(root)))
        f = _describe(root, json.loads(done.read_text()))
        try:
            yield f
        finally:
            f["arch"].close()
        return
    with fixture_tmp(tmp_path_factory, "field") as root:
        times = build_field(root)
        print("field build times (s):", {k: round(v, 1) for k, v in times.items()})
        f = _describe(root, times)
        try:
            yield f
        finally:
            f["arch"].close()


def field_copy(field, dest: Path):
    """An archive of one's own holding the field: its database copied, its datastore files linked.

    For a test that changes the archive (marks a product invalid, rebuilds): the shared
    ``field`` stays as it was. Archived files are never written in place, so hard links
    are as good as copies.
    """
    src = field["root"] / "archive"
    dst = dest / "archive"
    shutil.copytree(src, dst, copy_function=_link_or_copy)
    return open_archive(dest)


def _link_or_copy(src, dst):
    import os

    if src.endswith((".sqlite", ".sqlite-wal", ".sqlite-shm", ".db")):
        return shutil.copy2(src, dst)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst
