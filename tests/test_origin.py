"""Spaxel -> exposures, IFUs, slices and calibrations (:mod:`musewise.origin`), and its widget.

The fast tests write a small pixel table in the DRS layout (one image extension
per column, ``origin`` in the DRS bit encoding, positions as the native spherical
coordinates (rad) of the TAN projection about the table's RA/DEC, which differ from
the cube's CRVAL, as muse_scipost writes them) with known
pixels in known spaxels, archive it with a cube and the runs of a two-IFU
reduction (MASTER_BIAS, MASTER_FLAT, the instrument model's GEOMETRY_TABLE ->
scibasic per IFU -> scipost), and check what :func:`spaxel_origin` reports. The
real-pipeline test lives with the reduction cascade in ``test_dpu.py``.
"""

from __future__ import annotations

from datetime import datetime

import nbformat
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from musewise.exceptions import NotFoundError, OutsideCubeError
from musewise.inm.layout import SKY_SLICE
from musewise.origin import PixelTable, decode_origin, pixels_in_spaxel, slices_in, spaxel_origin
from musewise.products.testing import write_master

NX, NY = 10, 8
CUBE_CRVAL = (150.1, -30.2)
#: The pixel table's reference point: 3" west and 2" north of the cube's CRVAL.
PT_REF = (150.1 - 3.0 / 3600 / np.cos(np.radians(-30.2)), -30.2 + 2.0 / 3600)
DATE = datetime(2026, 11, 21, 1, 30)


def cube_header():
    h = fits.Header()
    h.update({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CTYPE3": "AWAV", "CUNIT1": "deg", "CUNIT2": "deg",
              "CUNIT3": "Angstrom", "CRPIX1": 5.0, "CRPIX2": 4.0, "CRPIX3": 1.0, "CRVAL1": CUBE_CRVAL[0],
              "CRVAL2": CUBE_CRVAL[1], "CRVAL3": 5000.0, "CD1_1": -0.2 / 3600, "CD1_2": 0.0, "CD2_1": 0.0,
              "CD2_2": 0.2 / 3600, "CD3_3": 1.25, "CD1_3": 0.0, "CD2_3": 0.0, "CD3_1": 0.0, "CD3_2": 0.0})
    return h


def encode_origin(ifu, ccd_slice, ccd_y, xslice):
    """The DRS encoding (``muse_pixtable.h``): x in slice + 1 << 24, y + 1 << 11, IFU << 6, slice."""
    return ((np.asarray(xslice) + 1) << 24) | ((np.asarray(ccd_y) + 1) << 11) | (np.asarray(ifu) << 6) \
        | np.asarray(ccd_slice)


def drs_projected(ra, dec, ra0, dec0):
    """(xpos, ypos) as the DRS writes them (rad): native longitude phi and latitude - 90 deg
    of the TAN projection about (ra0, dec0), from the standard coordinates written out."""
    a, d, a0, d0 = (np.radians(v) for v in (ra, dec, ra0, dec0))
    cosc = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(a - a0)
    xi = np.cos(d) * np.sin(a - a0) / cosc  # towards the east
    eta = (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(a - a0)) / cosc
    # TAN: x = R sin(phi), y = -R cos(phi), R = cot(theta)
    return np.arctan2(xi, -eta) % (2 * np.pi), -np.arctan(np.hypot(xi, eta))


#: Which IFU and CCD slice saw each spaxel row: rows 0-3 IFU 1, rows 4-7 IFU 2; four
#: sky slices per IFU, one per row; the CCD slice is the one the instrument's SKY_SLICE puts there.
def truth(x, y):
    ifu = 1 if y < 4 else 2
    sky = y % 4 + 1
    return ifu, SKY_SLICE.index(sky) + 1, sky


