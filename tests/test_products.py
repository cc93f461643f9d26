"""The products layer (:mod:`musewise.products`): cubes, white light, spectral axes, lines, IFUs.

Everything is driven on small files written by :mod:`musewise.products.testing`,
and where a former copy of a rule lived (ingest, recipes, QC, web quick-look,
reduction notebooks) the test goes through that caller too, so the one rule
is what users get everywhere.
"""

from __future__ import annotations

import tracemalloc
from datetime import datetime

import numpy as np
import pytest
from astropy.io import fits

from musewise.exceptions import InvalidArgumentError, InvalidFrameError
from musewise.ingest import inspect_file
from musewise.products import MuseCube, spectral_axis, white_light
from musewise.products import testing as pt
from musewise.products.ifu import (chan_extensions, chan_extname, ifu_of_extname, ifu_of_filename,
                                   ifu_of_header, ifu_of_product)
from musewise.products.lines import QC_SKY_LINES, SKY_LINES, sky_line_fluxes
from musewise.qc import measures
from musewise.recipes.base import describe_product

SHAPE = (300, 24, 20)  # n_lambda, ny, nx: small, but many chunks with a small chunk size


@pytest.fixture
def cube_path(tmp_path):
    return pt.write_synthetic_cube(tmp_path / "DATACUBE_FINAL.fits", SHAPE, seed=3).path


def _file_data(path):
    with fits.open(path) as hdul:
        return np.array(hdul["DATA"].data, dtype=np.float64)


# ------------------------------------------------------------------ white light
def test_white_light_is_the_nan_aware_mean_over_wavelength(cube_path):
    data = _file_data(cube_path)
    data[5:17, 3, 4] = np.nan                      # some planes of one spaxel are missing
    with np.errstate(invalid="ignore"):  # the NaN edge column: 0 / 0 stays NaN
        expected = np.nansum(data, axis=0) / np.isfinite(data).sum(axis=0)
    # chunks of 7 planes (not a divisor of 300): the last chunk is a partial one
    got = white_light(data, chunk_bytes=7 * SHAPE[1] * SHAPE[2] * 4)
    assert got.dtype == np.float32 and got.shape == SHAPE[1:]
    np.testing.assert_allclose(got, expected, rtol=1e-5, equal_nan=True)
    assert np.isnan(got[:, 0]).all() and np.isfinite(got[:, 1:]).all()

    cube = MuseCube.open(cube_path, find_image_fov=False)  # memory-mapped, sequential reads
    file_expected = np.nanmean(_file_data(cube_path)[:, :, 1:], axis=0)
    np.testing.assert_allclose(cube.mean_over_wavelength(chunk_bytes=4096)[:, 1:], file_expected,
                               rtol=1e-5)
    np.testing.assert_allclose(cube.white_light().data[:, 1:], file_expected, rtol=1e-5)
    assert cube.white_light_source == "computed"
    # a band of planes: the mean of just those
    np.testing.assert_allclose(cube.mean_over_wavelength(100, 130)[:, 1:],
                               np.nanmean(_file_data(cube_path)[100:130, :, 1:], axis=0), rtol=1e-5)


def test_chunked_white_light_never_holds_a_float64_cube(tmp_path):
    path = pt.write_synthetic_cube(tmp_path / "cube.fits", (400, 40, 40), seed=1).path
    cube_bytes = 400 * 40 * 40 * 4        # DATA as float32; a float64 copy would be twice this
    chunk = 64 * 1024
    cube = MuseCube.open(path, find_image_fov=False)
    tracemalloc.start()
    try:
        cube.mean_over_wavelength(chunk_bytes=chunk)
        _, peak_mapped = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        with fits.open(path, memmap=True) as hdul:   # the QC / quick-look / notebook path
            white_light(hdul["DATA"].data, chunk_bytes=chunk)
        _, peak_astropy = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_mapped < cube_bytes / 4, peak_mapped
    assert peak_astropy < cube_bytes / 4, peak_astropy


