"""Fast tests of musewise.widgets on a tiny synthetic cube (200 planes x 20 x 20 spaxels).

Fixtures (module-level):

* ``cube_file`` - a :func:`write_synthetic_cube` cube with a continuum point
  source and an emission-line source, plus the true scene;
* ``cache_dir`` - a fresh white-light cache folder per test;
* ``raw`` - the DATA and STAT arrays read independently with astropy.
"""

from __future__ import annotations

import asyncio
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from bokeh import events

from musewise.exceptions import InvalidFrameError, MusewiseError, NotFoundError
from musewise.widgets import (CubeViewer, Image, ImageViewer, MuseCube, OutsideCubeError,
                              Spectrum, SpectrumViewer)
from musewise.widgets.image_viewer import scale_image
from musewise.products.lines import EMISSION_LINES, air_to_vacuum, vacuum_to_air
from musewise.products.testing import write_synthetic_cube

warnings.filterwarnings("ignore", message=".*multiple slashes.*")
SHAPE = (200, 20, 20)


@pytest.fixture(scope="module")
def cube_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cube")
    return write_synthetic_cube(folder / "DATACUBE_FINAL.fits", shape=SHAPE, seed=1)


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def raw(cube_file):
    with fits.open(cube_file.path) as hdul:
        return np.array(hdul["DATA"].data, np.float32), np.array(hdul["STAT"].data, np.float32)


@pytest.fixture
def viewer(cube_file, cache_dir, tmp_path):
    return CubeViewer(cube_file.path, cache_dir=cache_dir, export_dir=tmp_path, prefetch=False)


# ----------------------------------------------------------------- spectra
def test_click_gives_exactly_the_spaxel_spectrum_and_variance(viewer, raw, cube_file):
    data, stat = raw
    line_src = cube_file.sources[1]
    x, y = int(line_src.x), int(line_src.y)
    spec = viewer.select_spaxel(x, y)
    np.testing.assert_array_equal(spec.data, data[:, y, x])
    np.testing.assert_array_equal(spec.var, stat[:, y, x])
    np.testing.assert_allclose(spec.wave, cube_file.wavelength)
    assert (viewer.x, viewer.y) == (x, y)
    # what goes to the browser is that spectrum, with its 1-sigma band
    sent = viewer.spectrum_viewer._src.data
    np.testing.assert_array_equal(sent["flux"], data[:, y, x])
    np.testing.assert_allclose(sent["hi"] - sent["flux"], np.sqrt(stat[:, y, x]), rtol=1e-5)
    # the emission line is where the scene put it
    assert abs(spec.wave[np.argmax(spec.data)] - line_src.line_wavelength) <= 2 * cube_file.cd3_3


def test_click_on_the_bokeh_image_selects_that_spaxel(viewer, raw):
    fig = viewer.image_viewer.figure
    fig._trigger_event(events.Tap(fig, x=3.2, y=7.8))  # what the browser sends on a click
    assert (viewer.x, viewer.y) == (3, 8)
    np.testing.assert_array_equal(viewer.spectrum.data, raw[0][:, 8, 3])


def test_setting_the_traits_moves_the_selection(viewer, raw):
    viewer.x = 4
    np.testing.assert_array_equal(viewer.spectrum.data, raw[0][:, viewer.y, 4])


def test_spaxel_outside_the_cube_is_a_clear_error(viewer):
    with pytest.raises(OutsideCubeError, match="outside the cube"):
        viewer.select_spaxel(20, 3)
    with pytest.raises(IndexError):  # also a builtin, for generic callers
        viewer.select_spaxel(-1, 3)


# ------------------------------------------------------------------ planes
def test_plane_matches_the_file_and_snaps_to_the_nearest(viewer, raw, cube_file):
    k = 123
    lam = cube_file.wavelength[k] + 0.4 * cube_file.cd3_3
    img = viewer.set_wavelength(lam)
    np.testing.assert_array_equal(img.data, raw[0][k])
    np.testing.assert_array_equal(img.var, raw[1][k])
    assert viewer.wavelength == pytest.approx(cube_file.wavelength[k])
    assert viewer.image_mode == "plane"
    assert viewer.spectrum_viewer.wavelength_marker == pytest.approx(cube_file.wavelength[k])
    with pytest.raises(OutsideCubeError, match="outside the cube"):
        viewer.set_wavelength(9000.0)