def write_pixtable(path, n_per_spaxel=6, seed=3):
    """A PIXTABLE_REDUCED: ``n_per_spaxel`` pixels in every spaxel (jittered inside it, pixel k at
    4800 + 700 k Angstrom), except spaxel (2, 4), whose pixels are half from IFU 1 slice 'row 3'
    and half from IFU 2 (a seam)."""
    rng = np.random.default_rng(seed)
    w = WCS(cube_header(), naxis=2)
    rows = []
    for y in range(NY):
        for x in range(NX):
            for k in range(n_per_spaxel):
                px, py = x + rng.uniform(-0.45, 0.45), y + rng.uniform(-0.45, 0.45)
                ifu, ccd, _ = truth(x, y)
                if (x, y) == (2, 4) and k % 2:
                    ifu, ccd, _ = truth(x, 3)
                rows.append((px, py, ifu, ccd, 100 + 7 * k, 20 + x, 10.0 * (ifu == 1) + 1.0, 4800.0 + 700 * k))
    a = np.array(rows)
    ra, dec = w.wcs_pix2world(a[:, 0], a[:, 1], 0)
    xpos, ypos = drs_projected(ra, dec, *PT_REF)
    n = len(a)
    origin = encode_origin(a[:, 2].astype(np.int64), a[:, 3].astype(np.int64), a[:, 4].astype(np.int64),
                           a[:, 5].astype(np.int64))
    order = rng.permutation(n)  # the DRS sorts by wavelength, not by position
    h0 = fits.Header()
    h0["INSTRUME"] = "MUSE"
    h0["DATE-OBS"] = DATE.strftime("%Y-%m-%dT%H:%M:%S.000")
    h0["MJD-OBS"] = 61365.0625
    h0["RA"], h0["DEC"] = PT_REF
    h0["HIERARCH ESO PRO CATG"] = "PIXTABLE_REDUCED"
    h0["HIERARCH ESO INS MODE"] = "WFM-NOAO-N"
    h0["HIERARCH ESO DRS MUSE PIXTABLE WCS"] = "projected (intermediate)"
    cols = [("xpos", xpos, np.float32, "rad"), ("ypos", ypos, np.float32, "rad"),
            ("lambda", a[:, 7], np.float32, "Angstrom"),
            ("data", a[:, 6], np.float32, "count"), ("dq", np.zeros(n), np.int32, None),
            ("stat", np.ones(n), np.float32, "count**2"), ("origin", origin, np.int32, None)]
    hdus = [fits.PrimaryHDU(header=h0)]
    for name, v, dt, unit in cols:
        hdu = fits.ImageHDU(np.asarray(v)[order].astype(dt).reshape(n, 1), name=name.upper())
        if unit:
            hdu.header["BUNIT"] = unit
        hdus.append(hdu)
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


def write_cube(path):
    h0 = fits.Header()
    h0["INSTRUME"] = "MUSE"
    h0["DATE-OBS"] = DATE.strftime("%Y-%m-%dT%H:%M:%S.000")
    h0["MJD-OBS"] = 61365.0625
    h0["HIERARCH ESO PRO CATG"] = "DATACUBE_FINAL"
    h0["HIERARCH ESO INS MODE"] = "WFM-NOAO-N"
    h0["OBJECT"] = "SIM-FIELD"
    data = np.ones((20, NY, NX), np.float32)
    data[:, :4] = 11.0
    fits.HDUList([fits.PrimaryHDU(header=h0), fits.ImageHDU(data, header=cube_header(), name="DATA"),
                  fits.ImageHDU(np.ones_like(data), header=cube_header(), name="STAT")]).writeto(path)
    return path


@pytest.fixture
def reduced(archive, tmp_path):
    """The archive with a two-IFU reduction whose scipost run kept its pixel table."""
    return (archive,) + add_reduction(archive, tmp_path)


