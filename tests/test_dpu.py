"""The reduction layer: runs, lineage, failures, concurrency, target processing.

The long cascade (bias -> flat -> wavecal -> lsf -> scibasic -> scipost, real esorex,
one IFU) runs once on SQLite (module fixture ``cascade``); the cheaper tests
run on SQLite and PostgreSQL through the ``archive`` fixture, and two of them
(failure, concurrency) run the real pipeline on both.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from musewise import dpu
from musewise.exceptions import CalibrationNotFoundError, ParameterError, RecipeError
from musewise.vocabulary import Privilege

NIGHT = "2026-11-20"

pipeline = pytest.mark.pipeline


def _need_esorex():
    from conftest import need

    need(shutil.which("esorex") is not None, "esorex not installed (apt-get install esorex cpl-plugin-muse)")


@pytest.fixture(scope="module")
def dpu_night(tmp_path_factory):
    """A night for IFU 1 with what the cascade needs: 3 bias, 3 flats (muse_flat wants 3),
    one arc per lamp, two science exposures (so per-exposure products are told apart) and the
    static calibrations. By frame type."""
    from conftest import fixture_tmp
    from musewise.ingest import inspect_file
    from musewise.inm import simulate_night

    with fixture_tmp(tmp_path_factory, "dpu-night") as out:
        paths = simulate_night(out, night=NIGHT, ifus=(1,), n_bias=3, n_dark=0, n_flat=3, n_arc_per_lamp=1,
                               n_skyflat=0, n_std=0, n_object=2, seed=11, progress=False)
        frames: dict[str, list[Path]] = {}
        for p in paths:
            frames.setdefault(inspect_file(p).category, []).append(Path(p))
        frames["static"] = sorted((out / "static").glob("*.fits"))
        yield frames


def _ingest(arch, frames, *types):
    files = [p for t in types for p in frames[t]]
    rep = arch.ingest_many(files, progress=False)
    assert not rep.refused, rep.refused
    return rep


# ------------------------------------------------------------------------------ cheap checks
def test_committed_templates_are_the_built_ones():
    import nbformat

    from musewise.dpu.templates import TEMPLATE_RECIPES, build_template, default_templates_dir

    for name in TEMPLATE_RECIPES + (None,):
        path = default_templates_dir() / f"{name or 'generic'}.ipynb"
        assert path.exists(), f"{path} missing: run python -m musewise.dpu.templates"
        nb = nbformat.read(path, as_version=4)
        assert nb.cells == build_template(name).cells, f"{path} is stale"
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1 and "sof" in tagged[0].source and "params" in tagged[0].source


def test_cascade_steps_core_and_optional_by_configuration():
    from musewise.dpu.planner import cascade

    names = [s.name for s in cascade("scipost", dpu.DpuConfig())]
    assert names == ["bias", "flat", "wavecal", "lsf", "twilight", "scibasic", "scibasic_std", "standard",
                     "scipost"]
    cfg = dpu.DpuConfig(optional_steps=["dark"])
    names = [s.name for s in cascade("scipost", cfg)]
    assert names == ["bias", "dark", "flat", "wavecal", "lsf", "twilight", "scibasic", "scibasic_std",
                     "standard", "scipost"]
    assert [s.name for s in cascade("flat", cfg)] == ["bias", "dark", "flat"]


def test_unknown_or_mistyped_parameter_refused_before_anything_runs(archive, dpu_night):
    _ingest(archive, dpu_night, "BIAS")
    with pytest.raises(ParameterError, match="crsigmaa|unknown parameter"):
        dpu.run("bias", date=NIGHT, ifu=1, p={"crsigmaa": 20}, archive=archive)
    with pytest.raises(ParameterError, match="nlow"):
        dpu.run("bias", date=NIGHT, ifu=1, p={"nlow": "many"}, archive=archive)
    with pytest.raises(ParameterError, match="nifu"):
        dpu.run("bias", date=NIGHT, ifu=1, p={"nifu": 2}, archive=archive)
    assert archive.runs() == []


def test_missing_calibration_is_a_clear_error_and_runs_nothing(archive, dpu_night):
    _ingest(archive, dpu_night, "FLAT", "static")
    with pytest.raises(CalibrationNotFoundError, match="MASTER_BIAS.*IFU 1") as exc:
        dpu.run("flat", date=NIGHT, ifu=1, archive=archive)
    assert exc.value.category == "MASTER_BIAS" and exc.value.ifu == 1
    assert archive.runs() == []


def test_dry_run_shows_inputs_with_reasons_and_records_nothing(archive, dpu_night):
    _ingest(archive, dpu_night, "BIAS")
    specs = dpu.run("bias", date=NIGHT, archive=archive, dry_run=True)
    assert [s.ifu for s in specs] == [1]
    assert sorted(i.dataset_id for i in specs[0].inputs) == sorted(r.id for r in archive.query(category="BIAS"))
    assert all(i.tag == "BIAS" and "IFU 1" in i.reason for i in specs[0].inputs)
    assert archive.runs() == []


def test_reductions_describe_recipes_with_their_archive_configuration(archive_config, dpu_night, tmp_path):
    from musewise.archive import Archive
    from musewise.config import MusewiseConfig
    from musewise.recipes import configure, esorex

    cfg = MusewiseConfig.load(**{**archive_config.as_dict(), "recipe_cache": str(tmp_path / "site-cache")})
    arch = Archive(cfg, user="admin")
    try:
        _ingest(arch, dpu_night, "BIAS")
        dpu.run("bias", date=NIGHT, archive=arch, dry_run=True)
        assert esorex.cache_dir() == tmp_path / "site-cache"  # not the default nor the environment's
    finally:
        arch.close()
        configure()


def test_cli_run_dry_run_and_bad_parameter(archive, archive_config, dpu_night, monkeypatch, capsys):
    import argparse

    from musewise.dpu.cli import add_run_parser

    _ingest(archive, dpu_night, "BIAS")
    monkeypatch.setenv("MUSEWISE_ROOT", archive_config.root)
    monkeypatch.setenv("MUSEWISE_DB_URL", archive_config.db_url)
    parser = argparse.ArgumentParser(prog="musewise")
    add_run_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["run", "bias", "--date", NIGHT, "--ifu", "1", "-p", "combine=median",
                              "--dry-run", "--user", "admin"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "muse_bias" in out and "combine=median" in out and out.count("BIAS of night") == 3
    args = parser.parse_args(["run", "bias", "--date", NIGHT, "-p", "combine=mean", "--user", "admin"])
    with pytest.raises(ParameterError, match="combine"):
        args.func(args)
    assert archive.runs() == []


# ------------------------------------------------------------------------------ real pipeline
@pipeline
def test_failed_run_is_recorded_with_its_notebook_and_no_product(archive, dpu_night):
    _need_esorex()
    _ingest(archive, dpu_night, "BIAS")
    # minmax rejecting 5+5 of 3 frames: accepted by the parameter checks, refused by muse_bias.
    with pytest.raises(RecipeError) as exc:
        dpu.run("bias", date=NIGHT, ifu=1, p={"combine": "minmax", "nlow": 5, "nhigh": 5}, archive=archive)
    (outcome,) = exc.value.outcomes
    run = archive.get_run(outcome.run_id)
    assert run.status == "failed"
    assert "Not enough images" in run.error or "esorex exited" in run.error
    assert run.output_ids == ()
    assert archive.query(category="MASTER_BIAS") == []
    assert run.notebook_id is not None
    nb = json.loads(Path(archive.path(run.notebook_id)).read_text())
    text = json.dumps(nb)
    assert "RecipeError" in text and "muse_bias" in text
    assert archive.fsck()["orphans"] == []


@pipeline
def test_two_concurrent_runs_keep_all_products(archive, dpu_night):
    """Two users' runs of the same step at once, on 2 Dask worker processes."""
    _need_esorex()
    _ingest(archive, dpu_night, "BIAS")
    results, errors = {}, []

    def go(user):
        try:
            results[user] = dpu.run("bias", date=NIGHT, ifu=1, archive=archive.as_user(user),
                                    engine="dask", progress=False)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(u,)) for u in ("alice", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    runs = [results[u][0] for u in ("alice", "bob")]
    assert all(o.ok and len(o.products) == 1 for o in runs), [(o.status, o.error) for o in runs]
    products = [archive.get(o.products[0]) for o in runs]
    assert products[0].id != products[1].id
    assert {p.owner for p in products} == {"alice", "bob"}
    assert all(p.privilege == Privilege.PRIVATE for p in products)  # commit=False: trial products
    assert len(archive.query(category="MASTER_BIAS")) == 2
    assert len(archive.runs(recipe="muse_bias")) == 2
    for p in products:
        archive.verify(p.id)
    assert archive.fsck() == {"orphans": [], "temporaries": [], "missing": [], "corrupt": []}
    # Private: the other user does not see it.
    assert archive.as_user("bob").query(category="MASTER_BIAS", owner="alice") == []


@pytest.fixture(scope="module")
def cascade(tmp_path_factory, dpu_night):
    """The whole chain to a cube on SQLite, committed, with crsigma=20 for scipost."""
    _need_esorex()
    from musewise.archive import Archive
    from musewise.config import MusewiseConfig

    from conftest import fixture_tmp

    with fixture_tmp(tmp_path_factory, "cascade") as root:
        arch = Archive(MusewiseConfig.load(root=str(root), user="admin", project="consortium"), user="admin")
        try:
            _ingest(arch, dpu_night, "BIAS", "FLAT", "ARC", "OBJECT", "static")
            dpu.make("scipost", NIGHT, [1], dry_run=False, commit=True, archive=arch, p={"crsigma": 20},
                     progress=False)
            cube = [r for r in arch.query(category="DATACUBE_FINAL") if r.is_valid][-1]
            yield arch, cube
        finally:
            arch.close()


@pipeline
def test_cascade_cube_provenance_reaches_the_raw_biases(cascade):
    arch, cube = cascade
    graph = arch.provenance(cube.id)
    raw_bias = {r.id for r in arch.query(category="BIAS")}
    assert raw_bias <= set(graph.datasets)
    recipes = {r.recipe for r in graph.runs.values()}
    assert recipes == {"muse_scipost", "muse_scibasic", "muse_lsf", "muse_wavecal", "muse_flat", "muse_bias"}
    text = dpu.provenance_tree(cube.id, arch)
    assert "muse_bias" in text and "crsigma=20" in text
    # every run left its executed notebook, and calibration choices say why
    for run in graph.runs.values():
        assert run.notebook_id is not None
        nb = Path(arch.path(run.notebook_id)).read_text()
        assert '"image/png"' in nb, f"no quick-look figure in the {run.recipe} notebook"
        assert "Created product" in nb or run.recipe == "muse_scipost"  # the log is shown
    flat_inputs = [u for u in graph.used if u.tag == "MASTER_FLAT"]
    assert flat_inputs and "IFU 1 valid" in flat_inputs[0].reason


def _first_products(arch) -> dict:
    """``{(category, ifu, mjd_obs): record}``: each product's first version (the cascade's own; later
    tests of this module rebuild some)."""
    out: dict = {}
    for r in sorted(arch.query(kind="calibration") + arch.query(kind="science"), key=lambda r: r.id):
        out.setdefault((r.category, r.ifu, round(r.mjd_obs or 0.0, 5)), r)
    return out


def _data_difference(a, b) -> float:
    """The largest relative difference between the data of two FITS files, extension by extension
    (0.0: the same numbers); their extensions must match by name and shape."""
    from astropy.io import fits

    worst = 0.0
    with fits.open(a, memmap=True) as fa, fits.open(b, memmap=True) as fb:
        assert [h.name for h in fa] == [h.name for h in fb], (a, b)
        for ha, hb in zip(fa, fb):
            if ha.data is None:
                assert hb.data is None
                continue
            if isinstance(ha, fits.BinTableHDU):
                assert ha.columns.names == hb.columns.names and len(ha.data) == len(hb.data), ha.name
                cols = [(np.asarray(ha.data[c]), np.asarray(hb.data[c])) for c in ha.columns.names]
            else:
                cols = [(np.asarray(ha.data), np.asarray(hb.data))]
            for x, y in cols:
                assert x.shape == y.shape, ha.name
                if x.dtype.kind not in "fc":
                    assert np.array_equal(x, y), ha.name
                    continue
                x, y = x.astype(np.float64), y.astype(np.float64)
                assert np.array_equal(np.isnan(x), np.isnan(y)), ha.name
                ok = ~np.isnan(x)
                scale = max(float(np.nanmax(np.abs(x))) if ok.any() else 0.0, 1e-30)
                worst = max(worst, float(np.max(np.abs(x[ok] - y[ok]), initial=0.0)) / scale)
    return worst


@pipeline
@pytest.mark.parametrize("kind", ["site", "slurm"])
def test_the_cascade_on_another_cluster_makes_the_same_products(cascade, dpu_night, tmp_path, kind):
    """A site's Dask cluster given by address, and Slurm batch jobs through dask-jobqueue, reduce the same
    night to the same products as musewise's own cluster, every run executing in the cluster's workers;
    on Slurm each recipe's job asks for its own memory and cores."""
    from traitlets.config import Config

    from musewise.archive import Archive
    from musewise.config import MusewiseConfig
    from musewise.dpu.engine import close_clients

    from conftest import another_cluster

    here, _ = cascade
    with another_cluster(kind, tmp_path) as (settings, dpu_settings, cluster):
        cfg = MusewiseConfig.load(root=str(tmp_path / "root"), user="admin", project="consortium", **settings)
        cfg.config = Config({"DpuConfig": dpu_settings})
        arch = Archive(cfg, user="admin")
        try:
            _ingest(arch, dpu_night, "BIAS", "FLAT", "ARC", "OBJECT", "static")
            dpu.make("scipost", NIGHT, [1], dry_run=False, commit=True, archive=arch, p={"crsigma": 20},
                     engine="dask", progress=False)
            assert {r.status for r in arch.runs()} == {"succeeded"}
            runs = [r for r in arch.runs() if r.recipe.startswith("muse_")]
            assert {r.recipe for r in runs} == {"muse_bias", "muse_flat", "muse_wavecal", "muse_lsf",
                                                "muse_scibasic", "muse_scipost"}
            if kind == "site":
                workers = set(cluster.worker_pids().values())
                assert {r.details["pid"] for r in runs} <= workers, "a run executed outside the site's workers"
            else:
                heavy = set(dpu.DpuConfig.from_config(cfg).heavy_recipes)
                jobs = {f"slurm:{j['JobId']}": j for j in cluster.jobs()}
                for r in runs:
                    job = jobs[r.details.get("batch_job")]  # KeyError: a run outside the batch jobs
                    big = r.recipe in heavy
                    assert job["JobName"] == ("musewise-heavy" if big else "musewise"), (r.recipe, job)
                    assert (job["NumCPUs"], job["MinMemoryNode"]) == (("2", "6G") if big else ("1", "3G")), job
            theirs, ours = _first_products(arch), _first_products(here)
            assert set(theirs) == set(ours)
            for key, record in theirs.items():
                diff = _data_difference(arch.path(record.id), here.path(ours[key].id))
                assert diff <= 1e-6, f"{key}: data differ by {diff:.2e} of their largest value"
        finally:
            close_clients()
            arch.close()


def test_night_without_standard_star_plans_no_standard(archive, dpu_night):
    _ingest(archive, dpu_night, "BIAS", "FLAT", "ARC", "OBJECT", "static")
    pl = dpu.plan("scipost", NIGHT, [1], archive=archive)
    assert pl.steps == ["bias", "flat", "wavecal", "lsf", "scibasic", "scipost"]
    assert not [i for i in pl.items if i.step in ("scibasic_std", "standard")]


def test_sky_model_needs_sky_lines_and_lsf_only_when_the_sky_is_modelled(archive, dpu_night, tmp_path):
    from datetime import datetime

    from musewise.dpu.selection import select_runs
    from musewise.dpu.steps import get_step
    from musewise.qc.testing import archive_product, write_master

    step = get_step("scipost")
    _ingest(archive, dpu_night, "static")
    # A pixel table of exposure 1, IFU 1 (a stand-in: nothing runs), and no LSF_PROFILE.
    path = write_master(tmp_path / "PIXTABLE_OBJECT_0001-01.fits", "PIXTABLE_OBJECT", np.zeros((4, 4)),
                        datetime(2026, 11, 21, 1, 30), **{"HIERARCH ESO DRS MUSE PIXTABLE IFU": 1})
    archive_product(archive, path, "muse_scibasic", ifu=1, category="PIXTABLE_OBJECT")
    # The pipeline's default sky model: refused before anything runs (muse_scipost itself
    # would stop with "Missing required LSF frames"); the message names what to build.
    for params in ({"skymethod": "model"}, {}):
        with pytest.raises(CalibrationNotFoundError, match="LSF_PROFILE.*IFU 1") as exc:
            select_runs(archive, step, NIGHT, ifus=[1], params=params)
        assert exc.value.category == "LSF_PROFILE"
    # Without a sky model the same pixel table is reduced, with the static SKY_LINES unused.
    (spec,) = select_runs(archive, step, NIGHT, ifus=[1], params={"skymethod": "none"})
    tags = {i.tag for i in spec.inputs}
    assert {"PIXTABLE_OBJECT", "EXTINCT_TABLE", "STD_RESPONSE"} <= tags and "LSF_PROFILE" not in tags


@pipeline
def test_cascade_cube_is_sky_subtracted_with_the_pipeline_sky_model(cascade, output_dir):
    """Residuals of 5577, 6300 and 8399 A below 5% of the simulated line, in empty sky."""
    from astropy.io import fits

    from musewise.inm.spectra import sky_line_in_cube
    from musewise.products.wcs import spectral_axis
    from musewise.qc.measures import sky_line_residuals

    arch, cube = cascade
    run = arch.get_run(cube.run_id)
    assert run.details["effective_parameters"]["skymethod"] == "model"
    assert {"SKY_LINES", "LSF_PROFILE"} <= {i.tag for i in run.inputs}
    assert "Sky line fit finished successfully" in Path(arch.path(run.notebook_id)).read_text()
    with fits.open(arch.path(cube.id)) as h:
        airmass = 0.5 * (h[0].header["ESO TEL AIRM START"] + h[0].header["ESO TEL AIRM END"])
        data = h["DATA"].data
        wave, _ = spectral_axis(h["DATA"].header, data.shape[0])
        white = np.nanmean(data, axis=0)
        # Empty sky: the fainter half of the spaxels (the sources of IFU 1 cover far less).
        sky = np.isfinite(white) & (white < np.nanpercentile(white, 50))
        spaxels = data[:, sky]
    sky_spectrum = [r for r in arch.query(category="SKY_SPECTRUM") if r.run_id == run.id]
    assert sky_spectrum, "muse_scipost saved no SKY_SPECTRUM (--save=...,skymodel)"
    from astropy.table import Table

    before = Table.read(arch.path(sky_spectrum[0].id))
    lines = (5577.339, 6300.304, 8399.170)
    after = sky_line_residuals(spaxels, None, wave, lines=lines)
    seen = sky_line_residuals(np.asarray(before["data"], float), None, np.asarray(before["lambda"], float),
                              lines=lines)
    record = {}
    for line in lines:
        simulated = sky_line_in_cube(line, airmass)
        record[line] = {"simulated": simulated, "before": seen[line]["residual"],
                        "residual": after[line]["residual"],
                        "residual_percent": 100 * after[line]["residual"] / simulated}
    (output_dir / "sky_residuals.json").write_text(json.dumps(record, indent=1))
    print(json.dumps(record, indent=1))
    for line, r in record.items():
        # The sky the model put in reaches the cube at its flux (the response is right) ...
        assert r["before"] == pytest.approx(r["simulated"], rel=0.10), (line, r)
        # ... and what is left of it after subtraction is below 5%.
        assert abs(r["residual"]) < 0.05 * r["simulated"], (line, r)


@pipeline
def test_cascade_parameters_on_the_run_and_in_the_command(cascade):
    arch, cube = cascade
    run = arch.get_run(cube.run_id)
    assert run.parameters["crsigma"] == 20.0
    assert "--crsigma=20.0" in run.details["command"]
    # commit=True: the reference reduction, visible to every consortium member, in the reference chain
    assert run.privilege == Privilege.CONSORTIUM and cube.privilege == Privilege.CONSORTIUM
    assert run.is_reference and cube.collection == run.collection
    assert cube.collection in arch.collection("consortium/reference").members
    bias = arch.query(category="MASTER_BIAS")[-1]
    assert any(q["name"].startswith("BIAS") and q["run_id"] == bias.run_id for q in arch.qc(bias.id))


@pipeline
def test_cascade_invalid_flat_rebuilds_what_depended_on_it_not_the_bias(cascade):
    arch, cube = cascade
    assert dpu.plan("scipost", NIGHT, [1], archive=arch, p={"crsigma": 20}).todo == []
    flat = arch.query(category="MASTER_FLAT")[-1]
    bias = arch.query(category="MASTER_BIAS")[-1]
    affected = {r.category for r in arch.dependents(flat.id)}
    assert {"WAVECAL_TABLE", "PIXTABLE_OBJECT", "DATACUBE_FINAL"} <= affected
    arch.set_validity(flat.id, 1, is_valid=False, comment="test: lamp flicker")
    pl = dpu.plan("scipost", NIGHT, [1], archive=arch, p={"crsigma": 20})
    assert pl.steps == ["flat", "wavecal", "lsf", "scibasic", "scipost"]
    assert [i.status for i in pl.items if i.step == "bias"] == ["current"]
    n_bias_runs = len(arch.runs(recipe="muse_bias"))
    dpu.make("scipost", NIGHT, [1], dry_run=False, commit=True, archive=arch, p={"crsigma": 20},
             progress=False)
    assert len(arch.runs(recipe="muse_bias")) == n_bias_runs
    assert dpu.plan("scipost", NIGHT, [1], archive=arch, p={"crsigma": 20}).todo == []
    new_cube = [r for r in arch.query(category="DATACUBE_FINAL") if r.is_valid][-1]
    assert new_cube.id != cube.id
    new_graph = arch.provenance(new_cube.id)
    new_flats = [u.dataset_id for u in new_graph.used if u.tag == "MASTER_FLAT"]
    assert new_flats and flat.id not in new_flats
    assert {u.dataset_id for u in new_graph.used if u.tag == "MASTER_BIAS"} == {bias.id}


@pipeline
def test_cascade_other_parameters_make_only_the_cube_out_of_date(cascade):
    arch, _ = cascade
    pl = dpu.plan("scipost", NIGHT, [1], archive=arch, p={"crsigma": 25})
    assert pl.steps == ["scipost"]
    assert "crsigma" in pl.todo[0].reason


# ------------------------------------------------------------------------------ science checks
def measure_stars(cube_path, scene, field, band=(5000.0, 9000.0), beta=2.5):
    """Fit each simulated star of ``scene`` that falls in the cube on its band image.

    A Moffat PSF (``beta`` of the instrument model, width free) is fitted with photutils
    at the position the cube's WCS gives the star's true RA/Dec. Returns, per star found,
    ``(star, separation in arcsec between the fitted and true position, fitted flux /
    input flux)``: the input is the star's mean flux density above the atmosphere over
    the band, the fitted flux the PSF's total in the cube's unit (1e-20 erg/s/cm2/A).
    """
    import astropy.units as u
    import numpy as np
    from astropy.coordinates import SkyCoord
    from astropy.io import fits
    from astropy.table import Table
    from astropy.wcs import WCS
    from photutils.psf import MoffatPSF, PSFPhotometry

    from musewise.inm import Star
    from musewise.products import MuseCube

    with MuseCube.open(cube_path) as cube:
        assert cube.unit.replace(" ", "") == "10**(-20)*erg/s/cm**2/Angstrom", cube.unit
        lam = cube.wave
        i0, i1 = np.searchsorted(lam, band)
        lam = lam[i0:i1]
        image = cube.mean_over_wavelength(i0, i1)
        wcs = WCS(fits.getheader(cube_path, "DATA")).celestial
    image -= np.nanmedian(image)  # the sky left in the cube (uniform over a few arcsec)
    psf = MoffatPSF(alpha=2.0, beta=beta)
    psf.beta.fixed = True
    psf.alpha.fixed = False
    found = []
    for star, ra, dec in scene.sky_positions(*field):
        if not isinstance(star, Star):
            continue
        true = SkyCoord(ra * u.deg, dec * u.deg)
        x, y = (float(v) for v in wcs.world_to_pixel(true))
        if not (4 <= x <= image.shape[1] - 5 and 4 <= y <= image.shape[0] - 5):
            continue
        phot = PSFPhotometry(psf, fit_shape=(9, 9), aperture_radius=4)
        res = phot(np.nan_to_num(image), init_params=Table({"x": [x], "y": [y]}))
        fitted = wcs.pixel_to_world(res["x_fit"][0], res["y_fit"][0])
        expected = float(np.mean(star.flux(lam))) * 1e20
        found.append((star, float(true.separation(fitted).arcsec), float(res["flux_fit"][0]) / expected))
    return found


@pipeline
def test_cascade_cube_puts_simulated_stars_where_they_are_with_their_flux(cascade):
    """Issue 10's science checks: every star within 0.1 arcsec of its true RA/Dec through the
    cube's WCS, and its flux within 10% of what the instrument model put in."""
    from musewise.inm import Scene
    from musewise.inm.night import SCIENCE_FIELD

    arch, _ = cascade
    cubes = [r for r in arch.query(category="DATACUBE_FINAL") if r.is_valid]
    assert len(cubes) >= 2  # both dithered exposures
    for cube in cubes:
        run = arch.get_run(cube.run_id)
        # The simulated frames have no DAR, and a subset of IFUs needs the astrometric solution.
        assert "--lambdaref=-1.0" in run.details["command"]
        assert "ASTROMETRY_WCS" in {u.tag for u in arch.provenance(cube.id).used if u.run_id == run.id}
        found = measure_stars(arch.path(cube.id), Scene.default(), SCIENCE_FIELD)
        assert found, "no simulated star inside the cube"
        for star, sep, ratio in found:
            print(f"cube {cube.id}: star ({star.dx}, {star.dy}) offset {sep:.3f} arcsec, flux ratio {ratio:.3f}")
            assert sep < 0.1, (star, sep)
            assert abs(ratio - 1) < 0.10, (star, ratio)


@pipeline
def test_cascade_spaxel_origin_is_where_the_instrument_model_put_the_star(cascade):
    """spaxel -> IFU, slice and calibrations on the real pipeline's PIXTABLE_REDUCED.

    The default scene's bright star (``Scene.default``: dx = 14", dy = 27.6" from the
    field centre, less the exposure's dither) lies in IFU 1 between two sky slices; the
    cube's white-light peak must trace back to that IFU and those slices, the pixels
    found there must be brighter than in the neighbouring spaxels, and the calibrations
    listed must be the inputs of the runs that made the exposure.
    """
    import numpy as np
    from astropy.io import fits

    from musewise.inm.layout import (FIELD_CENTRE, SKY_SLICE, SLICE_WIDTH_SKY, SPAXEL,
                                     ifu_of_field_y)
    from musewise.origin import PixelTable, find_pixtables, pixels_in_spaxel, spaxel_origin

    arch, cube = cascade
    with fits.open(arch.path(cube.id)) as hdul:
        white = np.nansum(hdul["DATA"].data, axis=0)
        head = hdul["DATA"].header.copy()
        ox = float(hdul[0].header.get("HIERARCH ESO OCS OFFS DRA", 0.0))
        oy = float(hdul[0].header.get("HIERARCH ESO OCS OFFS DDEC", 0.0))
    py, px = np.unravel_index(np.nanargmax(white), white.shape)
    o = spaxel_origin(arch, cube.id, int(px), int(py))
    # Where the instrument model put the star, in the geometry frame (spaxels).
    fx = FIELD_CENTRE[0] + (14.0 - ox) / SPAXEL
    fy = FIELD_CENTRE[1] + (27.6 - oy) / SPAXEL
    ifu = ifu_of_field_y(fy)
    stack = int((fx - FIELD_CENTRE[0]) // SLICE_WIDTH_SKY + 2)
    rows = {int(np.floor(150 - fy - (ifu - 1) * 12)), int(np.ceil(150 - fy - (ifu - 1) * 12))}
    expected_sky = {stack * 12 + r + 1 for r in rows if 0 <= r < 12}
    assert o.npix > 1000 and o.ifus == [ifu] == [1]
    main = o.contributions[0]
    assert main.fraction > 0.5 and main.sky_slice in expected_sky, (o.to_text(), expected_sky)
    for c in o.contributions:  # the GEOMETRY_TABLE's CCD -> sky slice is the instrument's
        assert SKY_SLICE[c.ccd_slice - 1] == c.sky_slice
    assert sum(c.npix for c in o.contributions) == o.npix
    # The pixel table's light peaks where the cube's does.
    (pt,) = find_pixtables(arch, cube.id)
    with PixelTable(arch.path(pt.id)) as table:
        flux = {(dx, dy): float(np.nansum(pixels_in_spaxel(table, head, int(px) + dx, int(py) + dy)["data"]))
                for dx, dy in ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))}
        peak = pixels_in_spaxel(table, head, int(px), int(py))
    assert max(flux, key=flux.get) == (0, 0), flux
    # mpdaf reads the same table the same way: sky positions and origin bits.
    from conftest import need

    try:
        from mpdaf.drs import PixTable
    except ImportError:
        PixTable = None
    need(PixTable is not None, "mpdaf not installed (pip install -e '.[bench]')")
    mp = PixTable(arch.path(pt.id))
    rows = peak["row"]
    ra, dec = mp.get_pos_sky(mp.get_xpos(ksel=rows), mp.get_ypos(ksel=rows))
    from astropy.wcs import WCS

    mx, my = WCS(head).celestial.wcs_world2pix(ra, dec, 0)
    np.testing.assert_allclose(mx, peak["px"], atol=1e-3)
    np.testing.assert_allclose(my, peak["py"], atol=1e-3)
    origin = mp.get_origin(ksel=rows)
    assert (mp.origin2ifu(origin) == peak["ifu"]).all() and (mp.origin2slice(origin) == peak["slice"]).all()
    # The calibrations are the inputs of the scibasic run of IFU 1 and of the scipost run.
    post = arch.get_run(pt.run_id)
    (basic_input,) = [i for i in post.inputs if i.tag == "PIXTABLE_OBJECT"]
    basic = arch.get_run(arch.get(basic_input.dataset_id).run_id)
    want = {(i.tag, i.dataset_id) for i in basic.inputs if i.tag != "OBJECT"} | \
        {(i.tag, i.dataset_id) for i in post.inputs if i.tag != "PIXTABLE_OBJECT"}
    assert {(u.tag, u.dataset_id) for u in o.calibrations} == want
    assert {"MASTER_BIAS", "MASTER_FLAT", "TRACE_TABLE", "WAVECAL_TABLE", "GEOMETRY_TABLE"} <= {t for t, _ in want}
    records = arch.get_many([u.dataset_id for u in o.calibrations])
    for u in o.calibrations:
        rec = records[u.dataset_id]
        assert (u.is_valid, u.affected_by) == (rec.is_valid, rec.affected_by)
        assert u.usable == rec.usable_for(1)
    flat = next(u for u in o.calibrations if u.tag == "MASTER_FLAT")
    assert flat.producer_notebook_id is not None and flat.certified


