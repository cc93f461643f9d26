"""Tests of the observing programme (musewise.inm.programme): plan, headers, seeds, CLI.

Fast tests use one IFU and tiny programmes; the ``pipeline`` test reduces two exposures
at position angles 0 and 90 with the real MUSE pipeline and checks where a star lands.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from musewise.cli import main
from musewise.exceptions import ConfigurationError
from musewise.inm import Field, ObservingBlock, Programme, ProgrammeNight, simulate_programme
from musewise.inm.headers import pointing
from musewise.inm.programme import CORNER_STARS
from musewise.vocabulary import FrameType

#: Calibrations reduced to the minimum, for the fast tests.
NO_CALS = dict(n_bias=0, n_dark=0, n_flat=0, n_arc_per_lamp=0, n_skyflat=0, n_std=0)


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_deep_field_plan_has_calibrations_illum_and_rotated_dithered_obs():
    plans = Programme.named("deep-field").plan(ifus=(1, 2))
    assert [p.night for p in plans] == ["2026-11-20", "2026-11-21"]
    for plan, pa in zip(plans, (0.0, 90.0)):
        kinds = [e.frame_type for e in plan]
        # The night's own calibrations come from NightPlan.for_night.
        for ft in (FrameType.BIAS, FrameType.DARK, FrameType.FLAT, FrameType.ARC,
                   FrameType.SKYFLAT, FrameType.STD):
            assert ft in kinds, ft
        assert kinds.count(FrameType.ILLUM) == 1 and kinds.count(FrameType.OBJECT) == 4
        illum, obj = plan.of_type(FrameType.ILLUM)[0], plan.of_type(FrameType.OBJECT)
        assert illum.date_obs < obj[0].date_obs             # the ILLUM opens the OB
        assert {o.options["extra"]["ESO INS DROT POSANG"] for o in obj} == {pa}
        offs = [(o.options["extra"]["ESO OCS OFFS DRA"], o.options["extra"]["ESO OCS OFFS DDEC"])
                for o in obj]
        assert len(set(offs)) == 4 and max(np.hypot(*np.array(offs).T)) > 1.0  # arcsec dithers
        assert [e.options["exp_no"] for e in plan] == list(range(1, len(plan) + 1))
        assert len({e.filename for e in plan}) == len(plan)


def test_field_rotation_follows_the_position_angle():
    f = Field.deep_field()
    north = f.radec(0.0, 10.0)     # a point 10 arcsec North of the centre
    x0, y0 = f.instrument_offsets(0.0, 10.0, f.ra, f.dec, 0.0)
    x90, y90 = f.instrument_offsets(0.0, 10.0, f.ra, f.dec, 90.0)
    assert (x0, y0) == pytest.approx((0.0, 10.0), abs=1e-6)
    # PA 90: instrument +y points East, so North is along instrument +x.
    assert (x90, y90) == pytest.approx((10.0, 0.0), abs=1e-6)
    for pa in (0.0, 90.0, 180.0, 270.0, 33.0):
        x, y = f.instrument_offsets(0.0, 10.0, f.ra + 1e-3, f.dec - 2e-3, pa)
        assert f.instrument_to_radec(x, y, f.ra + 1e-3, f.dec - 2e-3, pa) == pytest.approx(
            north, abs=1e-9)
    # A star of the field lands on IFUs 1-2 (instrument y 24.0-28.8 arcsec) at PA 0, 90, 270.
    for pa in (0.0, 90.0, 270.0):
        ys = [f.instrument_offsets(s.dx, s.dy, f.ra, f.dec, pa)[1] for s in CORNER_STARS]
        assert any(24.5 < y < 28.3 for y in ys), (pa, ys)


def _tiny(tmp_path, fmt: str) -> Path:
    spec = {"name": "tiny", "seed": 3, "calibrations": dict(NO_CALS, n_bias=1),
            "field": {"name": "TINY-FIELD", "ra": 53.1625, "dec": -27.7914},
            "nights": [{"night": "2026-11-20",
                        "obs": [{"posang": 0, "exptime": 60, "dithers": [[0, 0], [1.5, -0.5]]}]},
                       {"night": "2026-11-21",
                        "obs": [{"posang": 90, "exptime": 60, "dithers": [[0.5, 0.5]]}]}]}
    path = tmp_path / f"tiny.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps(spec))
    else:
        import yaml

        path.write_text(yaml.safe_dump(spec))
    return path


def test_cli_writes_each_night_with_its_headers(tmp_path, capsys):
    prog_file = _tiny(tmp_path, "yaml")
    out = tmp_path / "raw"
    assert main(["simulate", "--programme", str(prog_file), "--ifus", "1", "--out", str(out)]) == 0
    assert "2026-11-20: wrote 4 files" in capsys.readouterr().out
    assert (out / "static" / "GEOMETRY_TABLE.fits").exists()
    plans = {p.night: p for p in Programme.from_file(prog_file).plan(ifus=(1,))}
    seen = {}
    for night in ("2026-11-20", "2026-11-21"):
        files = sorted((out / night).glob("MUSE.*.fits"))
        assert [f.name for f in files] == [e.filename for e in plans[night]]
        for f, e in zip(files, plans[night]):
            h = fits.getheader(f)
            assert FrameType.from_dpr(h["ESO DPR TYPE"]) is e.frame_type
            assert h["OBJECT"] == ("BIAS" if e.frame_type is FrameType.BIAS else "TINY-FIELD")
            if e.frame_type is FrameType.OBJECT:
                seen.setdefault(night, []).append(h)
                assert h["ESO TEL AMBI FWHM START"] == e.options["seeing"]
                # Airmass from the hour angle at the start of the exposure.
                p = pointing(h["RA"], h["DEC"], e.date_obs)
                assert h["ESO TEL AIRM START"] == pytest.approx(p["airmass"], abs=1e-4)
                assert 1.0 <= h["ESO TEL AIRM START"] < 2.0
                assert h["ESO TEL PARANG START"] == pytest.approx(p["parang"], abs=1e-3)
                assert h["ESO INS DROT MODE"] == "SKY"
            if e.frame_type is FrameType.ILLUM:
                assert h["ESO DPR TYPE"] == "FLAT,LAMP,ILLUM" and h["ESO INS LAMP1 ST"]
    n1, n2 = seen["2026-11-20"], seen["2026-11-21"]
    # The headers carry the true telescope pointing (as simulate_night's): the field centre
    # moved by the offsets; the static ASTROMETRY_WCS places it among the simulated IFU's data.
    from musewise.inm.static import astrometry_wcs
    from musewise.inm.tangent import telescope_pointing

    for h in n1 + n2:
        want = telescope_pointing(53.1625, -27.7914, h["ESO OCS OFFS DRA"], h["ESO OCS OFFS DDEC"])
        assert (h["RA"], h["DEC"]) == pytest.approx(want, abs=1e-9)
    wcs = fits.getheader(out / "static" / "ASTROMETRY_WCS.fits")
    assert (wcs["CRPIX1"], wcs["CRPIX2"]) == (astrometry_wcs((1,))["CRPIX1"], astrometry_wcs((1,))["CRPIX2"])
    assert wcs["CRPIX2"] != 0.0 and wcs["MUSEWISE IFUS"] == "1"
    assert [h["ESO INS DROT POSANG"] for h in n1 + n2] == [0.0, 0.0, 90.0]
    assert [(h["ESO OCS OFFS DRA"], h["ESO OCS OFFS DDEC"]) for h in n1 + n2] == [
        (0.0, 0.0), (1.5, -0.5), (0.5, 0.5)]
    assert n1[0]["ESO TEL AIRM START"] != n1[1]["ESO TEL AIRM START"]   # the field moves
    assert len({h["ESO TEL AMBI FWHM START"] for h in n1 + n2}) == 3


def test_same_seed_same_bytes_other_seed_other_frames(tmp_path):
    prog = Programme.from_file(_tiny(tmp_path, "json"))
    one = Programme(prog.name, prog.field, prog.nights[:1], dict(NO_CALS), seed=3)
    a = simulate_programme(tmp_path / "a", one, ifus=(1,), progress=False, static=False)
    b = simulate_programme(tmp_path / "b", one, ifus=(1,), progress=False, static=False)
    c = simulate_programme(tmp_path / "c", one, ifus=(1,), seed=4, progress=False, static=False)
    fa, fb, fc = (d["2026-11-20"] for d in (a, b, c))
    assert len(fa) == 3                                  # ILLUM + 2 exposures
    assert [_sha(x) for x in fa] == [_sha(x) for x in fb]
    assert all(_sha(x) != _sha(y) for x, y in zip(fa, fc))
    assert ([e.options.get("seeing") for e in one.plan((1,), seed=3)[0]]
            != [e.options.get("seeing") for e in one.plan((1,), seed=4)[0]])


def test_bad_programmes_are_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigurationError, match="no built-in programme named 'nope'"):
        Programme.named("nope")
    with pytest.raises(ConfigurationError, match="neither a built-in programme"):
        simulate_programme(tmp_path / "x", "nope.yaml", ifus=(1,), progress=False)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"nights": [{"night": "2026-11-20", "obs": [{"dithers": []}]}]}))
    with pytest.raises(ConfigurationError, match="at least one exposure"):
        Programme.from_file(bad)
    bad.write_text(json.dumps({"nights": [{"night": "20 Nov", "obs": [{"posang": 0}]}]}))
    with pytest.raises(ConfigurationError, match="YYYY-MM-DD"):
        simulate_programme(tmp_path / "x", Programme.from_file(bad), ifus=(1,), progress=False)
    bad.write_text(json.dumps({"nights": [{"night": "2026-11-20"}, {"night": "2026-11-20"}]}))
    with pytest.raises(ConfigurationError, match="twice"):
        Programme.from_file(bad)
    bad.write_text("{not json")
    with pytest.raises(ConfigurationError, match="cannot parse"):
        Programme.from_file(bad)
    assert not (tmp_path / "x").exists()
    assert main(["simulate", "--programme", "nope", "--out", str(tmp_path / "y")]) == 2


def _star_position(fov, ra: float, dec: float, search: float = 3.0):
    """Centroid (RA, Dec in degrees) of the brightest source within ``search`` arcsec of
    ``(ra, dec)`` in a white-light IMAGE_FOV, placed with the image's own WCS."""
    from astropy.wcs import WCS

    with fits.open(fov) as h:
        img = np.asarray(h["DATA"].data, dtype=float)
        wcs = WCS(h["DATA"].header).celestial
    img = np.nan_to_num(img - np.nanmedian(img))
    x0, y0 = wcs.all_world2pix(ra, dec, 0)
    yy, xx = np.mgrid[:img.shape[0], :img.shape[1]]
    near = np.hypot(xx - x0, yy - y0) < search / 0.2
    assert near.any(), "the predicted position is outside the image"
    py, px = np.unravel_index(np.argmax(np.where(near, img, -np.inf)), img.shape)
    w = np.clip(np.where((abs(xx - px) <= 3) & (abs(yy - py) <= 3), img, 0.0), 0.0, None)
    r, d = wcs.all_pix2world((w * xx).sum() / w.sum(), (w * yy).sum() / w.sum(), 0)
    return float(r), float(d)


