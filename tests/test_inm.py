"""Tests of the instrument model (musewise.inm): format, determinism, physics, statics.

Fast tests use one IFU; the ``pipeline`` test runs the real ``muse_bias``.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from datetime import datetime

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from musewise.exceptions import ConfigurationError
from musewise.inm import InstrumentModel, NightPlan, Scene, simulate_night, write_static_calibrations
from musewise.inm import detector as D
from musewise.inm import layout as L
from musewise.inm.lamps import lamp_lines
from musewise.inm.scene import Star
from musewise.vocabulary import FrameType

T0 = datetime(2026, 11, 20, 18, 0, 0)


@pytest.fixture(scope="module")
def model():
    return InstrumentModel(ifus=(1,), seed=7)


@pytest.fixture(scope="module")
def bias_file(tmp_path_factory, model):
    from conftest import fixture_tmp

    with fixture_tmp(tmp_path_factory, "bias") as out:
        yield model.write_frame(out / "b.fits", FrameType.BIAS, T0, 0.0)


def _trimmed(raw):
    """Trimmed (4112, 4096) image in ADU from a raw CCD."""
    out = np.empty((D.TRIM_NY, D.TRIM_NX), np.float64)
    for q in D.QUADRANTS:
        rs, ts = D.quadrant_data(q)
        out[ts] = raw[rs]
    return out


def test_raw_format_and_headers(bias_file):
    with fits.open(bias_file) as h:
        assert len(h) == 2
        assert h[1].name == "CHAN01"
        data = h[1].data
        assert data.shape == (4240, 4224) and data.dtype == np.uint16
        p, e = h[0].header, h[1].header
        assert p["INSTRUME"] == "MUSE" and p["ESO INS MODE"] == "WFM-NOAO-N"
        assert FrameType.from_dpr(p["ESO DPR TYPE"], p["ESO DPR CATG"]) is FrameType.BIAS
        assert p["DATE-OBS"] == "2026-11-20T18:00:00.000"
        assert p["MJD-OBS"] == pytest.approx(61364.75)
        assert p["ARCFILE"] == "MUSE.2026-11-20T18:00:00.000.fits"
        assert p["EXPTIME"] == 0.0
        for q in (1, 2, 3, 4):
            assert e[f"ESO DET OUT{q} NX"] == 2048 and e[f"ESO DET OUT{q} NY"] == 2056
            assert e[f"ESO DET OUT{q} PRSCX"] == 32 and e[f"ESO DET OUT{q} OVSCY"] == 32
        assert (e["ESO DET OUT3 X"], e["ESO DET OUT3 Y"]) == (4096, 4112)


@pytest.mark.parametrize("ft,lamp,dpr", [
    (FrameType.DARK, None, "DARK"), (FrameType.FLAT, None, "FLAT,LAMP"),
    (FrameType.ARC, "Xe", "WAVE"), (FrameType.SKYFLAT, None, "FLAT,SKY"),
    (FrameType.STD, None, "STD"), (FrameType.OBJECT, None, "OBJECT"),
])
def test_dpr_roundtrip_of_each_frame_type(tmp_path, ft, lamp, dpr):
    h = fits.getheader(InstrumentModel(ifus=(3,)).write_frame(
        tmp_path / "f.fits", ft, T0, 1.0, lamp=lamp, ra=53.0, dec=-27.8))
    assert h["ESO DPR TYPE"] == dpr
    assert FrameType.from_dpr(h["ESO DPR TYPE"], h["ESO DPR CATG"]) is ft
    if ft is FrameType.ARC:
        assert h["ESO INS LAMP4 ST"] and not h["ESO INS LAMP3 ST"]  # lamp 4 = Xe


def test_same_seed_same_bytes_other_seed_differs(tmp_path, bias_file):
    again = InstrumentModel(ifus=(1,), seed=7).write_frame(tmp_path / "a.fits", FrameType.BIAS,
                                                           T0, 0.0)
    other = InstrumentModel(ifus=(1,), seed=8).write_frame(tmp_path / "o.fits", FrameType.BIAS,
                                                           T0, 0.0)

    def digest(p):
        return hashlib.sha256(p.read_bytes()).hexdigest()

    assert digest(again) == digest(bias_file)
    assert digest(other) != digest(bias_file)


def test_bias_level_and_read_noise_per_quadrant(bias_file):
    raw = fits.getdata(bias_file, "CHAN01").astype(np.float64)
    for q in D.QUADRANTS:
        p = D.readout(1, q)
        rs, _ = D.quadrant_data(q)
        d = raw[rs]
        assert abs(d.mean() - p.bias) < 1.5          # per-frame drift is ~0.3 ADU
        # Rounding to integers adds 1/12 ADU**2 of variance.
        assert np.sqrt(d.var() - 1 / 12) == pytest.approx(p.ron_adu, rel=0.02)
    # The ports really differ: the test above would not notice a single level.
    assert len({round(D.readout(1, q).bias) for q in D.QUADRANTS}) == 4


def test_two_bias_frames_have_independent_noise(tmp_path, model, bias_file):
    b2 = model.write_frame(tmp_path / "b2.fits", FrameType.BIAS, T0.replace(minute=1), 0.0)
    a = fits.getdata(bias_file, 1).astype(float)[100:1000, 100:1000]
    b = fits.getdata(b2, 1).astype(float)[100:1000, 100:1000]
    r = np.corrcoef(a.ravel(), b.ravel())[0, 1]
    assert abs(r) < 0.01


def test_arc_lines_land_on_predicted_rows(tmp_path, model):
    e = model.electrons(1, FrameType.ARC, 15.0, lamp="Ne")
    line = max(lamp_lines("Ne"), key=lambda x: x.flux)
    for k in (1, 20, 48):
        cols = L.column_slices(1)[k - 1]
        xc = (cols.start + cols.stop) // 2
        y_pred = float(L.row_of_wavelength(1, k, line.wavelength))
        lo = int(y_pred) - 6
        prof = e[lo:lo + 13, xc]
        y_meas = lo + np.sum(np.arange(13) * prof) / prof.sum()
        assert y_meas == pytest.approx(y_pred, abs=0.1)
    # ...and survive digitisation: the raw frame peaks there too.
    raw = _trimmed(fits.getdata(model.write_frame(tmp_path / "arc.fits", FrameType.ARC, T0,
                                                  15.0, lamp="Ne"), 1))
    xc = (L.column_slices(1)[0].start + L.column_slices(1)[0].stop) // 2
    y_pred = float(L.row_of_wavelength(1, 1, line.wavelength))
    seg = raw[int(y_pred) - 10:int(y_pred) + 10, xc]
    assert int(y_pred) - 10 + int(np.argmax(seg)) in (int(y_pred), int(y_pred) + 1)


def test_wavelength_solution_inverse_and_range():
    y = np.array([0.0, 1000.5, 4111.0])
    for k in (1, 33):
        assert np.allclose(L.row_of_wavelength(1, k, L.wavelength(1, k, y)), y)
    lam = L.wavelength_map(5)
    assert 4660 < lam.min() < 4700 and 9780 < lam.max() < 9830


def test_point_source_appears_in_slices_the_geometry_predicts(tmp_path):
    gt = Table.read(write_static_calibrations(tmp_path)["GEOMETRY_TABLE"], hdu=1)
    row = gt[(gt["SubField"] == 1) & (gt["SliceSky"] == 17)][0]   # stack 2, 5th row
    dx = (row["x"] - L.FIELD_CENTRE[0] + 20.0) * L.SPAXEL       # 20 spaxels right of centre
    dy = (row["y"] - L.FIELD_CENTRE[1]) * L.SPAXEL
    scene = Scene([Star(dx=dx, dy=dy, flux_5500=5e-15)], sky=False)
    m = InstrumentModel(ifus=(1,), scene=scene)
    e = m.electrons(1, FrameType.OBJECT, 100.0, scene=scene, airmass=1.0, seeing=0.6)
    per_slice = np.array([e[:, c].sum() for c in L.column_slices(1)])
    assert int(np.argmax(per_slice)) + 1 == row["SliceCCD"]
    # Within the slice the star peaks at the column the geometry predicts.
    left, right = L.slice_edges(1)
    k = row["SliceCCD"] - 1
    x_pred = 0.5 * (left[k] + right[k]) - 20.0 * L.SLICE_WIDTH_CCD / L.SLICE_WIDTH_SKY
    col = np.argmax(e[2000, L.column_slices(1)[k]]) + L.column_slices(1)[k].start
    assert abs(col + 0.5 - x_pred) <= 1.5
    # A star in IFU 1's strip leaves other IFUs dark (only dark current and hot pixels).
    e5 = m.electrons(5, FrameType.OBJECT, 100.0, scene=scene, seeing=0.6)
    assert (e5 - m.electrons(5, FrameType.DARK, 100.0)).max() < 1e-6 * e.max()  # Moffat wings only


def test_static_tables_have_pipeline_columns(tmp_path):
    files = write_static_calibrations(tmp_path, mode="WFM-NOAO-E")
    assert set(files) >= {"LINE_CATALOG", "GEOMETRY_TABLE", "EXTINCT_TABLE", "STD_FLUX_TABLE",
                          "STD_RESPONSE", "FILTER_LIST", "SKY_LINES", "ASTROMETRY_WCS"}
    need = {"LINE_CATALOG": {"lambda", "flux", "ion", "quality"},
            "GEOMETRY_TABLE": {"SubField", "SliceCCD", "SliceSky", "x", "y", "angle", "width"},
            "EXTINCT_TABLE": {"lambda", "extinction"},
            "STD_FLUX_TABLE": {"lambda", "flux", "fluxerr"},
            "STD_RESPONSE": {"lambda", "response", "resperr"}}
    for catg, cols in need.items():
        assert fits.getheader(files[catg])["ESO PRO CATG"] == catg
        assert cols <= set(Table.read(files[catg], hdu=1).colnames), catg
    assert fits.getheader(files["LINE_CATALOG"])["VERSION"] == 3
    assert len(Table.read(files["GEOMETRY_TABLE"], hdu=1)) == 24 * 48
    assert np.all(np.isfinite(Table.read(files["STD_RESPONSE"], hdu=1)["response"]))
    # What muse_scipost checks before it models the sky: the LINES columns (dq included)
    # and the flux unit spelled its way; the response made for flat-field-spectrum-corrected
    # pixel tables (else the recipe reverts that correction and the fluxes are wrong).
    sky = fits.open(files["SKY_LINES"])
    assert sky[1].name == "LINES" and sky[1].columns.names == ["name", "group", "lambda", "flux", "dq"]
    units = {sky[1].header[f"TTYPE{k}"]: sky[1].header.get(f"TUNIT{k}") for k in range(1, 6)}
    assert units["flux"] == "10**(-20)*erg/(s cm^2 arcsec^2)" and units["lambda"] == "Angstrom"
    from musewise.inm.spectra import sky_line_flux

    assert sky[1].data["flux"][sky[1].data["name"] == "SKY5577"][0] == pytest.approx(sky_line_flux(5577.3) * 1e20)
    assert fits.getheader(files["STD_RESPONSE"])["ESO DRS MUSE FLUX FFCORR"] is True


def test_dithered_exposures_see_each_star_at_one_sky_position():
    """The pointing and the scene move together: a star's RA/Dec is the same in every exposure."""
    from musewise.inm.night import SCIENCE_FIELD

    plan = NightPlan.for_night("2026-11-20", ifus=(1,), n_object=4)
    positions = []
    for exp in plan.of_type(FrameType.OBJECT):
        o = exp.options
        # The exposure's scene offsets are from its own pointing (the field centre).
        positions.append([(ra, dec) for _, ra, dec in o["scene"].sky_positions(o["ra"], o["dec"])])
    true = [(ra, dec) for _, ra, dec in Scene.default().sky_positions(*SCIENCE_FIELD)]
    cosd = np.cos(np.radians(SCIENCE_FIELD[1]))
    for pos in positions:
        d = np.array(pos) - np.array(true)
        assert np.all(np.hypot(d[:, 0] * cosd, d[:, 1]) * 3600 < 0.001)   # arcsec
    # +x is West: a star at dx > 0 has a smaller RA than the field centre.
    star, ra, dec = next(t for t in Scene.default().sky_positions(*SCIENCE_FIELD)
                         if isinstance(t[0], Star) and t[0].dx > 0)
    assert ra < SCIENCE_FIELD[0] and np.isclose((SCIENCE_FIELD[0] - ra) * cosd * 3600, star.dx, atol=0.01)
    assert np.isclose((dec - SCIENCE_FIELD[1]) * 3600, star.dy, atol=0.01)


