"""Fast tests of the archive widgets: QCPanel and ArchiveBrowser, on SQLite and PostgreSQL.

Products are made the way a reduction makes them: ``begin_run`` with inputs and
reasons, then ``finish_run`` with small real FITS files and a tiny executed
notebook. Users come from the ``archive`` fixture: ``alice`` reviews project
``galaxies``, ``bob`` is a plain member, ``eve`` an outside user.

Fixtures (module):

* ``night_products`` - per test: three raw biases, MASTER_FLAT-01/02/03 of
  2026-11-20 (project ``galaxies``, one run, with a notebook), a TRACE_TABLE,
  an IMAGE_FOV, a spectrum and a small DATACUBE_FINAL.
"""

from __future__ import annotations

import warnings

import nbformat
import numpy as np
import pytest
from astropy.io import fits

from musewise.exceptions import NotFoundError, PermissionDeniedError
from musewise.vocabulary import Privilege
from musewise.widgets import ArchiveBrowser, CubeViewer, ImageViewer, QCPanel, SpectrumViewer
from musewise.widgets.archive_browser import viewer_kind
from musewise.widgets.qc_panel import FLAG_COLOURS
from musewise.products.testing import write_synthetic_cube

warnings.filterwarnings("ignore", message=".*multiple slashes.*")
NIGHT = "2026-11-20"
FLAT_SHAPE = (30, 40)


def _primary(category, ifu=None, obj=None, hour=23):
    h = fits.Header()
    h["INSTRUME"] = "MUSE"
    h["DATE-OBS"] = f"2026-11-20T{hour:02d}:00:00.000"
    h["HIERARCH ESO INS MODE"] = "WFM-NOAO-N"
    h["HIERARCH ESO PRO CATG"] = category
    h["HIERARCH ESO PRO REC1 PIPE ID"] = "muse/2.8.7"
    if ifu:
        h["HIERARCH ESO DRS MUSE IFU"] = ifu
    if obj:
        h["OBJECT"] = obj
    return h


def flat_data(ifu):
    """The DATA of MASTER_FLAT-<ifu>: a ramp offset by 1000 x IFU (unique per IFU)."""
    return (1000.0 * ifu + np.arange(np.prod(FLAT_SHAPE), dtype=np.float32)).reshape(FLAT_SHAPE)


def write_flat(path, ifu):
    fits.HDUList([fits.PrimaryHDU(header=_primary("MASTER_FLAT", ifu)),
                  fits.ImageHDU(flat_data(ifu), name="DATA"),
                  fits.ImageHDU(np.ones(FLAT_SHAPE, np.float32), name="STAT")]).writeto(path)
    return path


def write_table(path, ifu):
    cols = [fits.Column(name="slice", format="J", array=np.arange(48)),
            fits.Column(name="width", format="E", unit="pix", array=np.full(48, 75.0))]
    fits.HDUList([fits.PrimaryHDU(header=_primary("TRACE_TABLE", ifu)),
                  fits.BinTableHDU.from_columns(cols, name="TRACE")]).writeto(path)
    return path


def write_image(path, obj="NGC 1365"):
    fits.HDUList([fits.PrimaryHDU(header=_primary("IMAGE_FOV", obj=obj)),
                  fits.ImageHDU(np.arange(200, dtype=np.float32).reshape(10, 20), name="DATA")]).writeto(path)
    return path


def write_spectrum(path):
    h = fits.Header()
    h["CRVAL1"], h["CD1_1"], h["CRPIX1"], h["CUNIT1"], h["CTYPE1"] = 4750.0, 1.25, 1.0, "Angstrom", "AWAV"
    fits.HDUList([fits.PrimaryHDU(header=_primary("STD_SPECTRUM", obj="HD 49798")),
                  fits.ImageHDU(np.linspace(1, 2, 100).astype(np.float32), header=h, name="DATA")]).writeto(path)
    return path


def tiny_notebook(path, text):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print('reduced')", execution_count=1)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
    nb.cells = [nbformat.v4.new_markdown_cell("# muse_flat run"), cell]
    nbformat.write(nb, path)
    return path