def test_slider_shows_the_plane(viewer, raw, cube_file):
    viewer._wave.value = float(cube_file.wavelength[50])
    np.testing.assert_array_equal(viewer.image.data, raw[0][50])


# ------------------------------------------------------------- narrow band
def test_narrow_band_removes_the_continuum(viewer, cube_file):
    line_src, cont_src = cube_file.sources[1], cube_file.sources[0]
    width = 8.0
    img = viewer.narrow_band(line_src.line_wavelength, width)
    assert viewer.image_mode == "narrow band"
    sigma = np.sqrt(img.var)
    # The bright continuum source (40 units x ~7 planes x 1.25 A = 350 without
    # subtraction) leaves nothing but noise.
    xc, yc = int(cont_src.x), int(cont_src.y)
    assert abs(img.data[yc, xc]) < 5 * sigma[yc, xc]
    assert 5 * sigma[yc, xc] < 0.5 * cont_src.continuum * width
    # The line source gives the line flux inside the band.
    from math import erf, sqrt
    expected = line_src.line_flux * erf(width / 2 / (sqrt(2) * line_src.line_sigma))
    xl, yl = int(line_src.x), int(line_src.y)
    assert img.data[yl, xl] == pytest.approx(expected, abs=5 * float(sigma[yl, xl]))
    assert "erg" in img.unit


def test_narrow_band_at_a_redshifted_line(viewer, cube_file):
    src = cube_file.sources[1]
    hbeta = next(line for line in EMISSION_LINES if line.name == "H-beta")
    viewer.line = "H-beta"
    viewer.redshift = float(air_to_vacuum(src.line_wavelength) / hbeta.wavelength - 1)
    img = viewer.narrow_band()
    assert img.meta["wave"] == pytest.approx(src.line_wavelength, abs=1e-3)
    assert np.nanargmax(img.data) == int(src.y) * SHAPE[2] + int(src.x)


# ---------------------------------------------------------------- apertures
def test_aperture_spectrum_is_the_sum_over_the_disc(viewer, raw):
    data, stat = raw
    x, y, r = 9.0, 11.0, 3.0
    spec = viewer.aperture_spectrum(x, y, r)
    yy, xx = np.mgrid[0:20, 0:20]
    disc = (xx - x) ** 2 + (yy - y) ** 2 <= r**2
    np.testing.assert_allclose(spec.data, data[:, disc].sum(axis=1, dtype=np.float64), rtol=1e-5)
    np.testing.assert_allclose(spec.var, stat[:, disc].sum(axis=1, dtype=np.float64), rtol=1e-5)
    assert spec.meta["npix"] == disc.sum() == 29
    np.testing.assert_array_equal(viewer.aperture_spectrum(x, y, 0).data, data[:, 11, 9])


def test_click_with_a_radius_gives_the_aperture_spectrum(viewer):
    viewer.aperture_radius = 2
    spec = viewer.pick(10, 10)
    assert spec.meta["npix"] == 13
    assert viewer.image_viewer._apertures.data["r"] == [2.0]


# ------------------------------------------------------------- white light
def test_white_light_is_computed_once_then_read_from_the_cache(cube_file, cache_dir, raw,
                                                               monkeypatch):
    first = MuseCube.open(cube_file.path, cache_dir=cache_dir)
    white = first.white_light()
    assert first.white_light_source == "computed"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        np.testing.assert_allclose(white.data, np.nanmean(raw[0], axis=0), rtol=1e-5, atol=1e-6)
    assert len(list(cache_dir.glob("*.white.fits"))) == 1

    def no_pass(*a, **k):
        raise AssertionError("the cube was read again")

    monkeypatch.setattr(MuseCube, "mean_over_wavelength", no_pass)
    again = MuseCube.open(cube_file.path, cache_dir=cache_dir)
    assert again.white_light_ready
    viewer = CubeViewer(again, prefetch=False)
    assert viewer.image_mode == "white light"
    assert again.white_light_source == "cache"
    np.testing.assert_array_equal(viewer.image.data, white.data)


def test_changed_cube_is_not_served_a_stale_white_light(tmp_path, cache_dir):
    path = tmp_path / "c.fits"
    write_synthetic_cube(path, shape=(30, 8, 8), seed=2)
    MuseCube.open(path, cache_dir=cache_dir).white_light()
    write_synthetic_cube(path, shape=(30, 8, 8), seed=3)
    os.utime(path, ns=(1, 1))  # new mtime even on a coarse clock
    cube = MuseCube.open(path, cache_dir=cache_dir)
    assert not cube.white_light_ready
    cube.white_light()
    assert cube.white_light_source == "computed"


