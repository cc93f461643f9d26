"""The example notebooks (``notebooks/``) open the archive's own products, and fall back to synthetic data.

Each notebook runs on the real kernel (papermill) twice: with ``MUSEWISE_ROOT`` naming a
site archive (fixture ``site_archive``: the simulated night's raw frames, a cube, the master
flats of a night, per-IFU master biases with their read noise), where it must show those
products; and with ``MUSEWISE_ROOT`` naming a folder with no archive, where it must say so
and show its synthetic or demo data instead. The notebooks are hand-written: their cell ids
must stay fixed (no random ids), so that an edit shows as a small diff.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import nbformat
import pytest

from conftest import REPO, fixture_tmp

NOTEBOOKS = ("archive_browser", "cube_viewer", "plan", "qc_panel", "qc_trends")
NIGHT = "2026-11-20"


def test_the_example_notebooks_have_fixed_ids_and_no_outputs():
    assert sorted(p.stem for p in (REPO / "notebooks").glob("*.ipynb")) == sorted(NOTEBOOKS)
    for name in NOTEBOOKS:
        nb = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
        ids = [c.id for c in nb.cells]
        assert len(set(ids)) == len(ids) and all(re.fullmatch(r"[0-9a-f]{8}", i) for i in ids), name
        assert nb.metadata["kernelspec"]["name"] == "musewise", name
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells
                   if c.cell_type == "code"), f"{name}: commit notebooks without outputs"


@pytest.fixture(scope="module")
def site_archive(tmp_path_factory, sim_frames):
    """A site archive under its root: raw night, a cube, 3 master flats of NIGHT, biases with QC numbers."""
    from musewise.archive import Archive
    from musewise.config import MusewiseConfig
    from musewise.qc.testing import archive_product, bias_trend, write_cube, write_master

    import numpy as np

    with fixture_tmp(tmp_path_factory, "site") as root:
        arch = Archive(MusewiseConfig.load(root=str(root / "site"), project="consortium"), user="admin")
        files = [p for t in ("BIAS", "FLAT", "ARC", "OBJECT", "static") for p in sim_frames[t]]
        assert not arch.ingest_many(files, progress=False).refused
        t0 = datetime(2026, 11, 20, 23, 0)
        cube = archive_product(arch, write_cube(root / "DATACUBE_FINAL.fits", t0, object="NGC 4650A"),
                               "muse_scipost", night=NIGHT, ifu=None, category="DATACUBE_FINAL")
        run = arch.begin_run("muse_flat", {}, night=NIGHT)
        flats = arch.finish_run(run, [(str(write_master(root / f"MASTER_FLAT-{i:02d}.fits", "MASTER_FLAT",
                                                        np.ones((40, 36)), t0)), "MASTER_FLAT", i)
                                      for i in (1, 2, 3)])
        biases = bias_trend(arch, root / "biases", ("2026-11-18", "2026-11-19"), (1, 2, 3),
                            spoiled={("2026-11-19", 2): 3.0})
        yield {"root": root / "site", "arch": arch, "cube": cube, "flats": flats, "biases": biases}
        arch.close()


def _run(name, tmp_path, monkeypatch, root) -> list[str]:
    """Execute notebooks/<name>.ipynb with MUSEWISE_ROOT=root; the text output of each code cell."""
    import papermill as pm

    from musewise.kernel import papermill_options

    for var in ("MUSEWISE_CONFIG", "MUSEWISE_DB_URL", "MUSEWISE_DATASTORE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MUSEWISE_ROOT", str(root))
    monkeypatch.setenv("MUSEWISE_USER", "admin")
    out = tmp_path / f"{name}.out.ipynb"
    pm.execute_notebook(str(REPO / "notebooks" / f"{name}.ipynb"), str(out), cwd=str(tmp_path),
                        **papermill_options("musewise"), execution_timeout=600)
    nb = nbformat.read(out, as_version=4)
    texts = []
    for c in nb.cells:
        if c.cell_type == "code":
            texts.append("".join(o.get("text", "") + o.get("data", {}).get("text/plain", "")
                                 for o in c.outputs if o.output_type != "error"))
    return texts


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_a_notebook_opens_the_archives_products(name, site_archive, tmp_path, monkeypatch):
    site = site_archive
    arch = site["arch"]
    texts = _run(name, tmp_path, monkeypatch, site["root"])
    first = next(t for t in texts if t)
    assert "instead" not in first and "synthetic" not in first, first
    if name == "cube_viewer":
        cube = site["cube"]
        assert f"archived cube #{cube.id} {cube.filename}: night {NIGHT}, NGC 4650A" in first
        assert f"'{arch.path(cube.id)}'" in first  # the source the viewers open
        out = "".join(texts)
        assert "spaxel (12, 12)" in out and "aperture (12, 12) r=3" in out  # the centre of its 24 x 24 spaxels
        assert "no other cube of this field" in out
    elif name == "archive_browser":
        assert f"{arch.count()} datasets visible to 'admin'" in first
        ids = sorted(r.id for r in site["flats"])
        assert f"3 master flats ; {ids}" in texts[2] and "ImageViewer" in texts[2]
        assert f"no run notebook" in texts[2]  # these flats were archived without one
    elif name == "qc_panel":
        newest = max(site["flats"], key=lambda r: r.id)
        assert f"the MASTER_FLATs of {NIGHT} (the newest: #{newest.id})" in first
        assert "your archive: record a verdict" in "".join(texts)
        # an example does not change the site's products
        assert {arch.get(r.id).ifu_state(r.ifu).flag for r in site["flats"]} == {"unchecked"}
    elif name == "plan":
        assert f"night {NIGHT} in <Archive sqlite:///{site['root']}" in first
        assert re.search(r"bias +IFU 01 +missing +no valid MASTER_BIAS", texts[-1])
    elif name == "qc_trends":
        assert "QC parameters ['bias.ron.max']" in first
        bad = site["biases"]["2026-11-19", 2]
        m = re.search(rf"2026-11-19 IFU 2 #{bad}: ([\d.]+) e- \(bad, flag unchecked\)", texts[-1])
        assert m and float(m.group(1)) > 5.0, texts[-1]  # the spoiled IFU, beyond the bad limit


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_without_an_archive_a_notebook_says_so_and_shows_synthetic_data(name, tmp_path, monkeypatch):
    empty = tmp_path / "no-archive"
    texts = _run(name, tmp_path, monkeypatch, empty)
    first = next(t for t in texts if t)
    assert "no archive" in first and ("instead" in first or "synthetic" in first), first
    assert not (empty / "archive.sqlite").exists(), "the notebook created an archive"
    if name == "cube_viewer":
        assert "showing a synthetic cube" in first
    elif name == "qc_trends":
        assert "QC parameters ['bias.ron.max']" in first and "(bad" in texts[-1]
    elif name == "plan":
        assert re.search(r"scipost +exposure MJD \d+\.\d+ +missing", texts[-1])
