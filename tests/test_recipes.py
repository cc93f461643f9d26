"""Tests of musewise.recipes: generated descriptions, validation, registry, runs.

Fixtures here
-------------
recipe_cache
    Configures the recipes' description cache in a temporary folder (no user cache touched),
    as the reduction layer configures them from ``MusewiseConfig.recipe_cache``.
esorex_needed
    Skips (fails in CI) when the real esorex + MUSE plug-ins are missing.
fake_esorex
    Writes a stand-in ``esorex`` shell script whose description output is canned and
    whose run prints a few lines and then hangs: the ``slow`` failure mode.
tiny_cube
    A 200 x 12 x 12 DATACUBE_FINAL with a compact source, sky-line residuals
    that vary across the field, and a STAT extension.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from musewise.exceptions import MusewiseError, NotFoundError, ParameterError, RecipeError
from musewise.recipes import (
    INSTALL_HINT,
    EsorexRecipe,
    PipelineNotInstalledError,
    PythonRecipe,
    RecipeParameter,
    RecipeResult,
    configure,
    describe_pipeline,
    get_recipe,
    list_recipes,
    register,
    register_python_recipe,
    write_sof,
)
from musewise.recipes import esorex as esorex_mod
from musewise.recipes.registry import RecipeRegistry

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
HAVE_ESOREX = shutil.which(os.environ.get("MUSEWISE_ESOREX") or "esorex") is not None


@pytest.fixture(autouse=True)
def recipe_cache(tmp_path):
    cache = tmp_path / "recipe-cache"
    configure(esorex=os.environ.get("MUSEWISE_ESOREX"), recipe_cache=str(cache))
    for rec in list(_registered_esorex()):
        rec.refresh()  # descriptions loaded by earlier tests came from another cache
    yield cache
    configure()


def _registered_esorex():
    from musewise.recipes import recipes

    return [r for r in recipes if isinstance(r, EsorexRecipe)]


@pytest.fixture
def esorex_needed():
    if HAVE_ESOREX:
        return
    msg = f"esorex not installed ({INSTALL_HINT})"
    if IN_CI:
        pytest.fail(f"required in CI: {msg}")
    pytest.skip(msg)


# ---------------------------------------------------------------------------------------
# Parsing (no esorex needed)
# ---------------------------------------------------------------------------------------

PARAMS_TEXT = """
     ***** ESO Recipe Execution Tool, version 9.9.9  *****

Caller Parameters :

  help                  : FALSE
  output-dir            : .

Recipe Parameters :

  nifu                  : 0
  combine               : sigclip
  lsigma                : 3.0
  lambdamin             : 4e+03
  pixfrac               : 0.8,0.8
  merge                 : FALSE
"""

MAN_TEXT = """
     ***** ESO Recipe Execution Tool, version 9.9.9  *****

NAME
  muse_fake -- Combine fakes.

DESCRIPTION
  This recipe combines fake frames.

  Input frames for raw frame tag "FAKE":

   Frame tag            Type Req #Fr Description
   -------------------- ---- --- --- ------------
   FAKE                 raw   Y  >=3 Raw fake
   MASTER_BIAS          calib Y    1 Master bias
   BADPIX_TABLE         calib .      Known bad pixels

  Product frames for raw frame tag "FAKE":

   Frame tag            Level    Description
   -------------------- -------- ------------
   MASTER_FAKE          final    Master fake

OPTIONS
  The following options are provided by this recipe.

  --nifu                : IFU to handle. If set to 0, all IFUs are processed
                          serially. [0]
  --combine             : Type of image combination to use. <average | median |
                          minmax | sigclip> [sigclip]
  --lsigma              : Low sigma for pixel rejection with sigclip. [3.0]
  --lambdamin           : Cut off the data below this wavelength [Angstrom].
                          [4e+03]
  --pixfrac             : Pixel down-scaling factor. [0.8,0.8]
  --merge               : Merge output products. [FALSE]

  Note that it is also possible to create a configuration file.

RELEASE
  muse_fake -- version 1.2.3
