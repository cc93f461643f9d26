"""ZAP as a reduction step on the real pipeline's cubes (IFU 1), and what the notebooks show.

Reuses ``test_dpu``'s module fixtures (the night of IFU 1 and its cascade to the cubes with
the pipeline's sky model), then runs ``dpu.make('zap')`` on them once (fixture ``zapped``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from musewise import dpu

from test_dpu import NIGHT, cascade, dpu_night, measure_stars  # noqa: F401  (module fixtures reused)

# The cascade (~20 min on a loaded 2-core machine) and ZAP on its two cubes (~10 min) share
# the first test's time limit.


def pipeline(test):
    """A real-pipeline test that reduces a whole field or cascade of its own: ``long``, run by
    ``make test-long``, not by ``make test`` (CI's time limit)."""
    return pytest.mark.long(pytest.mark.pipeline(test))

slow = pytest.mark.timeout(5400)

LINES = (5577.339, 6300.304)
SCIPOST = {"scipost": {"crsigma": 20}}  # what test_dpu's cascade made its cubes with


@pytest.fixture(scope="module")
def zapped(cascade):  # noqa: F811
    """(archive, [(DATACUBE_FINAL record, DATACUBE_ZAP record)]) after ``dpu.make('zap')``."""
    arch, _ = cascade
    # The cascade's scipost parameters, so that its cubes are current and only ZAP runs.
    dpu.make("zap", NIGHT, [1], dry_run=False, commit=True, archive=arch, progress=False,
             step_params=SCIPOST)
    pairs = []
    for z in (r for r in arch.query(category="DATACUBE_ZAP") if r.is_valid):
        run = arch.get_run(z.run_id)
        (src,) = [i for i in run.inputs if i.tag == "DATACUBE_FINAL"]
        pairs.append((arch.get(src.dataset_id), z))
    return arch, pairs


def _notebook(arch, run) -> dict:
    return json.loads(Path(arch.path(run.notebook_id)).read_text())


def _figures_after(nb: dict, code: str) -> int:
    """PNG figures in the outputs of the cell whose source contains ``code``."""
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and code in "".join(cell["source"]):
            return sum("image/png" in o.get("data", {}) for o in cell.get("outputs", []))
    raise AssertionError(f"no cell calling {code!r} in the notebook")


@pipeline
@slow
def test_zap_cleans_every_exposure_cube_with_provenance(zapped):
    arch, pairs = zapped
    finals = [r for r in arch.query(category="DATACUBE_FINAL") if r.is_valid and r.run_id is not None]
    assert len(pairs) == len(finals) == 2  # one ZAP cube per exposure, of the cubes there were
    for final, z in pairs:
        run = arch.get_run(z.run_id)
        assert run.recipe == "zap" and run.status == "succeeded", (run.recipe, run.status)
        assert final.category == "DATACUBE_FINAL" and final.is_valid  # the input stays
        graph = arch.provenance(z.id)
        assert {"zap", "muse_scipost", "muse_bias"} <= {r.recipe for r in graph.runs.values()}
        assert {r.id for r in arch.query(category="BIAS")} <= set(graph.datasets)
        from astropy.io import fits

        h = fits.getheader(arch.path(z.id), 0)
        assert h["ESO PRO CATG"] == "DATACUBE_ZAP" and h["MUSEWISE ZAP MASK"] is True
    # Asking again finds nothing to do: the ZAP cubes are up to date.
    assert not dpu.plan("zap", NIGHT, [1], archive=arch, commit=True, step_params=SCIPOST).todo


@pipeline
def test_zap_does_not_worsen_sky_residuals_and_keeps_the_stars_flux(zapped):
    """Residuals at 5577 and 6300 A in the sky spaxels no worse after ZAP; star flux kept within 2 %."""
    from astropy.io import fits

    from musewise.dpu.checks import sky_spaxels
    from musewise.inm import Scene
    from musewise.inm.night import SCIENCE_FIELD
    from musewise.inm.spectra import sky_line_in_cube
    from musewise.products.cube import white_light
    from musewise.products.wcs import spectral_axis
    from musewise.qc.measures import sky_line_residuals

    arch, pairs = zapped
    for final, z in pairs:
        res = {}
        with fits.open(arch.path(final.id)) as h0, fits.open(arch.path(z.id)) as h1:
            airmass = 0.5 * (h0[0].header["ESO TEL AIRM START"] + h0[0].header["ESO TEL AIRM END"])
            sky = sky_spaxels(white_light(h0["DATA"].data))
            wave, _ = spectral_axis(h0["DATA"].header, h0["DATA"].data.shape[0])
            for name, h in (("before", h0), ("after", h1)):
                r = sky_line_residuals(h["DATA"].data[:, sky], None, wave, lines=LINES)
                res[name] = {ln: r[ln]["residual"] for ln in LINES}
        for ln in LINES:
            simulated = sky_line_in_cube(ln, airmass)
            before, after = res["before"][ln], res["after"][ln]
            print(f"cube {final.id} {ln:.0f} A: residual {100 * before / simulated:+.3f}% -> "
                  f"{100 * after / simulated:+.3f}% of the line")
            # Not worse (within 0.2 % of the line: the noise of the residual's median).
            assert abs(after) <= abs(before) + 0.002 * simulated, (ln, before, after)
        stars0 = measure_stars(arch.path(final.id), Scene.default(), SCIENCE_FIELD)
        stars1 = measure_stars(arch.path(z.id), Scene.default(), SCIENCE_FIELD)
        assert stars0 and len(stars0) == len(stars1)
        for (star, _, f0), (_, _, f1) in zip(stars0, stars1):
            print(f"cube {final.id}: star ({star.dx}, {star.dy}) flux after / before ZAP {f1 / f0:.4f}")
            assert abs(f1 / f0 - 1) < 0.02, (star, f0, f1)


@pipeline
def test_zap_memory_per_voxel_is_what_the_module_documents(zapped, tmp_path):
    from musewise.recipes.zapclean import BYTES_PER_VOXEL, FULL_CUBE_VOXELS, measure_memory, memory_needed

    arch, pairs = zapped
    m = measure_memory(arch.path(pairs[0][0].id), tmp_path)
    print(f"ZAP peak {m['peak_bytes'] / 2**20:.0f} MiB for {m['voxels']} voxels: {m['bytes_per_voxel']:.1f} B/voxel; "
          f"a 300x300x3700 cube: {memory_needed(FULL_CUBE_VOXELS) / 2**30:.0f} GiB")
    assert m["bytes_per_voxel"] <= BYTES_PER_VOXEL


@pipeline
def test_notebooks_show_what_an_astronomer_checks(zapped):
    arch, pairs = zapped
    zap_run = arch.get_run(pairs[0][1].run_id)
    nb = _notebook(arch, zap_run)
    assert _figures_after(nb, "checks.plot_sky_residuals") == 1, "no before/after sky-residual figure"
    scipost = arch.get_run(pairs[0][0].run_id)
    assert scipost.recipe == "muse_scipost"
    nb = _notebook(arch, scipost)
    assert _figures_after(nb, "checks.plot_sky_subtracted") == 1, "no figure of the sky subtracted"
    assert "SKY_LINES marked" in json.dumps(nb)  # the title says the lines are marked


def test_zap_recipe_on_a_small_cube_removes_line_residuals_and_says_how(tmp_path):
    """The registered recipe on a synthetic cube (no pipeline): residuals at 5577/6300 A go, the star stays."""
    from datetime import datetime

    import matplotlib

    matplotlib.use("Agg")
    from astropy.io import fits

    from musewise.dpu.checks import plot_sky_residuals
    from musewise.dpu.steps import get_step
    from musewise.products.testing import write_cube
    from musewise.products.wcs import spectral_axis
    from musewise.qc.measures import sky_line_residuals
    from musewise.recipes import get_recipe

    cube = write_cube(tmp_path / "DATACUBE_FINAL.fits", datetime(2026, 11, 21, 1, 0), sky_residual=20)
    step = get_step("zap")
    assert (step.input_tag, step.main_product, step.per) == ("DATACUBE_FINAL", "DATACUBE_ZAP", "exposure")
    lines = []
    res = get_recipe("zap").run([(cube, "DATACUBE_FINAL")], tmp_path / "out", {"cfwidth": 100}, log=lines.append)
    (out,) = res.outputs
    assert out.category == "DATACUBE_ZAP" and out.ifu is None
    assert any("Zapped!" in ln for ln in lines)  # ZAP's own log reaches the run's log
    measured = {}
    for name, path in (("before", cube), ("after", out.path)):
        with fits.open(path) as h:
            d = h["DATA"].data
            wave, _ = spectral_axis(h["DATA"].header, d.shape[0])
            r = sky_line_residuals(d, None, wave, lines=LINES)
            # The star: 5x5 spaxels around it, less the same box far from it.
            star = float(d[:, 9:16, 10:17].sum() - d[:, 0:7, 0:7].sum())
            measured[name] = ({ln: r[ln]["residual"] for ln in LINES}, star, h[0].header)
    (r0, s0, _), (r1, s1, h1) = measured["before"], measured["after"]
    for ln in LINES:
        assert abs(r1[ln]) < 0.05 * abs(r0[ln]), (ln, r0[ln], r1[ln])
    assert abs(s1 / s0 - 1) < 0.02, (s0, s1)
    assert h1["ESO PRO CATG"] == "DATACUBE_ZAP" and h1["MUSEWISE ZAP CFWIDTH"] == 100
    fig = plot_sky_residuals(cube, out.path)
    # One panel per strong sky line inside 5400-6500 A.
    assert [ax.get_title() for ax in fig.axes] == ["5577.3 A", "6300.3 A", "6363.8 A"]


def test_zap_memory_for_a_full_cube_is_documented():
    from musewise.recipes import zapclean

    need = zapclean.memory_needed()
    assert need == zapclean.BYTES_PER_VOXEL * 300 * 300 * 3700
    assert "Memory" in zapclean.__doc__ and "300 x 300 x 3700" in zapclean.__doc__