def add_reduction(archive, tmp_path):
    """Runs and products of a two-IFU reduction: (cube id, pixel table id, calibrations, geometry, extinction)."""
    from musewise.inm.static import write_static_calibrations

    static = write_static_calibrations(tmp_path / "static")
    geo = archive.ingest(static["GEOMETRY_TABLE"]).record.id
    ext = archive.ingest(static["EXTINCT_TABLE"]).record.id
    cal = {}
    basics = []
    for ifu in (1, 2):
        for cat, recipe in (("MASTER_BIAS", "muse_bias"), ("MASTER_FLAT", "muse_flat")):
            p = write_master(tmp_path / f"{cat}-{ifu:02d}.fits", cat, np.zeros((4, 4)), datetime(2026, 11, 20, 18),
                             EXTNAME=f"CHAN{ifu:02d}")
            run = archive.begin_run(recipe, {}, night="2026-11-20", ifu=ifu, privilege=2)
            (rec,) = archive.finish_run(run, [(str(p), cat, ifu)])
            cal[cat, ifu] = rec.id
        p = write_master(tmp_path / f"PIXTABLE_OBJECT-{ifu:02d}.fits", "PIXTABLE_OBJECT", np.zeros((4, 1)), DATE)
        run = archive.begin_run("muse_scibasic", {}, night="2026-11-20", ifu=ifu, privilege=2, inputs=[
            (cal["MASTER_BIAS", ifu], "MASTER_BIAS", f"IFU {ifu} valid"),
            (cal["MASTER_FLAT", ifu], "MASTER_FLAT", f"IFU {ifu} valid"),
            (geo, "GEOMETRY_TABLE", "static")])
        nb = tmp_path / f"muse_scibasic_run{run:06d}.ipynb"
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"scibasic IFU {ifu}")]), nb)
        (rec,) = archive.finish_run(run, [(str(p), "PIXTABLE_OBJECT", ifu)], notebook=nb)
        basics.append(rec.id)
    run = archive.begin_run("muse_scipost", {"save": "cube,individual"}, night="2026-11-20", privilege=2,
                            inputs=[(b, "PIXTABLE_OBJECT", "exposure") for b in basics]
                            + [(ext, "EXTINCT_TABLE", "static")])
    made = archive.finish_run(run, [(str(write_cube(tmp_path / "DATACUBE_FINAL.fits")), "DATACUBE_FINAL", None),
                                    (str(write_pixtable(tmp_path / "PIXTABLE_REDUCED_0001.fits")),
                                     "PIXTABLE_REDUCED", None)])
    cube, pixtable = made
    return cube.id, pixtable.id, cal, geo, ext


def test_origin_bits_decode_like_mpdaf(tmp_path):
    mpdaf = pytest.importorskip("mpdaf.drs")
    path = write_pixtable(tmp_path / "pt.fits")
    pt = mpdaf.PixTable(str(path))
    origin = pt.get_origin()
    ifu, sl = decode_origin(origin)
    np.testing.assert_array_equal(ifu, pt.origin2ifu(origin))
    np.testing.assert_array_equal(sl, pt.origin2slice(origin))
    assert set(ifu.tolist()) == {1, 2} and pt.projection == "projected"
    # the (IFU, slice) pairs present, as the pixel-table QC counts them
    assert slices_in(origin) == set(zip(pt.origin2ifu(origin).tolist(), pt.origin2slice(origin).tolist()))
    assert slices_in(origin[:0]) == set()


def test_pixels_in_a_spaxel_are_the_ones_written_there_whatever_the_chunks(tmp_path):
    path = write_pixtable(tmp_path / "pt.fits")
    with PixelTable(path) as table:
        assert table.nrows == NX * NY * 6 and table.projection == "projected"
        one = pixels_in_spaxel(table, cube_header(), 7, 1, chunk_rows=17)
        whole = pixels_in_spaxel(table, cube_header(), 7, 1)
        np.testing.assert_array_equal(np.sort(one["row"]), np.sort(whole["row"]))
        assert one["row"].size == 6
        ifu, ccd, _ = truth(7, 1)
        assert set(one["ifu"].tolist()) == {ifu} and set(one["slice"].tolist()) == {ccd}
        np.testing.assert_allclose(one["px"], 7, atol=0.46)
        np.testing.assert_allclose(one["py"], 1, atol=0.46)
        # every pixel lands in exactly one spaxel
        n = sum(pixels_in_spaxel(table, cube_header(), x, y)["row"].size for x in range(NX) for y in range(NY))
        assert n == table.nrows


