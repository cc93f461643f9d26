"""The notebook-run executor that reductions and QC share: retry, side file, finish/fail, work dirs.

Real kernels (``MusewiseConfig.kernel_name``) execute tiny notebooks that count their
attempts in a file outside the work dir (the executor empties the work dir before a retry).
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from musewise.dpu.executor import NotebookJob, execute_notebook

BODY = """\
import json, os, pathlib
c = pathlib.Path(counter)
n = len(c.read_text()) if c.exists() else 0
c.write_text('x' * (n + 1))
if n == 0 and fail_first == 'die':
    os._exit(1)  # the kernel dies, as when two workers' kernels collide at start
if fail_first == 'raise':
    raise ValueError('the notebook itself is wrong')
pathlib.Path(workdir, 'side.json').write_text(json.dumps({'attempt': n + 1}))
"""


@pytest.fixture
def notebook(tmp_path) -> Path:
    nb = new_notebook(cells=[new_code_cell("counter = ''\nworkdir = ''\nfail_first = ''",
                                           metadata={"tags": ["parameters"]}),
                             new_code_cell(BODY)])
    nb.metadata["kernelspec"] = {"name": "musewise", "display_name": "musewise", "language": "python"}
    path = tmp_path / "job.ipynb"
    nbformat.write(nb, path)
    return path


def _job(notebook, counter, fail_first, keep=False):
    return NotebookJob(
        recipe="qc_test", params={"fail_first": fail_first}, template=notebook, folder=("test",),
        parameters=lambda run_id, workdir: {"counter": str(counter), "workdir": str(workdir),
                                            "fail_first": fail_first},
        result_file="side.json", timeout=120, keep_workdir=keep,
    )


def test_dead_kernel_is_retried_once_and_the_run_finishes_without_its_workdir(archive, notebook, tmp_path):
    counter = tmp_path / "attempts"
    run = execute_notebook(archive, _job(notebook, counter, "die"))
    assert counter.read_text() == "xx"  # started afresh after the kernel died
    assert run.error == "" and run.result == {"attempt": 2}
    assert len(run.kernel_retries) == 1 and "DeadKernelError" in run.kernel_retries[0]
    assert run.workdir == Path(archive.config.scratch) / archive.user_name / "test" / f"run{run.run_id:06d}"
    run.finish(archive, [], details=run.details(note="ok"))
    rec = archive.get_run(run.run_id)
    assert rec.status == "succeeded" and rec.notebook_id is not None
    assert rec.details["kernel_retries"] == run.kernel_retries and rec.details["note"] == "ok"
    assert not run.workdir.exists()  # a succeeded run's products are in the datastore


def test_a_cell_error_is_not_retried_and_the_failed_run_keeps_its_workdir(archive, notebook, tmp_path):
    counter = tmp_path / "attempts"
    run = execute_notebook(archive, _job(notebook, counter, "raise"))
    assert counter.read_text() == "x"  # what the notebook does, it would do again
    assert run.result is None and run.kernel_retries == []
    assert run.error.startswith("ValueError: the notebook itself is wrong")
    run.fail(archive, run.error)
    rec = archive.get_run(run.run_id)
    assert rec.status == "failed" and "the notebook itself is wrong" in rec.error
    nb = json.loads(Path(archive.path(rec.notebook_id)).read_text())
    assert "the notebook itself is wrong" in json.dumps(nb)  # the archived notebook shows the error
    assert run.notebook.exists()  # the work dir of a failed run is kept for looking into


def test_keep_workdir_keeps_a_succeeded_run(archive, notebook, tmp_path):
    run = execute_notebook(archive, _job(notebook, tmp_path / "attempts", "", keep=True))
    run.finish(archive, [])
    assert archive.get_run(run.run_id).status == "succeeded"
    assert (run.workdir / "side.json").exists()