"""


def test_description_is_parsed_from_esorex_output():
    info = esorex_mod.describe_from_esorex(PARAMS_TEXT, MAN_TEXT, "muse_fake")
    p = info["parameters"]
    assert list(p) == ["nifu", "combine", "lsigma", "lambdamin", "pixfrac", "merge"]
    assert (p["nifu"].type, p["nifu"].default) == (int, 0)
    assert (p["lsigma"].type, p["lsigma"].default) == (float, 3.0)
    assert (p["lambdamin"].type, p["lambdamin"].default) == (float, 4000.0)
    assert (p["pixfrac"].type, p["pixfrac"].default) == (str, "0.8,0.8")
    assert (p["merge"].type, p["merge"].default) == (bool, False)
    assert p["combine"].choices == ("average", "median", "minmax", "sigclip")
    assert p["lambdamin"].help == "Cut off the data below this wavelength [Angstrom]."
    tags = {t.tag: t for t in info["input_tags"]}
    assert tags["FAKE"].kind == "raw" and tags["FAKE"].required and tags["FAKE"].count == ">=3"
    assert tags["MASTER_BIAS"].is_calibration and tags["MASTER_BIAS"].required
    assert not tags["BADPIX_TABLE"].required
    assert info["output_tags"] == ["MASTER_FAKE"]
    assert info["pipeline_version"] == "muse/1.2.3"
    assert info["description"] == "This recipe combines fake frames."


# ---------------------------------------------------------------------------------------
# Generated from the real pipeline
# ---------------------------------------------------------------------------------------


def test_parameters_match_esorex(esorex_needed):
    scipost = get_recipe("muse_scipost")
    crsigma = scipost.parameters["crsigma"]
    assert crsigma.type is float and crsigma.default == 15.0
    assert "cosmic ray" in crsigma.help
    assert scipost.parameters["resample"].choices[-1] == "lanczos"
    assert scipost.parameters["astrometry"].type is bool

    bias = get_recipe("bias")
    assert bias.name == "muse_bias"
    assert (bias.parameters["nifu"].type, bias.parameters["nifu"].default) == (int, 0)
    assert bias.parameters["combine"].default == "sigclip"
    assert bias.parameters["merge"].default is False
    assert bias.raw_tags == ["BIAS"] and "BADPIX_TABLE" in bias.calibration_tags
    assert bias.required_tags() == ["BIAS"]
    assert bias.output_tags == ["MASTER_BIAS"]
    assert bias.pipeline_version.startswith("muse/")

    # Every parameter esorex --params lists is there, with the value it prints.
    printed = esorex_mod.parse_params(
        esorex_mod._esorex_output(esorex_mod.esorex_executable(), "--params", "muse_flat")
    )
    flat = get_recipe("flat").parameters
    assert list(flat) == list(printed)
    for name, text in printed.items():
        assert flat[name].default == esorex_mod._convert(text, flat[name].type), name


def test_a_run_that_saved_more_products_made_the_same_ones(esorex_needed):
    """Output choices (the manuals' ``--save``, ``--saveimage``...) only change what is written: the
    planner must not rebuild a scipost that saved more than asked now, nor what was made from it."""
    scipost, scibasic = get_recipe("muse_scipost"), get_recipe("muse_scibasic")
    used = scipost.effective_params({"save": "cube,skymodel,individual"})
    assert scipost.changed_parameters(used, scipost.effective_params({"save": "cube"})) == []
    assert scipost.changed_parameters(used, scipost.effective_params({"save": "skymodel, CUBE"})) == []
    # asking for a product the run did not save, or another resampling, is a change
    assert scipost.changed_parameters(used, scipost.effective_params({"save": "cube,autocal"})) == ["save"]
    changed = scipost.changed_parameters(used, scipost.effective_params({"save": "cube", "resample": "nearest"}))
    assert changed == ["resample"]
    # in muse_scibasic ``resample`` and ``saveimage`` only add images
    lean = scibasic.effective_params({"saveimage": False, "resample": False})
    full = scibasic.effective_params({"saveimage": True, "resample": True})
    assert scibasic.changed_parameters(full, lean) == []
    assert scibasic.changed_parameters(lean, full) == ["resample", "saveimage"]


def test_required_muse_recipes_are_registered_without_running_esorex():
    for name in ("muse_bias", "muse_dark", "muse_flat", "muse_wavecal", "muse_lsf",
                 "muse_twilight", "muse_scibasic", "muse_scipost", "muse_exp_combine",
                 "muse_standard", "muse_geometry", "muse_astrometry"):
        assert name in list_recipes()
        assert isinstance(get_recipe(name), EsorexRecipe)


def test_descriptions_are_cached_and_regenerated_on_new_version(
    esorex_needed, recipe_cache, monkeypatch
):
    rec = EsorexRecipe("muse_dark")
    path = rec.cache_path()
    assert not path.exists()
    rec.parameters
    assert path.exists() and path.parent.parent == recipe_cache
    cached = json.loads(path.read_text())
    assert cached["name"] == "muse_dark" and cached["pipeline_version"].startswith("muse/")

    # A cached description is used as is (the cache is the source once written).
    cached["description"] = "from the cache"
    path.write_text(json.dumps(cached))
    assert EsorexRecipe("muse_dark").description == "from the cache"

    # A new pipeline version means a new cache entry, generated afresh.
    monkeypatch.setattr(esorex_mod, "pipeline_versions", lambda *a: ("3.99", "9.9.9"))
    fresh = EsorexRecipe("muse_dark")
    assert fresh.cache_path() != path
    assert fresh.description != "from the cache"
    assert fresh.cache_path().exists()


def test_describe_pipeline_regenerates_all(esorex_needed, recipe_cache):
    times = describe_pipeline()
    assert {"muse_bias", "muse_scipost", "muse_astrometry"} <= set(times)
    assert len(list(recipe_cache.glob("*/*.json"))) == len(times)


def test_missing_esorex_names_the_install_command(recipe_cache):
    configure(esorex="/nonexistent/esorex", recipe_cache=str(recipe_cache))
    rec = EsorexRecipe("muse_bias")
    with pytest.raises(PipelineNotInstalledError, match="apt-get install -y esorex cpl-plugin-muse"):
        rec.parameters


def test_recipes_use_the_configuration_they_are_given(tmp_path):
    from musewise.config import MusewiseConfig

    cfg = MusewiseConfig.load(root=str(tmp_path), recipe_cache=str(tmp_path / "cache"), esorex="/site/bin/esorex")
    configure(cfg)  # as the reduction layer does with its archive's configuration
    assert esorex_mod.cache_dir() == tmp_path / "cache"
    with pytest.raises(PipelineNotInstalledError, match="/site/bin/esorex"):
        esorex_mod.esorex_executable()
    # A template notebook passes the archive settings it was given, a dict.
    configure({"esorex": "/other/esorex", "recipe_cache": str(tmp_path / "nb")})
    assert esorex_mod.cache_dir() == tmp_path / "nb"
    with pytest.raises(PipelineNotInstalledError, match="/other/esorex"):
        esorex_mod.esorex_executable()


# ---------------------------------------------------------------------------------------
# Validation and registry
# ---------------------------------------------------------------------------------------


def test_validate_coerces_and_refuses_before_running(esorex_needed):
    rec = get_recipe("scipost")
    assert rec.validate({"crsigma": 10, "astrometry": "false", "pixfrac": [0.6, 0.6]}) == {
        "crsigma": 10.0, "astrometry": False, "pixfrac": "0.6,0.6"}
    with pytest.raises(ParameterError, match=r"muse_scipost.*'crsigm'.*did you mean 'crsigma'") as e:
        rec.validate({"crsigm": 3.0})
    assert "lambdamin" in str(e.value)  # the known parameters are listed
    assert isinstance(e.value, ValueError) and isinstance(e.value, MusewiseError)
    with pytest.raises(ParameterError, match=r"muse_scipost.*'crsigma' expects float"):
        rec.validate({"crsigma": "high"})
    with pytest.raises(ParameterError, match=r"'astrometry' expects bool"):
        rec.validate({"astrometry": 1})
    with pytest.raises(ParameterError, match=r"'resample' must be one of"):
        rec.validate({"resample": "cubic"})
    with pytest.raises(ParameterError, match=r"muse_bias.*'nifu' expects int"):
        get_recipe("bias").validate({"nifu": 1.5})


def test_unknown_parameter_is_refused_before_esorex_runs(esorex_needed, tmp_path):
    with pytest.raises(ParameterError, match="did you mean 'combine'"):
        get_recipe("bias").run([], tmp_path / "w", {"combin": "median"}, ifu=1)
    assert not (tmp_path / "w").exists()


def test_registry_lookup_errors():
    with pytest.raises(NotFoundError, match=r"No recipe named 'bais'; known: .*muse_bias") as e:
        get_recipe("bais")
    assert isinstance(e.value, LookupError)
    assert "Did you mean 'bias'" in str(e.value)
    reg = RecipeRegistry()
    reg.register(EsorexRecipe("muse_bias"))
    with pytest.raises(MusewiseError, match="already registered"):
        reg.register(EsorexRecipe("muse_bias"))
    with pytest.raises(NotFoundError, match="known: muse_bias"):
        reg.get("dark")


def test_write_sof(tmp_path):
    f = tmp_path / "a.fits"
    f.touch()
    sof = write_sof(tmp_path / "x.sof", [(f, "BIAS"), (str(f), "MASTER_BIAS")])
    assert sof.read_text() == f"{f} BIAS\n{f} MASTER_BIAS\n"
    with pytest.raises(ValueError, match="whitespace"):
        write_sof(tmp_path / "y.sof", [(tmp_path / "a b.fits", "BIAS")])


# ---------------------------------------------------------------------------------------
# Python recipes
# ---------------------------------------------------------------------------------------


@pytest.fixture
def tiny_cube(tmp_path):
    """A small DATACUBE_FINAL with a source and spatially varying sky-line residuals."""
    from astropy.io import fits

    rng = np.random.default_rng(3)
    nl, ny, nx = 200, 12, 12
    wave = np.arange(nl)
    yy, xx = np.mgrid[:ny, :nx]
    source = 20 * np.exp(-((yy - 6) ** 2 + (xx - 6) ** 2) / 4.0)
    continuum = (1 + 0.002 * wave)[:, None, None] * (1 + source)[None]
    lines = sum(a * np.exp(-0.5 * ((wave - c) / 1.2) ** 2) for a, c in [(5, 40), (3, 90), (4, 150)])
    scale = 1 + 0.3 * (xx / nx)  # residual amplitude varies across the field
    sky = lines[:, None, None] * scale[None]
    noise = rng.normal(0, 0.05, (nl, ny, nx))
    data = (continuum + sky + noise).astype(np.float32)
    data[:, 0, 0] = np.nan  # a spaxel without data, as at cube edges
    stat = np.full_like(data, 0.05**2)
    primary = fits.Header()
    primary["HIERARCH ESO PRO CATG"] = "DATACUBE_FINAL"
    path = tmp_path / "DATACUBE_FINAL.fits"
    fits.HDUList([fits.PrimaryHDU(header=primary), fits.ImageHDU(data, name="DATA"),
                  fits.ImageHDU(stat, name="STAT")]).writeto(path)
    truth = (continuum + noise).astype(np.float32)
    return path, truth, sky


def test_sky_residual_clean_runs_on_a_tiny_cube(tiny_cube, tmp_path):
    from astropy.io import fits

    path, truth, sky = tiny_cube
    rec = get_recipe("sky_residual_clean")
    assert isinstance(rec, PythonRecipe)
    assert rec.parameters["method"] == RecipeParameter(
        "method", str, "pca", rec.parameters["method"].help, ("pca", "median"))
    assert "eigen-spectra" in rec.parameters["ncomp"].help
    lines = []
    params = rec.validate({"ncomp": 3})
    res = rec.run([(path, "DATACUBE_FINAL")], tmp_path / "out", params, log=lines.append)
    assert res.returncode == 0 and res.params["method"] == "pca" and res.params["ncomp"] == 3
    [out] = res.outputs
    assert out.category == "DATACUBE_FINAL" and Path(out.path).exists()
    assert any("sky_residual_clean" in ln for ln in lines) and lines[0] in res.log_text
    with fits.open(out.path) as h:
        assert [x.name for x in h[1:]] == ["DATA", "STAT"]
        cleaned = h["DATA"].data
        assert np.array_equal(h["STAT"].data, np.full_like(cleaned, 0.05**2))
    assert np.isnan(cleaned[:, 0, 0]).all()
    ok = np.isfinite(cleaned)
    before = np.sqrt(np.mean((sky[ok] + truth[ok] - truth[ok]) ** 2))
    after = np.sqrt(np.mean((cleaned[ok] - truth[ok]) ** 2))
    assert after < before / 5, (before, after)
    # The source's flux survives the cleaning.
    assert abs(np.nansum(cleaned[:, 6, 6]) - truth[:, 6, 6].sum()) < 0.02 * truth[:, 6, 6].sum()
    assert RecipeResult.from_json(res.to_json()) == res


def test_python_recipe_registers_from_signature_and_reports_failure(tmp_path):
    from musewise.recipes import recipes

    @register_python_recipe("test_scale", inputs={"IMAGE": True, "MASTER_FLAT": False},
                            outputs=["IMAGE_SCALED"], calibrations=["MASTER_FLAT"])
    def scale(frames, workdir, factor: float = 2.0, mode: Literal["a", "b"] = "a",
              explode: bool = False, log=None):
        """Scale images.

        Parameters
        ----------
        factor : float
            Multiplier (dimensionless).
        """
        if explode:
            log("about to fail")
            raise RuntimeError("boom")
        return []

    try:
        rec = get_recipe("test_scale")
        assert rec is scale.recipe and rec.description == "Scale images."
        assert rec.parameters["factor"] == RecipeParameter("factor", float, 2.0,
                                                           "Multiplier (dimensionless).", None)
        assert rec.parameters["mode"].choices == ("a", "b")
        assert rec.raw_tags == ["IMAGE"] and rec.calibration_tags == ["MASTER_FLAT"]
        with pytest.raises(ParameterError, match="test_scale.*'factor' expects float"):
            rec.validate({"factor": "x"})
        with pytest.raises(RecipeError, match="missing required input"):
            rec.run([], tmp_path)
        with pytest.raises(RecipeError, match=r"test_scale \(IFU 3\): RuntimeError: boom") as e:
            rec.run([(tmp_path / "i.fits", "IMAGE")], tmp_path, {"explode": True}, ifu=3,
                    inputs=[11, 12])
        assert e.value.inputs == (11, 12)
        assert "about to fail" in e.value.log_text and "Traceback" in e.value.log_text
        assert e.value.result.returncode == 1
    finally:
        recipes.unregister("test_scale")


def test_registering_a_duplicate_python_recipe_name_is_refused():
    with pytest.raises(MusewiseError, match="already registered"):
        register_python_recipe("muse_bias", inputs={"BIAS": True})(lambda frames, workdir: [])
    assert isinstance(get_recipe("muse_bias"), EsorexRecipe)
    with pytest.raises(TypeError):
        register(object())


# ---------------------------------------------------------------------------------------
# Running esorex: failure modes with a stand-in, then the real pipeline
# ---------------------------------------------------------------------------------------


def stand_in_esorex(folder, body: str) -> str:
    """Path of an ``esorex`` in ``folder`` that describes muse_fake (``--params``, ``--man-page``)
    and, when run, executes the shell lines ``body``."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    (d / "params.txt").write_text(PARAMS_TEXT)
    (d / "man.txt").write_text(MAN_TEXT)
    script = d / "esorex"
    script.write_text(f"""#!/bin/sh
for a in "$@"; do
  case "$a" in
    --params) cat {d}/params.txt; exit 0;;
    --man-page) cat {d}/man.txt; exit 0;;
  esac
done
{body}
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


@pytest.fixture
def fake_esorex(tmp_path):
    """An ``esorex`` that describes muse_fake and then hangs when run (slow spawn)."""
    return stand_in_esorex(tmp_path / "fakebin", 'echo "muse_fake: starting"\necho "muse_fake: working"\nsleep 60')


def test_esorex_run_times_out_and_streams_log(fake_esorex, tmp_path):
    rec = EsorexRecipe("muse_fake", esorex=fake_esorex, cache=False)
    assert rec.pipeline_version == "muse/1.2.3"
    raw = tmp_path / "raw.fits"
    raw.touch()
    sof = [(raw, "FAKE")] * 3 + [(raw, "MASTER_BIAS")]
    with pytest.raises(RecipeError, match="unknown input tag.*'DARK'"):
        rec.run(sof + [(raw, "DARK")], tmp_path / "w", {}, ifu=1)
    with pytest.raises(RecipeError, match=r"missing required input.*MASTER_BIAS"):
        rec.run(sof[:3], tmp_path / "w", {}, ifu=1)
    with pytest.raises(ParameterError, match="contradicts"):
        rec.run(sof, tmp_path / "w", {"nifu": 2}, ifu=1)
    seen = []
    t0 = time.monotonic()
    with pytest.raises(RecipeError, match=r"muse_fake \(IFU 1\): timed out after 1 s") as e:
        rec.run(sof, tmp_path / "w", {"lsigma": 2}, ifu=1, log=seen.append, timeout=1)
    assert time.monotonic() - t0 < 20
    assert seen == ["muse_fake: starting", "muse_fake: working"]
    assert "muse_fake: working" in e.value.log_text
    res = e.value.result
    assert "--nifu=1" in res.command and "--lsigma=2.0" in res.command
    assert "--merge=false" in res.command
    assert res.params["combine"] == "sigclip" and res.params["nifu"] == 1
    assert (tmp_path / "w" / "muse_fake.sof").read_text().count(" FAKE\n") == 3


def test_esorex_gets_the_openmp_threads_it_is_given(tmp_path):
    """Several runs at once on one host each get their share of the cores (DpuConfig.recipe_threads)."""
    esorex = stand_in_esorex(tmp_path / "bin", 'echo "threads: ${OMP_NUM_THREADS:-unset}"')
    rec = EsorexRecipe("muse_fake", esorex=esorex, cache=False)
    raw = tmp_path / "raw.fits"
    raw.touch()
    sof = [(raw, "FAKE")] * 3 + [(raw, "MASTER_BIAS")]
    before = os.environ.get("OMP_NUM_THREADS")
    for threads, seen in ((1, "threads: 1"), (3, "threads: 3"), (None, f"threads: {before or 'unset'}")):
        res = rec.run(sof, tmp_path / f"w{threads}", {}, ifu=1, threads=threads)
        assert seen in res.log_text.splitlines()
    assert os.environ.get("OMP_NUM_THREADS") == before  # set for esorex only, not in this process


@pytest.fixture(scope="module")
def bias_frames(tmp_path_factory):
    """Three simulated raw biases of IFU 1, from the instrument model."""
    try:
        from musewise.inm import simulate_night
    except ImportError as exc:  # written concurrently; see the task notes
        pytest.skip(f"musewise.inm cannot be imported: {exc}")
    from astropy.io import fits

    from conftest import fixture_tmp

    with fixture_tmp(tmp_path_factory, "night") as out:
        paths = simulate_night(out, night="2026-11-20", ifus=(1,), n_bias=3, n_dark=0, n_flat=0,
                               n_arc_per_lamp=0, n_skyflat=0, n_std=0, n_object=0,
                               progress=False, static=False)
        yield [p for p in paths if fits.getheader(p).get("HIERARCH ESO DPR TYPE") == "BIAS"]


@pytest.mark.pipeline
def test_muse_bias_runs_for_real_on_one_ifu(esorex_needed, bias_frames, tmp_path):
    from astropy.io import fits

    assert len(bias_frames) == 3
    rec = get_recipe("bias")
    params = rec.validate({"combine": "median"})
    lines = []
    res = rec.run([(p, "BIAS") for p in bias_frames], tmp_path / "bias", params, ifu=1,
                  log=lines.append)
    assert res.returncode == 0
    [out] = res.outputs
    assert (out.category, out.ifu) == ("MASTER_BIAS", 1)
    assert Path(out.path).parent == tmp_path / "bias"
    assert fits.getheader(out.path)["HIERARCH ESO PRO REC1 PARAM6 VALUE"] == "median"
    assert res.params["combine"] == "median" and res.params["nifu"] == 1
    assert res.params["lsigma"] == 3.0  # defaults recorded too
    assert any("MASTER_BIAS" in ln for ln in lines) and "\n".join(lines) in res.log_text
    assert res.pipeline_version.startswith("muse/") and res.duration > 0
    back = RecipeResult.from_json(res.to_json())
    assert back.outputs == res.outputs and back.started == res.started


@pytest.mark.pipeline
def test_failing_esorex_run_raises_with_log(esorex_needed, bias_frames, tmp_path):
    corrupt = tmp_path / "corrupt.fits"
    corrupt.write_bytes(b"SIMPLE  =                    T" + b"\0" * 100)  # truncated header
    sof = [(bias_frames[0], "BIAS"), (bias_frames[1], "BIAS"), (corrupt, "BIAS")]
    with pytest.raises(RecipeError, match=r"muse_bias \(IFU 1\): esorex exited with status") as e:
        get_recipe("bias").run(sof, tmp_path / "fail", {}, ifu=1, inputs=[1, 2, 3])
    err = e.value
    assert err.recipe == "muse_bias" and err.ifu == 1 and err.inputs == (1, 2, 3)
    assert "ERROR" in str(err)  # the last log lines are quoted
    assert "corrupt.fits" in err.log_text
    assert err.result.returncode != 0 and err.result.log_text == err.log_text
