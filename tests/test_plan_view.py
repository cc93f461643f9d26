"""The plan view: a target's dry-run plan as rows with reasons, run from a button in the background.

``plan_rows`` is driven on a real archive holding the ingested simulated night (``sim_frames``,
IFU 1; on SQLite and PostgreSQL); running a plan executes the real pipeline (esorex
``muse_bias``, ~40 s) on SQLite; the widget is shown in Voila + Chromium, where its button
runs a plan whose first run fails, with a screenshot in ``test-output/``.
"""

from __future__ import annotations

import shutil
import time

import nbformat
import pytest

from musewise import dpu
from musewise.dpu.plan_table import execute_plan, plan_rows
from musewise.exceptions import ReductionFailed

NIGHT = "2026-11-20"
#: muse_bias refuses to reject 5 + 5 of 3 frames: a run that fails in the pipeline, quickly.
BAD_BIAS = {"combine": "minmax", "nlow": 5, "nhigh": 5}


def _ingest(arch, sim_frames, *types):
    files = [p for t in types for p in sim_frames[t]]
    rep = arch.ingest_many(files, progress=False)
    assert not rep.refused, rep.refused


def _need_esorex():
    from conftest import need

    need(shutil.which("esorex") is not None, "esorex not installed (apt-get install esorex cpl-plugin-muse)")


@pytest.fixture
def sqlite_archive(tmp_path):
    from musewise.archive import Archive
    from musewise.config import MusewiseConfig

    arch = Archive(MusewiseConfig.load(root=str(tmp_path / "root"), user="admin", project="consortium"),
                   user="admin")
    yield arch
    arch.close()


def test_plan_rows_name_each_run_its_inputs_and_why(archive, sim_frames):
    _ingest(archive, sim_frames, "BIAS", "FLAT", "ARC", "OBJECT", "static")
    pl = dpu.plan("scibasic", NIGHT, [1], archive=archive)
    rows = plan_rows(pl, archive)
    assert [(r.step, r.ifu, r.status) for r in rows] == [
        ("bias", 1, "missing"), ("flat", 1, "missing"), ("wavecal", 1, "missing"), ("scibasic", 1, "missing")]
    assert [r.reason for r in rows] == [i.reason for i in pl.items]
    assert rows[0].reason == f"no valid MASTER_BIAS for IFU 1 of night {NIGHT}"
    # raw frames counted; products of earlier steps are made first; static ones found when it runs
    n_bias, n_flat = len(sim_frames["BIAS"]), len(sim_frames["FLAT"])
    assert rows[0].inputs == f"BIAS x{n_bias}"
    assert rows[1].inputs == f"FLAT x{n_flat}, MASTER_BIAS (to run)"
    assert rows[2].inputs.startswith("ARC x") and "MASTER_FLAT (to run)" in rows[2].inputs
    assert rows[2].inputs.endswith("LINE_CATALOG")
    assert rows[3].inputs.startswith(f"OBJECT x{len(sim_frames['OBJECT'])}") and "GEOMETRY_TABLE" in rows[3].inputs
    assert {r.where for r in rows} == {"IFU 01"} and all(r.state == "" and r.needed for r in rows)


def test_per_exposure_rows_of_a_cube(archive, sim_frames):
    _ingest(archive, sim_frames, "BIAS", "FLAT", "ARC", "OBJECT", "static")
    rows = plan_rows(dpu.plan("scipost", NIGHT, [1], archive=archive), archive)
    cubes = [r for r in rows if r.step == "scipost"]
    assert len(cubes) == len(sim_frames["OBJECT"]) == 2
    assert all(r.ifu is None and r.where.startswith("exposure MJD 613") for r in cubes)
    assert cubes[0].inputs.startswith("PIXTABLE_OBJECT x1 (1 to run)")


