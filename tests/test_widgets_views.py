"""The two analysis views, on numbers: region spectra and cube comparison.

Plain functions first (``region_spectrum``, ``read_regions``/``write_regions``,
``compare_spectra``), on seeded cubes whose sums are known in closed form, then the
widgets (``RegionViewer``, ``CompareViewer``) driven through their public API, then
both widgets in Voila + Chromium with screenshots in ``test-output/``.

Fixtures:

* ``ramp`` - an in-memory MuseCube, 50 planes x 12 x 16 spaxels, DATA = 1000 k + 10 y + x
  (plane k, row y, column x), STAT = 1 + x, MUSE TAN WCS (0.2"/spaxel); spaxel (0, 5) NaN.
"""

from __future__ import annotations

import re
import time
import warnings

import nbformat
import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from regions import (CirclePixelRegion, CircleSkyRegion, PixCoord, PolygonPixelRegion,
                     PolygonSkyRegion)

from musewise.exceptions import InvalidFrameError, NotFoundError
from musewise.widgets import MuseCube, OutsideCubeError
from musewise.widgets.compare import compare_spectra, difference_spectrum, linked_spaxel
from musewise.products import Spectrum
from musewise.widgets.sky import NoWCSError, pixel_to_sky
from musewise.widgets.skyregions import read_regions, region_spectrum, write_regions
from musewise.products.testing import write_synthetic_cube

warnings.filterwarnings("ignore", message=".*multiple slashes.*")
NL, NY, NX = 50, 12, 16


def wcs_header(crpix=(8.0, 6.0), crval=(53.1625, -27.7914)):
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CUNIT1"], h["CUNIT2"] = "deg", "deg"
    h["CRPIX1"], h["CRPIX2"] = crpix
    h["CRVAL1"], h["CRVAL2"] = crval
    h["CD1_1"], h["CD1_2"], h["CD2_1"], h["CD2_2"] = -0.2 / 3600, 0.0, 0.0, 0.2 / 3600
    return h


def ramp_arrays():
    k, y, x = np.mgrid[0:NL, 0:NY, 0:NX]
    data = (1000.0 * k + 10.0 * y + x).astype(np.float32)
    stat = (1.0 + x + 0.0 * k).astype(np.float32)
    data[:, 5, 0] = np.nan
    stat[:, 5, 0] = np.nan
    return data, stat


@pytest.fixture
def ramp():
    data, stat = ramp_arrays()
    wave = 4750.0 + 1.25 * np.arange(NL)
    return MuseCube(data, stat, wave, unit="1e-20 erg/s/cm2/A", wcs_header=wcs_header())


def expected_sum(spaxels):
    """DATA and STAT summed over (x, y) spaxels, per plane, from the formula (NaN left out)."""
    spaxels = [(x, y) for x, y in spaxels if (x, y) != (0, 5)]
    k = np.arange(NL)
    data = sum(1000.0 * k + 10.0 * y + x for x, y in spaxels)
    var = sum(np.full(NL, 1.0 + x) for x, y in spaxels)
    return data, var, len(spaxels)


# ----------------------------------------------------------- region_spectrum
def test_circle_region_in_pixels_sums_the_spaxels_and_their_variance(ramp):
    # radius 2.2: no spaxel centre on the edge (regions counts centres strictly inside)
    spec = region_spectrum(ramp, CirclePixelRegion(PixCoord(6, 4), 2.2))
    inside = [(x, y) for y in range(NY) for x in range(NX) if (x - 6) ** 2 + (y - 4) ** 2 < 2.2**2]
    data, var, n = expected_sum(inside)
    assert n == 13 and spec.meta["npix"] == 13
    np.testing.assert_allclose(spec.data, data, rtol=1e-6)
    np.testing.assert_allclose(spec.var, var, rtol=1e-6)
    assert "circle r=2.2 spaxels" in spec.label


def test_the_same_circle_on_the_sky_gives_the_same_spectrum(ramp):
    centre = pixel_to_sky(ramp.wcs_header, 6, 4)
    sky = region_spectrum(ramp, CircleSkyRegion(centre, 0.44 * u.arcsec))  # 2.2 spaxels of 0.2"
    pix = region_spectrum(ramp, CirclePixelRegion(PixCoord(6, 4), 2.2))
    np.testing.assert_allclose(sky.data, pix.data)
    np.testing.assert_allclose(sky.var, pix.var)
    assert sky.meta["npix"] == 13 and 'r=0.44"' in sky.label


