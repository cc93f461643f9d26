"""Combining a field's exposures: exp_align -> exp_combine, and the CubeList path (combine_cubes).

These tests combine small synthetic cubes (``musewise.products.testing.write_cube``). Both
paths on the real pipeline's reduction of a 2-night field, and issue 10's science checks on
the combined cubes, are in ``test_field.py`` (session fixture ``field``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
from astropy.io import fits

from musewise.exceptions import InvalidArgumentError
from musewise.products.testing import write_cube
from musewise.recipes.cubecombine import clip_mean, combination_summary, combine_cube_files

NIGHT = "2026-11-20"


def _cubes(tmp_path, n=4):
    t0 = datetime(2026, 11, 21, 1, 30)
    return [write_cube(tmp_path / f"cube{k}.fits", t0 + timedelta(minutes=16 * k), seed=k) for k in range(n)]


def test_clip_mean_rejects_an_outlier_and_propagates_the_variance():
    vals = np.array([[1.0, 2.0], [1.1, 2.0], [0.9, np.nan], [50.0, 2.0]], np.float32)[:, :, None]
    var = np.full_like(vals, 0.04)
    mean, v, n = clip_mean(vals, var, nclip=5.0)   # noise 0.2: 50 is 245 sigma off
    assert mean[0, 0] == pytest.approx(1.0, abs=1e-6)          # 50 (a cosmic ray) left out
    assert n[:, 0].tolist() == [3, 3]                           # the NaN is no value
    assert v[0, 0] == pytest.approx(0.04 * 3 / 9)


@pytest.mark.parametrize("engine", ["planes", "mpdaf"])
def test_combined_cube_is_the_clipped_mean_on_the_same_grid(tmp_path, engine):
    if engine == "mpdaf":
        pytest.importorskip("mpdaf")
    files = _cubes(tmp_path)
    if engine == "planes":  # mpdaf clips with the scatter of the values: with 4 it rejects nothing
        with fits.open(files[2], mode="update") as h:  # a cosmic ray in one exposure
            h["DATA"].data[100, 5, 7] += 1e4
    out = combine_cube_files(files, tmp_path / "comb.fits", block=7, engine=engine, nmax=1)
    with fits.open(out) as h:
        data, stat = h["DATA"].data, h["STAT"].data
        assert data.dtype.kind == "f" and data.dtype.itemsize == 4
        assert h["EXPMAP"].data[100, 5, 7] == (3 if engine == "planes" else 4)
        assert h[0].header["ESO PRO CATG"] == "DATACUBE_FINAL" and h[0].header["EXPTIME"] == 2400.0
        assert h["DATA"].header["CRVAL3"] == fits.getval(files[0], "CRVAL3", "DATA")
        ins = np.stack([fits.getdata(f, "DATA") for f in files])
        clean = ins.copy()
        if engine == "planes":  # what is 5 sigma (noise 0.1) off the median is left out, the cosmic ray too
            clean[np.abs(ins - np.median(ins, axis=0)) > 0.5] = np.nan
            assert np.isnan(clean[2, 100, 5, 7]) and np.isnan(clean).sum() < 20
        if engine == "planes":
            np.testing.assert_allclose(data, np.nanmean(clean, axis=0), rtol=2e-5, atol=2e-6)
        else:  # mpdaf's own clipping (about the mean) leaves out a value in a few voxels
            close = np.isclose(data, np.nanmean(clean, axis=0), rtol=2e-5, atol=2e-6)
            assert close.mean() > 0.9999 and np.nanmax(abs(data - np.nanmean(clean, axis=0))) < 0.3
        # four exposures of variance 0.01: the mean's is 0.0025 (three where one was clipped)
        assert np.median(stat) == pytest.approx(0.0025, rel=1e-4)
        if engine == "planes":
            assert stat[100, 5, 7] == pytest.approx(0.01 / 3, rel=1e-4)
    s = combination_summary(out)
    assert s["nexp"] == 4
    assert s["rejected_fraction"] < 1e-4 and (engine == "mpdaf" or s["rejected_fraction"] > 0)


def test_combined_cube_header_says_the_combination_s_seeing_not_the_first_exposure_s(tmp_path):
    """The combined cube's DIMM seeing is the mean of its exposures' (the cube QC compares its PSF
    with it), and the pipeline's QC numbers of the first exposure are not carried over."""
    files = _cubes(tmp_path, 2)
    for f, seeing in zip(files, (0.62, 1.04)):
        with fits.open(f, mode="update") as h:
            h[0].header["HIERARCH ESO TEL AMBI FWHM START"] = seeing
            h[0].header["HIERARCH ESO TEL AMBI FWHM END"] = seeing
            h[0].header["HIERARCH ESO QC SCIPOST FWHM1 X"] = seeing
    with fits.open(combine_cube_files(files, tmp_path / "comb.fits")) as h:
        p0 = h[0].header
        assert p0["ESO TEL AMBI FWHM START"] == pytest.approx(0.83) == p0["ESO TEL AMBI FWHM END"]
        assert not [k for k in p0 if k.startswith("ESO QC")]