@pytest.fixture
def products(archive, sim_frames, tmp_path):
    """Archive raw biases and products; returns a dict of dataset ids."""
    admin = archive
    biases = [admin.ingest(p).record.id for p in sim_frames["BIAS"]]
    run = admin.begin_run("muse_flat", {"nifu": 3, "combine": "sigclip"}, night=NIGHT,
                          inputs=[(b, "BIAS", f"raw bias {k} of the night") for k, b in enumerate(biases)],
                          pipeline_version="muse/2.8.7", privilege=Privilege.PROJECT, project="galaxies")
    flats = admin.finish_run(run, [(write_flat(tmp_path / f"MASTER_FLAT-{n:02d}.fits", n), "MASTER_FLAT", n)
                                   for n in (1, 2, 3)],
                             notebook=tiny_notebook(tmp_path / "flat.ipynb", "hello from muse_flat\n"))
    run2 = admin.begin_run("muse_wavecal", {}, night=NIGHT, ifu=3, inputs=[(flats[2].id, "MASTER_FLAT", "same night")],
                           privilege=Privilege.PROJECT, project="galaxies")
    table = admin.finish_run(run2, [(write_table(tmp_path / "TRACE_TABLE-03.fits", 3), "TRACE_TABLE", 3)])[0]
    run3 = admin.begin_run("muse_scipost", {}, night=NIGHT, privilege=Privilege.CONSORTIUM)
    cube = write_synthetic_cube(tmp_path / "DATACUBE_FINAL.fits", shape=(40, 8, 8), seed=2).path
    sci = admin.finish_run(run3, [(write_image(tmp_path / "IMAGE_FOV.fits"), "IMAGE_FOV", None),
                                  (write_spectrum(tmp_path / "STD_SPECTRUM.fits"), "STD_SPECTRUM", None),
                                  (cube, "DATACUBE_FINAL", None)])
    return {"biases": biases, "flats": [f.id for f in flats], "table": table.id, "image": sci[0].id,
            "spectrum": sci[1].id, "cube": sci[2].id, "flat_run": run}


# ----------------------------------------------------------------- QCPanel
def test_panel_shows_the_24_ifus_and_a_click_loads_that_ifus_image(archive, products):
    panel = QCPanel(archive.as_user("alice"), category="MASTER_FLAT", night=NIGHT)
    assert panel.ifus == [1, 2, 3]
    tiles = panel._tiles
    assert len(tiles) == 24 and panel._grid.layout.grid_template_columns.startswith("repeat(6")
    assert all(tiles[n].disabled for n in range(4, 25)) and not any(tiles[n].disabled for n in (1, 2, 3))
    assert tiles[2].style.button_color == FLAG_COLOURS["unchecked"]
    tiles[2].click()  # what a click in the browser does
    assert panel.selected_ifu == 2 and panel.dataset_id == products["flats"][1]
    np.testing.assert_array_equal(panel.quicklook.data, flat_data(2))
    np.testing.assert_array_equal(panel.image_viewer.image.data, flat_data(2))
    assert "mw-selected" in tiles[2]._dom_classes and "mw-selected" not in tiles[1]._dom_classes
    panel.select_ifu(3)
    np.testing.assert_array_equal(panel.image_viewer.image.data, flat_data(3))
    with pytest.raises(Exception, match="IFU 7 is not in this product"):
        panel.select_ifu(7)


def test_a_review_writes_validity_and_flag_with_who_and_when(archive, products):
    alice = archive.as_user("alice")
    panel = QCPanel(alice, category="MASTER_FLAT", night=NIGHT)
    panel.select_ifu(2)
    assert panel.can_review and not panel._apply.disabled
    state = panel.set_validity(False, "bad", "lamp off in slice 12")
    flat2 = products["flats"][1]
    stored = archive.get(flat2).ifu_state(2)  # read back through another user's archive
    assert (stored.is_valid, stored.flag, stored.updated_by) == (False, "bad", "alice")
    assert state == stored and stored.updated is not None
    row = archive.validity_history(flat2)[-1]
    assert (row["user"], row["ifu"], row["valid_before"], row["valid_after"], row["flag_after"]) == \
           ("alice", 2, True, False, "bad")
    assert panel._tiles[2].style.button_color == FLAG_COLOURS["bad"]
    assert "mw-invalid" in panel._tiles[2]._dom_classes and "✗" in panel._tiles[2].description
    assert "alice" in panel._audit.value and "lamp off in slice 12" in panel._audit.value
    # the same through the controls: flag only, valid again
    panel.select_ifu(1)
    panel._valid.value, panel._flag.value, panel._comment.value = True, "warning", "faint slice 3"
    panel._apply.click()
    assert archive.get(products["flats"][0]).ifu_state(1).flag == "warning"
    assert panel._tiles[1].style.button_color == FLAG_COLOURS["warning"]
    assert [r["comment"] for r in panel.audit()][:2] == ["faint slice 3", "lamp off in slice 12"]
    # an invalidation without a reason is refused before anything is written
    with pytest.raises(ValueError, match="say why"):
        panel.set_validity(False, "bad", "")
    assert len(panel.audit()) == 2