@pytest.mark.pipeline
def test_the_button_runs_the_plan_in_the_background_and_the_next_plan_reuses_it(sqlite_archive, sim_frames):
    from musewise.widgets import PlanViewer

    _need_esorex()
    arch = sqlite_archive
    _ingest(arch, sim_frames, "BIAS", "static")
    viewer = PlanViewer(arch, "bias", NIGHT, [1], engine="local")
    assert [(r.step, r.status) for r in viewer.rows] == [("bias", "missing")]
    assert "1 run(s) to do" in viewer._title.value and not viewer._run.disabled
    t0 = time.perf_counter()
    viewer._run.click()  # what the button does
    assert time.perf_counter() - t0 < 2.0, "the button blocked the kernel"
    assert viewer.running and viewer._replan.disabled
    seen = set()
    while viewer.running and time.perf_counter() - t0 < 300:
        seen.add(viewer.rows[0].state)
        time.sleep(0.2)
    assert viewer.wait(1)
    row = viewer.rows[0]
    assert row.state == "succeeded" and "running" in seen and row.seconds > 0
    assert arch.get_run(row.run_id).status == "succeeded"
    assert viewer._progress.value == viewer._progress.max == 1 and viewer._progress.bar_style == "success"
    assert viewer.status.startswith("1 succeeded in ")
    assert "succeeded" in viewer._table.value and f"run {row.run_id}" in viewer._table.value
    # Re-plan: the bias is current now (made by that run); other parameters make it out of date
    rows = viewer.refresh()
    master = arch.get_run(row.run_id).output_ids[0]
    assert (rows[0].status, rows[0].product_id, rows[0].state) == ("current", master, "")
    assert rows[0].reason.startswith(f"run {row.run_id}, ") and rows[0].inputs == f"BIAS x{len(sim_frames['BIAS'])}"
    assert viewer._run.disabled and "nothing to do" in viewer.status
    other = plan_rows(dpu.plan("bias", NIGHT, [1], archive=arch, p={"combine": "median"}), arch)
    assert other[0].status == "out of date" and "combine" in other[0].reason


@pytest.mark.pipeline
def test_a_failed_run_shows_its_error_and_the_later_runs_are_skipped(sqlite_archive, sim_frames):
    from musewise.widgets import PlanViewer

    _need_esorex()
    arch = sqlite_archive
    _ingest(arch, sim_frames, "BIAS", "FLAT", "static")
    viewer = PlanViewer(arch, "flat", NIGHT, [1], step_params={"bias": BAD_BIAS}, engine="local")
    outcomes = viewer.run(background=False)
    bias, flat = viewer.rows
    assert (bias.state, flat.state) == ("failed", "skipped")
    assert [o.run_id for o in outcomes] == [bias.run_id] and not outcomes[0].ok
    assert arch.get_run(bias.run_id).status == "failed" and bias.error
    assert "1 failed, 1 skipped" in viewer.status and viewer._progress.bar_style == "danger"
    assert viewer._progress.max == 1  # the skipped run is not counted as to do
    assert "class='error'" in viewer._table.value
    # the same through the plain function: the cascade stops with the step's outcomes
    with pytest.raises(ReductionFailed) as exc:
        execute_plan(dpu.plan("flat", NIGHT, [1], archive=arch), arch, step_params={"bias": BAD_BIAS},
                     engine="local", progress=False)
    assert [o.ok for o in exc.value.outcomes] == [False]


@pytest.mark.browser
@pytest.mark.pipeline
def test_plan_viewer_in_the_browser_runs_from_its_button(tmp_path, sim_frames, page, output_dir):
    from musewise.archive import Archive
    from musewise.config import MusewiseConfig
    from musewise.testing import voila_server

    _need_esorex()
    settings = {"root": str(tmp_path / "root"), "db_url": f"sqlite:///{tmp_path / 'archive.sqlite'}",
                "project": "consortium"}
    arch = Archive(MusewiseConfig.load(user="admin", **settings), user="admin")
    _ingest(arch, sim_frames, "BIAS", "FLAT", "ARC", "OBJECT", "static")
    arch.close()
    folder = tmp_path / "voila"
    folder.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "from musewise.archive import Archive\n"
        "from musewise.config import MusewiseConfig\n"
        "from musewise.widgets import PlanViewer\n"
        f"arch = Archive(MusewiseConfig.load(user='admin', **{settings!r}), user='admin')\n"
        f"PlanViewer(arch, 'scipost', {NIGHT!r}, [1], step_params={{'bias': {BAD_BIAS!r}}}, engine='local')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / "plan.ipynb")
    with voila_server(folder, "plan.ipynb") as (base, token):
        page.set_viewport_size({"width": 1400, "height": 900})
        page.goto(f"{base}/?token={token}", wait_until="domcontentloaded", timeout=90_000)
        page.locator(".mw-plan table").wait_for(timeout=120_000)
        assert page.locator(".mw-plan tr[data-step]").count() == 6  # bias, flat, wavecal, scibasic, 2 cubes
        assert "no valid MASTER_BIAS for IFU 1" in page.locator(".mw-plan").inner_text()
        page.screenshot(path=str(output_dir / "plan_dry_run.png"), full_page=True)
        page.locator("button", has_text="Run plan").click()
        page.locator(".mw-plan .run-state", has_text="running").first.wait_for(timeout=60_000)
        page.locator(".mw-plan .run-state", has_text="failed").first.wait_for(timeout=180_000)
        page.locator(".widget-html", has_text="Re-plan to see what is left").first.wait_for(timeout=30_000)
        text = page.locator(".mw-plan").inner_text()
        assert text.count("skipped") == 5
        page.wait_for_timeout(500)
        page.screenshot(path=str(output_dir / "plan_run_failed.png"), full_page=True)
