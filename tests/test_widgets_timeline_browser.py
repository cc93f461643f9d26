"""CalibrationTimeline in a real browser: Voila on 127.0.0.1 + Debian chromium driven by Playwright.

The notebook opens a SQLite archive holding ``certified_history`` (see
``test_calibration_timeline.py``) as reviewer ``alice`` and shows the timeline of
MASTER_BIAS around 2026-11-20. In the browser a tap on a bar selects its range, and the
range editor changes it through ``Archive.certify``; the test reads the change back from
the same database. Screenshots land in ``test-output/<test name>/``.
"""

from __future__ import annotations

import time

import pytest

from test_calibration_timeline import NIGHT, certified_history

from musewise.testing import voila_server, widget_notebook

pytestmark = pytest.mark.browser


@pytest.fixture
def voila_timeline(tmp_path):
    from musewise.archive import Archive
    from musewise.config import MusewiseConfig

    settings = {"root": str(tmp_path / "root"), "db_url": f"sqlite:///{tmp_path / 'archive.sqlite'}",
                "project": "consortium"}
    arch = Archive(MusewiseConfig.load(user="admin", **settings), user="admin")
    arch.add_project("galaxies", "a science project")
    arch.add_user("alice", projects={"galaxies": "reviewer"})
    ids = certified_history(arch, tmp_path / "work")
    folder = tmp_path / "voila"
    folder.mkdir()
    widget_notebook(folder / "timeline.ipynb",
        "from musewise.archive import Archive\n"
        "from musewise.config import MusewiseConfig\n"
        "from musewise.widgets import CalibrationTimeline\n"
        f"arch = Archive(MusewiseConfig.load(user='alice', **{settings!r}), user='alice')\n"
        f"timeline = CalibrationTimeline(arch, category='MASTER_BIAS', night={NIGHT!r})\n"
        "timeline")
    with voila_server(folder, "timeline.ipynb") as (base, token):
        yield f"{base}/?token={token}", arch, ids
    arch.close()


def _frame(page):
    """The bokeh plot's frame (the data area) in page pixels, from the plot view's own geometry."""
    js = """() => {
        if (!window.Bokeh || !Bokeh.index) return null;
        for (const root of Bokeh.index) {
            for (const v of [root, ...(root.child_views || [])]) {
                if (v.frame && v.canvas_view) {
                    const r = v.canvas_view.el.getBoundingClientRect();
                    const b = v.frame.bbox;
                    return {x: r.left + b.left, y: r.top + b.top, width: b.width, height: b.height,
                            x0: v.model.x_range.start, x1: v.model.x_range.end,
                            y0: v.model.y_range.start, y1: v.model.y_range.end};
                }
            }
        }
        return null; }"""
    deadline = time.time() + 60
    while time.time() < deadline:
        f = page.evaluate(js)
        if f and f["width"] > 100:
            return f
        page.wait_for_timeout(500)
    raise AssertionError("the bokeh plot did not render")


def test_timeline_renders_a_tap_selects_and_a_reviewer_changes_a_range(voila_timeline, page, output_dir):
    url, arch, ids = voila_timeline
    did = ids["bias"][(1, 61365.1)]
    page.goto(url, wait_until="domcontentloaded", timeout=90_000)
    page.wait_for_selector(".widget-dropdown select", timeout=120_000)
    f = _frame(page)
    assert (f["x0"], f["x1"]) == pytest.approx((61335.0, 61395.0))
    # Tap the bar of #did: IFU 01 (row 0), lanes u/alice/calib, galaxies/calib, galaxies/calib (2);
    # the 61365.1 bias sits in the second galaxies lane (y 2.5 of 5 lanes, y axis top-down).
    bar = arch.certifications(dataset_id=did)[0]
    x = f["x"] + ((bar.begin_mjd + bar.end_mjd) / 2 - f["x0"]) / (f["x1"] - f["x0"]) * f["width"]
    y = f["y"] + (2.5 - f["y1"]) / (f["y0"] - f["y1"]) * f["height"]
    page.mouse.click(x, y)
    state = page.locator(".widget-html", has_text="in galaxies/calib")
    state.first.wait_for(timeout=30_000)
    assert f"#{did}" in state.first.inner_text()
    begin = page.locator(".widget-text", has=page.locator("label", has_text="begin")).locator("input")
    end = page.locator(".widget-text", has=page.locator("label", has_text="end")).locator("input")
    assert begin.input_value() == "61358.100" and end.input_value() == "61372.100"
    page.screenshot(path=str(output_dir / "timeline_selected.png"), full_page=True)
    begin.fill("61361")
    end.fill("2026-11-27")
    page.locator("input[placeholder='why (recorded with the change)']").fill("flat field drift")
    page.locator("button", has_text="Change range").click()
    page.locator(".widget-html", has_text="recorded:").first.wait_for(timeout=30_000)
    c = arch.certifications(dataset_id=did)[0]
    assert (c.begin_mjd, c.end_mjd, c.certified_by, c.comment) == (61361.0, pytest.approx(61371.5), "alice",
                                                                    "flat field drift")
    page.locator("td", has_text="flat field drift").first.wait_for(timeout=30_000)  # the history table
    page.wait_for_timeout(800)
    page.screenshot(path=str(output_dir / "timeline_changed.png"), full_page=True)