def test_astrometry_wcs_points_at_the_field_centre_for_any_ifus(tmp_path):
    """muse_scipost puts the pointing at the centre of the reduced data plus CRPIX: CRPIX must
    take the centre of the simulated IFUs' slices (in the GEOMETRY_TABLE) to the field centre."""
    from musewise.inm.static import astrometry_wcs

    files = write_static_calibrations(tmp_path, ifus=(1, 2))
    gt = Table.read(files["GEOMETRY_TABLE"], hdu=1)
    for ifus in ((1,), (1, 2), (23, 24), tuple(range(1, 25))):
        rows = gt[np.isin(gt["SubField"], ifus)]
        centre_x = 0.5 * ((rows["x"] - 0.5 * rows["width"]).min() + (rows["x"] + 0.5 * rows["width"]).max())
        centre_y = 0.5 * (rows["y"].min() + rows["y"].max())
        h = astrometry_wcs(ifus)
        assert (centre_x + h["CRPIX1"], centre_y + h["CRPIX2"]) == pytest.approx(L.FIELD_CENTRE)
    assert (astrometry_wcs()["CRPIX1"], astrometry_wcs()["CRPIX2"]) == (0.0, 0.0)
    h = fits.getheader(files["ASTROMETRY_WCS"])
    assert h["ESO PRO CATG"] == "ASTROMETRY_WCS" and h["CRPIX2"] == pytest.approx(6.5 - 138.5)
    assert h["CD1_1"] < 0 < h["CD2_2"] and h["CD1_2"] == h["CD2_1"] == 0   # East left, North up