def test_polygon_region_with_a_nan_spaxel(ramp):
    # a square around spaxels x 0-2, y 4-6: 9 spaxels, one of them (0, 5) NaN
    square = PolygonPixelRegion(PixCoord(x=[-0.5, 2.5, 2.5, -0.5], y=[3.5, 3.5, 6.5, 6.5]))
    spec = region_spectrum(ramp, square)
    data, var, n = expected_sum([(x, y) for x in range(3) for y in range(4, 7)])
    assert n == 8 and spec.meta["npix"] == 9  # 9 selected, the NaN one left out of the sums
    np.testing.assert_allclose(spec.data, data, rtol=1e-6)
    np.testing.assert_allclose(spec.var, var, rtol=1e-6)


def test_region_partly_outside_is_clipped_and_fully_outside_is_an_error(ramp):
    spec = region_spectrum(ramp, CirclePixelRegion(PixCoord(15, 11), 1.2))
    data, _, n = expected_sum([(15, 11), (14, 11), (15, 10)])
    assert spec.meta["npix"] == n == 3
    np.testing.assert_allclose(spec.data, data, rtol=1e-6)
    with pytest.raises(OutsideCubeError, match="outside the image"):
        region_spectrum(ramp, CirclePixelRegion(PixCoord(60, 60), 2.0))
    no_wcs = MuseCube(*ramp_arrays(), ramp.wave)
    with pytest.raises(NoWCSError):
        region_spectrum(no_wcs, CircleSkyRegion(SkyCoord(1, 2, unit="deg"), 1 * u.arcsec))


def test_region_files_round_trip_in_sky_coordinates(ramp, tmp_path):
    # corners between spaxel centres: no centre on an edge, whatever the file's precision
    corners = pixel_to_sky(ramp.wcs_header, [1.5, 9.5, 9.5, 1.5], [0.5, 0.5, 7.5, 7.5])
    regs = [CircleSkyRegion(pixel_to_sky(ramp.wcs_header, 10, 8), 0.5 * u.arcsec),
            PolygonSkyRegion(corners)]
    for name in ("regions.reg", "regions.crtf"):
        path = write_regions(regs, tmp_path / name)
        back = read_regions(path)
        assert [type(r) for r in back] == [CircleSkyRegion, PolygonSkyRegion]
        for r0, r1 in zip(regs, back):
            s0, s1 = region_spectrum(ramp, r0), region_spectrum(ramp, r1)
            assert s0.meta["npix"] == s1.meta["npix"] in (21, 8 * 7)
            np.testing.assert_allclose(s0.data, s1.data)
    assert "circle" in (tmp_path / "regions.reg").read_text()
    with pytest.raises(NotFoundError):
        read_regions(tmp_path / "missing.reg")
    (tmp_path / "bad.reg").write_text("this is no region file (\n")
    with pytest.raises(InvalidFrameError, match="bad.reg"):
        read_regions(tmp_path / "bad.reg")


# ----------------------------------------------------------- compare_spectra
def sky_cleaned(ramp, shift=(0, 0), plane_offset=0):
    """Cube B: A minus a known sky spectrum 3 + 0.5 k, on a grid shifted by ``shift`` spaxels
    (same sky: CRPIX moves with the data) and starting ``plane_offset`` planes later."""
    data, stat = ramp_arrays()
    sky = 3.0 + 0.5 * np.arange(NL)
    b = data - sky[:, None, None]
    dx, dy = shift
    b = np.roll(b, (dy, dx), axis=(1, 2))
    sb = np.roll(stat * 2.0, (dy, dx), axis=(1, 2))
    b, sb = b[plane_offset:], sb[plane_offset:]
    return MuseCube(b.astype(np.float32), sb.astype(np.float32), ramp.wave[plane_offset:],
                    unit=ramp.unit, wcs_header=wcs_header(crpix=(8.0 + dx, 6.0 + dy))), sky


def test_comparison_of_a_cube_before_and_after_sky_cleaning(ramp):
    b, sky = sky_cleaned(ramp)
    c = compare_spectra(ramp, b, 7, 3)
    assert c.xy_a == c.xy_b == (7, 3)
    np.testing.assert_allclose(c.difference.data, sky, rtol=1e-5)
    np.testing.assert_allclose(c.difference.var, 3 * (1.0 + 7), rtol=1e-6)  # var_a + 2 var_a
    np.testing.assert_allclose(c.a.data - c.b.data, c.difference.data)