def test_a_user_without_rights_sees_disabled_controls_and_cannot_write(archive, products):
    bob = archive.as_user("bob")  # member of the project, not a reviewer
    panel = QCPanel(bob, category="MASTER_FLAT", night=NIGHT)
    panel.select_ifu(1)
    assert not panel.can_review
    assert all(w.disabled for w in (panel._valid, panel._flag, panel._comment, panel._apply))
    assert "may not change" in panel._state.value
    with pytest.raises(PermissionDeniedError, match="bob"):
        panel.set_validity(False, "bad", "looks odd")
    panel._apply.click()  # even a forced click writes nothing
    assert "not recorded" in panel.status
    assert archive.get(products["flats"][0]).ifu_state(1).flag == "unchecked"
    assert archive.validity_history(products["flats"][0]) == []
    with pytest.raises(NotFoundError):  # an outside user does not even see the products
        QCPanel(archive.as_user("eve"), category="MASTER_FLAT", night=NIGHT)


def test_panel_of_a_raw_frame_shows_the_ifus_ccd(archive, products, sim_frames):
    raw_id = products["biases"][0]
    panel = QCPanel(archive, raw_id)
    assert panel.ifus == [1]
    img = panel.select_ifu(1)
    with fits.open(sim_frames["BIAS"][0]) as hdul:
        np.testing.assert_array_equal(img.data, hdul["CHAN01"].data.astype(np.float32))
    assert img.meta["extension"] == "CHAN01"


def test_panel_of_a_table_product_shows_a_summary(archive, products):
    panel = QCPanel(archive, products["table"])
    summary = panel.select_ifu(3)
    assert isinstance(summary, str) and "TRACE" in summary and "width" in summary and "48 rows" in summary
    assert panel.image_viewer.layout.display == "none"


# ----------------------------------------------------------------- ArchiveBrowser
def test_browser_filters_and_pages_on_the_database(archive, products):
    browser = ArchiveBrowser(archive, page_size=2)
    assert browser.total == archive.count() and len(browser.rows) == 2
    rows = browser.search(category="MASTER_FLAT", order_by="id", descending=False)
    assert browser.total == 3 and [r.id for r in rows] == products["flats"][:2]
    assert [r.id for r in browser.next_page()] == products["flats"][2:]
    assert [r.id for r in browser.next_page()] == products["flats"][2:]  # stays on the last page
    assert "rows 3-3 of 3" in browser._pager.value and browser._next.disabled
    assert list(browser._source.data["id"]) == products["flats"][2:]
    assert [r.id for r in browser.search(category=None, ifu=2)] == [products["flats"][1]]
    assert browser.total == 1  # the raw biases hold IFU 1 only
    archive.set_validity(products["flats"][0], 1, is_valid=False, flag="bad", comment="saturated")
    assert [r.id for r in browser.search(ifu=None, category="MASTER_FLAT", valid=False)] == [products["flats"][0]]
    assert browser._source.data["validity"] == ["no"]
    browser.search(valid="valid")
    assert browser.total == 2
    # free text in OBJECT, case-insensitive; night range
    assert [r.id for r in browser.search(category=None, valid=None, object="ngc 13")] == [products["image"]]
    assert browser.search(object="M 83") == [] and browser.total == 0
    assert browser.search(object=None, date_from="2026-11-21") == []
    browser.search(date_from=None, date_to=NIGHT, category="BIAS")
    assert browser.total == len(products["biases"])
    with pytest.raises(TypeError, match="unknown filter"):
        browser.search(colour="red")


@pytest.mark.parametrize("name, viewer", [("cube", CubeViewer), ("image", ImageViewer), ("biases", ImageViewer),
                                          ("flats", ImageViewer), ("spectrum", SpectrumViewer)])