def test_spaxel_origin_names_ifu_slices_and_the_calibrations_with_validity(reduced):
    arch, cube_id, pt_id, cal, geo, ext = reduced
    o = spaxel_origin(arch, cube_id, 6, 2)
    ifu, ccd, sky = truth(6, 2)
    assert o.npix == 6 and o.ifus == [ifu] and o.pixtable_ids == (pt_id,)
    (c,) = o.contributions
    assert (c.ifu, c.ccd_slice, c.sky_slice, c.npix, c.fraction) == (ifu, ccd, sky, 6, 1.0)
    assert c.ccd_rows == (100, 135)
    got = {(u.step, u.tag, u.dataset_id) for u in o.calibrations}
    assert got == {("muse_scibasic", "MASTER_BIAS", cal["MASTER_BIAS", 1]),
                   ("muse_scibasic", "MASTER_FLAT", cal["MASTER_FLAT", 1]),
                   ("muse_scibasic", "GEOMETRY_TABLE", geo), ("muse_scipost", "EXTINCT_TABLE", ext)}
    assert all(u.usable and u.validity_text == "valid" for u in o.calibrations)
    flat = next(u for u in o.calibrations if u.tag == "MASTER_FLAT")
    assert flat.certified and all(ok for _, _, ok in flat.certified)  # certified for the exposure
    assert flat.producer_run_id == arch.get(flat.dataset_id).run_id
    assert "IFU 01" in o.to_text() and f"CCD slice {ccd:2d}" in o.to_text()


def test_a_seam_spaxel_is_shared_and_an_invalid_flat_shows_for_its_ifu_only(reduced):
    arch, cube_id, _, cal, _, _ = reduced
    arch.set_validity(cal["MASTER_FLAT", 2], is_valid=False, comment="lamp flicker")
    o = spaxel_origin(arch, cube_id, 2, 4)
    assert o.npix == 6 and sorted(o.ifus) == [1, 2]
    assert o.ifu_fractions() == {1: 0.5, 2: 0.5}
    assert {(c.ifu, c.sky_slice) for c in o.contributions} == {(1, 4), (2, 1)}
    # The DATA of IFU 1 pixels is 11, of IFU 2 pixels 1: their shares of the flux.
    share = {c.ifu: c.flux_fraction for c in o.contributions}
    assert share[1] == pytest.approx(33 / 36) and share[2] == pytest.approx(3 / 36)
    bad = o.suspect
    assert [(u.ifu, u.tag) for u in bad] == [(2, "MASTER_FLAT")]
    assert bad[0].validity_text == "INVALID (lamp flicker)"
    assert all(u.usable for u in o.calibrations_of(1))


def test_a_wavelength_range_keeps_only_its_pixels(reduced):
    arch, cube_id, pt_id, _, _, _ = reduced
    whole = spaxel_origin(arch, cube_id, 2, 4)
    with PixelTable(arch.path(pt_id)) as table:
        found = pixels_in_spaxel(table, cube_header(), 2, 4, columns=("lambda",))
    blue = spaxel_origin(arch, cube_id, 2, 4, wave_range=(7000.0, 4000.0))  # either order
    red = spaxel_origin(arch, cube_id, 2, 4, wave_range=(7000.0, 9400.0))
    assert blue.wave_range == (4000.0, 7000.0) and "4000.0-7000.0 Angstrom" in blue.to_text()
    assert blue.npix == int((found["lambda"] <= 7000).sum()) == 4
    assert blue.npix + red.npix == whole.npix == 6
    for part in (blue, red):
        assert abs(sum(c.fraction for c in part.contributions) - 1.0) < 1e-12


def test_outside_the_cube_and_a_cube_without_pixel_table_are_clear_errors(reduced, tmp_path):
    arch, cube_id, _, _, _, _ = reduced
    with pytest.raises(OutsideCubeError, match="outside the 10 x 8"):
        spaxel_origin(arch, cube_id, 10, 3)
    run = arch.begin_run("muse_scipost", {"save": "cube"}, night="2026-11-20", privilege=2)
    (other,) = arch.finish_run(run, [(str(write_cube(tmp_path / "cube-only.fits")), "DATACUBE_FINAL", None)])
    with pytest.raises(NotFoundError, match="save='cube,individual'"):
        spaxel_origin(arch, other.id, 1, 1)