def test_linked_spaxel_follows_the_sky_on_a_shifted_grid(ramp):
    b, sky = sky_cleaned(ramp, shift=(3, -2))
    assert linked_spaxel(ramp, b, 7, 3) == (10, 1)
    c = compare_spectra(ramp, b, 7, 3)
    np.testing.assert_allclose(c.difference.data, sky, rtol=1e-5)  # the same sky spaxel
    with pytest.raises(OutsideCubeError, match="outside the second"):
        compare_spectra(ramp, b, 14, 3)  # x 17 in B: off its grid


def test_difference_on_a_shorter_wavelength_grid(ramp):
    b, sky = sky_cleaned(ramp, plane_offset=5)
    c = compare_spectra(ramp, b, 4, 4)
    assert np.isnan(c.difference.data[:5]).all() and np.isnan(c.difference.var[:5]).all()
    np.testing.assert_allclose(c.difference.data[5:], sky[5:], rtol=1e-5)
    # half a plane off: B interpolated, variance weights squared (0.25 + 0.25 of var_b)
    half = Spectrum(ramp.wave + 0.625, np.zeros(NL, np.float32), np.full(NL, 4.0, np.float32))
    a = Spectrum(ramp.wave, np.ones(NL, np.float32), np.ones(NL, np.float32))
    d = difference_spectrum(a, half)
    np.testing.assert_allclose(d.var[1:], 1.0 + 0.5 * 4.0)
    assert np.isnan(d.data[0])


def test_aperture_comparison_uses_the_same_sky_radius(ramp):
    b, sky = sky_cleaned(ramp, shift=(1, 1))
    c = compare_spectra(ramp, b, 6, 6, radius=1.5)
    assert c.a.meta["npix"] == c.b.meta["npix"] == 9
    np.testing.assert_allclose(c.difference.data, 9 * sky, rtol=1e-5)


# ----------------------------------------------------------------- widgets
@pytest.fixture(scope="module")
def two_cubes(tmp_path_factory):
    """A synthetic cube and its 'sky-cleaned' copy (DATA minus 0.5 everywhere) on disk."""
    folder = tmp_path_factory.mktemp("pair")
    a = write_synthetic_cube(folder / "DATACUBE_A.fits", shape=(80, 20, 24), seed=11).path
    with fits.open(a) as hdul:
        hdul["DATA"].data = hdul["DATA"].data - np.float32(0.5)
        hdul.writeto(folder / "DATACUBE_B.fits")
    return a, folder / "DATACUBE_B.fits"


def test_region_viewer_shows_the_spectrum_of_a_click_a_polygon_and_a_file(two_cubes, tmp_path):
    from musewise.widgets import RegionViewer

    a, _ = two_cubes
    viewer = RegionViewer(a, cache_dir=tmp_path / "cache", radius_arcsec=0.5)
    spec = viewer.click(7, 12)  # what a click in circle mode does
    want = region_spectrum(viewer.cube, CircleSkyRegion(pixel_to_sky(viewer.cube.wcs_header, 7, 12),
                                                        0.5 * u.arcsec))
    np.testing.assert_allclose(spec.data, want.data)
    np.testing.assert_allclose(viewer.spectrum_viewer.spectrum.var, want.var)
    assert spec.meta["npix"] == 21 and "21 spaxels" in viewer._what.value
    outline = viewer.image_viewer._regions.data
    assert len(outline["xs"]) == 1 and min(outline["xs"][0]) == pytest.approx(7 - 2.5, abs=0.05)
    # a polygon drawn in the browser arrives as the drawing source's data
    viewer.shape = "polygon"
    assert viewer.image_viewer.figure.toolbar.active_multi is viewer.image_viewer._poly_tool
    viewer.image_viewer._drawn.data = {"xs": [[2.5, 5.5, 5.5, 2.5]], "ys": [[2.5, 2.5, 4.5, 4.5]]}
    assert viewer.spectrum.meta["npix"] == 6
    with fits.open(a) as hdul:
        box = hdul["DATA"].data[:, 3:5, 3:6].astype(np.float64)
    np.testing.assert_allclose(viewer.spectrum.data, box.sum(axis=(1, 2)), rtol=1e-5)
    path = viewer.save_region(tmp_path / "drawn.reg")
    assert "polygon" in path.read_text() and "icrs" in path.read_text()
    other = RegionViewer(a, cache_dir=tmp_path / "cache")
    other.load_regions(path)
    np.testing.assert_allclose(other.spectrum.data, viewer.spectrum.data)
    other._path.value = str(tmp_path / "missing.reg")
    other._load.click()
    assert "no such region file" in other.status