def test_scipost_bands_follow_memory():
    """One muse_scipost call of 24 IFUs (21.6 GB measured) is cut in two on a 24 GB machine; 1-2 IFUs are not."""
    from musewise.recipes.bands import band_edges, bands_needed

    assert bands_needed(24, (4600, 9350), memory_gb=0.7 * 24) == 2
    assert bands_needed(2, (4600, 9350), memory_gb=0.7 * 24) == 1
    assert bands_needed(24, (4600, 6975), memory_gb=0.7 * 24) == 1  # half the range, half the memory
    assert bands_needed(48, (4000, 10000), memory_gb=0.7 * 24) == 3  # two exposures in one call
    assert band_edges(4600, 9350, 2) == [4600, 6975, 9350]


def test_scipost_knows_wavelength_bands_however_it_was_described():
    """From the cache or described afresh by esorex (``describe_pipeline``): musewise's own parameter
    is there, and never reaches the esorex command line."""
    _need_esorex()
    from musewise.recipes import get_recipe

    rec = get_recipe("muse_scipost")
    for describe in (rec.refresh, rec.generate):
        describe()
        assert rec.parameters["wavelength_bands"].default == 0
        assert not [c for c in rec.command("x.sof", ".", rec.effective_params({"wavelength_bands": 2}))
                    if "wavelength_bands" in c]


