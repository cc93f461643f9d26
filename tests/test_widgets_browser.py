"""CubeViewer in a real browser: Voila on 127.0.0.1 + Debian chromium driven by Playwright.

Fixtures:

* ``voila_url`` - a Voila server (token auth, random free port) serving a
  temp folder with a tiny cube and a notebook showing a ``CubeViewer`` of it;
  the server is stopped in the fixture finalizer;
* ``page`` - a headless chromium page (skipped if /usr/bin/chromium is missing).

A screenshot is saved to ``test-output/widgets_cube_viewer.png``.
"""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from musewise.testing import voila_server
from musewise.products.testing import write_synthetic_cube

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "test-output"


@pytest.fixture(scope="module")
def voila_url(tmp_path_factory):
    folder = tmp_path_factory.mktemp("voila")
    write_synthetic_cube(folder / "DATACUBE_FINAL.fits", shape=(200, 20, 20), seed=0)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "from musewise.widgets import CubeViewer\n"
        "viewer = CubeViewer('DATACUBE_FINAL.fits', cache_dir='cache', export_dir='exports')\n"
        "viewer")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, folder / "viewer.ipynb")
    with voila_server(folder, "viewer.ipynb") as (base, token):
        yield {"url": f"{base}/?token={token}", "base": base, "folder": folder}


def test_token_is_required(voila_url):
    for query in ("", "?token=wrong"):
        with urllib.request.urlopen(f"{voila_url['base']}/{query}", timeout=30) as resp:
            assert "/login" in resp.geturl()  # sent to the login page, no kernel started


def _plot_canvases(page):
    """Bounding boxes of the bokeh plot canvases (shadow DOM is pierced by Playwright)."""
    boxes = []
    for handle in page.locator("canvas").element_handles():
        box = handle.bounding_box()
        if box and box["width"] > 300 and box["height"] > 300:
            boxes.append(box)
    return sorted(boxes, key=lambda b: b["x"])


def test_cube_viewer_renders_and_a_click_selects_a_spaxel(voila_url, page):
    page.goto(voila_url["url"], wait_until="domcontentloaded", timeout=60_000)
    # ipywidgets rendered: the wavelength slider and the mode buttons
    page.wait_for_selector(".widget-slider", timeout=90_000)
    assert page.locator(".widget-toggle-button").count() >= 3
    # bokeh rendered: the image and the spectrum canvases
    page.wait_for_function(
        "() => document.querySelectorAll('.widget-slider').length > 0", timeout=10_000)
    deadline = time.time() + 60
    while len(_plot_canvases(page)) < 2 and time.time() < deadline:
        page.wait_for_timeout(500)
    canvases = _plot_canvases(page)
    assert len(canvases) >= 2, "bokeh did not render the image and spectrum plots"
    selection = page.locator(".musewise-selection")
    selection.wait_for(timeout=30_000)
    assert selection.inner_text() == "spaxel (10, 10)"  # the centre, chosen on open

    # The white light is computed in the kernel's worker thread, then shown.
    page.wait_for_timeout(1500)
    image = canvases[0]
    page.mouse.click(image["x"] + 0.3 * image["width"], image["y"] + 0.3 * image["height"])
    page.wait_for_function(
        "() => { const e = document.querySelector('.musewise-selection');"
        " return e && e.innerText !== 'spaxel (10, 10)'; }", timeout=20_000)
    text = selection.inner_text()
    m = re.fullmatch(r"spaxel \((\d+), (\d+)\)", text)
    assert m, text
    x, y = int(m.group(1)), int(m.group(2))
    assert x < 10 and y > 10  # upper-left of the field (bokeh's y axis points up)

    OUTPUT.mkdir(exist_ok=True)
    page.wait_for_timeout(800)
    page.screenshot(path=str(OUTPUT / "widgets_cube_viewer.png"), full_page=True)
