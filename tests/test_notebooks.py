"""The generated notebooks (``templates/``, ``qc_notebooks/``) and how an installed musewise finds them.

Both folders are written by code (:mod:`musewise.dpu.templates`,
:mod:`musewise.qc.templates`) and committed: a change to the builders must come
with regenerated notebooks, byte for byte (fixed cell ids make that possible).
"""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from musewise.dpu.templates import write_templates
from musewise.qc.templates import write_notebooks
from musewise.resources import SHARED_FOLDERS, shared_folder

REPO = Path(__file__).resolve().parents[1]

GENERATED = {
    "templates": (write_templates, "python -m musewise.dpu.templates"),
    "qc_notebooks": (write_notebooks, "python -m musewise.qc.templates"),
}


@pytest.mark.parametrize("folder", sorted(GENERATED))
def test_committed_notebooks_are_the_generated_ones(folder, tmp_path):
    write, command = GENERATED[folder]
    written = write(tmp_path)
    committed = sorted(p.name for p in (REPO / folder).glob("*.ipynb"))
    assert sorted(p.name for p in written) == committed, f"{folder}/ holds other notebooks: run `{command}`"
    stale = [p.name for p in written if not filecmp.cmp(p, REPO / folder / p.name, shallow=False)]
    assert not stale, f"{folder}/{', '.join(stale)} differ from what the code writes: run `{command}` and commit"


@pytest.mark.parametrize("folder", sorted(GENERATED))
def test_regenerating_changes_nothing(folder, tmp_path):
    write, _ = GENERATED[folder]
    first = {p.name: p.read_bytes() for p in write(tmp_path / "a")}
    second = {p.name: p.read_bytes() for p in write(tmp_path / "b")}
    assert first == second


def test_notebooks_run_the_configured_kernel(tmp_path):
    import nbformat

    for folder, (write, _) in GENERATED.items():
        for p in write(tmp_path / folder):
            nb = nbformat.read(p, as_version=4)
            assert nb.metadata["kernelspec"]["name"] == "musewise", p.name
            assert len({c.id for c in nb.cells}) == len(nb.cells), f"{p.name}: cell ids not unique"


def test_an_installed_musewise_finds_its_folders(tmp_path):
    """``pip install --target`` ships the folders under share/musewise, and musewise finds them there."""
    src = tmp_path / "src"  # a copy: building writes build/ and *.egg-info into the source folder
    for part in ("musewise", *SHARED_FOLDERS):
        shutil.copytree(REPO / part, src / part, ignore=shutil.ignore_patterns("__pycache__"))
    for part in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / part, src / part)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-compile", "--target", str(target), str(src)], check=True, capture_output=True, cwd=tmp_path)
    for folder in SHARED_FOLDERS:
        shipped = {p.name for p in (target / "share" / "musewise" / folder).glob("*.ipynb")}
        assert shipped == {p.name for p in (REPO / folder).glob("*.ipynb")}, folder
    code = ("import musewise, musewise.resources as r, musewise.dpu.templates as t, musewise.qc.runner as q, "
            "musewise.qc.thresholds as th; print(musewise.__file__); "
            "print(*(r.shared_folder(n) for n in r.SHARED_FOLDERS)); print(t.template_for('muse_bias')); "
            "print(q.notebook_for('bias', th.QCConfig()))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}).stdout
    lines = out.split("\n")
    assert lines[0].startswith(str(target / "musewise")), "imported the wrong musewise"
    share = target / "share" / "musewise"
    assert lines[1].split() == [str(share / n) for n in SHARED_FOLDERS]
    assert lines[2] == str(share / "templates" / "muse_bias.ipynb")
    assert lines[3] == str(share / "qc_notebooks" / "qc_bias.ipynb")


def test_a_checkout_uses_its_own_folders():
    # Edits to the committed notebooks must be seen at once, without reinstalling.
    assert shared_folder("templates") == REPO / "templates"
    assert shared_folder("qc_notebooks") == REPO / "qc_notebooks"


def test_a_notebook_run_leaves_the_terminal_quiet(tmp_path):
    """Kernels started for musewise notebooks do not write their log into the user's terminal."""
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
                                         nbformat.v4.new_code_cell("print('x is', x)")])
    nb.metadata["kernelspec"] = {"name": "musewise", "display_name": "musewise", "language": "python"}
    nbformat.write(nb, tmp_path / "t.ipynb")
    code = ("import papermill as pm, sys; from musewise.kernel import papermill_options; "
            "pm.execute_notebook(sys.argv[1], sys.argv[2], parameters={'x': 2}, **papermill_options('musewise'))")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "t.ipynb"), str(tmp_path / "out.ipynb")],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr == "", r.stdout + r.stderr  # e.g. "running over TCP without encryption"
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert out.cells[-1].outputs[0]["text"] == "x is 2\n"  # the output went into the notebook