def test_night_plan_time_line():
    plan = NightPlan.for_night("2026-11-20", ifus=(1,))
    types = [e.frame_type for e in plan]
    assert types.count(FrameType.ARC) == 3 and types.count(FrameType.OBJECT) == 2
    sci = plan.of_type(FrameType.OBJECT)[0]
    assert sci.date_obs.date().isoformat() == "2026-11-21"          # after midnight UTC
    assert plan.of_type(FrameType.BIAS)[0].date_obs.date().isoformat() == "2026-11-20"
    assert len({e.filename for e in plan}) == len(plan)
    with pytest.raises(ConfigurationError, match="YYYY-MM-DD"):
        NightPlan.for_night("20 Nov")


def test_simulate_night_writes_what_was_asked(tmp_path):
    files = simulate_night(tmp_path, ifus=(2,), n_bias=1, n_dark=0, n_flat=1, n_arc_per_lamp=1,
                           n_skyflat=0, n_std=0, n_object=1, progress=False)
    kinds = sorted(fits.getheader(f)["ESO DPR TYPE"] for f in files)
    assert kinds == ["BIAS", "FLAT,LAMP", "OBJECT", "WAVE", "WAVE", "WAVE"]
    assert (tmp_path / "static" / "LINE_CATALOG.fits").exists()
    assert fits.getheader(files[0], 1)["EXTNAME"] == "CHAN02"


