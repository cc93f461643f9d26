"""QC trends: a QC parameter over nights, per IFU, with its thresholds; a tap opens the product to flag it.

Fixture ``ron_trend``: a real archive (SQLite and PostgreSQL) holding, for three nights and 24
IFUs, a MASTER_BIAS file per IFU with its read noise stored as ``bias.ron.max``
(:func:`musewise.qc.testing.bias_trend`, ~2.8 e-), IFU 07 of the 21st spoiled to a
``warning`` value and IFU 03 of the 22nd to a ``bad`` one (default limits 3.5 / 5.0 e-).
Then the widget through its public API, and in Voila + Chromium: a click on the bad point
opens it in the QC panel, where the flag is set (screenshots in ``test-output/``).
"""

from __future__ import annotations

import time

import nbformat
import pytest

from musewise.qc.testing import bias_trend
from musewise.qc.thresholds import QCThresholds
from musewise.qc.trends import limits_of, qc_trend, trend_parameters

NIGHTS = ("2026-11-20", "2026-11-21", "2026-11-22")
WARN, BAD = ("2026-11-21", 7), ("2026-11-22", 3)


@pytest.fixture
def ron_trend(archive, tmp_path):
    ids = bias_trend(archive, tmp_path / "masters", NIGHTS, spoiled={WARN: 1.4, BAD: 3.0})
    return archive, ids


def test_trend_rows_carry_night_ifu_value_limits_and_flag(ron_trend):
    arch, ids = ron_trend
    trend = qc_trend(arch, "bias.ron.max")
    assert len(trend.points) == 72 and trend.nights == list(NIGHTS) and trend.ifus == list(range(1, 25))
    assert trend.unit == "e-" and (trend.limits.warn, trend.limits.bad) == (3.5, 5.0)
    first = trend.points[0]
    assert (first.night, first.ifu, first.dataset_id, first.category) == (NIGHTS[0], 1, ids[NIGHTS[0], 1],
                                                                           "MASTER_BIAS")
    assert (first.low, first.high, first.bad_low, first.bad_high) == (None, 3.5, None, 5.0)
    assert first.flag == "unchecked" and first.is_valid
    values = {(p.night, p.ifu): p for p in trend.points}
    assert {k for k, p in values.items() if p.outlier} == {WARN, BAD}
    assert (values[WARN].verdict, values[BAD].verdict) == ("warning", "bad")
    assert all(2.0 < p.value < 3.5 for k, p in values.items() if k not in (WARN, BAD))
    assert [p.value for p in trend.points] == [q["value"] for q in arch.qc_values("bias.ron.max")]


def test_the_site_limits_the_flags_and_the_filters_apply(ron_trend):
    arch, ids = ron_trend
    strict = QCThresholds(bias_ron_warn=2.0, bias_ron_bad=3.0)
    verdicts = {p.verdict for p in qc_trend(arch, "bias.ron.max", thresholds=strict).points}
    assert verdicts == {"warning", "bad"}
    # a reviewer's verdict shows on the point
    arch.set_validity(ids[BAD], BAD[1], is_valid=False, flag="bad", comment="read noise jumped")
    point = qc_trend(arch, "bias.ron.max").point(ids[BAD], BAD[1])
    assert (point.flag, point.is_valid) == ("bad", False)
    some = qc_trend(arch, "bias.ron.max", ifus=[3, 7], date_from="2026-11-21")
    assert {(p.night, p.ifu) for p in some.points} == {(n, i) for n in NIGHTS[1:] for i in (3, 7)}
    assert qc_trend(arch, "bias.ron.max", category="MASTER_FLAT").points == []
    # a user who may not see the masters (outside the consortium) gets no points
    assert qc_trend(arch.as_user("eve"), "bias.ron.max").points == []


def test_parameters_with_limits_come_first_and_others_have_none(ron_trend):
    arch, ids = ron_trend
    arch.add_qc(ids[NIGHTS[0], 1], {"ESO QC BIAS MASTER1 RON": 2.7}, ifu=1)
    assert trend_parameters(arch) == ["bias.ron.max", "ESO QC BIAS MASTER1 RON"]
    assert trend_parameters(arch, category="MASTER_FLAT") == []
    other = qc_trend(arch, "ESO QC BIAS MASTER1 RON")
    assert other.limits is None and [(p.value, p.verdict, p.high) for p in other.points] == [(2.7, "unchecked", None)]
    assert limits_of("wavecal.lines.min").low == 30 and limits_of("wavecal.lines.min").high is None
    assert limits_of("nothing.like.this") is None