def test_origin_viewer_shows_the_table_of_a_clicked_spaxel(reduced, tmp_path):
    from musewise.widgets import SpaxelOriginViewer

    arch, cube_id, _, cal, _, _ = reduced
    viewer = SpaxelOriginViewer(cube_id, archive=arch, cache_dir=tmp_path / "cache", web_url="http://h/archive/")
    assert (viewer.x, viewer.y) == (5, 4)  # the centre
    viewer.image_viewer._on_tap(type("Tap", (), {"x": 3.2, "y": 1.9})())  # what a click sends
    assert viewer.origin is not None and (viewer.origin.x, viewer.origin.y) == (3, 2)
    html = viewer._table.value + viewer._calibrations.value
    assert "mw-origin-slices" in html and f'href="http://h/archive/datasets/{cal["MASTER_FLAT", 1]}"' in html
    labels = dict(viewer._run_choice.options)
    assert "muse_scibasic run" in " ".join(labels)  # the runs' notebooks to show
    html = viewer.show_notebook(labels[next(k for k in labels if k.startswith("muse_scibasic"))])
    assert "scibasic IFU 1" in html and "iframe" in viewer._notebook.value
    assert viewer.select_spaxel(30, 30) is None and "outside" in viewer.status
    viewer.wave_min, viewer.wave_max = 4000.0, 7000.0
    viewer._trace.click()  # traces the selected spaxel (3, 2) again, in that range
    assert viewer.origin.wave_range == (4000.0, 7000.0) and viewer.origin.npix < 6
    assert "λ 4000.0-7000.0" in viewer._table.value.replace("&lambda;", "λ")


@pytest.mark.browser
def test_origin_viewer_in_the_browser(tmp_path, page, output_dir):
    import time

    from musewise.archive import Archive
    from musewise.testing import voila_server, widget_notebook

    arch = Archive.open(root=str(tmp_path / "archive"), user="admin", project="consortium")
    cube_id, _, cal, _, _ = add_reduction(arch, tmp_path)
    arch.set_validity(cal["MASTER_FLAT", 2], is_valid=False, comment="lamp flicker")
    arch.close()
    widget_notebook(tmp_path / "origin.ipynb",
        "from musewise.archive import Archive\n"
        "from musewise.widgets import SpaxelOriginViewer\n"
        "arch = Archive.open(root='archive', user='admin', project='consortium')\n"
        f"SpaxelOriginViewer({cube_id}, archive=arch, cache_dir='cache', x=2, y=4)")
    with voila_server(tmp_path, "origin.ipynb") as (base, token):
        page.set_viewport_size({"width": 1400, "height": 1000})
        page.goto(f"{base}/?token={token}", wait_until="domcontentloaded", timeout=60_000)
        page.locator(".mw-origin-slices").wait_for(timeout=90_000)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and \
                page.locator(".musewise-bokeh-plot[data-musewise-rendered='1']").count() < 1:
            assert page.locator(".musewise-plot-error").count() == 0
            page.wait_for_timeout(300)
        # the seam spaxel (2, 4): half IFU 1, half IFU 2, whose flat is invalid (in red)
        slices = page.locator(".mw-origin-slices")
        assert "spaxel (2, 4)" in page.locator(".mw-origin").first.inner_text()
        assert slices.locator("tr").count() == 3
        bad = page.locator(".mw-origin-calibrations td.bad")
        assert bad.count() == 1 and "INVALID (lamp flicker)" in bad.inner_text()
        assert bad.evaluate("e => getComputedStyle(e).color") == "rgb(183, 28, 28)"
        page.wait_for_timeout(800)
        page.screenshot(path=str(output_dir / "spaxel_origin_seam.png"), full_page=True)
        # a click in the image traces another spaxel
        canvas = page.locator(".musewise-image-plot canvas").element_handles()
        box = max((b for b in (h.bounding_box() for h in canvas) if b), key=lambda b: b["width"])
        page.mouse.click(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.75)
        page.wait_for_function("() => !document.querySelector('.mw-origin').innerText.includes('spaxel (2, 4)')",
                               timeout=30_000)
        text = page.locator(".mw-origin").first.inner_text()
        assert "IFU 01" in text and page.locator(".mw-origin-calibrations td.bad").count() == 0
        page.wait_for_timeout(800)
        page.screenshot(path=str(output_dir / "spaxel_origin_viewer.png"), full_page=True)