@pipeline
def test_scipost_in_wavelength_bands_makes_the_cube_of_one_call(cascade):
    """Issue 10 item 4: muse_scipost cut into wavelength bands (what a 24-IFU exposure needs on 24 GB)
    makes, joined, the cube one call makes: same grid, same fluxes within the noise, the sky
    products of the whole range, and it is archived and planned like any scipost run."""
    from astropy.io import fits

    arch, _ = cascade
    ref = {c.mjd_obs: c for c in arch.query(category="DATACUBE_FINAL") if c.is_valid}
    outcomes = dpu.run("scipost", date=NIGHT, ifu=1, archive=arch, p={"crsigma": 20, "wavelength_bands": 2},
                       progress=False)
    assert [o.status for o in outcomes] == ["succeeded"] * len(ref)
    for o in outcomes:
        made = {arch.get(i).category: arch.get(i) for i in o.products}
        cube = made["DATACUBE_FINAL"]
        one = ref[cube.mjd_obs]
        run = arch.get_run(o.run_id)
        assert "muse_scipost in 2 wavelength bands" in Path(arch.path(run.notebook_id)).read_text()
        # every band's esorex call is on record (what benchmarks/bench_shell.py replays)
        first, second = run.details["calls"]
        assert first["command"] == run.details["command"] and "wcs_planes" not in first
        assert [t for _p, t in second["sof"]].count("OUTPUT_WCS") == 1 and second["wcs_planes"][0] > 0
        assert any(c.startswith("--lambdamin=") for c in second["command"]) and second["command"] != first["command"]
        # heavy runs take turns (heavy_concurrency 1): each has every core for its OpenMP threads
        assert run.details["omp_threads"] == len(os.sched_getaffinity(0))
        with fits.open(arch.path(cube.id)) as h, fits.open(arch.path(one.id)) as r:
            assert h[0].header["MUSEWISE BANDS"] == 2
            for key in ("NAXIS1", "NAXIS2", "NAXIS3", "CRVAL3", "CD3_3", "CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2"):
                assert h["DATA"].header[key] == r["DATA"].header[key], key
            data, ref_data, var = h["DATA"].data, r["DATA"].data, r["STAT"].data
            z = np.abs(data - ref_data) / np.sqrt(var)
            # the sky is modelled band by band: a small part of the noise, no step at the cut
            assert np.nanmedian(z) < 0.2 and np.nanpercentile(z, 99) < 1.0, (np.nanmedian(z), np.nanpercentile(z, 99))
            cut = int(np.argmin(np.abs(6975 - (r["DATA"].header["CRVAL3"] + 1.25 * np.arange(data.shape[0])))))
            assert np.nanmedian(z[cut - 3:cut + 3]) < 0.3
        # the white-light image is the pipeline's one of the whole range (it is the alignment's input)
        img, ref_img = [fits.getdata(arch.path(d.id), "DATA") for d in
                        (made["IMAGE_FOV"], next(d for d in arch.query(category="IMAGE_FOV")
                                                  if d.run_id == one.run_id))]
        assert abs(np.nansum(img) / np.nansum(ref_img) - 1) < 0.01
        sky = fits.getdata(arch.path(made["SKY_SPECTRUM"].id), 1)
        assert sky["lambda"].min() < 4800 and sky["lambda"].max() > 9300
        assert len([i for i in o.products if arch.get(i).category == "PIXTABLE_REDUCED"]) == 2  # one per band
    # the bands only share the work out: the reference cubes stay current
    assert dpu.plan("scipost", NIGHT, [1], archive=arch, p={"crsigma": 20, "wavelength_bands": 2},
                    commit=True).todo == []


@pipeline
def test_the_muse_wise_example_runs_as_written(cascade):
    """Issue 10 item 3: MUSE-WISE's own example, as its users typed it, reduces every exposure
    into the reference reduction with those parameters (runs last: it adds reference cubes)."""
    arch, _ = cascade
    date = NIGHT
    outcomes = dpu.run('scipost', date=date, commit=True, p={'crtype': 'median', 'crsigma': 20, 'resample': 'drizzle'},
                       archive=arch, progress=False)
    assert len(outcomes) == 2 and all(o.ok for o in outcomes), [(o.status, o.error) for o in outcomes]
    for o in outcomes:
        run = arch.get_run(o.run_id)
        eff = run.details["effective_parameters"]
        assert (eff["crtype"], eff["crsigma"], eff["resample"]) == ("median", 20.0, "drizzle")
        assert {"--crtype=median", "--crsigma=20.0", "--resample=drizzle"} <= set(run.details["command"])
        cube = next(arch.get(i) for i in o.products if arch.get(i).category == "DATACUBE_FINAL")
        assert run.is_reference and cube.collection.startswith("consortium/")