def test_image_fov_next_to_the_cube_is_used(tmp_path, cache_dir):
    path = tmp_path / "DATACUBE_FINAL.fits"
    write_synthetic_cube(path, shape=(30, 8, 10), seed=2)
    fov = np.arange(80, dtype=np.float32).reshape(8, 10)
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(fov, name="DATA")]).writeto(
        tmp_path / "IMAGE_FOV_0001.fits")
    cube = MuseCube.open(path, cache_dir=cache_dir)
    np.testing.assert_array_equal(cube.white_light().data, fov)
    assert cube.white_light_source == "IMAGE_FOV"
    assert not cache_dir.exists()  # nothing computed


def test_background_white_light_in_a_running_kernel_loop(cube_file, cache_dir):
    async def main():
        viewer = CubeViewer(cube_file.path, cache_dir=cache_dir, prefetch=False)
        assert viewer.white_light_future is not None
        assert "being computed" in viewer.image_viewer.title  # a plane meanwhile
        await viewer.white_light_future
        await asyncio.sleep(0)  # let the done-callback run on the loop
        return viewer

    viewer = asyncio.run(main())
    assert viewer.image.label == "white light"
    assert viewer.cube.white_light_source == "computed"


# ------------------------------------------------------------------- export
def test_exported_spectrum_and_image_round_trip(viewer, tmp_path):
    spec = viewer.select_spaxel(6, 12)
    path = viewer.export_spectrum()
    assert path.parent == tmp_path and path.name == "DATACUBE_FINAL_spec_x6_y12.fits"
    back = Spectrum.read(path)
    np.testing.assert_array_equal(back.data, spec.data)
    np.testing.assert_array_equal(back.var, spec.var)
    np.testing.assert_allclose(back.wave, spec.wave, rtol=1e-12)
    assert back.unit == spec.unit and back.meta["x"] == 6 and back.meta["y"] == 12

    img = viewer.narrow_band(4898.63, 5.0)
    ipath = viewer.export_image(tmp_path / "nb.fits")
    back_img = Image.read(ipath)
    np.testing.assert_array_equal(back_img.data, img.data)
    np.testing.assert_array_equal(back_img.var, img.var)
    assert back_img.wcs_header["CTYPE1"] == "RA---TAN"
    with fits.open(ipath) as hdul:
        assert hdul["DATA"].header["BUNIT"] == img.unit
        assert hdul[0].header["MUSEWISE WAVE"] == pytest.approx(4898.63)


# ------------------------------------------------------------------ bad input
def test_a_2d_image_is_not_a_cube(tmp_path):
    path = tmp_path / "image.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((5, 5), np.float32),
                                                   name="DATA")]).writeto(path)
    with pytest.raises(InvalidFrameError, match="not a cube.*ImageViewer"):
        MuseCube.open(path)
    # ... but ImageViewer shows it
    assert ImageViewer(path).image.shape == (5, 5)


def test_a_cube_without_stat_is_refused(tmp_path):
    path = tmp_path / "nostat.fits"
    hdu = fits.ImageHDU(np.zeros((4, 3, 3), np.float32), name="DATA")
    hdu.header["CRVAL3"], hdu.header["CD3_3"] = 4750.0, 1.25
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    with pytest.raises(InvalidFrameError, match="no STAT"):
        CubeViewer(path)


def test_corrupt_truncated_and_missing_files(tmp_path, cube_file):
    junk = tmp_path / "junk.fits"
    junk.write_bytes(np.random.default_rng(0).bytes(10000))
    with pytest.raises(InvalidFrameError, match="not a readable FITS"):
        MuseCube.open(junk)
    cut = tmp_path / "cut.fits"
    cut.write_bytes(cube_file.path.read_bytes()[:400_000])
    with pytest.raises(InvalidFrameError, match="truncated|not a readable"):
        MuseCube.open(cut)
    with pytest.raises(NotFoundError, match="no such file"):
        MuseCube.open(tmp_path / "absent.fits")
    with pytest.raises(MusewiseError):
        CubeViewer(junk)


def test_no_spectral_wcs_is_refused(tmp_path):
    path = tmp_path / "nowcs.fits"
    cube = np.zeros((4, 3, 3), np.float32)
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(cube, name="DATA"),
                  fits.ImageHDU(cube, name="STAT")]).writeto(path)
    with pytest.raises(InvalidFrameError, match="spectral WCS"):
        MuseCube.open(path)