def test_rejected_fraction_counts_clipped_values_not_coverage_gaps(tmp_path):
    """A dithered exposure that does not cover an edge is no rejection: only clipped values count."""
    files = _cubes(tmp_path)

    def rejected(name):
        out = combine_cube_files(files, tmp_path / name, block=50)
        return combination_summary(out), fits.getval(out, "MUSEWISE COMBINE NREJECT")

    _, base = rejected("base.fits")  # the noise's own 5-sigma values
    with fits.open(files[1], mode="update") as h:  # outside exposure 2's field: no data
        h["DATA"].data[:, :3, :] = np.nan
    s, gaps = rejected("gaps.fits")
    assert s["short_fraction"] > 0.1 and gaps <= base and s["rejected_fraction"] < 1e-4
    with fits.open(files[2], mode="update") as h:  # a cosmic ray: one more rejected value
        h["DATA"].data[100, 5, 7] += 1e4
    s, cosmic = rejected("cr.fits")
    n_valid = int(np.isfinite(np.stack([fits.getdata(f, "DATA") for f in files])).sum())
    assert fits.getval(tmp_path / "cr.fits", "MUSEWISE COMBINE NVALID") == n_valid
    assert cosmic == gaps + 1 and s["rejected_fraction"] == pytest.approx(cosmic / n_valid)


def test_cubes_on_other_grids_are_refused(tmp_path):
    files = _cubes(tmp_path, 2)
    with fits.open(files[1], mode="update") as h:
        h["DATA"].header["CRPIX1"] += 3
    with pytest.raises(InvalidArgumentError, match="not on the grid of cube 1: CRPIX1"):
        combine_cube_files(files, tmp_path / "comb.fits")
    with pytest.raises(InvalidArgumentError, match="at least 2 cubes"):
        combine_cube_files(files[:1], tmp_path / "comb.fits")


def test_output_wcs_holds_the_grid_of_a_cube_and_nothing_that_dates_it(tmp_path):
    from musewise.products.outputwcs import write_output_wcs
    from musewise.recipes.cubecombine import check_same_grid

    (cube,) = _cubes(tmp_path, 1)
    out = write_output_wcs(cube, tmp_path / "OUTPUT_WCS.fits")
    with fits.open(out) as h:
        assert h[0].header["ESO PRO CATG"] == "OUTPUT_WCS"
        # no date, no recipe: ingest archives it as a static table, certified for the range given
        assert not {"MJD-OBS", "DATE-OBS", "ESO PRO REC1 ID"} & set(h[0].header)
        assert h["DATA"].data.dtype == np.int8 and h["DATA"].data.shape == fits.getdata(cube, "DATA").shape
        check_same_grid([fits.getheader(cube, "DATA"), h["DATA"].header])



def test_output_wcs_of_another_field_of_the_night_is_never_chosen(archive, tmp_path):
    """Two fields observed in one night, each with its grid certified for the night: each
    field's runs get its own OUTPUT_WCS; a third field gets none, and is told why."""
    from musewise.dpu.selection import choose_calibration
    from musewise.exceptions import CalibrationNotFoundError
    from musewise.products.outputwcs import write_output_wcs

    t = datetime(2026, 11, 21, 1, 30)
    grids = {}
    for k, name in enumerate(("FIELD-A", "FIELD-B")):
        cube = write_cube(tmp_path / f"cube-{name}.fits", t, seed=k, object=name)
        path = write_output_wcs(cube, tmp_path / f"OUTPUT_WCS-{name}.fits")
        rec = archive.ingest(path, valid_from=61365.0, valid_to=61366.0).record
        assert rec.object == name
        grids[name] = rec.id
    mjd = 61365.56
    for name, gid in grids.items():
        choices: list = []
        got = choose_calibration(archive, "OUTPUT_WCS", ifu=None, mjd=mjd, mode=None, night=NIGHT,
                                 choices=choices, field=name)
        assert got.dataset_id == gid and got.reason.endswith(f"; of field {name}")
        other = next(i for n, i in grids.items() if n != name)
        assert [lo[2] for lo in choices[0]["losers"] if lo[0] == other] == [
            f"of field {'FIELD-A' if name == 'FIELD-B' else 'FIELD-B'!r}, not {name!r}"]
    # muse_exp_align names its products after the images: 'FIELD-A (white)' is field FIELD-A's
    got = choose_calibration(archive, "OUTPUT_WCS", ifu=None, mjd=mjd, mode=None, night=NIGHT,
                             field="FIELD-A (white)")
    assert got.dataset_id == grids["FIELD-A"]
    with pytest.raises(CalibrationNotFoundError, match="not 'FIELD-C'"):
        choose_calibration(archive, "OUTPUT_WCS", ifu=None, mjd=mjd, mode=None, night=NIGHT, field="FIELD-C")
