"""Target processing across nights: plan and build a field observed over several nights.

The planner tests run on SQLite and PostgreSQL (``archive``) on a real simulated
2-night programme of one IFU (module fixture ``two_nights``: night 1 with its
calibrations, night 2 without any), without running the pipeline. The reduction of a
2-night field with the real MUSE pipeline, for its target, is ``test_field.py``'s (session
fixture ``field``).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from musewise import dpu
from musewise.exceptions import CalibrationNotFoundError

FIELD = "SIM-TWO-NIGHTS"
NIGHT1, NIGHT2 = "2026-11-20", "2026-11-21"
#: Two dithers per night: 2 exposures a night, 4 for the field.
DITHERS = [[0.0, 0.0], [1.2, 0.3]]


@pytest.fixture(scope="module")
def two_nights(tmp_path_factory):
    """Raw frames of a 2-night programme of one IFU; night 2 has no calibrations of its own.

    A dict: night -> raw files, and 'static' -> the static calibrations.
    """
    from conftest import fixture_tmp
    from musewise.inm import Programme, simulate_programme

    prog = Programme.from_dict({
        "name": "two-nights", "seed": 3,
        "field": {"name": FIELD},
        "calibrations": {"n_bias": 3, "n_dark": 0, "n_flat": 3, "n_arc_per_lamp": 1, "n_skyflat": 0,
                         "n_std": 0},
        "nights": [{"night": NIGHT1, "obs": [{"posang": 0, "dithers": DITHERS}]},
                   {"night": NIGHT2, "calibrations": False, "obs": [{"posang": 90, "dithers": DITHERS}]}],
    })
    with fixture_tmp(tmp_path_factory, "two-nights") as out:
        files = simulate_programme(out, prog, ifus=(1,), progress=False)
        files["static"] = sorted((out / "static").glob("*.fits"))
        yield files


def _ingest(arch, frames):
    files = [p for v in frames.values() for p in v]
    rep = arch.ingest_many(files, progress=False)
    assert not rep.refused, rep.refused


def test_programme_night_without_calibrations_writes_only_its_obs(two_nights):
    from musewise.ingest import inspect_file

    kinds = {n: sorted({inspect_file(p).category for p in two_nights[n]}) for n in (NIGHT1, NIGHT2)}
    assert {"BIAS", "FLAT", "ARC", "OBJECT", "ILLUM"} <= set(kinds[NIGHT1])
    assert kinds[NIGHT2] == ["ILLUM", "OBJECT"]
    assert all(inspect_file(p).object == FIELD for p in two_nights[NIGHT2])


def test_target_plan_spans_its_nights_and_takes_night_2_calibrations_from_night_1(archive, two_nights):
    _ingest(archive, two_nights)
    pl = dpu.plan("scipost", target=FIELD, ifus=[1], archive=archive)
    assert pl.object == FIELD and pl.nights == [NIGHT1, NIGHT2] and pl.ifus == [1]
    where = [(i.step, i.night) for i in pl.items]
    # The calibrations are built once, in night 1; each night reduces its own science.
    for step in ("bias", "flat", "wavecal", "lsf"):
        assert where.count((step, NIGHT1)) == 1 and (step, NIGHT2) not in where, step
    assert where.count(("scibasic", NIGHT1)) == where.count(("scibasic", NIGHT2)) == 1
    cubes = [i for i in pl.items if i.step == "scipost"]
    assert [i.night for i in cubes] == [NIGHT1, NIGHT1, NIGHT2, NIGHT2]
    assert len({i.exposure for i in cubes}) == 4 and all(i.status == "missing" for i in pl.items)
    # Why night 2 builds nothing of its own: said once per calibration step, with its window.
    text = pl.to_text()
    assert f"target {FIELD} (2 night(s): {NIGHT1}, {NIGHT2})" in text
    assert any(b.startswith(f"night {NIGHT2} has no BIAS for IFU 1: bias of night {NIGHT1} makes its MASTER_BIAS "
                            "(1 night(s) before, within the 1-night window of MASTER_BIAS)") for b in pl.borrowed)
    assert any("no ARC" in b and "WAVECAL_TABLE" in b for b in pl.borrowed)
    assert "calibration: night 2026-11-21 has no FLAT" in text
    # The same night alone plans the same borrowing.
    alone = dpu.plan("scipost", NIGHT2, [1], archive=archive)
    assert [(i.step, i.night) for i in alone.items if i.step == "bias"] == [("bias", NIGHT1)]
    assert [i.night for i in alone.items if i.step == "scipost"] == [NIGHT2, NIGHT2]


def test_scibasic_takes_the_illum_of_the_frames_ob_closest_in_time(archive, two_nights):
    from musewise.dpu.selection import attached_frame, raw_frames
    from musewise.dpu.steps import get_step

    _ingest(archive, two_nights)
    assert get_step("scibasic").attached == ("ILLUM",)
    illums = {r.night: r for r in raw_frames(archive, "ILLUM", NIGHT1) + raw_frames(archive, "ILLUM", NIGHT2)}
    for night in (NIGHT1, NIGHT2):
        frames = raw_frames(archive, "OBJECT", night, ifu=1)
        got = attached_frame(archive, "ILLUM", frames, night, ifu=1)
        # each night's OB has its own ILLUM, taken just before its first exposure
        assert got.dataset_id == illums[night].id and got.tag == "ILLUM"
        assert illums[night].header["ESO OBS ID"] == frames[1].header["ESO OBS ID"]
        assert got.reason.startswith(f"ILLUM of OB {frames[1].header['ESO OBS ID']}, ")
        assert "min from exposure" in got.reason and got.reason.endswith("IFU 1 valid")
    # frames of no OB with an ILLUM (the standard star): none further than an hour away
    assert attached_frame(archive, "ILLUM", raw_frames(archive, "BIAS", NIGHT1, ifu=1), NIGHT1, ifu=1) is None


def test_a_narrower_window_leaves_the_night_without_its_calibration(archive_config, two_nights, tmp_path):
    from traitlets.config import Config

    from musewise.archive import Archive

    cfg = Config()
    cfg.DpuConfig.calibration_windows = {"MASTER_BIAS": 0}
    archive_config.config = cfg
    arch = Archive(archive_config, user="admin")
    try:
        _ingest(arch, two_nights)
        pl = dpu.plan("scibasic", NIGHT2, [1], archive=arch)
        # night 2's own bias is missing (nothing to make it from); night 1's is planned for
        # night 1's flat, which night 2 still borrows (the flat's window is 1 night)
        bias = {i.night: i for i in pl.items if i.step == "bias"}
        assert sorted(bias) == [NIGHT1, NIGHT2] and bias[NIGHT2].status == "missing"
        assert bias[NIGHT2].reason == (f"no valid MASTER_BIAS for IFU 1 of night {NIGHT2}; night {NIGHT2} has no "
                                       "BIAS to make one, nor any night within the 0-night window of MASTER_BIAS")
        assert not any("no BIAS" in b for b in pl.borrowed)
        assert any("no FLAT" in b for b in pl.borrowed)  # the flat's window is still 1 night
    finally:
        arch.close()


def test_exp_combine_for_a_target_is_one_run_over_all_its_nights(archive, two_nights):
    _ingest(archive, two_nights)
    pl = dpu.plan("exp_combine", target=FIELD, ifus=[1], archive=archive)
    (comb,) = [i for i in pl.items if i.step == "exp_combine"]
    assert comb.night == "" and comb.where == "all nights" and comb.status == "missing"
    assert comb.reason == f"no valid DATACUBE_FINAL of target {FIELD}"
    assert len([i for i in pl.items if i.step == "scipost"]) == 4
    # Without a target: one combination per night
    night = dpu.plan("exp_combine", NIGHT2, [1], archive=archive)
    assert [(i.step, i.night) for i in night.items if i.step == "exp_combine"] == [("exp_combine", NIGHT2)]
    from musewise.dpu.plan_table import plan_rows

    rows = plan_rows(pl, archive)
    assert [r.key for r in rows if r.step == "exp_combine"] == [("exp_combine", "", None, None)]
    assert {r.night for r in rows if r.step == "bias"} == {NIGHT1}


def test_calibration_from_a_nearby_night_is_chosen_within_its_window_and_says_so(archive, two_nights, tmp_path):
    from musewise.dpu.selection import choose_calibration
    from musewise.products.testing import write_master

    _ingest(archive, two_nights)
    path = write_master(tmp_path / "MASTER_BIAS-01.fits", "MASTER_BIAS", np.zeros((8, 8)),
                        datetime(2026, 11, 20, 18, 30), **{"HIERARCH ESO DRS MUSE IFU": 1})
    rec = archive.ingest(path).record
    assert rec.night == NIGHT1
    archive.certify(rec.id, "MUSE/calib")  # the default range of a master bias: 7 days each side
    science = [r for r in archive.query(category="OBJECT", night=NIGHT2)][0]
    choices: list = []
    got = choose_calibration(archive, "MASTER_BIAS", ifu=1, mjd=science.mjd_obs, mode=science.mode, night=NIGHT2,
                             choices=choices, window=1)
    assert got.dataset_id == rec.id
    assert f"from night {NIGHT1}, 1 night(s) before night {NIGHT2} (within the 1-night window" in got.reason
    assert choices[0]["night"] == NIGHT1 and choices[0]["frame_night"] == NIGHT2 and choices[0]["window_nights"] == 1
    with pytest.raises(CalibrationNotFoundError, match="outside the 0-night window of MASTER_BIAS"):
        choose_calibration(archive, "MASTER_BIAS", ifu=1, mjd=science.mjd_obs, mode=science.mode, night=NIGHT2,
                           window=0)
    # its own night needs no window
    own = [r for r in archive.query(category="OBJECT", night=NIGHT1)][0]
    got = choose_calibration(archive, "MASTER_BIAS", ifu=1, mjd=own.mjd_obs, mode=own.mode, night=NIGHT1, window=0)
    assert got.dataset_id == rec.id and "from night" not in got.reason


def test_cli_make_target_prints_the_plan_and_runs_nothing(archive, archive_config, two_nights, capsys):
    from musewise.cli import main

    _ingest(archive, two_nights)
    argv = ["--root", archive_config.root, "--db-url", archive_config.db_url, "--user", "admin",
            "make", "exp_combine", "--target", FIELD, "--ifu", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"plan for exp_combine of target {FIELD} (2 night(s): {NIGHT1}, {NIGHT2})" in out
    assert "all nights" in out and f"no valid MASTER_BIAS for IFU 1 of night {NIGHT1}" in out
    assert archive.runs() == []
    assert main(["--root", archive_config.root, "--db-url", archive_config.db_url, "make", "scipost"]) == 2


def test_builtin_shared_calibration_programme_plans_no_calibrations_in_night_2():
    from musewise.exceptions import ConfigurationError
    from musewise.inm import Programme
    from musewise.vocabulary import FrameType

    n1, n2 = Programme.named("deep-field-shared-cal").plan(ifus=(1,))
    kinds1, kinds2 = {e.frame_type for e in n1}, {e.frame_type for e in n2}
    assert {FrameType.BIAS, FrameType.FLAT, FrameType.ARC, FrameType.SKYFLAT, FrameType.STD} <= kinds1
    assert kinds2 == {FrameType.ILLUM, FrameType.OBJECT}
    assert len(n2.of_type(FrameType.OBJECT)) == 4
    with pytest.raises(ConfigurationError, match="'calibrations' is true or false"):
        Programme.from_dict({"nights": [{"night": NIGHT1, "calibrations": "no", "obs": [{}]}]})


def test_the_field_grid_covers_every_exposure_of_the_target_and_follows_new_nights(archive, two_nights, tmp_path):
    """``field_grid`` (a target's first step towards its cubes) makes the OUTPUT_WCS of the
    field from the pointings and position angles of its raw frames: it covers where the
    instrument model put each exposure's IFU, is certified for every night of the field,
    and a night observed later makes it out of date; the new grid is the one chosen."""
    from astropy.io import fits
    from astropy.wcs import WCS

    from musewise.dpu.selection import choose_calibration
    from musewise.inm import Scene, layout
    from musewise.inm.programme import Field

    night1 = {k: v for k, v in two_nights.items() if k != NIGHT2}
    _ingest(archive, night1)
    alone = dpu.plan("scipost", NIGHT1, [1], archive=archive)
    assert "field_grid" not in {i.step for i in alone.items}  # a night alone: each cube fits its data
    pl = dpu.plan("scipost", target=FIELD, ifus=[1], archive=archive)
    steps = [i.step for i in pl.items]
    (grid_item,) = [i for i in pl.items if i.step == "field_grid"]
    assert steps.index("field_grid") < steps.index("scipost") and grid_item.where == "all nights"
    dpu.make("field_grid", target=FIELD, ifus=[1], dry_run=False, archive=archive, progress=False)
    (first,) = archive.find("OUTPUT_WCS")
    run = archive.get_run(first.run_id)
    assert run.recipe == "field_grid" and run.status == "succeeded" and first.object == FIELD
    assert len([i for i in run.inputs if i.tag == "OBJECT"]) == 2
    assert {i.tag for i in run.inputs} == {"OBJECT", "GEOMETRY_TABLE"}
    # its notebook shows each exposure on the grid
    assert '"image/png"' in Path(archive.path(run.notebook_id)).read_text()

    def corners_inside(grid_path, nights):
        # Where the instrument model put IFU 1 of each exposure: its strip's corners, through the
        # model's own geometry (inm.layout), pointing and position angle.
        field = Field(Scene(sources=[]))
        with fits.open(grid_path) as h:
            wcs, (ny, nx) = WCS(h["DATA"].header).celestial, h["DATA"].data.shape[1:]
        xs = [layout.slice_sky_position(1, k)[1] for k in range(1, 49)]
        ys = [layout.slice_sky_position(1, k)[2] for k in range(1, 49)]
        half = layout.SLICE_WIDTH_SKY / 2
        box = [(x, y) for x in (min(xs) - half, max(xs) + half) for y in (min(ys) - 0.5, max(ys) + 0.5)]
        out = []
        for rec in archive.query(kind="raw", category="OBJECT", object=FIELD):
            if rec.night not in nights:
                continue
            h = fits.getheader(archive.path(rec.id))
            for x, y in box:
                dx, dy = layout.field_to_sky_offsets(x, y)
                ra, dec = field.instrument_to_radec(float(dx), float(dy), h["RA"], h["DEC"],
                                                    h["ESO INS DROT POSANG"])
                px, py = wcs.all_world2pix(ra, dec, 0)
                out.append((float(px), float(py)))
        return np.array(out), (nx, ny)

    pts, (nx, ny) = corners_inside(archive.path(first.id), [NIGHT1])
    margin = 1.0 / 0.2  # spaxels: the recipe's default
    assert (pts[:, 0] > -0.5).all() and (pts[:, 0] < nx - 0.5).all() and (pts[:, 1] > -0.5).all()
    assert (pts[:, 1] < ny - 0.5).all()
    # and no bigger than what they cover plus the margin on each side (and a spaxel of rounding
    # on each side, and one for counting both ends)
    assert nx <= np.ptp(pts[:, 0]) + 2 * margin + 3 and ny <= np.ptp(pts[:, 1]) + 2 * margin + 3
    with fits.open(archive.path(first.id)) as h:
        assert h["DATA"].data.dtype == np.int8 and h["DATA"].header["NAXIS3"] == 3681
    # its QC ran after the run: the exposures are inside, with the margin asked for
    qc = {q["name"]: q["value"] for q in archive.qc(first.id)}
    assert qc["grid.n_exposures"] == 2 and qc["grid.spaxel"] == pytest.approx(0.2)
    assert 1.0 <= qc["grid.margin.min"] < 1.5 and qc["grid.coverage"] > 0.3
    assert archive.get(first.id).flag == "unchecked"
    # a grid 20 spaxels short in x (one cut by hand, say) loses data: its QC says 'bad'
    from musewise.products.outputwcs import CubeGrid
    from musewise.qc import QCThresholds
    from musewise.qc.measures_field import measure_grid

    short = CubeGrid.from_file(archive.path(first.id))
    short.shape = (short.shape[0], short.shape[1] - 20)
    raws = [archive.path(i.dataset_id) for i in run.inputs if i.tag == "OBJECT"]
    (geometry,) = [archive.path(i.dataset_id) for i in run.inputs if i.tag == "GEOMETRY_TABLE"]
    m = measure_grid(short.write(tmp_path / "short.fits"), raws, geometry)
    assert m.values["margin.min"] < -2.0
    verdict = QCThresholds().check("grid", m.values)
    assert verdict.flag == "bad" and "margin.min" in {c.name for c in verdict.failed}
    assert dpu.plan("field_grid", target=FIELD, ifus=[1], archive=archive).todo == []

    # Night 2 (the field at PA 90) arrives: the grid misses its exposures, and is rebuilt.
    _ingest(archive, {NIGHT2: two_nights[NIGHT2]})
    (again,) = [i for i in dpu.plan("scipost", target=FIELD, ifus=[1], archive=archive).items
                if i.step == "field_grid"]
    assert again.status == "out of date" and again.reason.startswith("exposure(s) MJD ")
    assert again.reason.endswith("not in it")
    dpu.make("field_grid", target=FIELD, ifus=[1], dry_run=False, archive=archive, progress=False)
    newest = max(archive.find("OUTPUT_WCS"), key=lambda r: r.id)
    assert newest.id != first.id and len([i for i in archive.get_run(newest.run_id).inputs if i.tag == "OBJECT"]) == 4
    pts, (nx2, ny2) = corners_inside(archive.path(newest.id), [NIGHT1, NIGHT2])
    assert (pts > -0.5).all() and (pts[:, 0] < nx2 - 0.5).all() and (pts[:, 1] < ny2 - 0.5).all()
    assert ny2 > 5 * ny  # the rotated strip runs North-South
    # Every exposure of either night gets the newest grid, however far its night is from the grid's.
    for rec in archive.query(kind="raw", category="OBJECT", object=FIELD):
        got = choose_calibration(archive, "OUTPUT_WCS", ifu=1, mjd=rec.mjd_obs, mode=None, night=rec.night,
                                 field=FIELD, window=0)
        assert got.dataset_id == newest.id, rec.night


def _archive_cube(arch, recipe, path, *, like, inputs=(), night):
    """A small DATACUBE_FINAL archived as made by ``recipe``, dated as the raw frame ``like``."""
    from astropy.io import fits

    from musewise.products.testing import write_cube

    write_cube(path, like.date_obs.replace(tzinfo=None), object=FIELD, size=8)
    fits.setval(path, "MJD-OBS", value=like.mjd_obs)  # to the millisecond: one exposure's key
    run = arch.begin_run(recipe, {}, night=night, inputs=list(inputs), privilege=2)
    (cube,) = arch.finish_run(run, [(str(path), "DATACUBE_FINAL", None)])
    return cube


def test_sources_of_a_target_read_its_combined_cube_and_of_a_night_each_exposures_cube(archive, two_nights,
                                                                                       tmp_path):
    """A combined cube carries its first exposure's MJD-OBS: it must not stand in for that exposure."""
    from musewise.exceptions import NotFoundError

    _ingest(archive, two_nights)
    raw = archive.query(kind="raw", category="OBJECT", object=FIELD, order_by="mjd_obs")
    cubes = [_archive_cube(archive, "muse_scipost", tmp_path / f"exp{k}.fits", like=r, night=r.night)
             for k, r in enumerate(raw)]
    assert len(cubes) == 4
    with pytest.raises(NotFoundError, match="made by combine_cubes or muse_exp_combine; combine the field first"):
        dpu.prepare("sources", None, archive=archive, target=FIELD)
    pl = dpu.plan("sources", target=FIELD, ifus=[1], archive=archive)
    (src,) = [i for i in pl.items if i.step == "sources"]
    assert src.where == "all nights" and src.status == "missing"
    assert "combine_cubes" in pl.steps and pl.steps.index("combine_cubes") < pl.steps.index("sources")

    combined = _archive_cube(archive, "combine_cubes", tmp_path / "combined.fits", like=raw[0], night=NIGHT1,
                             inputs=[(c.id, "DATACUBE_FINAL", "an exposure") for c in cubes])
    (spec,) = dpu.prepare("sources", None, archive=archive, target=FIELD)
    assert [i.dataset_id for i in spec.inputs] == [combined.id] and spec.nights == [NIGHT1]
    # A night's sources: each of its exposures' cubes, the first exposure's included
    night = dpu.prepare("sources", NIGHT1, archive=archive)
    assert sorted(i.dataset_id for s in night for i in s.inputs) == sorted(c.id for c in cubes[:2])
    # Nor does the combined cube become an input of a new combination, or of ZAP of a night
    (comb,) = dpu.prepare("combine_cubes", None, archive=archive, target=FIELD)
    assert sorted(i.dataset_id for i in comb.inputs) == sorted(c.id for c in cubes)
    assert combined.id not in {i.dataset_id for s in dpu.prepare("zap", NIGHT1, archive=archive) for i in s.inputs}
    (zap,) = dpu.prepare("zap", None, archive=archive, target=FIELD)
    assert [i.dataset_id for i in zap.inputs] == [combined.id]
    # A newer combination of the field is what its catalogue reads next
    newer = _archive_cube(archive, "muse_exp_combine", tmp_path / "exp_combined.fits", like=raw[0], night=NIGHT1)
    (spec,) = dpu.prepare("sources", None, archive=archive, target=FIELD)
    assert [i.dataset_id for i in spec.inputs] == [combined.id], "combine_cubes' cube is preferred"
    archive.set_validity(combined.id, is_valid=False, comment="a bad combination")
    (spec,) = dpu.prepare("sources", None, archive=archive, target=FIELD)
    assert [i.dataset_id for i in spec.inputs] == [newer.id]