def test_open_picks_the_viewer_that_fits(archive, products, name, viewer):
    browser = ArchiveBrowser(archive)
    dataset_id = products[name][0] if isinstance(products[name], list) else products[name]
    opened = browser.open(dataset_id)
    assert isinstance(opened, viewer) and browser.viewer is opened and browser.selected_id == dataset_id
    if name == "flats":
        np.testing.assert_array_equal(opened.image.data, flat_data(1))
    if name == "biases":
        assert browser._ifu_choice.options == (1,) and browser._ifu_choice.layout.display is None
        assert opened.image.meta["extension"] == "CHAN01"


def test_open_a_table_and_a_row_click(archive, products):
    browser = ArchiveBrowser(archive)
    summary = browser.open(products["table"])
    assert viewer_kind(archive.path(products["table"])) == "table"
    assert "TRACE" in summary.value and "slice" in summary.value
    browser.search(category="MASTER_FLAT", order_by="id", descending=False)
    browser._source.selected.indices = [1]  # what a click on the second row sends
    assert browser.selected_id == products["flats"][1]
    np.testing.assert_array_equal(browser.viewer.image.data, flat_data(2))


def test_provenance_and_run_notebook(archive, products):
    archive.set_validity(products["biases"][1], is_valid=False, flag="bad", comment="light leak")
    browser = ArchiveBrowser(archive.as_user("alice"))
    flat = products["flats"][0]
    browser.open(flat)
    html = browser.provenance_html
    assert "muse_flat" in html and "combine=sigclip" in html and "muse/2.8.7" in html
    for k, b in enumerate(products["biases"]):
        assert f"#{b}" in html and f"raw bias {k} of the night" in html
    assert 'class="invalid"' in html and "light leak" in html  # the invalid input stands out
    assert browser.provenance.producer(flat).id == products["flat_run"]
    assert "<svg" in html and html.count(f'id="run_{products["flat_run"]}"') == 1  # drawn, once
    # the run chooser shows the flat run's notebook, as a click on it does
    assert [v for _, v in browser._run_choice.options] == [products["flat_run"]]
    browser._run_choice.value = products["flat_run"]
    assert "hello from muse_flat" in browser._notebook.value
    # two levels: the trace table's graph goes through the flat down to the biases
    browser.show_provenance(products["table"])
    assert "muse_wavecal" in browser.provenance_html and f"#{products['biases'][0]}" in browser.provenance_html
    assert not browser._notebook_button.disabled
    rendered = browser.show_notebook(flat)
    assert "hello from muse_flat" in rendered
    assert "<iframe" in browser._notebook.value and "srcdoc=" in browser._notebook.value
    browser.open(products["table"])  # run without notebook
    assert browser._notebook_button.disabled
    with pytest.raises(NotFoundError, match="no run notebook"):
        browser.show_notebook()


def test_a_private_product_is_invisible_to_another_user(archive, products, tmp_path):
    alice = archive.as_user("alice")
    run = alice.begin_run("muse_flat", {}, night=NIGHT, privilege=Privilege.PRIVATE)
    private = alice.finish_run(run, [(write_flat(tmp_path / "MASTER_FLAT-07.fits", 7), "MASTER_FLAT", 7)])[0]
    assert private.id in [r.id for r in ArchiveBrowser(alice, page_size=100).search(category="MASTER_FLAT")]
    bob_browser = ArchiveBrowser(archive.as_user("bob"), page_size=100)
    listed = [r.id for r in bob_browser.search(category="MASTER_FLAT")]
    assert private.id not in listed and listed == products["flats"] and bob_browser.total == 3
    with pytest.raises(NotFoundError):
        bob_browser.open(private.id)
    with pytest.raises(NotFoundError):
        bob_browser.show_provenance(private.id)
    bob_panel = QCPanel(archive.as_user("bob"), category="MASTER_FLAT", night=NIGHT)
    assert 7 not in bob_panel.ifus and bob_panel._tiles[7].disabled
    assert 7 in QCPanel(alice, category="MASTER_FLAT", night=NIGHT).ifus
    # the outside user sees none of it
    eve_browser = ArchiveBrowser(archive.as_user("eve"))
    assert eve_browser.total == 0 and eve_browser.rows == []