def test_widget_tap_opens_the_product_in_the_qc_panel_and_its_flag_shows(ron_trend):
    from musewise.widgets import QCPanel, QCTrends

    arch, ids = ron_trend
    trends = QCTrends(arch.as_user("admin"))
    assert trends.parameter == "bias.ron.max" and trends._select.options == ("bias.ron.max",)
    fig = trends.figure
    assert "72 values over 3 night(s), 2 beyond the limits" in fig.title.text
    warn_band, bad_band = fig.select_one({"name": "warn_high"}), fig.select_one({"name": "bad_high"})
    assert warn_band.visible and (warn_band.bottom, warn_band.top) == (3.5, 5.0)
    assert bad_band.visible and bad_band.bottom == 5.0 and not fig.select_one({"name": "warn_low"}).visible
    source = fig.select_one({"name": "points"}).data_source
    i = source.data["dataset_id"].index(ids[BAD])
    assert source.data["ifu"][i] == BAD[1] and source.data["line"][i] == "#c62828"
    assert len(set(source.data["colour"])) == 24  # a colour per IFU
    source.selected.indices = [i]  # what a tap does
    assert isinstance(trends.panel, QCPanel) and trends.dataset_id == ids[BAD]
    panel = trends.panel
    assert trends.open_product(ids[BAD], BAD[1]) is panel  # the same point again keeps the open panel
    assert trends.panel.selected_ifu == BAD[1] and trends._panel_box.children == (trends.panel,)
    trends.panel.set_validity(False, "bad", "read noise jumped")
    assert source.data["flag"][source.data["dataset_id"].index(ids[BAD])] == "bad"
    assert trends.trend.point(ids[BAD]).is_valid is False
    trends.parameter = "nothing.stored"
    assert source.data["dataset_id"] == [] and "no limits" in fig.title.text


@pytest.mark.browser
def test_qc_trends_in_the_browser_a_click_opens_the_point(tmp_path, page, output_dir):
    from musewise.archive import Archive
    from musewise.config import MusewiseConfig
    from musewise.testing import voila_server

    settings = {"root": str(tmp_path / "root"), "db_url": f"sqlite:///{tmp_path / 'archive.sqlite'}",
                "project": "consortium"}
    arch = Archive(MusewiseConfig.load(user="admin", **settings), user="admin")
    arch.add_project("galaxies", "a science project")
    arch.add_user("alice", projects={"galaxies": "reviewer"})
    ids = bias_trend(arch, tmp_path / "masters", NIGHTS, spoiled={WARN: 1.4, BAD: 3.0})
    folder = tmp_path / "voila"
    folder.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "from musewise.archive import Archive\n"
        "from musewise.config import MusewiseConfig\n"
        "from musewise.widgets import QCTrends\n"
        f"arch = Archive(MusewiseConfig.load(user='admin', **{settings!r}), user='admin')\n"
        "QCTrends(arch, 'bias.ron.max', width=1000)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / "trends.ipynb")
    with voila_server(folder, "trends.ipynb") as (base, token):
        page.set_viewport_size({"width": 1300, "height": 1000})
        page.goto(f"{base}/?token={token}", wait_until="domcontentloaded", timeout=90_000)
        page.locator(".musewise-bokeh-plot[data-musewise-rendered='1']").wait_for(timeout=120_000)
        # the bad point's place on the screen, from the plot's own geometry and data
        where = _point_on_screen(page, ids[BAD])
        page.screenshot(path=str(output_dir / "qc_trends.png"), full_page=True)
        page.mouse.click(where["x"], where["y"])
        page.locator("h4", has_text=f"#{ids[BAD]} MASTER_BIAS").wait_for(timeout=30_000)
        page.locator(".widget-html", has_text=f"IFU {BAD[1]:02d} of #{ids[BAD]}").first.wait_for(timeout=30_000)
        comment = page.locator("input[placeholder='why (required when invalidating)']")
        comment.fill("read noise jumped")
        comment.press("Tab")
        page.locator(".widget-dropdown", has=page.locator("label", has_text="flag")).locator("select") \
            .select_option("bad")
        page.locator("button", has_text="Record").click()
        page.locator(".widget-html", has_text=f"IFU {BAD[1]:02d} of #{ids[BAD]}: valid, bad (recorded by admin)") \
            .first.wait_for(timeout=30_000)
        page.locator("td", has_text="read noise jumped").first.wait_for(timeout=30_000)  # the audit trail
        page.wait_for_timeout(800)
        page.screenshot(path=str(output_dir / "qc_trends_flagged.png"), full_page=True)
    state = arch.get(ids[BAD]).ifu_state(BAD[1])
    assert (state.flag, state.comment, state.updated_by) == ("bad", "read noise jumped", "admin")
    arch.close()


def _point_on_screen(page, dataset_id):
    """Page coordinates of the point of ``dataset_id`` in the rendered trend plot."""
    js = """(did) => {
        if (!window.Bokeh || !Bokeh.index) return null;
        for (const root of Bokeh.index) {
            for (const v of [root, ...(root.child_views || [])]) {
                if (!(v.frame && v.canvas_view)) continue;
                const r = v.canvas_view.el.getBoundingClientRect(), b = v.frame.bbox;
                const rend = v.model.renderers.find(x => x.name === 'points');
                if (!rend) continue;
                const d = rend.data_source.data, i = Array.from(d.dataset_id).indexOf(did);
                if (i < 0) return null;
                const xr = v.model.x_range, yr = v.model.y_range;
                return {x: r.left + b.left + (d.x[i] - xr.start) / (xr.end - xr.start) * b.width,
                        y: r.top + b.top + (yr.end - d.y[i]) / (yr.end - yr.start) * b.height};
            }
        }
        return null; }"""
    deadline = time.time() + 60
    while time.time() < deadline:
        where = page.evaluate(js, dataset_id)
        if where:
            return where
        page.wait_for_timeout(500)
    raise AssertionError("the trend plot did not render its points")
