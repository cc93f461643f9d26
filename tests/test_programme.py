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
