"""The viewers in JupyterLab in the hub, for real, as a new user meets them.

A real JupyterHub (the ``hub`` fixture of ``test_hub.py``: configurable-http-proxy, a
spawned single-user server, the ``musewise`` kernel) serves a user who logs in with
headless Chromium, opens a notebook with a ``CubeViewer`` of an *archived* cube (a
302 x 24 spaxel synthetic cube, the shape of the demo's one-IFU cube) and a second
viewer on the same page, runs it, saves, reloads the page, opens a second tab,
re-runs the cell and clicks a spaxel. Each time every plot must render (no
"javascript error"), the click must change the spectrum shown, and the cursor readout
must give the RA/Dec of the spaxel under the mouse.

Screenshots go to ``test-output/<test name>/``.
"""

from __future__ import annotations

import json
import re
import time
import uuid

import nbformat
import pytest
import requests

from musewise.vocabulary import Privilege
from musewise.products.testing import write_synthetic_cube
from test_hub import PASSWORD, _wait_ready, hub  # noqa: F401  (the hub fixture)

pytestmark = [pytest.mark.hub, pytest.mark.browser]
#: A new account each run: an account left by an interrupted run keeps its old home (Lab's saved
#: workspace, an old notebook), which is not what a new user meets.
USER = f"frank{uuid.uuid4().hex[:6]}"
CUBE_SHAPE = (120, 24, 302)  # (lambda, y, x): 302 x 24 spaxels


@pytest.fixture(scope="module")
def archived_cube(hub, tmp_path_factory):
    """A DATACUBE_FINAL reduced by alice (consortium data): its dataset id."""
    work = tmp_path_factory.mktemp("cube")
    path = write_synthetic_cube(work / "DATACUBE_FINAL.fits", shape=CUBE_SHAPE, seed=3).path
    alice = hub["archive"].as_user("alice")
    run = alice.begin_run("muse_scipost", {}, night="2026-11-20", privilege=Privilege.CONSORTIUM)
    return alice.finish_run(run, [(path, "DATACUBE_FINAL", None)])[0].id


def _notebook(cube_id: int) -> dict:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "from musewise.widgets import CubeViewer\n"
            f"viewer = CubeViewer({cube_id}, cache_dir='scratch/cache', export_dir='scratch')\n"
            "viewer"),
        nbformat.v4.new_code_cell(
            "from musewise.widgets import SpectrumViewer\n"
            "SpectrumViewer(viewer.cube.spectrum(40, 12), width=500, height=250)"),
    ]
    nb.metadata["kernelspec"] = {"name": "musewise", "display_name": "musewise (Python 3)",
                                 "language": "python"}
    return json.loads(nbformat.writes(nb))


def _plots(page):
    """(rendered, failed) counts of BokehPlot views in the page."""
    return (page.locator(".musewise-bokeh-plot[data-musewise-rendered='1']").count(),
            page.locator(".musewise-plot-error").count())


def _wait_plots(page, n, timeout=90.0, shot=None):
    """Wait until ``n`` plots rendered; fail on a plot error (screenshot to ``shot``)."""
    try:
        _wait_rendered(page, n, timeout)
    except AssertionError:
        if shot is not None:
            page.screenshot(path=str(shot))
        raise


