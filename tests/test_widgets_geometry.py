"""Sky geometry of the viewers: square spaxels at any shape, RA/Dec readout, north/east, sky marks.

* ``square_frame`` and the ImageViewer's plot keep one spaxel as wide as it is tall
  on screen for 302 x 24 (one IFU), 20 x 20 and 4000 x 4000 images;
* ``north_east`` follows the WCS for the MUSE orientation (north up, east left) and a
  field rotated by 30 degrees;
* the browser's RA/Dec readout code (``READOUT_JS``, run by node) agrees with astropy
  to the 10 mas it shows, also close to the pole;
* in Voila with Chromium, hovering a 302 x 24 cube shows square spaxels and the
  RA/Dec of the spaxel under the cursor (screenshot in ``test-output/``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import warnings

import nbformat
import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits

from musewise.widgets import CubeViewer
from musewise.widgets.image_viewer import READOUT_JS, ImageViewer
from musewise.products import Image
from musewise.widgets.sky import (NoWCSError, format_radec, north_east, pixel_to_sky,
                                  square_frame)
from musewise.products.testing import write_synthetic_cube

warnings.filterwarnings("ignore", message=".*multiple slashes.*")


def tan_header(rot_deg=0.0, crval=(53.1625, -27.7914), scale_arcsec=0.2, crpix=(151.0, 12.0)):
    """A TAN WCS rotated by ``rot_deg`` (east of north), MUSE handedness (east left)."""
    t = np.deg2rad(rot_deg)
    s = scale_arcsec / 3600.0
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CUNIT1"], h["CUNIT2"] = "deg", "deg"
    h["CRPIX1"], h["CRPIX2"] = crpix
    h["CRVAL1"], h["CRVAL2"] = crval
    h["CD1_1"], h["CD1_2"] = -s * np.cos(t), s * np.sin(t)
    h["CD2_1"], h["CD2_2"] = s * np.sin(t), s * np.cos(t)
    return h


@pytest.mark.parametrize("nx, ny", [(302, 24), (24, 302), (20, 20), (4000, 4000), (1, 1)])
def test_square_frame_has_square_pixels_and_shows_the_whole_image(nx, ny):
    g = square_frame(nx, ny, 520, 420)
    sx = g.frame_width / (g.x_range[1] - g.x_range[0])
    sy = g.frame_height / (g.y_range[1] - g.y_range[0])
    assert sx == pytest.approx(sy, rel=1e-9)
    assert g.x_range[0] <= -0.5 + 1e-9 and g.x_range[1] >= nx - 0.5 - 1e-9
    assert g.y_range[0] <= -0.5 + 1e-9 and g.y_range[1] >= ny - 0.5 - 1e-9
    assert 180 <= g.frame_height <= 420 and 240 <= g.frame_width <= 520
    # one side is filled exactly: no more padding than needed
    assert g.x_range == pytest.approx((-0.5, nx - 0.5)) or g.y_range == pytest.approx((-0.5, ny - 0.5))


def test_image_viewer_of_a_one_ifu_cube_draws_square_spaxels(tmp_path):
    cube = write_synthetic_cube(tmp_path / "DATACUBE_FINAL.fits", shape=(30, 24, 302), seed=4)
    viewer = CubeViewer(cube.path, cache_dir=tmp_path / "cache", prefetch=False, background=False)
    fig = viewer.image_viewer.figure
    per_x = fig.frame_width / (fig.x_range.end - fig.x_range.start)
    per_y = fig.frame_height / (fig.y_range.end - fig.y_range.start)
    assert per_x == pytest.approx(per_y)
    assert (fig.x_range.start, fig.x_range.end) == pytest.approx((-0.5, 301.5))
    assert fig.frame_width == 520 and fig.frame_height < 420  # a strip, not a square
    # reset returns to the same square-pixel view
    assert (fig.y_range.reset_start, fig.y_range.reset_end) == (fig.y_range.start, fig.y_range.end)


def test_north_and_east_follow_the_wcs():
    north, east = north_east(tan_header(0.0), 151, 12)
    np.testing.assert_allclose(north, [0, 1], atol=1e-6)   # MUSE: north up
    np.testing.assert_allclose(east, [-1, 0], atol=1e-6)   # east left
    north, east = north_east(tan_header(30.0), 151, 12)
    # the sky rotated by 30 degrees east of north: north points up and to the left... as the
    # CD matrix says: pixel offsets of a 1" step north solve CD @ d = (0, 1")
    cd = np.array([[-np.cos(np.pi / 6), np.sin(np.pi / 6)], [np.sin(np.pi / 6), np.cos(np.pi / 6)]])
    expect_n = np.linalg.solve(cd, [0, 1])
    expect_e = np.linalg.solve(cd, [1, 0])
    np.testing.assert_allclose(north, expect_n / np.hypot(*expect_n), atol=1e-5)
    np.testing.assert_allclose(east, expect_e / np.hypot(*expect_e), atol=1e-5)
    with pytest.raises(NoWCSError, match="no celestial WCS"):
        north_east(None, 0, 0)


def test_image_viewer_draws_the_compass_and_sky_marks():
    img = Image(np.zeros((24, 302), np.float32), wcs_header=tan_header(30.0))
    viewer = ImageViewer(img)
    c = viewer.compass()
    np.testing.assert_allclose(c["N"], north_east(tan_header(30.0), 150.5, 11.5)[0], atol=1e-3)
    coords = pixel_to_sky(img.wcs_header, [10.0, 200.0], [3.0, 20.0])
    pix = viewer.mark_sky(coords, labels=["a", "b"])
    np.testing.assert_allclose(pix, [[10, 3], [200, 20]], atol=1e-6)
    assert viewer._sky_marks.data["label"] == ["a", "b"]
    viewer.mark_sky(coords[0], "one")
    assert viewer._sky_marks.data["label"] == ["one"]
    viewer.mark_sky([])
    assert viewer._sky_marks.data["x"] == []
    no_wcs = ImageViewer(np.zeros((5, 5), np.float32))
    assert no_wcs.compass() is None
    with pytest.raises(NoWCSError):
        no_wcs.mark_sky(coords)


def _node_readout(geo, points):
    script = READOUT_JS + f"\nconst geo = {json.dumps(geo)};\n" + \
        f"console.log(JSON.stringify({json.dumps(points)}.map(p => musewiseReadout(p[0], p[1], geo))));"
    out = subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


RADEC = re.compile(r"spaxel \((\d+), (\d+)\)\s+RA (\S+) Dec (\S+)")


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.parametrize("rot, crval", [(0.0, (53.1625, -27.7914)), (30.0, (150.1, 2.2)),
                                        (-75.0, (10.0, 89.9))])
def test_browser_readout_gives_the_radec_of_astropy(rot, crval):
    from musewise.widgets.sky import tan_parameters

    header = tan_header(rot, crval, crpix=(160.5, 150.0))
    geo = {"nx": 320, "ny": 300, "wcs": tan_parameters(header), "wave": ""}
    points = [(0.2, 0.4), (319.4, 299.2), (160.0, 150.0), (17.6, 250.3)]
    texts = _node_readout(geo, points)
    for (x, y), text in zip(points, texts):
        m = RADEC.fullmatch(text)
        assert m, text
        xi, yi = int(m.group(1)), int(m.group(2))
        assert (xi, yi) == (int(np.floor(x + 0.5)), int(np.floor(y + 0.5)))
        got = SkyCoord(m.group(3), m.group(4), unit=(u.hourangle, u.deg))
        want = pixel_to_sky(header, xi, yi)
        # shown to 0.001 s and 0.01 arcsec: equal to astropy within that rounding
        assert got.separation(want).to(u.mas).value < 10.0, (text, format_radec(want))
    assert _node_readout(geo, [(-3.0, 5.0)]) == ["outside the image"]
    assert _node_readout({"nx": 5, "ny": 5, "wcs": None, "wave": "5006.84 Å"}, [(1, 2)]) == \
        ["spaxel (1, 2)  λ 5006.84 Å"]


@pytest.mark.browser
def test_one_ifu_cube_in_the_browser_has_square_spaxels_and_radec(tmp_path, page, output_dir):
    from musewise.testing import voila_server

    cube = write_synthetic_cube(tmp_path / "DATACUBE_FINAL.fits", shape=(60, 24, 302), seed=5)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "from musewise.widgets import CubeViewer\n"
        "viewer = CubeViewer('DATACUBE_FINAL.fits', cache_dir='cache', background=False)\n"
        "viewer")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "viewer.ipynb")
    with voila_server(tmp_path, "viewer.ipynb") as (base, token):
        page.goto(f"{base}/?token={token}", wait_until="domcontentloaded", timeout=60_000)
        page.locator(".musewise-image-plot[data-musewise-rendered='1']").wait_for(timeout=90_000)
        page.wait_for_timeout(1000)
        frame = None
        for handle in page.locator(".musewise-image-plot canvas").element_handles():
            box = handle.bounding_box()
            if box and box["width"] > 300:
                frame = box
        assert frame is not None
        readout = page.locator(".musewise-readout div").first
        deadline, text = time.monotonic() + 30, ""
        while time.monotonic() < deadline and "RA" not in text:
            page.mouse.move(frame["x"] + frame["width"] * 0.3, frame["y"] + frame["height"] * 0.55)
            page.mouse.move(frame["x"] + frame["width"] * 0.31, frame["y"] + frame["height"] * 0.55)
            page.wait_for_timeout(300)
            text = readout.inner_text()
        m = RADEC.fullmatch(text.strip())
        assert m, text
        xi, yi = int(m.group(1)), int(m.group(2))
        want = pixel_to_sky(cube_header(cube.path), xi, yi)
        got = SkyCoord(m.group(3), m.group(4), unit=(u.hourangle, u.deg))
        assert got.separation(want).to(u.mas).value < 10.0
        page.wait_for_timeout(500)
        page.screenshot(path=str(output_dir / "one_ifu_cube_square_spaxels.png"))


def cube_header(path):
    with fits.open(path) as hdul:
        return hdul["DATA"].header


def test_cube_viewer_marks_and_regions_in_sky_coordinates_round_trip(tmp_path):
    from regions import CircleSkyRegion, PointSkyRegion

    from musewise.widgets.skyregions import read_regions, write_regions

    cube = write_synthetic_cube(tmp_path / "DATACUBE_FINAL.fits", shape=(20, 24, 40), seed=6)
    viewer = CubeViewer(cube.path, cache_dir=tmp_path / "cache", prefetch=False, background=False)
    header = cube_header(cube.path)
    viewer.select_spaxel(10, 5)
    want = pixel_to_sky(header, 10, 5)
    assert viewer.sky_position().separation(want).to(u.mas).value < 1e-3
    assert format_radec(want) in viewer._selection.value
    # a catalogue of two sources, marked by RA/Dec
    cat = pixel_to_sky(header, [12.0, 28.0], [14.4, 7.2])
    np.testing.assert_allclose(viewer.mark_sky(cat, ["src 1", "src 2"]), [[12, 14.4], [28, 7.2]],
                               atol=1e-6)
    # a region file made elsewhere (e.g. DS9): a circle and a point
    reg = write_regions([CircleSkyRegion(pixel_to_sky(header, 28.0, 7.0), 0.6 * u.arcsec),
                         PointSkyRegion(pixel_to_sky(header, 5.0, 20.0), meta={"text": "star"})],
                        tmp_path / "ds9.reg")
    viewer.show_regions(reg)
    outlines = viewer.image_viewer._regions.data
    assert len(outlines["xs"]) == 1
    assert np.mean(outlines["xs"][0]) == pytest.approx(28.0, abs=0.05)
    assert viewer.image_viewer._sky_marks.data["label"] == ["star"]
    out = viewer.save_regions(tmp_path / "out.reg")
    back = read_regions(out)
    kinds = sorted(type(r).__name__ for r in back)
    assert kinds == ["CircleSkyRegion", "PointSkyRegion", "PointSkyRegion"]
    sel = [r for r in back if r.meta.get("text") == "spaxel (10, 5)"]
    assert sel and sel[0].center.separation(want).to(u.mas).value < 10
    # the same with the buttons; a missing file is told, not raised
    viewer._regions_path.value = str(tmp_path / "buttons.reg")
    viewer._save_regions.click()
    assert (tmp_path / "buttons.reg").exists() and "buttons.reg" in viewer.status
    viewer._regions_path.value = str(tmp_path / "missing.reg")
    viewer._load_regions.click()
    assert "no such region file" in viewer.status