def test_compare_viewer_links_spaxels_and_shows_the_difference(two_cubes, tmp_path):
    from musewise.widgets import CompareViewer

    a, b = two_cubes
    viewer = CompareViewer(a, b, labels=("before", "after"), cache_dir=tmp_path / "cache")
    assert viewer.comparison.xy_a == viewer.comparison.xy_b == (12, 10)  # the centre
    c = viewer.select_spaxel(5, 8)
    np.testing.assert_allclose(c.difference.data, 0.5, atol=1e-5)
    np.testing.assert_allclose(viewer.difference_viewer.spectrum.var, 2 * c.a.var, rtol=1e-6)
    assert viewer.spectrum_viewer._overlays.data["label"] == [c.b.label]
    assert "before spaxel (5, 8) ↔ after spaxel (5, 8)" in viewer._selection.value
    viewer.select_spaxel_b(3, 4)
    assert viewer.comparison.xy_a == (3, 4)
    with pytest.raises(OutsideCubeError):
        viewer.select_spaxel(40, 4)
    assert "outside" in viewer.status


@pytest.mark.browser
def test_region_and_compare_viewers_in_the_browser(two_cubes, tmp_path, page, output_dir):
    import shutil

    from musewise.testing import voila_server

    a, b = two_cubes
    for f in (a, b):
        shutil.copy(f, tmp_path / f.name)
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "from regions import CirclePixelRegion, PixCoord\n"
            "from musewise.widgets import CompareViewer, RegionViewer\n"
            "RegionViewer('DATACUBE_A.fits', CirclePixelRegion(PixCoord(16.8, 6), 2.5),"
            " cache_dir='cache')"),
        nbformat.v4.new_code_cell(
            "CompareViewer('DATACUBE_A.fits', 'DATACUBE_B.fits', labels=('before', 'after'),"
            " cache_dir='cache')"),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "views.ipynb")
    with voila_server(tmp_path, "views.ipynb") as (base, token):
        page.set_viewport_size({"width": 1300, "height": 1900})
        page.goto(f"{base}/?token={token}", wait_until="domcontentloaded", timeout=60_000)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and \
                page.locator(".musewise-bokeh-plot[data-musewise-rendered='1']").count() < 6:
            assert page.locator(".musewise-plot-error").count() == 0
            page.wait_for_timeout(300)
        assert page.locator(".musewise-bokeh-plot[data-musewise-rendered='1']").count() == 6
        assert "circle r=2.5 spaxels" in page.locator(".musewise-region").inner_text()
        # click the left image of the comparison: both images get the linked spaxel
        selection = page.locator(".musewise-selection")
        assert "(12, 10)" in selection.inner_text()
        images = page.locator(".musewise-image-plot").nth(1)
        box = [h.bounding_box() for h in images.locator("canvas").element_handles()]
        box = max((bb for bb in box if bb), key=lambda bb: bb["width"])
        page.mouse.click(box["x"] + 0.35 * box["width"], box["y"] + 0.5 * box["height"])
        page.wait_for_function("() => !document.querySelector('.musewise-selection')"
                               ".innerText.includes('(12, 10)')", timeout=20_000)
        m = re.search(r"before spaxel \((\d+), (\d+)\) ↔ after spaxel \((\d+), (\d+)\)",
                      selection.inner_text())
        assert m and m.group(1) == m.group(3) and int(m.group(1)) < 12
        # a click on the region viewer's image (circle mode) makes a 1" circle there
        region_img = page.locator(".musewise-image-plot").nth(0)
        boxes = [h.bounding_box() for h in region_img.locator("canvas").element_handles()]
        rb = max((bb for bb in boxes if bb), key=lambda bb: bb["width"])
        page.mouse.click(rb["x"] + 0.4 * rb["width"], rb["y"] + 0.4 * rb["height"])
        page.locator(".musewise-region", has_text='circle r=1"').wait_for(timeout=20_000)
        page.wait_for_timeout(800)
        page.screenshot(path=str(output_dir / "region_and_compare_viewers.png"), full_page=True)
