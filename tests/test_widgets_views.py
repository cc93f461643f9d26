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
from musewise.widgets.products import Spectrum
from musewise.widgets.sky import NoWCSError, pixel_to_sky
from musewise.widgets.skyregions import read_regions, region_spectrum, write_regions
from musewise.widgets.testdata import write_synthetic_cube

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