# ---------------------------------------------------------------- sources
class _FakeArchive:
    """Stands in for musewise.archive.Archive: ``get``, ``path`` and ``file`` of datasets not made by a run."""

    def __init__(self, paths):
        self.paths = paths

    def get(self, dataset_id):
        self.path(dataset_id)
        return _Record(dataset_id, "DATACUBE_FINAL")

    def path(self, dataset_id):
        if dataset_id not in self.paths:
            raise NotFoundError(f"no dataset {dataset_id}")
        return str(self.paths[dataset_id])

    def file(self, dataset_id):
        return Path(self.path(dataset_id))


class _Record:
    def __init__(self, id, category, is_valid=True):
        self.id, self.category, self.is_valid = id, category, is_valid
        self.run_id = self.exposure = None


def test_archive_ids_and_records_open_the_dataset_file(cube_file, cache_dir, raw):
    arch = _FakeArchive({42: cube_file.path})
    by_id = CubeViewer(42, archive=arch, cache_dir=cache_dir, prefetch=False)
    np.testing.assert_array_equal(by_id.select_spaxel(2, 3).data, raw[0][:, 3, 2])
    by_record = CubeViewer(_Record(42, "DATACUBE_FINAL", is_valid=False), archive=arch,
                           cache_dir=cache_dir, prefetch=False)
    assert "dataset 42" in by_record._title.value and "invalid" in by_record._title.value
    with pytest.raises(NotFoundError):
        CubeViewer(7, archive=arch)


def test_mpdaf_cubes_are_accepted(cube_file, cache_dir, raw):
    mpdaf_obj = pytest.importorskip("mpdaf.obj")
    lazy = mpdaf_obj.Cube(str(cube_file.path))
    cube = MuseCube.open(lazy, cache_dir=cache_dir)
    assert isinstance(cube._data, np.memmap)  # not loaded: mapped from its file
    np.testing.assert_array_equal(cube.spectrum(5, 5).data, raw[0][:, 5, 5])
    sub = mpdaf_obj.Cube(str(cube_file.path))[10:60, :, :]  # loaded, in memory
    viewer = CubeViewer(sub, cache_dir=cache_dir, prefetch=False)
    np.testing.assert_allclose(viewer.cube.wave, cube_file.wavelength[10:60])
    np.testing.assert_array_equal(viewer.select_spaxel(5, 5).data, raw[0][10:60, 5, 5])


# ---------------------------------------------------------- sub-viewers
def test_emission_line_markers_follow_the_redshift():
    wave = np.linspace(4750, 9350, 100)
    sv = SpectrumViewer((wave, np.ones(100), np.ones(100)), redshift=0.0)
    assert sv.line_positions()["H-alpha"] == pytest.approx(6562.80, abs=0.01)  # in air
    sv.redshift = 0.5
    pos = sv.line_positions()
    assert pos["[OIII] 5007"] == pytest.approx(vacuum_to_air(5008.24 * 1.5), abs=1e-6)
    assert "H-alpha" not in pos  # redshifted out of the MUSE range
    with pytest.raises(Exception, match="redshift must be > -1"):
        sv.redshift = -1.5


def test_colour_scale_clips_at_percentiles_and_stretches():
    data = np.arange(10000, dtype=np.float32).reshape(100, 100)
    data[0, 0] = np.nan
    lin, vmin, vmax = scale_image(data, 1, 99, "linear")
    assert vmin == pytest.approx(np.nanpercentile(data, 1))
    assert np.nanmin(lin) == 0 and np.nanmax(lin) == 1 and np.isnan(lin[0, 0])
    asinh, _, _ = scale_image(data, 1, 99, "asinh")
    mid = lin == lin[50, 50]
    assert asinh[mid][0] > lin[mid][0]  # asinh brightens faint levels
    with pytest.raises(ValueError, match="unknown stretch"):
        scale_image(data, 1, 99, "gamma")


def test_large_images_are_binned_for_display_only(tmp_path):
    big = np.random.default_rng(0).normal(size=(4240, 4224)).astype(np.float32)  # one IFU CCD
    path = tmp_path / "MASTER_BIAS.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(big, name="DATA")]).writeto(path)
    iv = ImageViewer(path)
    assert iv.display_array().shape == (848, 845)  # 5x5 blocks: <= 1024 pixels a side
    clicked = []
    iv.on_click(lambda x, y: clicked.append((x, y)))
    iv.figure._trigger_event(events.Tap(iv.figure, x=4000.2, y=3999.6))
    assert clicked == [(4000, 4000)]  # full-resolution pixel
    assert iv.export_image(tmp_path / "out.fits").exists()
    assert Image.read(tmp_path / "out.fits").shape == big.shape


