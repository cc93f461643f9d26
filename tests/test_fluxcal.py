"""Flux calibration from the night's own standard star, and the twilight flats (real esorex, IFUs 1-2).

The module fixture reduces a night with a standard star and twilight flats on two IFUs
through ``dpu.make('standard')`` (bias -> flat -> wavecal -> twilight -> scibasic_std ->
standard) and the science exposure's pixel tables (``scibasic``), once, on SQLite.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from musewise import dpu

NIGHT = "2026-11-20"
IFUS = (1, 2)

pipeline = pytest.mark.pipeline


@pytest.fixture(scope="module")
def std_cascade(tmp_path_factory):
    """(archive, STD_RESPONSE record) after the standard of a two-IFU night was reduced."""
    from conftest import fixture_tmp, need
    from musewise.archive import Archive
    from musewise.config import MusewiseConfig
    from musewise.inm import simulate_night

    need(shutil.which("esorex") is not None, "esorex not installed (apt-get install esorex cpl-plugin-muse)")
    with fixture_tmp(tmp_path_factory, "std-night") as out:
        raw = simulate_night(out / "raw", night=NIGHT, ifus=IFUS, n_bias=3, n_dark=0, n_flat=3,
                             n_arc_per_lamp=1, n_skyflat=3, n_std=1, n_object=1, seed=11, progress=False)
        arch = Archive(MusewiseConfig.load(root=str(out / "root"), user="admin", project="consortium"),
                       user="admin")
        try:
            rep = arch.ingest_many(list(raw) + sorted((out / "raw" / "static").glob("*.fits")), progress=False)
            assert not rep.refused, rep.refused
            dpu.make("standard", NIGHT, list(IFUS), dry_run=False, archive=arch, progress=False)
            dpu.make("scibasic", NIGHT, list(IFUS), dry_run=False, archive=arch, progress=False)
            made = [r for r in arch.query(category="STD_RESPONSE") if r.run_id is not None]
            yield arch, made
        finally:
            arch.close()


@pipeline
def assert_response_is_the_models(path, ifus, mode=None) -> None:
    """A STD_RESPONSE within 5 % of the instrument model's over 5000-9000 A: its throughput and the
    detected fraction of the pixels of ``ifus`` (the IFUs the standard was reduced on)."""
    from astropy.table import Table

    from musewise.inm.model import detected_fraction
    from musewise.inm.spectra import response_mag

    t = Table.read(path, hdu=1)
    lam = np.asarray(t["lambda"], float)
    expected = response_mag(lam, mode or "WFM-NOAO-N") + 2.5 * np.log10(detected_fraction(ifus))
    ratio = 10 ** (0.4 * (np.asarray(t["response"], float) - expected))
    band = (lam >= 5000) & (lam <= 9000)
    print(f"response / simulated over 5000-9000 A: median {np.median(ratio[band]):.4f}, "
          f"{ratio[band].min():.4f}..{ratio[band].max():.4f}")
    assert band.sum() > 1000
    assert np.all(np.abs(ratio[band] - 1) < 0.05), (ratio[band].min(), ratio[band].max())


def test_response_from_the_standard_star_matches_the_simulated_throughput(std_cascade):
    arch, made = std_cascade
    assert len(made) == 1, "muse_standard made no STD_RESPONSE from the night's STD frame"
    run = arch.get_run(made[0].run_id)
    assert run.recipe == "muse_standard" and sorted(run.details["ifus"]) == list(IFUS)
    assert {"STD_TELLURIC", "STD_RESPONSE"} <= {arch.get(i).category for i in run.output_ids}
    assert_response_is_the_models(arch.path(made[0].id), IFUS)


@pipeline
def test_scipost_calibrates_with_the_nights_standard_and_says_when_it_falls_back(std_cascade):
    arch, made = std_cascade
    (spec,) = dpu.prepare("scipost", NIGHT, list(IFUS), p={"skymethod": "none"}, archive=arch)
    (resp,) = [i for i in spec.inputs if i.tag == "STD_RESPONSE"]
    assert resp.dataset_id == made[0].id
    assert "STD_TELLURIC" in {i.tag for i in spec.inputs}
    (choice,) = [c for c in spec.choices if c["category"] == "STD_RESPONSE" and c["chosen"] == resp.dataset_id][:1]
    assert choice["note"] == f"made by run {made[0].run_id}"
    # Without a usable response from a standard, the static table stands in, and the run says so.
    arch.set_validity(made[0].id, is_valid=False, comment="test: standard star saturated")
    try:
        (spec,) = dpu.prepare("scipost", NIGHT, list(IFUS), p={"skymethod": "none"}, archive=arch)
        (resp,) = [i for i in spec.inputs if i.tag == "STD_RESPONSE"]
        assert arch.get(resp.dataset_id).kind == "static"
        notes = {c["note"] for c in spec.choices if c["category"] == "STD_RESPONSE"}
        assert any(n.startswith("static fallback: no STD_RESPONSE made by step 'standard'") for n in notes), notes
    finally:
        arch.set_validity(made[0].id, is_valid=True, comment="test: restored")


@pipeline
def test_twilight_flats_correct_the_science_pixel_tables(std_cascade):
    arch, _ = std_cascade
    (cube,) = [r for r in arch.query(category="TWILIGHT_CUBE") if r.run_id is not None]
    twi = arch.get_run(cube.run_id)
    assert twi.recipe == "muse_twilight" and sorted(twi.details["ifus"]) == list(IFUS)
    assert sorted(i.tag for i in twi.inputs).count("SKYFLAT") == 3
    for ifu in IFUS:
        (pix,) = [r for r in arch.query(category="PIXTABLE_OBJECT") if r.ifu == ifu]
        run = arch.get_run(pix.run_id)
        assert cube.id in {i.dataset_id for i in run.inputs if i.tag == "TWILIGHT_CUBE"}
        nb = Path(arch.path(run.notebook_id)).read_text()
        assert f"Starting twilight correction 1 in IFU {ifu}" in nb
