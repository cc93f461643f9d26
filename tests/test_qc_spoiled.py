"""A spoiled IFU is flagged and queued by the QC that runs after the real pipeline.

Two nights of IFUs 1 and 2 reduced up to the wavelength calibration with
``dpu.make('wavecal')`` (real esorex, the default post-run hook: QC after every batch).
The first night is good; in the second, IFU 2's flat lamp is at 2 % (``lamp_off:2``) and
its arcs are moved by 3 rows (``arc_shift:2``). What the pipeline makes of them:

* lamp at 2 %: ``muse_flat`` still traces the 48 slices and its normalised master looks
  like a good one (same slice levels, same widths); only the lamp level before
  normalisation (``ESO QC FLAT MASTER MEDIAN``, QC's ``flat.lamp.median``) shows the
  missing light.
* shifted arc: ``muse_wavecal`` fits the moved lines as well as good ones (same RMS,
  same lines): the solution is self-consistent but off in wavelength. Only the
  comparison with the IFU's solution of the night before (``wavecal.shift.absmax``)
  shows it, so the test reduces a good night first.

Fixtures here
-------------
spoiled_nights (module)
    The archive (SQLite) after both nights were reduced, with the post-run QC hook on.
"""

from __future__ import annotations

import shutil

import pytest

from musewise import dpu

GOOD, SPOILED = "2026-11-20", "2026-11-21"
#: Dataset kinds a reduction makes (besides its notebook).
PRODUCT_KINDS = ["calibration", "science", "auxiliary"]
pytestmark = pytest.mark.pipeline


@pytest.fixture(scope="module")
def spoiled_nights(tmp_path_factory):
    from conftest import fixture_tmp, need
    from musewise.archive import Archive
    from musewise.config import MusewiseConfig
    from musewise.inm import simulate_night

    need(shutil.which("esorex") is not None, "esorex not installed (apt-get install esorex cpl-plugin-muse)")
    counts = dict(ifus=(1, 2), n_bias=3, n_dark=0, n_flat=3, n_arc_per_lamp=1, n_skyflat=0, n_std=0,
                  n_object=0, progress=False)
    with fixture_tmp(tmp_path_factory, "spoiled-nights") as root:
        good = simulate_night(root / GOOD, night=GOOD, seed=4, static=True, **counts)
        bad = simulate_night(root / SPOILED, night=SPOILED, seed=5, static=False,
                             spoils=["lamp_off:2", "arc_shift:2"], **counts)
        arch = Archive(MusewiseConfig.load(root=str(root / "archive"), user="admin", project="consortium"),
                       user="admin")
        try:
            assert dpu.DpuConfig(config=arch.config.config).post_run_hooks == ["musewise.qc.runner:after_run"]
            rep = arch.ingest_many(good + bad + sorted((root / GOOD / "static").glob("*.fits")), progress=False)
            assert not rep.refused, rep.refused
            for night in (GOOD, SPOILED):
                dpu.make("wavecal", night, [1, 2], dry_run=False, commit=True, archive=arch, engine="local",
                         progress=False)
            yield arch
        finally:
            arch.close()


def _product(arch, category, night, ifu):
    (rec,) = [r for r in arch.query(category=category, night=night, ifu=ifu) if r.kind != "static"]
    return rec


def _values(arch, rec):
    return {q["name"]: q["value"] for q in arch.qc(rec.id)}


def _queued(arch, category):
    from musewise.qc import queue

    return {(i.night, i.ifu): i for i in queue(arch, category=category)}


def test_a_flat_lamp_at_two_percent_is_flagged_bad_and_queued(spoiled_nights):
    from musewise.qc import review_state

    arch = spoiled_nights
    bad = _product(arch, "MASTER_FLAT", SPOILED, 2)
    v = _values(arch, bad)
    # what the pipeline made of it: 48 slices traced, a normalised master like any other
    assert v["flat.missing_slices"] == 0 and v["flat.slice_level.rms"] < 0.1
    assert v["flat.lamp.median"] == pytest.approx(0.02 * 27500, rel=0.1)  # adu: 2 % of the good lamp
    assert arch.get(bad.id).flag == "bad"
    state = review_state(arch, bad.id)[2]
    assert state["state"] == "pending" and "lamp.median" in state["reason"]
    queued = _queued(arch, "MASTER_FLAT")
    assert queued[(SPOILED, 2)].state == "pending"
    for night, ifu in ((SPOILED, 1), (GOOD, 1), (GOOD, 2)):  # the healthy flats
        rec = _product(arch, "MASTER_FLAT", night, ifu)
        assert _values(arch, rec)["flat.lamp.median"] == pytest.approx(27500, rel=0.05), (night, ifu)
        assert arch.get(rec.id).flag == "unchecked", (night, ifu)
        assert queued[(night, ifu)].state == "unchecked", (night, ifu)