def test_follow_mouse_requests_mouse_moves_only_when_on(viewer, raw):
    fig = viewer.image_viewer.figure
    assert "mousemove" not in fig.subscribed_events  # no event flood by default
    viewer.follow_mouse = True
    assert "mousemove" in fig.subscribed_events
    fig._trigger_event(events.MouseMove(fig, x=2.0, y=15.0))
    assert (viewer.x, viewer.y) == (2, 15)
    viewer.follow_mouse = False
    fig._trigger_event(events.MouseMove(fig, x=7.0, y=7.0))
    assert (viewer.x, viewer.y) == (2, 15)


def test_image_viewer_reads_one_ifu_of_a_multi_ifu_frame_and_archive_ids(tmp_path):
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    path = tmp_path / "MASTER_FLAT.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, name="CHAN01.DATA"),
                  fits.ImageHDU(data + 100, name="CHAN02.DATA"),
                  fits.ImageHDU(data * 0 + 9, name="CHAN02.STAT")]).writeto(path)
    img = Image.read(path, ext="CHAN02.DATA")
    np.testing.assert_array_equal(img.data, data + 100)
    np.testing.assert_array_equal(img.var, np.full((3, 4), 9, np.float32))
    iv = ImageViewer(5, archive=_FakeArchive({5: path}))
    np.testing.assert_array_equal(iv.image.data, data)  # first 2-D extension


# ----------------------------------------------------------- bokeh plots in the page
def test_a_view_built_later_gets_the_current_plot_and_bokehjs_of_this_bokeh():
    """What a view built after a page reload asks for: BokehJS (this bokeh's, inline, no
    MathJax) and the plot as it is now, not as it was when the widget was made."""
    import json

    import bokeh
    from bokeh.models import ColumnDataSource
    from bokeh.plotting import figure

    from musewise.widgets.bokehjs import BokehPlot, bokehjs_sources

    src = ColumnDataSource({"x": [0.0], "y": [1.0]})
    fig = figure()
    fig.line("x", "y", source=src)
    plot = BokehPlot(fig)
    src.data = {"x": [0.0, 1.0, 2.0], "y": [5.0, 6.0, 7.25]}  # e.g. a spaxel clicked meanwhile
    sent = []
    plot.send = lambda content, buffers=None: sent.append(content)  # the comm to the views
    plot._on_view_msg(plot, {"event": "musewise-request", "what": "state", "token": "t1"}, [])
    plot._on_view_msg(plot, {"event": "musewise-request", "what": "bokehjs", "token": "t2"}, [])
    state, js = sent
    assert state["token"] == "t1" and js["token"] == "t2"
    assert "7.25" in state["bundle"] and json.loads(state["bundle"])["render_items"]
    assert js["sources"] == list(bokehjs_sources())
    joined = "".join(js["sources"])
    assert "BEGIN bokeh-tables" in joined and "BEGIN bokeh-mathjax" not in joined
    assert plot.bokeh_version == bokeh.__version__
    plot.close()
    plot.close()  # closing twice is harmless


def test_a_change_made_in_a_view_runs_each_python_callback_once():
    """A tap in the browser arrives as one ModelChanged: each on_change callback runs once
    (twice opened two QC panels for one tap in QCTrends) and nothing is echoed to the views."""
    from bokeh.models import ColumnDataSource
    from bokeh.plotting import figure

    from musewise.widgets.bokehjs import BokehPlot

    src = ColumnDataSource({"x": [1.0, 2.0], "y": [1.0, 2.0]})
    fig = figure()
    fig.scatter("x", "y", source=src)
    calls = []
    src.selected.on_change("indices", lambda _attr, _old, new: calls.append(list(new)))
    plot = BokehPlot(fig)
    sent = []
    plot.send = lambda content, buffers=None: sent.append(content)
    plot._on_view_msg(plot, {"event": "jsevent", "kind": "ModelChanged", "model": {"id": src.selected.id},
                             "attr": "indices", "new": [1]}, [])
    assert calls == [[1]] and list(src.selected.indices) == [1]
    assert sent == []  # the view that made the change has it already
    plot.close()
