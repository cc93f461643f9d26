"""QC of the products late in the cascade: LSF, twilight cube, standard response, cubes against seeing and offsets.

Small files with known answers (Gaussian LSFs of a chosen width, a twilight cube with
a dead corner, responses shifted by a chosen number of magnitudes); the QC notebook
of a response is run on the ``archive`` fixture, against the previous nights'.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from musewise.qc import QC_TYPES, QCThresholds, run_qc
from musewise.qc import measures, measures_calib
from musewise.qc import testing as qct
from musewise.products import testing as pt


def write_lsf(path, fwhm_per_slice, n_slices=48):
    """An LSF_PROFILE as muse_lsf writes it (one 48-plane image: slice x wavelength x offset) of
    Gaussians of the given FWHM (Angstrom) per slice."""
    dlam = -7.5 + 0.1 * np.arange(150)  # Angstrom, as the pipeline samples it
    lam = 4650.0 + 160.0 * np.arange(30)
    planes = []
    for k in range(n_slices):
        s = fwhm_per_slice(k + 1) / 2.3548
        planes.append(np.tile(np.exp(-0.5 * (dlam / s) ** 2), (lam.size, 1)))
    h = fits.Header({"CRVAL1": dlam[0], "CRPIX1": 1.0, "CD1_1": 0.1, "CRVAL2": lam[0], "CRPIX2": 1.0,
                     "CD2_2": 160.0})
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.array(planes, np.float32), header=h,
                                                   name="LSF_PROFILE")]).writeto(path, overwrite=True)
    return path


def write_response(path, offset_mag=0.0, night="2026-11-20"):
    lam = np.arange(4600.0, 9400.0, 4.0)
    resp = 20.0 + 1e-8 * (lam - 7000.0) ** 2 + offset_mag
    t = Table({"lambda": lam, "response": resp, "resperr": np.full(lam.size, 0.01)})
    h = fits.Header({"INSTRUME": "MUSE", "HIERARCH ESO PRO CATG": "STD_RESPONSE",
                     "HIERARCH ESO INS MODE": "WFM-NOAO-N",
                     "DATE-OBS": f"{night}T23:00:00.000"})
    fits.HDUList([fits.PrimaryHDU(header=h), fits.table_to_hdu(t)]).writeto(path, overwrite=True)
    return path


# Every product category has a QC type: tests/test_qc_cover.py.


def test_lsf_width_per_slice_and_a_broken_slice(tmp_path):
    good = measures_calib.measure_lsf(write_lsf(tmp_path / "good.fits", lambda k: 2.6))
    assert good.values["n_slices"] == 48 and good.values["missing_slices"] == 0
    assert good.values["fwhm.median"] == pytest.approx(2.6, abs=0.05)
    assert good.values["fwhm.spread"] < 0.05
    assert QCThresholds().check("lsf", good.values).flag == "good"
    broad = measures_calib.measure_lsf(write_lsf(tmp_path / "broad.fits", lambda k: 5.0 if k == 7 else 2.6))
    assert broad.values["fwhm.max"] == pytest.approx(5.0, abs=0.1)
    v = QCThresholds().check("lsf", broad.values)
    assert v.flag == "bad" and "fwhm.spread" in v.summary()


def test_twilight_cube_flatness_and_a_dead_corner(tmp_path):
    rng = np.random.default_rng(1)
    data = 1.0 + rng.normal(0, 0.01, (60, 40, 40))
    path = tmp_path / "tw.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data.astype(np.float32), name="DATA")]).writeto(path)
    m = measures_calib.measure_twilight_cube(path)
    assert m.values["illum.rms"] < 0.01 and m.values["illum.minrel"] > 0.98
    assert QCThresholds().check("twilight", m.values).flag == "good"
    data[:, :8, :8] = 0.3  # 4 % of the field dead
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data.astype(np.float32), name="DATA")]).writeto(path, overwrite=True)
    m = measures_calib.measure_twilight_cube(path)
    assert m.values["illum.minrel"] == pytest.approx(0.3, abs=0.02)
    assert QCThresholds().check("twilight", m.values).flag == "bad"


def test_response_against_previous_nights(tmp_path):
    prev = [write_response(tmp_path / f"p{k}.fits", 0.01 * k) for k in range(3)]
    same = measures_calib.measure_std_response(write_response(tmp_path / "same.fits", 0.02), prev)
    assert same.values["n_previous"] == 3
    assert same.values["delta.absmax"] == pytest.approx(0.01, abs=1e-6)
    cloudy = measures_calib.measure_std_response(write_response(tmp_path / "cloudy.fits", 0.4), prev)
    assert cloudy.values["delta.median"] == pytest.approx(0.39, abs=1e-6)  # mag, less throughput
    assert QCThresholds().check("response", cloudy.values).flag == "bad"
    alone = measures_calib.measure_std_response(prev[0])
    assert "delta.absmax" not in alone.values and alone.notes


def test_response_qc_notebook_compares_with_the_previous_nights_in_the_archive(archive, tmp_path):
    for k, night in enumerate(("2026-11-17", "2026-11-18", "2026-11-19")):
        qct.archive_product(archive, write_response(tmp_path / f"r{k}.fits", 0.01 * k, night), "muse_standard",
                            night=night, ifu=None, category="STD_RESPONSE")
    rec = qct.archive_product(archive, write_response(tmp_path / "r.fits", 0.25, "2026-11-20"), "muse_standard",
                              night="2026-11-20", ifu=None, category="STD_RESPONSE")
    res = run_qc(archive, rec.id)
    assert res.qc_type == "response"
    assert res.values["response.n_previous"] == 3
    assert res.values["response.delta.absmax"] == pytest.approx(0.24, abs=1e-6)
    assert res.flag == "warning"
    run = archive.get_run(res.run_id)
    earlier = {i.dataset_id for i in run.inputs if i.tag == "STD_RESPONSE" and i.dataset_id != rec.id}
    assert len(earlier) == 3  # the previous nights, on record as inputs of the QC run


def test_cube_psf_against_the_seeing_and_offsets_of_a_combined_cube(tmp_path):
    path = pt.write_cube(tmp_path / "c.fits", datetime(2026, 11, 21, 2), fwhm_pix=4.0)  # 0.8 arcsec
    for k, v in (("START", 0.7), ("END", 0.9)):
        fits.setval(path, f"HIERARCH ESO TEL AMBI FWHM {k}", value=v)
    offsets = tmp_path / "offsets.fits"
    t = Table({"RA_OFFSET": [0.0, 0.3 / 3600, 0.0], "DEC_OFFSET": [0.0, 0.0, -4.0 / 3600]})
    fits.HDUList([fits.PrimaryHDU(header=fits.Header({"DEC": 0.0})), fits.table_to_hdu(t)]).writeto(offsets)
    m = measures.measure_datacube(path, offset_list=offsets)
    assert m.values["seeing"] == pytest.approx(0.8)
    assert m.values["fwhm_seeing_ratio"] == pytest.approx(1.0, abs=0.1)
    assert m.values["n_offsets"] == 3 and m.values["offset.max"] == pytest.approx(4.0)
    v = QCThresholds().check("cube", m.values)
    assert v.flag == "bad" and "offset.max" in v.summary() and "fwhm_seeing_ratio" not in v.summary()
    fits.setval(path, "HIERARCH ESO TEL AMBI FWHM START", value=0.3)
    fits.setval(path, "HIERARCH ESO TEL AMBI FWHM END", value=0.3)
    assert QCThresholds().check("cube", measures.measure_datacube(path).values).flag == "bad"  # 0.8" PSF in 0.3" seeing


def test_wavecal_shift_against_the_previous_nights(tmp_path):
    def table(path, shift):
        cols = {"SliceNo": np.arange(1, 49)}
        for i in range(3):
            for j in range(7):
                cols[f"wlc{i}{j}"] = np.zeros(48)
        cols["wlc00"] = 4672.0 + shift + 0.01 * np.arange(48)
        cols["wlc01"] = np.full(48, 1.1)  # Angstrom per row
        fits.HDUList([fits.PrimaryHDU(), fits.table_to_hdu(Table(cols))]).writeto(path, overwrite=True)
        return path

    prev = [table(tmp_path / f"w{k}.fits", 0.01 * k) for k in range(3)]
    same = measures.measure_wavecal(table(tmp_path / "same.fits", 0.01), previous=prev)
    assert same.values["n_previous"] == 3 and same.values["shift.absmax"] == pytest.approx(0.0, abs=1e-6)
    # an arc moved by 3 rows (the inm's arc_shift) fits its own lines but is 3.75 A off
    moved = measures.measure_wavecal(table(tmp_path / "moved.fits", 3.75 + 0.01), previous=prev)
    assert moved.values["shift.median"] == pytest.approx(3.75, abs=1e-6)
    v = QCThresholds().check("wavecal", moved.values)
    assert v.flag == "bad" and "shift.absmax" in v.summary()