def test_an_arc_shifted_by_three_rows_is_flagged_bad_against_the_night_before(spoiled_nights):
    arch = spoiled_nights
    bad = _product(arch, "WAVECAL_TABLE", SPOILED, 2)
    v = _values(arch, bad)
    # the pipeline fits the moved lines as well as good ones: only the comparison shows it
    assert v["wavecal.rms.max"] < 0.05 and v["wavecal.n_previous"] == 1
    assert v["wavecal.shift.absmax"] == pytest.approx(3 * 1.25, rel=0.1)  # 3 rows of 1.25 A
    assert arch.get(bad.id).flag == "bad"
    queued = _queued(arch, "WAVECAL_TABLE")
    assert queued[(SPOILED, 2)].state == "pending" and "shift.absmax" in queued[(SPOILED, 2)].reason
    good = _product(arch, "WAVECAL_TABLE", SPOILED, 1)
    g = _values(arch, good)
    assert g["wavecal.n_previous"] == 1 and g["wavecal.shift.absmax"] < 0.05  # measured: 0.001 A
    assert arch.get(good.id).flag == "unchecked" and queued[(SPOILED, 1)].state == "unchecked"


def test_a_reviewer_invalidating_the_spoiled_flat_marks_only_what_was_made_from_it(spoiled_nights):
    """A reviewer of the project (not an administrator) sets IFU 2's flat invalid: the
    wavelength calibration made with it is affected and queued; IFU 1's and the good
    night's products are not. (The web form calls the same :func:`musewise.qc.review`;
    ``tests/test_web_review.py`` drives it from a browser.)"""
    from musewise.archive import Archive
    from musewise.qc import review, review_state

    arch = spoiled_nights
    arch.add_user("rita", projects={"consortium": "reviewer"})
    flat = _product(arch, "MASTER_FLAT", SPOILED, 2)
    rita = Archive(arch.config, user="rita")
    try:
        assert rita.can_review(flat.id)
        out = review(rita, flat.id, 2, is_valid=False, flag="bad", comment="flat lamp at 2 %: lamp.median 550 adu")
    finally:
        rita.close()
    # what the runs that read the flat made (not their notebooks: the QC run of the flat made
    # only its notebook)
    made = {r.id for r in arch.query(kind=PRODUCT_KINDS)
            if r.run_id is not None and flat.id in {i.dataset_id for i in arch.get_run(r.run_id).inputs}}
    wavecal = {_product(arch, c, SPOILED, 2).id for c in ("WAVECAL_TABLE", "WAVECAL_RESIDUALS")}
    assert wavecal <= made
    assert {a.dataset_id for a in out.affected} == made
    for did in made:
        assert arch.get(did).affected_by == flat.id
        assert review_state(arch, did)[2]["state"] == "affected"
    untouched = [r for r in arch.query(kind=PRODUCT_KINDS) if r.id not in made and r.id != flat.id]
    assert untouched and all(r.affected_by is None for r in untouched)
    assert arch.get(flat.id).ifu_state(2).is_valid is False


def test_the_hook_measured_the_real_trace_tables_and_wavelength_residuals_of_both_nights(spoiled_nights):
    """TRACE_TABLE and WAVECAL_RESIDUALS have a QC of their own: the instrument model traces
    48 slices of 77 pix in every IFU, and they do not move between the nights."""
    arch = spoiled_nights
    for night in (GOOD, SPOILED):
        for ifu in (1, 2):
            t = _values(arch, _product(arch, "TRACE_TABLE", night, ifu))
            assert t["trace.n_slices"] == 48 and t["trace.width.median"] == pytest.approx(77.0, abs=0.5)
            assert t["trace.overlaps"] == 0 and t["trace.edge_errors"] == 0
            r = _values(arch, _product(arch, "WAVECAL_RESIDUALS", night, ifu))
            assert r["residuals.n_slices"] == 48 and r["residuals.rms.max"] < 0.05
            assert r["residuals.trend.absmax"] < 0.03
    t2 = _values(arch, _product(arch, "TRACE_TABLE", SPOILED, 1))
    assert t2["trace.n_previous"] == 1 and t2["trace.shift.absmax"] < 0.1