def test_quicklook_and_notebook_figures_use_the_same_white_light(cube_path):
    from musewise.dpu import notebook
    from musewise.products.quicklook import image_of

    expected = MuseCube.open(cube_path, find_image_fov=False).white_light().data
    shown, what = image_of(cube_path)
    assert "white light" in what
    np.testing.assert_array_equal(shown, expected)   # 24 x 20 is below MAX_SIDE: not binned
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    ax = notebook.plot_white_light(cube_path)
    np.testing.assert_array_equal(np.asarray(ax.images[0].get_array()), expected)


# ------------------------------------------------------------------ spectral axis
@pytest.mark.parametrize("style", ["CD", "PC", "CDELT"])
def test_cd_pc_and_cdelt_spectral_axes_give_the_same_wavelengths(tmp_path, style):
    written = pt.write_synthetic_cube(tmp_path / f"{style}.fits", (50, 6, 5), spectral=style)
    with fits.open(written.path) as hdul:
        header = hdul["DATA"].header
    assert (style == "PC") == ("PC3_3" in header) and (style == "CD") == ("CD3_3" in header)
    cube = MuseCube.open(written.path, find_image_fov=False)
    np.testing.assert_allclose(cube.wave, written.wavelength, rtol=0, atol=1e-9)
    assert cube.air
    # the QC reads the same axis (it used to read CD3_3 or CDELT3 only, missing PC3_3)
    m = measures.measure_datacube(pt.write_cube(tmp_path / f"q{style}.fits", datetime(2026, 11, 21, 2),
                                                spectral=style))
    assert m.values["wave.min"] == pytest.approx(5400.0)
    assert m.values["wave.max"] == pytest.approx(5400.0 + 1.25 * 879)


def test_spectral_axis_units_and_errors():
    h = fits.Header({"NAXIS": 1, "NAXIS1": 4, "CTYPE1": "WAVE", "CUNIT1": "nm", "CRVAL1": 500.0,
                     "CRPIX1": 2.0, "CDELT1": 0.125})
    wave, air = spectral_axis(h, 4, axis=1)
    np.testing.assert_allclose(wave, [4998.75, 5000.0, 5001.25, 5002.5])
    assert air is False
    # no CUNIT: Angstrom, as MUSE writes it (wcslib alone would read metres)
    bare = fits.Header({"NAXIS": 1, "NAXIS1": 2, "CTYPE1": "AWAV", "CRVAL1": 4750.0, "CRPIX1": 1.0,
                        "CD1_1": 1.25})
    np.testing.assert_allclose(spectral_axis(bare, 2, axis=1)[0], [4750.0, 4751.25])
    with pytest.raises(InvalidFrameError, match="no spectral WCS"):
        spectral_axis(fits.Header({"NAXIS": 1, "NAXIS1": 4, "CTYPE1": "AWAV"}), 4, axis=1)
    h["CUNIT1"] = "furlong"
    with pytest.raises(InvalidFrameError, match="unsupported spectral WCS"):
        spectral_axis(h, 4, axis=1)