def _sep_arcsec(a, b) -> float:
    return float(np.hypot((a[0] - b[0]) * np.cos(np.radians(b[1])), a[1] - b[1]) * 3600.0)


@pytest.mark.pipeline
def test_real_pipeline_puts_a_star_at_its_radec_at_pa_0_and_90(tmp_path):
    """muse_scibasic takes each OBJECT with its OB's ILLUM; muse_scipost of an exposure at
    PA 0 and one at PA 90 (one IFU) puts the same star at its simulated RA/Dec."""
    if shutil.which("esorex") is None:
        pytest.skip("esorex is not installed (apt-get install esorex cpl-plugin-muse)")
    field = Field.deep_field()
    star = CORNER_STARS[0]   # on IFU 1 at PA 0 and at PA 90 with these dithers
    prog = Programme("pa-test", field, (ProgrammeNight("2026-11-20", (
        ObservingBlock(posang=0.0, dithers=((0.3, -0.4),)),
        ObservingBlock(posang=90.0, dithers=((0.8, 0.2),)))),),
        calibrations=dict(NO_CALS, n_bias=3, n_flat=3, n_arc_per_lamp=1))
    files = simulate_programme(tmp_path, prog, ifus=(1,), seed=5, progress=False)["2026-11-20"]
    by: dict = {}
    for f in files:
        by.setdefault(FrameType.from_dpr(fits.getval(f, "ESO DPR TYPE")), []).append(f)
    static = tmp_path / "static"

    def esorex(recipe, sof, *opts):
        (tmp_path / f"{recipe}.sof").write_text("".join(f"{p} {tag}\n" for p, tag in sof))
        r = subprocess.run(["esorex", f"--output-dir={tmp_path}", f"--log-dir={tmp_path}",
                            f"--log-file={recipe}.log", recipe, *opts, f"{recipe}.sof"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=1200)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        return (tmp_path / f"{recipe}.log").read_text()

    mb = (tmp_path / "MASTER_BIAS-01.fits", "MASTER_BIAS")
    esorex("muse_bias", [(f, "BIAS") for f in by[FrameType.BIAS]], "--nifu=1")
    esorex("muse_flat", [(f, "FLAT") for f in by[FrameType.FLAT]] + [mb], "--nifu=1")
    flat = [(tmp_path / "MASTER_FLAT-01.fits", "MASTER_FLAT"),
            (tmp_path / "TRACE_TABLE-01.fits", "TRACE_TABLE")]
    esorex("muse_wavecal", [(f, "ARC") for f in by[FrameType.ARC]] + [mb] + flat
           + [(static / "LINE_CATALOG.fits", "LINE_CATALOG")], "--nifu=1")
    cal = [mb] + flat + [(tmp_path / "WAVECAL_TABLE-01.fits", "WAVECAL_TABLE"),
                         (static / "GEOMETRY_TABLE.fits", "GEOMETRY_TABLE")]
    assert len(by[FrameType.OBJECT]) == len(by[FrameType.ILLUM]) == 2
    truth = field.radec(star.dx, star.dy)
    found = []
    for k, (obj, illum) in enumerate(zip(by[FrameType.OBJECT], by[FrameType.ILLUM])):
        log = esorex("muse_scibasic", [(obj, "OBJECT"), (illum, "ILLUM")] + cal, "--nifu=1")
        assert "Applying ILLUM flat-field in IFU 1" in log
        pt = tmp_path / f"PIXTABLE_OBJECT_{k}.fits"
        (tmp_path / "PIXTABLE_OBJECT_0001-01.fits").rename(pt)
        # No DAR correction: the simulator has no refraction (see musewise.inm).
        # The header holds the true pointing; ASTROMETRY_WCS says where it is among IFU 1's data.
        esorex("muse_scipost", [(pt, "PIXTABLE_OBJECT"),
                                (static / "EXTINCT_TABLE.fits", "EXTINCT_TABLE"),
                                (static / "STD_RESPONSE.fits", "STD_RESPONSE"),
                                (static / "ASTROMETRY_WCS.fits", "ASTROMETRY_WCS")],
               "--skymethod=none", "--lambdaref=-1", "--filter=white", "--save=cube")
        fov = tmp_path / f"IMAGE_FOV_{k}.fits"
        (tmp_path / "IMAGE_FOV_0001.fits").rename(fov)
        assert fits.getval(fov, "ESO INS DROT POSANG") == (0.0, 90.0)[k]
        found.append(_star_position(fov, *truth))
    offsets = [_sep_arcsec(p, truth) for p in found]
    print(f"star offsets from the simulated RA/Dec (arcsec): PA 0 {offsets[0]:.3f}, "
          f"PA 90 {offsets[1]:.3f}; between them {_sep_arcsec(found[0], found[1]):.3f}")
    assert max(offsets) < 0.2, offsets
    assert _sep_arcsec(found[0], found[1]) < 0.2
