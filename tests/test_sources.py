"""Source catalogues of cubes (step ``sources``, recipe ``muselet``): detection, archive rows, cross-match.

A small synthetic cube (``write_synthetic_cube``: a line source and a continuum source) is
catalogued once for the module (``small_catalog``, ~1 min: MUSELET runs SExtractor on every
plane); the catalogue is archived on SQLite and PostgreSQL (``archive`` fixture) to check
the ``sources`` table and its privileges. The field's combined cube (real pipeline,
``field`` session fixture) is catalogued once (``field_catalog``) to find the simulated
Lyman-alpha emitter.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from conftest import fixture_tmp, need
from sqlalchemy import text

from musewise.vocabulary import Privilege

from test_web import populated, web  # noqa: F401  (the web view on a populated archive, reused)


def long_pipeline(test):
    """A test on the field the session reduces with the real pipeline: ``long`` (make test-long)."""
    return pytest.mark.long(pytest.mark.pipeline(test))


def _need_sextractor():
    need(any(shutil.which(n) for n in ("source-extractor", "sex", "sextractor")),
         "SExtractor not installed (apt-get install source-extractor)")


@pytest.fixture(scope="module")
def small_catalog(tmp_path_factory):
    """(SyntheticCube, catalogue path, seconds) of the recipe run on a 200 x 30 x 40 synthetic cube."""
    import time

    from musewise.products.testing import write_synthetic_cube
    from musewise.recipes import get_recipe

    _need_sextractor()
    with fixture_tmp(tmp_path_factory, "sources") as root:
        cube = write_synthetic_cube(root / "DATACUBE_FINAL.fits", shape=(200, 30, 40), seed=1)
        t0 = time.perf_counter()
        res = get_recipe("muselet").run([(cube.path, "DATACUBE_FINAL")], root / "out", {"n_cpu": 2})
        (out,) = res.outputs
        yield cube, Path(out.path), time.perf_counter() - t0


def test_the_line_and_the_continuum_source_of_a_small_cube_are_found(small_catalog):
    from musewise.dpu.steps import get_step
    from musewise.products.catalog import read_sources, source_image, source_spectrum

    cube, path, seconds = small_catalog
    print(f"muselet on a 200 x 30 x 40 cube: {seconds:.1f} s")
    step = get_step("sources")
    assert (step.recipe, step.input_tag, step.main_product) == ("muselet", "DATACUBE_FINAL", "SOURCE_CATALOG")
    table = read_sources(path)
    assert table.meta["header"]["ESO PRO CATG"] == "SOURCE_CATALOG"
    assert table.meta["header"]["OBJECT"] == "SYNTHETIC"  # the cube's observation keywords are kept
    line_src, cont_src = (s for s in sorted(cube.sources, key=lambda s: s.line_wavelength is None))
    lines = table[table["kind"] == "line"]
    assert len(lines) == 1, lines  # one line, not once per plane it spans
    (lr,) = lines
    assert np.hypot(lr["x"] - line_src.x, lr["y"] - line_src.y) < 0.5
    assert abs(lr["wavelength"] - line_src.line_wavelength) <= 2.5
    assert lr["snr"] > 20
    conts = table[table["kind"] == "continuum"]
    assert min(np.hypot(conts["x"] - cont_src.x, conts["y"] - cont_src.y)) < 0.5
    spec = source_spectrum(path, int(lr["id"]))
    peak = spec.wave[np.nanargmax(spec.data)]
    assert abs(peak - line_src.line_wavelength) <= 2.5 and spec.var is not None
    img = source_image(path, int(lr["id"]))
    assert img.wcs_header is not None and np.nanmax(img.data) > 0


def test_a_file_that_is_not_a_cube_is_a_clear_error(tmp_path):
    from musewise.exceptions import RecipeError
    from musewise.products.testing import write_master
    from musewise.recipes import get_recipe

    _need_sextractor()
    bias = write_master(tmp_path / "MASTER_BIAS.fits", "MASTER_BIAS", np.zeros((8, 8), "f4"),
                        datetime(2026, 11, 20, 18))
    with pytest.raises(RecipeError, match="not a cube|no DATA|not a MUSE cube") as err:
        get_recipe("muselet").run([(bias, "DATACUBE_FINAL")], tmp_path / "out")
    assert "MASTER_BIAS.fits" in str(err.value)
    assert not list((tmp_path / "out").glob("*_SOURCES.fits"))


def _archive_catalog(archive, path, *, privilege, project=None):
    from musewise.products.testing import write_cube
    from musewise.qc.testing import archive_product

    cube = archive_product(archive, write_cube(Path(path).parent / "cube_for_catalog.fits", datetime(2026, 11, 21, 2)),
                           "muse_scipost", [], ifu=None, category="DATACUBE_FINAL", privilege=privilege,
                           project=project)
    cat = archive_product(archive, path, "muselet", [cube.id], ifu=None, category="SOURCE_CATALOG",
                          privilege=privilege, project=project)
    return cube, cat


def test_sources_are_rows_in_sql_seen_by_exactly_those_who_see_the_catalog(archive, small_catalog, tmp_path):
    from musewise.products.catalog import read_sources
    from musewise.web.sqlpage import run_readonly_sql

    _, path, _ = small_catalog
    mine = tmp_path / "SOURCES.fits"
    shutil.copy(path, mine)
    cube, cat = _archive_catalog(archive, mine, privilege=Privilege.PROJECT, project="galaxies")
    assert cat.category == "SOURCE_CATALOG" and cat.kind == "science"
    assert cube.id in archive.provenance(cat.id).datasets  # its provenance reaches the cube
    n = len(read_sources(mine))
    rows = archive.sources(dataset_id=cat.id)
    assert len(rows) == n and {r["kind"] for r in rows} == {"line", "continuum"}
    (line,) = archive.sources(kind="line", wave_min=4890, wave_max=4910)
    assert line["dataset_id"] == cat.id and line["spectrum"] == "SPEC_1"
    assert all(r["wavelength"] is None for r in rows if r["kind"] == "continuum")  # NaN is NULL
    sql = f"SELECT source_id, kind, ra, dec, wavelength FROM sources WHERE dataset_id = {cat.id}"
    for who, sees in (("admin", n), ("alice", n), ("bob", n), ("carol", 0), ("eve", 0)):
        user = archive.as_user(who)
        assert len(user.sources()) == sees, who
        _, got = run_readonly_sql(user, sql)
        assert len(got) == sees, who
    if archive.engine.dialect.name == "postgresql":  # the server's own policies agree
        for who, sees in (("alice", n), ("carol", 0), ("eve", 0)):
            with archive.engine.connect() as conn:
                conn.execute(text(f'SET ROLE "{who}"'))
                got = conn.scalar(text(f"SELECT count(*) FROM sources WHERE dataset_id = {cat.id}"))
                conn.rollback()
            assert got == sees, who


def test_a_catalog_that_cannot_be_read_archives_nothing(archive, tmp_path):
    from astropy.io import fits

    from musewise.exceptions import InvalidFrameError

    bad = tmp_path / "SOURCES.fits"
    h = fits.Header()
    h["INSTRUME"] = "MUSE"
    h["HIERARCH ESO PRO CATG"] = "SOURCE_CATALOG"
    h["DATE-OBS"] = "2026-11-21T02:00:00"
    h["MJD-OBS"] = 61365.083
    fits.PrimaryHDU(header=h).writeto(bad)  # no SOURCES table
    run = archive.begin_run("muselet", {}, night="2026-11-20", inputs=[])
    with pytest.raises(InvalidFrameError, match="no SOURCES table"):
        archive.finish_run(run, [(str(bad), "SOURCE_CATALOG", None)])
    assert archive.query(category="SOURCE_CATALOG") == [] and archive.sources() == []


def test_crossmatch_finds_the_external_source_within_the_separation(small_catalog, tmp_path):
    from astropy.table import Table

    from musewise.products.catalog import crossmatch, read_sources

    _, path, _ = small_catalog
    table = read_sources(path)
    (line,) = table[table["kind"] == "line"]
    dec = float(line["dec"])
    ext = Table({"id": ["LAE-1", "far"], "RA": [line["ra"] + 0.3 / 3600 / np.cos(np.radians(dec)), 10.0],
                 "Dec": [dec, -10.0]})
    for name, kw in (("ext.ecsv", {}), ("ext.csv", {"format": "ascii.csv"}), ("ext.fits", {})):
        ext.write(tmp_path / name, **kw)
        got = crossmatch(table, tmp_path / name, max_sep=1.0)
        row = got[got["id"] == line["id"]][0]
        assert row["match_id"] == "LAE-1" and row["match_sep"] == pytest.approx(0.3, abs=0.01), name
        assert "far" not in set(got["match_id"])
    tight = crossmatch(table, tmp_path / "ext.ecsv", max_sep=0.1)
    assert tight[tight["id"] == line["id"]][0]["match_index"] == -1


def test_the_notebook_template_shows_detections_and_spectra():
    import nbformat

    from musewise.dpu.templates import build_template

    nb = build_template("muselet")
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "checks.plot_detections(catalog, cube)" in code and "checks.plot_source_spectra(catalog)" in code
    committed = Path(__file__).resolve().parents[1] / "templates" / "muselet.ipynb"
    assert nbformat.read(committed, as_version=4).cells[-3].source == nb.cells[-3].source


def test_the_check_figures_draw_the_sources(small_catalog):
    import matplotlib

    matplotlib.use("Agg")
    from musewise.dpu import checks

    cube, path, _ = small_catalog
    fig = checks.plot_detections(path, cube.path)
    assert "1 emission-line sources" in fig.axes[0].get_title()
    fig = checks.plot_source_spectra(path)
    assert len(fig.axes) == 2 and "line at" in fig.axes[0].get_title()


def test_the_catalogs_page_lists_its_sources_with_their_spectrum_and_image(populated, web, small_catalog, tmp_path):
    arch, _ = populated
    get, _ = web
    _, path, _ = small_catalog
    mine = tmp_path / "SOURCES.fits"
    shutil.copy(path, mine)
    _, cat = _archive_catalog(arch, mine, privilege=Privilege.PROJECT, project="galaxies")
    page = get(f"datasets/{cat.id}", user="alice")
    assert page.status_code == 200 and 'id="sources"' in page.text
    table = page.text[page.text.index('id="sources"'):]
    assert "4898.63" in table and table.count("spectrum.png") == 3
    for what in ("spectrum", "image"):
        r = get(f"datasets/{cat.id}/sources/1/{what}.png", user="alice")
        assert r.status_code == 200 and r.content.startswith(b"\x89PNG"), what
    # who may not see the catalogue sees neither its page nor its sources' figures
    assert get(f"datasets/{cat.id}", user="carol").status_code == 404
    assert get(f"datasets/{cat.id}/sources/1/spectrum.png", user="carol").status_code == 404
    assert get(f"datasets/{cat.id}/sources/99/spectrum.png", user="alice").status_code == 404


# ------------------------------------------------------------------------------ the real pipeline's field
@pytest.fixture(scope="module")
def field_catalog(field, tmp_path_factory):
    """(archive copy of the field, its combined cube's record, SOURCE_CATALOG record, seconds) after one run.

    ``sources`` of the target, as a user asks for it: one run, on the field's combined cube.
    """
    import time

    from fieldfixture import field_copy

    from musewise.dpu import api

    _need_sextractor()
    with fixture_tmp(tmp_path_factory, "field_sources") as root:
        arch = field_copy(field, root)
        arch.add_user("eve", member=False)  # an outside user, who sees public data only
        cube = field["list_cube"]  # combine_cubes': the preferred combination
        (spec,) = api.prepare("sources", None, commit=True, archive=arch, target=field["programme"].field.name,
                              p={"n_cpu": 2})
        assert [i.dataset_id for i in spec.inputs] == [cube.id]
        t0 = time.perf_counter()
        (outcome,) = api.execute([spec], arch, progress=False)
        seconds = time.perf_counter() - t0
        assert outcome.ok, outcome
        (cat,) = [r for r in arch.query(category="SOURCE_CATALOG") if r.run_id is not None]
        try:
            yield arch, cube, cat, seconds
        finally:
            arch.close()


@long_pipeline
def test_the_lyman_alpha_emitter_is_in_the_catalog_where_and_when_it_was_simulated(field, field_catalog):
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    from musewise.inm import LymanAlphaEmitter
    from musewise.products.catalog import read_sources

    arch, cube, cat, seconds = field_catalog
    f = field["programme"].field
    (lae, ra, dec), = [(s, r, d) for s, r, d in f.scene.sky_positions(f.ra, f.dec) if isinstance(s, LymanAlphaEmitter)]
    table = read_sources(arch.path(cat.id))
    lines = table[table["kind"] == "line"]
    assert len(lines), "no emission-line source at all"
    where = SkyCoord(np.asarray(lines["ra"], float) * u.deg, np.asarray(lines["dec"], float) * u.deg)
    sep = where.separation(SkyCoord(ra * u.deg, dec * u.deg)).arcsec
    k = int(np.argmin(sep))
    found = lines[k]
    print(f"sources on the combined cube: {len(lines)} line, {len(table) - len(lines)} continuum in {seconds:.0f} s; "
          f"LAE found {sep[k]:.3f} arcsec from its simulated position, line at {found['wavelength']:.2f} A "
          f"(simulated {lae.line_wavelength:.2f} A, {found['wavelength'] - lae.line_wavelength:+.2f} A), "
          f"S/N {found['snr']:.1f}")
    for r in lines:  # what else was found: the galaxy's lines, residuals of sky lines
        print(f"  line source {r['id']}: x {r['x']:.1f} y {r['y']:.1f}, {r['wavelength']:.2f} A, S/N {r['snr']:.1f}")
    print("QC:", {q["name"]: q["value"] for q in arch.qc(cat.id)})
    assert sep[k] < 0.5
    assert abs(found["wavelength"] - lae.line_wavelength) <= 2.5


@long_pipeline
def test_the_field_catalog_is_archived_with_provenance_rows_and_its_notebook(field_catalog):
    arch, cube, cat, _ = field_catalog
    run = arch.get_run(cat.run_id)
    assert run.recipe == "muselet" and run.status == "succeeded"
    graph = arch.provenance(cat.id)
    assert cube.id in graph.datasets and {"muselet", "combine_cubes", "muse_scipost"} <= {
        r.recipe for r in graph.runs.values()}
    rows = arch.sources(dataset_id=cat.id)
    assert rows and any(r["kind"] == "line" for r in rows)
    assert len(arch.as_user("eve").sources(dataset_id=cat.id)) == 0  # consortium data: not public
    nb = json.loads(Path(arch.path(run.notebook_id)).read_text())
    figures = {c["source"] if isinstance(c["source"], str) else "".join(c["source"]):
               sum("image/png" in o.get("data", {}) for o in c.get("outputs", []))
               for c in nb["cells"] if c["cell_type"] == "code"}
    (shown,) = [n for src, n in figures.items() if "plot_detections" in src]
    assert shown == 2, "the detections over the white light and the spectra with their lines"


def test_qc_of_a_catalog_counts_its_sources_and_those_at_sky_lines(small_catalog):
    from musewise.qc.measures_field import measure_sources
    from musewise.qc.thresholds import QC_TYPES, QCThresholds

    cube, path, _ = small_catalog
    m = measure_sources(path)
    assert (m.values["n_line"], m.values["n_continuum"], m.values["sky_fraction"]) == (1, 2, 0.0)
    line = next(s.line_wavelength for s in cube.sources if s.line_wavelength)
    bad = measure_sources(path, sky_lines=[line + 1.0])  # as if the line were a sky residual
    assert bad.values["sky_fraction"] == 1.0
    assert QC_TYPES["SOURCE_CATALOG"] == "sources"
    assert QCThresholds().check("sources", bad.values).flag == "bad"
