"""QCPanel in a real browser: Voila on 127.0.0.1 + Debian chromium driven by Playwright.

Same approach as ``test_widgets_browser.py``. Fixtures:

* ``qc_voila`` - a temp folder with a SQLite archive holding MASTER_FLAT-01..23 of one
  night (IFU 24 absent, IFU 02 already marked bad and invalid), and notebooks showing a
  ``QCPanel`` of them (``qc.ipynb``) and an ``ArchiveBrowser`` (``browser.ipynb``) for
  reviewer ``alice``; a Voila server (token auth, free port) serving the folder, stopped
  (with its kernels) in the finalizer; ``url(notebook)`` gives a notebook's address;
* ``page`` - a headless chromium page (skipped locally if /usr/bin/chromium is missing).

Screenshots go to ``test-output/<test name>/``.
"""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import numpy as np
import pytest

from musewise.testing import voila_server

pytestmark = pytest.mark.browser

NIGHT = "2026-11-20"


def _make_archive(folder: Path) -> None:
    from astropy.io import fits

    from musewise.archive import Archive
    from musewise.vocabulary import Privilege

    admin = Archive.open(root=str(folder / "archive"), user="admin", project="consortium")
    admin.add_project("galaxies")
    admin.add_user("alice", projects={"galaxies": "reviewer"})
    run = admin.begin_run("muse_flat", {}, night=NIGHT, privilege=Privilege.PROJECT, project="galaxies")
    outs = []
    yy, xx = np.mgrid[:120, :100]
    for n in range(1, 24):
        h = fits.Header({"INSTRUME": "MUSE", "DATE-OBS": f"{NIGHT}T23:00:00.000"})
        h["HIERARCH ESO PRO CATG"] = "MASTER_FLAT"
        data = (1 + 0.3 * np.sin(xx / (3 + n)) * np.cos(yy / 7)).astype(np.float32)
        path = folder / f"MASTER_FLAT-{n:02d}.fits"
        fits.HDUList([fits.PrimaryHDU(header=h), fits.ImageHDU(data, name="DATA")]).writeto(path)
        outs.append((str(path), "MASTER_FLAT", n))
    flats = admin.finish_run(run, outs)
    admin.set_validity(flats[1].id, 2, is_valid=False, flag="bad", comment="lamp off")
    admin.set_validity(flats[2].id, 3, flag="warning", comment="faint")
    admin.set_validity(flats[0].id, 1, flag="good")


def _png_pixels(png: bytes) -> np.ndarray:
    import io

    from matplotlib.image import imread

    return np.asarray(imread(io.BytesIO(png), format="png")[..., :3], float) * 255


@pytest.fixture(scope="module")
def qc_voila(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qc-voila")
    _make_archive(folder)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "from musewise.archive import Archive\n"
        "from musewise.widgets import QCPanel\n"
        "arch = Archive.open(root='archive', user='alice', project='consortium')\n"
        f"panel = QCPanel(arch, category='MASTER_FLAT', night='{NIGHT}')\n"
        "panel")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / "qc.ipynb")
    nb.cells = [nbformat.v4.new_code_cell(
        "from musewise.archive import Archive\n"
        "from musewise.widgets import ArchiveBrowser\n"
        "arch = Archive.open(root='archive', user='alice', project='consortium')\n"
        "browser = ArchiveBrowser(arch, page_size=10, order_by='id', descending=False)\n"
        "browser")]
    nbformat.write(nb, folder / "browser.ipynb")
    with voila_server(folder) as (base, token):
        yield {"url": lambda nb: f"{base}/voila/render/{nb}?token={token}", "folder": folder}


def test_qc_panel_renders_and_a_tile_click_shows_the_ifu(qc_voila, page, output_dir):
    page.goto(qc_voila["url"]("qc.ipynb"), wait_until="domcontentloaded", timeout=60_000)
    tiles = page.locator("button.mw-tile")
    tiles.first.wait_for(timeout=90_000)
    assert tiles.count() == 24
    # IFU 24 is absent: disabled; IFU 02 is invalid: struck through, red
    assert page.locator("button.mw-tile", has_text="24").is_disabled()
    bad = page.locator("button.mw-tile.mw-invalid")
    assert bad.count() == 1 and bad.inner_text().startswith("02")
    assert bad.evaluate("e => getComputedStyle(e).textDecorationLine") == "line-through"
    assert bad.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(198, 40, 40)"

    page.locator("button.mw-tile", has_text="05").click()
    page.wait_for_function("() => document.body.innerText.includes('IFU 05 of #')", timeout=30_000)
    selected = page.locator("button.mw-tile.mw-selected")
    assert selected.count() == 1 and selected.inner_text().startswith("05")
    # the quick-look image is drawn by bokeh
    deadline = time.time() + 30
    while time.time() < deadline and not any(
            (b := h.bounding_box()) and b["width"] > 300 for h in page.locator("canvas").element_handles()):
        page.wait_for_timeout(500)
    assert any((b := h.bounding_box()) and b["width"] > 300 for h in page.locator("canvas").element_handles())
    page.wait_for_timeout(1000)
    box = max((h.bounding_box() for h in page.locator("canvas").element_handles()), key=lambda b: b["width"])
    shot = _png_pixels(page.screenshot(clip=box))
    assert shot.std() > 5  # the flat's pattern is drawn, not an empty plot
    page.screenshot(path=str(output_dir / "qc_panel.png"), full_page=True)


def test_archive_browser_lists_pages_and_a_row_click_opens_the_product(qc_voila, page, output_dir):
    page.goto(qc_voila["url"]("browser.ipynb"), wait_until="domcontentloaded", timeout=60_000)
    page.get_by_text("rows 1-10 of 23").wait_for(timeout=90_000)
    rows = page.locator(".slick-row")  # bokeh's DataTable (Playwright pierces its shadow DOM)
    deadline = time.time() + 30
    while rows.count() < 10 and time.time() < deadline:
        page.wait_for_timeout(300)
    assert rows.count() == 10
    assert "MASTER_FLAT-01.fits" in rows.nth(0).inner_text()
    page.get_by_role("button", name="next ▶").click()
    page.get_by_text("rows 11-20 of 23").wait_for(timeout=30_000)
    page.locator(".slick-row", has_text="MASTER_FLAT-11.fits").wait_for(timeout=30_000)  # page 2 reached the table
    page.locator(".slick-row", has_text="MASTER_FLAT-13.fits").locator(".slick-cell").nth(1).click()
    page.get_by_text("MASTER_FLAT-13.fits (image)").wait_for(timeout=30_000)  # the opened product's title
    page.get_by_text("Provenance", exact=True).wait_for()  # not the drawing's <title>provenance</title>
    prov = page.locator(".mw-prov")
    assert prov.locator("svg").text_content().count("run 1 muse_flat") == 1  # the drawing: the run once
    assert prov.locator("details").inner_text().count("muse_flat") == 1      # the list: the run once
    page.wait_for_timeout(1000)
    page.screenshot(path=str(output_dir / "archive_browser.png"), full_page=True)