def _wait_rendered(page, n, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rendered, failed = _plots(page)
        assert failed == 0, page.locator(".musewise-plot-error").first.inner_text()
        assert page.get_by_text("Click to show javascript error").count() == 0
        if rendered >= n:
            return
        page.wait_for_timeout(300)
    raise AssertionError(f"{_plots(page)[0]} of {n} plots rendered")


def _run_cell(page, index, tries=5):
    """Run a code cell with Shift+Enter, as a user does, until its prompt shows it ran."""
    cell = page.locator(".jp-Notebook .jp-CodeCell").nth(index)
    prompt = cell.locator(".jp-InputPrompt")
    before = prompt.inner_text()
    for _ in range(tries):  # a key press before the kernel is connected is dropped
        dialog = page.locator(".jp-Dialog")
        if dialog.count():  # e.g. a kernel that failed to start: say what JupyterLab says
            raise AssertionError(f"JupyterLab dialog: {dialog.first.inner_text()}")
        cell.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            now = prompt.inner_text()
            if now != before and now.strip() != "[ ]:":
                return
            page.wait_for_timeout(200)
    raise AssertionError(f"cell {index} did not run (prompt {prompt.inner_text()!r})")


def _selection(page):
    return page.locator(".musewise-selection").first.inner_text()


def _image_canvas(page):
    """Bounding box of the image plot's frame of the first viewer (widest canvas on the left)."""
    boxes = [h.bounding_box() for h in page.locator(".musewise-image-plot canvas").element_handles()]
    boxes = [b for b in boxes if b and b["width"] > 200]
    assert boxes, "no image canvas"
    return boxes[0]


def test_viewer_in_jupyterlab_survives_reload_second_tab_and_rerun(hub, archived_cube, page,
                                                                   output_dir):
    url = hub["url"]
    page.set_default_timeout(90_000)
    page.goto(f"{url}/hub/login")
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", PASSWORD)
    page.click("input[type=submit], button[type=submit]")
    _wait_ready(hub, USER, timeout=180)
    # The spawn page sends a new user on to Lab by itself; a navigation of ours before then
    # is cut off by that redirect.
    page.wait_for_url(re.compile(rf".*/user/{USER}/lab.*"), timeout=180_000)
    page.wait_for_load_state("load")
    token = requests.post(f"{url}/hub/api/users/{USER}/tokens", headers=hub["admin"], timeout=30,
                          json={"note": "test", "expires_in": 900}).json()["token"]
    r = requests.put(f"{url}/user/{USER}/api/contents/viewer.ipynb", timeout=30,
                     headers={"Authorization": f"token {token}"},
                     json={"type": "notebook", "format": "json", "content": _notebook(archived_cube)})
    assert r.status_code in (200, 201), r.text
    lab = f"{url}/user/{USER}/lab/tree/viewer.ipynb"

    # 1. First run: both viewers (3 plots) render; the centre spaxel is selected.
    page.goto(lab)
    page.locator(".jp-Notebook .jp-CodeCell").first.wait_for()
    page.get_by_text("Kernel status: Idle").first.wait_for(state="attached", timeout=120_000)
    _run_cell(page, 0)
    _run_cell(page, 1)
    _wait_plots(page, 3, shot=output_dir / 'failed.png')
    news = page.get_by_role("button", name="No")  # JupyterLab's "notify about news?" toast
    if news.count():
        news.first.click()
    assert _selection(page) == "spaxel (151, 12)"
    page.screenshot(path=str(output_dir / "1_first_run.png"))
    page.keyboard.press("Control+s")
    page.wait_for_timeout(1500)

    # 2. Reload: the saved outputs re-render from the live kernel's widgets.
    page.reload()
    page.locator(".jp-Notebook .jp-CodeCell").first.wait_for()
    _wait_plots(page, 3, shot=output_dir / 'failed.png')
    page.screenshot(path=str(output_dir / "2_after_reload.png"))

    # 3. A second tab on the same notebook renders too.
    # (another browser context with the same login cookies: a second tab of the user)
    other = page.context.browser.new_context(storage_state=page.context.storage_state(),
                                             viewport={"width": 1300, "height": 1000})
    second = other.new_page()
    second.set_default_timeout(90_000)
    second.goto(lab)
    second.locator(".jp-Notebook .jp-CodeCell").first.wait_for()
    _wait_plots(second, 3, shot=output_dir / 'failed.png')
    second.screenshot(path=str(output_dir / "3_second_tab.png"))
    other.close()

    # 4. Re-run the viewer's cell in the reloaded page: a new viewer renders.
    page.bring_to_front()
    _run_cell(page, 0)
    page.wait_for_timeout(1000)
    _wait_plots(page, 3, shot=output_dir / 'failed.png')
    assert _selection(page) == "spaxel (151, 12)"

    # 5. Click a spaxel left of the centre: the spectrum shown changes.
    box = _image_canvas(page)
    page.mouse.click(box["x"] + 0.25 * box["width"], box["y"] + 0.5 * box["height"])
    page.wait_for_function(
        "() => { const e = document.querySelector('.musewise-selection');"
        " return e && e.innerText !== 'spaxel (151, 12)'; }", timeout=30_000)
    m = re.fullmatch(r"spaxel \((\d+), (\d+)\)", _selection(page))
    assert m and int(m.group(1)) < 151, _selection(page)
    assert "RA 03:32:" in page.locator(".musewise-selection-sky").first.inner_text()

    # 6. The cursor readout gives the RA/Dec of the spaxel under the mouse.
    readout = page.locator(".musewise-readout div").first
    for dx in (0.6, 0.61, 0.62):
        page.mouse.move(box["x"] + dx * box["width"], box["y"] + 0.5 * box["height"])
        page.wait_for_timeout(200)
    assert re.search(r"spaxel \(\d+, \d+\)\s+RA \d\d:\d\d:\d\d\.\d{3} Dec -27:", readout.inner_text())
    page.wait_for_timeout(800)
    page.screenshot(path=str(output_dir / "4_rerun_and_click.png"))