# ------------------------------------------------------------------ which IFU
def test_ifu_of_extension_names_file_names_and_headers():
    assert ifu_of_extname("CHAN05") == 5 and ifu_of_extname("chan24") == 24
    assert ifu_of_extname("CHAN05.DATA") == 5             # a multi-IFU product's extension
    assert ifu_of_extname("CHAN25") is None and ifu_of_extname("CHAN00") is None
    assert ifu_of_extname("DATA") is None and ifu_of_extname(None) is None
    assert chan_extname(7) == "CHAN07"
    with pytest.raises(InvalidArgumentError, match="1-24"):
        chan_extname(0)
    assert chan_extensions(["", "CHAN02", "CHAN01", "CHAN01.DATA", "DQ"]) == {2: "CHAN02", 1: "CHAN01"}
    assert ifu_of_filename("MASTER_BIAS-07.fits") == 7
    assert ifu_of_filename("/x/PIXTABLE_OBJECT_0001-24.fits.fz") == 24
    assert ifu_of_filename("DATACUBE-00.fits") is None and ifu_of_filename("A-31.fits") is None
    assert ifu_of_filename("MASTER_BIAS.fits") is None
    assert ifu_of_header(fits.Header({"EXTNAME": "CHAN11"})) == 11
    assert ifu_of_header(fits.Header({"HIERARCH ESO DRS MUSE IFU": 3})) == 3
    assert ifu_of_header(fits.Header()) is None
    # a product: EXTNAME first, then its only CHANnn extension, the name, the keyword
    named = fits.Header({"EXTNAME": "CHAN02"})
    assert ifu_of_product("X-09.fits", named) == 2
    assert ifu_of_product("X-09.fits", fits.Header(), ["CHAN04"]) == 4
    assert ifu_of_product("X-09.fits", fits.Header(), ["CHAN04", "CHAN05"]) == 9
    assert ifu_of_product("X.fits", fits.Header({"HIERARCH ESO DRS MUSE IFU": 6})) == 6
    assert ifu_of_product("X.fits", fits.Header(), ["CHAN04", "CHAN05"]) is None


def test_ingest_and_recipes_agree_on_the_ifu_of_a_file(tmp_path):
    when = datetime(2026, 11, 20, 18)
    raw = pt.write_raw_bias(tmp_path / "MUSE.bias.fits", when, ifu=3)
    info = inspect_file(raw)
    assert info.ifus == (3,) and info.ifu == 3
    master = pt.write_master(tmp_path / "MASTER_BIAS-07.fits", "MASTER_BIAS", np.zeros((8, 8)), when)
    assert inspect_file(master).ifu == 7
    assert describe_product(master).ifu == 7
    other = pt.write_master(tmp_path / "MASTER_BIAS-31.fits", "MASTER_BIAS", np.zeros((8, 8)), when)
    assert inspect_file(other).ifu is None and describe_product(other).ifu is None


# ------------------------------------------------------------------ lines
def test_one_line_list_serves_the_simulator_the_qc_and_the_viewers():
    from musewise.inm.spectra import sky_spectrum

    waves = {line.wavelength for line in SKY_LINES}
    assert set(QC_SKY_LINES) <= waves and 5577.339 in QC_SKY_LINES
    assert all(line.name for line in SKY_LINES)
    wl, flux = sky_line_fluxes()
    assert len(wl) == len(flux) > 20 and (flux > 0).all()
    # the simulated sky peaks at the brightest line of the list
    lam = np.arange(5500.0, 5650.0, 0.05)
    assert abs(lam[np.argmax(sky_spectrum(lam, 1.0))] - wl[np.argmax(flux)]) < 0.1


def test_copy_with_headers_keeps_the_data_and_writes_valid_checksums(tmp_path, monkeypatch):
    import warnings

    from musewise.products import fitsio

    monkeypatch.setattr(fitsio, "COPY_CHUNK", 2880 * 3)  # many chunks: the sum carries across them
    src = pt.write_cube(tmp_path / "c.fits", datetime(2026, 11, 21, 2), size=8)

    def edit(index, header):
        header["TESTKEY"] = (index, "added by the copy")
        return header

    with open(tmp_path / "copy.fits", "wb") as f:
        fitsio.copy_with_headers(src, f, edit)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # astropy warns when a checksum does not verify
        with fits.open(tmp_path / "copy.fits", checksum=True) as h, fits.open(src) as g:
            assert [x.header["TESTKEY"] for x in h] == [0, 1, 2]
            assert all(h[n].data.tobytes() == g[n].data.tobytes() for n in ("DATA", "STAT"))
    data = bytearray((tmp_path / "copy.fits").read_bytes())
    data[-2880 * 2] ^= 1  # one bit of the STAT data
    (tmp_path / "bad.fits").write_bytes(bytes(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fits.open(tmp_path / "bad.fits", checksum=True).close()
    assert any("Datasum verification failed for HDU ('STAT'" in str(w.message) for w in caught)