def test_invalid_arguments_are_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="IFUs"):
        InstrumentModel(ifus=(0,))
    with pytest.raises(ConfigurationError, match="not simulated"):
        InstrumentModel(mode="NFM-AO-N")
    with pytest.raises(ConfigurationError, match="lamp"):
        InstrumentModel(ifus=(1,)).write_frame(tmp_path / "x.fits", FrameType.ARC, T0, 1.0)
    assert not list(tmp_path.iterdir())   # nothing half-written


@pytest.mark.pipeline
def test_real_muse_bias_on_simulated_biases(tmp_path):
    if shutil.which("esorex") is None:
        pytest.skip("esorex is not installed (apt-get install esorex cpl-plugin-muse)")
    m = InstrumentModel(ifus=(1,), seed=3)
    files = [m.write_frame(tmp_path / f"b{i}.fits", FrameType.BIAS, T0.replace(minute=i), 0.0)
             for i in range(3)]
    (tmp_path / "bias.sof").write_text("".join(f"{f} BIAS\n" for f in files))
    r = subprocess.run(["esorex", f"--output-dir={tmp_path}", f"--log-dir={tmp_path}",
                        "muse_bias", "--nifu=1", "bias.sof"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    with fits.open(tmp_path / "MASTER_BIAS-01.fits") as h:
        d = h["DATA"].data
        assert d.shape == (D.TRIM_NY, D.TRIM_NX)
        # Overscan-corrected master bias: ~0 ADU, noise RON/sqrt(3).
        for q in D.QUADRANTS:
            _, ts = D.quadrant_data(q)
            assert abs(np.median(d[ts])) < 1.0
            assert np.std(d[ts]) == pytest.approx(D.readout(1, q).ron_adu / np.sqrt(3), rel=0.15)
