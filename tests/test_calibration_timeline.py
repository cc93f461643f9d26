"""The calibration timeline: its plain data, its bokeh figure and the CalibrationTimeline widget.

Calibrations are made the way reductions make them (``begin_run``/``finish_run`` with small
real FITS products carrying MJD-OBS), so they are certified by the archive itself for the
default range of their category; a static table is ingested (open-ended certification).
Users come from the ``archive`` fixture: ``alice`` reviews project ``galaxies``, ``bob``
is a plain member of it, ``carol`` a consortium member outside it.

Helper ``certified_history(arch, workdir)`` is shared with ``test_web_calibrations.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from traitlets import TraitError

from musewise.calibration_timeline import (
    STATE_STYLE,
    build_timeline,
    calibration_collections,
    night_mjd,
    parse_mjd,
    timeline_figure,
)
from musewise.exceptions import CalibrationNotFoundError, ParameterError, PermissionDeniedError
from musewise.vocabulary import Privilege

NIGHT = "2026-11-20"  # its middle is MJD 61365.0
#: MJDs of the three nightly MASTER_BIAS of the reference reduction (days).
BIAS_MJDS = (61355.1, 61365.1, 61375.1)


def _header(cards: dict):
    return fits.Header([(("HIERARCH " + k) if k.startswith("ESO ") else k, v) for k, v in cards.items()])


def write_raw(path, mjd, ifus=(1, 2)):
    """A small raw BIAS of IFUs ``ifus`` taken at ``mjd`` (days)."""
    h = _header({"INSTRUME": "MUSE", "ESO DPR TYPE": "BIAS", "ESO DPR CATG": "CALIB", "MJD-OBS": mjd,
                 "EXPTIME": 0.0, "ESO INS MODE": "WFM-NOAO-N", "OBJECT": "BIAS"})
    hdus = [fits.PrimaryHDU(header=h)] + [
        fits.ImageHDU(np.full((16, 16), 1000 + i, np.float32), name=f"CHAN{i:02d}") for i in ifus]
    fits.HDUList(hdus).writeto(path)
    return Path(path)


def write_master(path, category, ifu, mjd, level=1000.0):
    """A small pipeline calibration product of one IFU made from frames taken at ``mjd`` (days)."""
    h = _header({"INSTRUME": "MUSE", "ESO PRO CATG": category, "ESO DRS MUSE IFU": ifu, "MJD-OBS": mjd,
                 "ESO PRO REC1 ID": "muse_bias", "ESO PRO REC1 PIPE ID": "muse/2.8.7",
                 "ESO INS MODE": "WFM-NOAO-N"})
    data = np.full((12, 10), level + ifu, np.float32)
    fits.HDUList([fits.PrimaryHDU(header=h), fits.ImageHDU(data, name="DATA")]).writeto(path)
    return Path(path)


def write_static(path, category="LINE_CATALOG"):
    """A static table shipped with the pipeline (no date, no recipe)."""
    h = _header({"INSTRUME": "MUSE", "ESO PRO CATG": category})
    t = fits.BinTableHDU.from_columns([fits.Column(name="lambda", format="D", array=[5577.3, 6300.3])])
    fits.HDUList([fits.PrimaryHDU(header=h), t]).writeto(path)
    return Path(path)


def certified_history(arch, workdir) -> dict:
    """Calibrations of three nights, certified by the runs that made them (archive opened by ``admin``).

    Returns
    -------
    dict
        ``raw``: {mjd: raw BIAS id}; ``bias``: {(ifu, mjd): reference MASTER_BIAS id}
        (alice's reference runs of project ``galaxies``, certified in ``galaxies/calib``
        for +-7 d); ``trial``: alice's personal MASTER_BIAS of IFU 1 at 61366.1
        (``u/alice/calib``); ``invalid``: the reference MASTER_BIAS of IFU 2 at 61365.1,
        marked invalid; ``flat``: a reference MASTER_FLAT of IFU 2 made from it (so
        affected); ``static``: a LINE_CATALOG certified in ``MUSE/calib`` from 61300 on.
    """
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    raw = {m: arch.ingest(write_raw(work / f"bias-{m}.fits", m)).record.id for m in BIAS_MJDS}
    alice = arch.as_user("alice")
    bias = {}
    for m in BIAS_MJDS:
        for ifu in (1, 2):
            run = alice.begin_run("muse_bias", {}, night=None, ifu=ifu, inputs=[(raw[m], "BIAS", "that night")],
                                  privilege=Privilege.CONSORTIUM, project="galaxies", reference=True)
            out = alice.finish_run(run, [(write_master(work / f"MASTER_BIAS-{ifu:02d}-{m}.fits", "MASTER_BIAS",
                                                       ifu, m), "MASTER_BIAS", ifu)])
            bias[(ifu, m)] = out[0].id
    trial_run = alice.begin_run("muse_bias", {"nlow": 2}, ifu=1, inputs=[(raw[61365.1], "BIAS", "a trial")],
                                privilege=Privilege.CONSORTIUM, project="galaxies")
    trial = alice.finish_run(trial_run, [(write_master(work / "trial-MASTER_BIAS-01.fits", "MASTER_BIAS", 1,
                                                       61366.1, level=990.0), "MASTER_BIAS", 1)])[0].id
    invalid = bias[(2, 61365.1)]
    flat_run = alice.begin_run("muse_flat", {}, ifu=2, inputs=[(invalid, "MASTER_BIAS", "best")],
                               privilege=Privilege.CONSORTIUM, project="galaxies", reference=True)
    flat = alice.finish_run(flat_run, [(write_master(work / "MASTER_FLAT-02.fits", "MASTER_FLAT", 2, 61365.2),
                                        "MASTER_FLAT", 2)])[0].id
    alice.set_validity(invalid, is_valid=False, flag="bad", comment="bad columns in slice 12")
    static = arch.ingest(write_static(work / "line_catalog.fits"), valid_from=61300.0).record.id
    return {"raw": raw, "bias": bias, "trial": trial, "invalid": invalid, "flat": flat, "static": static}


@pytest.fixture
def history(archive, tmp_path):
    return certified_history(archive, tmp_path / "work")


# --------------------------------------------------------------------------- time


def test_nights_and_typed_times_become_mjd():
    assert night_mjd(NIGHT) == pytest.approx(61365.0)
    assert parse_mjd("61358.25") == 61358.25 and parse_mjd(61358) == 61358.0
    assert parse_mjd(" ") is None and parse_mjd("open") is None
    assert parse_mjd("2026-11-20") == pytest.approx(61364.5)  # the night starts at noon UTC
    with pytest.raises(ParameterError, match="YYYY-MM-DD"):
        parse_mjd("next week")
    with pytest.raises(ParameterError, match="YYYY-MM-DD"):
        night_mjd("20/11/2026")


# --------------------------------------------------------------------------- plain data


def test_one_row_per_ifu_bars_per_certified_range_marker_at_the_night(archive, history):
    alice = archive.as_user("alice")
    tl = build_timeline(alice, "MASTER_BIAS", night=NIGHT, span_days=20)
    assert tl.marker == pytest.approx(61365.0)
    assert (tl.mjd_from, tl.mjd_to) == pytest.approx((61345.0, 61385.0))
    assert [r.label for r in tl.rows] == ["IFU 01", "IFU 02"]
    # Every certified range of both IFUs, each bar where the archive says it is certified.
    expected = {c.id: c for c in alice.certifications(category="MASTER_BIAS")}
    assert {b.certification_id for b in tl.bars} == set(expected)
    for b in tl.bars:
        c = expected[b.certification_id]
        assert (b.begin_mjd, b.end_mjd) == (c.begin_mjd, c.end_mjd)
        assert b.x0 == max(tl.mjd_from, c.begin_mjd) and b.x1 == min(tl.mjd_to, c.end_mjd)
    nightly = [b for b in tl.bars if b.dataset_id == history["bias"][(1, 61365.1)]][0]
    assert (nightly.begin_mjd, nightly.end_mjd) == pytest.approx((61358.1, 61372.1))  # +-7 d by default
    # Lanes follow alice's search path (her trials first); overlapping ranges of one collection
    # go to separate lanes.
    assert tl.rows[0].lanes == ("u/alice/calib", "galaxies/calib", "galaxies/calib (2)")
    assert tl.rows[1].lanes == ("galaxies/calib", "galaxies/calib (2)")
    lanes_used = {(b.row, b.y) for b in tl.bars if b.collection == "galaxies/calib" and b.row == 0}
    assert len(lanes_used) == 2  # 61355.1 and 61365.1 overlap by 4 d; 61375.1 fits after the first
    assert tl.colours["galaxies/calib"] != tl.colours["u/alice/calib"]
    # What covers the marked night.
    assert {b.dataset_id for b in tl.covering()} == {history["bias"][(1, 61365.1)], history["bias"][(2, 61365.1)],
                                                     history["trial"]}


def test_invalid_and_affected_calibrations_are_marked(archive, history):
    tl = build_timeline(archive.as_user("alice"), ifu=2, night=NIGHT)
    states = {b.dataset_id: b for b in tl.bars}
    assert states[history["invalid"]].state == "invalid" and "bad columns" in states[history["invalid"]].note
    assert states[history["flat"]].state == "affected"
    assert f"#{history['invalid']}" in states[history["flat"]].note
    assert states[history["bias"][(2, 61375.1)]].state == "usable"
    # Several categories: rows are (category, IFU); the static table serves every IFU, open-ended.
    labels = [r.label for r in tl.rows]
    assert labels == ["LINE_CATALOG all IFUs", "MASTER_BIAS IFU 02", "MASTER_FLAT IFU 02"]
    static = states[history["static"]]
    assert static.open_end and not static.open_begin and static.x1 == tl.mjd_to  # drawn to the edge
    assert static.collection == "MUSE/calib"


def test_search_path_limits_collections_and_flags_the_choice(archive, history):
    from musewise.archive.collections import default_search_path

    alice = archive.as_user("alice")
    ref = default_search_path("alice", "galaxies", reference=True)
    assert calibration_collections(alice, ref) == ["galaxies/calib", "MUSE/calib"]
    tl = build_timeline(alice, "MASTER_BIAS", night=NIGHT, collections=ref)
    assert {b.collection for b in tl.bars} == {"galaxies/calib"}  # the trial is not in the reference path
    chosen = {b.dataset_id for b in tl.bars if b.chosen}
    # IFU 1: the bias of that night; IFU 2: that one is invalid and no other covers the night.
    assert chosen == {history["bias"][(1, 61365.1)]}
    with pytest.raises(CalibrationNotFoundError, match="marked invalid"):
        alice.best_calibration("MASTER_BIAS", ifu=2, mjd=61365.0, collections=ref)
    personal = build_timeline(alice, "MASTER_BIAS", night=NIGHT,
                              collections=default_search_path("alice", "galaxies", reference=False))
    assert history["trial"] in {b.dataset_id for b in personal.bars if b.chosen}  # her trials come first


def test_a_user_sees_only_certifications_of_what_they_may_see(archive, history):
    archive.publish([history["trial"]], Privilege.PRIVATE)
    assert history["trial"] not in {b.dataset_id for b in build_timeline(archive.as_user("bob"), "MASTER_BIAS").bars}
    assert history["trial"] in {b.dataset_id for b in build_timeline(archive.as_user("alice"), "MASTER_BIAS").bars}
    assert build_timeline(archive.as_user("eve"), "MASTER_BIAS").bars == ()


def test_figure_draws_every_bar_the_marker_and_open_ends(archive, history):
    tl = build_timeline(archive.as_user("alice"), night=NIGHT)
    fig = timeline_figure(tl)
    src = fig.select_one({"name": "bars"}).data_source
    assert src.data["certification_id"] == [b.certification_id for b in tl.bars]
    assert src.data["left"] == [b.x0 for b in tl.bars] and src.data["right"] == [b.x1 for b in tl.bars]
    i = src.data["dataset_id"].index(history["invalid"])
    assert src.data["hatch"][i] == STATE_STYLE["invalid"][1] and src.data["line"][i] == STATE_STYLE["invalid"][0]
    assert fig.select_one({"name": "marker"}).location == pytest.approx(61365.0)
    opens = fig.select_one({"name": "open_ends"}).data_source.data
    assert list(opens["side"]) == ["end"] and opens["x"][0] < tl.mjd_to  # the static table, open-ended
    assert set(fig.yaxis.major_label_overrides.values()) == {r.label for r in tl.rows}
    assert "2026-11-20" in fig.title.text


@pytest.mark.browser
def test_figure_renders_in_chromium(archive, history, page, output_dir):
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    from musewise.archive.collections import default_search_path

    tl = build_timeline(archive.as_user("alice"), night=NIGHT, span_days=25,
                        collections=default_search_path("alice", "galaxies", reference=False))
    html = output_dir / "timeline_figure.html"
    html.write_text(file_html(timeline_figure(tl), INLINE, "calibration timeline"))
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(html.as_uri())
    page.wait_for_selector("canvas", timeout=30000)
    page.wait_for_function("window.Bokeh && Bokeh.documents.length === 1", timeout=30000)
    n = page.evaluate("Bokeh.documents[0].get_model_by_name('bar_data').data.certification_id.length")
    assert n == len(tl.bars) and errors == []
    page.screenshot(path=str(output_dir / "timeline_figure.png"))


# --------------------------------------------------------------------------- the widget


def test_widget_shows_the_timeline_and_a_reviewer_changes_a_range(archive, history):
    from musewise.widgets import CalibrationTimeline

    alice = archive.as_user("alice")
    w = CalibrationTimeline(alice, category="MASTER_BIAS", night=NIGHT)
    did = history["bias"][(1, 61365.1)]
    cert = [b for b in w.timeline.bars if b.dataset_id == did][0]
    w.select(cert.certification_id)
    assert w.can_review and w.certification_id == cert.certification_id
    assert w._begin.value == "61358.100" and not w._apply.disabled
    rec = w.change_range(61360.0, 61369.5, "bias drifts after the 29th")
    assert (rec.begin_mjd, rec.end_mjd) == (61360.0, 61369.5) and rec.certified_by == "alice"
    assert w.timeline.bar(cert.certification_id).end_mjd == 61369.5  # redrawn
    src = w.figure.select_one({"name": "bars"}).data_source
    i = src.data["certification_id"].index(cert.certification_id)
    assert src.data["right"][i] == 61369.5
    assert list(src.selected.indices) == [i]  # still selected in the plot
    from musewise.archive.calibrations import certification_history

    last = certification_history(alice, did)[-1]
    assert last["action"] == "change" and last["user"] == "alice" and last["comment"] == "bias drifts after the 29th"
    assert last["before"] == pytest.approx((61358.1, 61372.1)) and last["after"] == (61360.0, 61369.5)
    # Through the controls: a night typed as the end, an open start.
    w._begin.value, w._end.value, w._comment.value = "", "2026-11-25", "open start"
    w._apply.click()
    assert "recorded" in w.status
    assert (w.timeline.bar(cert.certification_id).begin_mjd, w.timeline.bar(cert.certification_id).end_mjd) == \
        (None, pytest.approx(61369.5))
    # A bad range is refused with the archive's message, and nothing changes.
    w._begin.value, w._end.value, w._comment.value = "61370", "61360", "backwards"
    w._apply.click()
    assert w.status.startswith("not recorded") and "must end after it begins" in w.status
    assert alice.certifications(dataset_id=did)[0].begin_mjd is None


def test_widget_refuses_a_non_reviewer_with_the_archive_message(archive, history):
    from musewise.widgets import CalibrationTimeline

    bob = archive.as_user("bob")
    w = CalibrationTimeline(bob, category="MASTER_BIAS", night=NIGHT)
    cert = [b for b in w.timeline.bars if b.dataset_id == history["bias"][(1, 61365.1)]][0]
    w.select(cert.certification_id)
    assert not w.can_review and w._apply.disabled and "may not" in w._state.value
    with pytest.raises(PermissionDeniedError, match="may not certify"):
        w.change_range(61360.0, 61369.0, "bob tries")
    w._apply.disabled = False  # even if the button were enabled, the archive refuses
    w._apply.click()
    assert w.status.startswith("not recorded") and "may not certify" in w.status
    assert archive.certifications(dataset_id=history["bias"][(1, 61365.1)])[0].end_mjd == pytest.approx(61372.1)


def test_widget_tap_on_a_bar_selects_it_and_night_moves_the_marker(archive, history):
    from musewise.widgets import CalibrationTimeline

    w = CalibrationTimeline(archive.as_user("alice"), category="MASTER_BIAS", night=NIGHT)
    src = w.figure.select_one({"name": "bars"}).data_source
    src.selected.indices = [2]  # what a tap in the browser sends back
    assert w.certification_id == src.data["certification_id"][2]
    w.night = "2026-11-30"
    assert w.figure.select_one({"name": "marker"}).location == pytest.approx(61375.0)
    assert w.timeline.marker == pytest.approx(61375.0)
    with pytest.raises(TraitError, match="not on this timeline"):
        w.select(10 ** 6)
    w.ifu = 2
    assert [r.label for r in w.timeline.rows] == ["IFU 02"]
    assert w.certification_id is None  # the IFU 1 range selected before is no longer shown
    with pytest.raises(ParameterError, match="YYYY-MM-DD"):
        w.night = "soon"
