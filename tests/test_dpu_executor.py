"""The notebook-run executor that reductions and QC share: retry, side file, finish/fail, work dirs.

Real kernels (``MusewiseConfig.kernel_name``) execute tiny notebooks that count their
attempts in a file outside the work dir (the executor empties the work dir before a retry).
"""

from __future__ import annotations

import json
import os
import signal
import time
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


# ------------------------------------------------------------------------------ warm kernels
FRESH = """\
import json, os, pathlib, sys
seen = getattr(sys, '_musewise_test_marker', None)  # set by an earlier run, if a kernel were reused
sys._musewise_test_marker = run_label
if fail == 'die':
    os._exit(1)  # the kernel dies, in every attempt
pathlib.Path('side.json').write_text(json.dumps({  # relative: the kernel works in the run's work dir
    'pid': os.getpid(), 'seen': seen, 'cwd': os.getcwd(),
    'preloaded': 'musewise.dpu.notebook' in sys.modules}))
"""


def _label_notebook(path: Path, code: str) -> Path:
    # parameters run_label and fail, then ``code``, on the musewise kernel
    nb = new_notebook(cells=[new_code_cell("run_label = ''\nfail = ''", metadata={"tags": ["parameters"]}),
                             new_code_cell(code)])
    nb.metadata["kernelspec"] = {"name": "musewise", "display_name": "musewise", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture
def fresh_notebook(tmp_path) -> Path:
    return _label_notebook(tmp_path / "fresh.ipynb", FRESH)


def _fresh_job(notebook, label, fail=""):
    return NotebookJob(recipe="qc_test", params={"label": label}, template=notebook, folder=("test",),
                       parameters=lambda run_id, workdir: {"run_label": label, "fail": fail},
                       result_file="side.json", timeout=120)


def _pool(archive):
    from musewise.dpu.config import DpuConfig
    from musewise.dpu.kernelpool import kernel_pool

    d = DpuConfig.from_config(archive.config)
    return kernel_pool(archive.config.kernel_name, d.kernel_preload, d.warm_kernel_idle, d.kernel_reuse_limit)


def test_each_run_has_a_fresh_kernel_started_while_the_previous_run_executed(archive, fresh_notebook):
    first = execute_notebook(archive, _fresh_job(fresh_notebook, "first"))
    spare = _pool(archive).spare_pid()
    second = execute_notebook(archive, _fresh_job(fresh_notebook, "second"))
    assert first.error == "" and second.error == ""
    a, b = first.result, second.result
    assert a["pid"] != b["pid"] and b["pid"] == spare  # the spare, started before the second run began
    assert a["seen"] is None and b["seen"] is None  # nothing of the first run's kernel reached the second
    assert a["cwd"] == str(first.workdir) and b["cwd"] == str(second.workdir)
    assert a["preloaded"] and b["preloaded"]  # the heavy imports were done before the run
    with pytest.raises(ProcessLookupError):  # a kernel executes one notebook, then is stopped
        for _ in range(100):
            os.kill(a["pid"], 0)
            time.sleep(0.1)


def test_a_spare_kernel_killed_before_its_run_is_replaced(archive, fresh_notebook):
    execute_notebook(archive, _fresh_job(fresh_notebook, "first"))
    spare = _pool(archive).spare_pid()
    os.kill(spare, signal.SIGKILL)
    run = execute_notebook(archive, _fresh_job(fresh_notebook, "after-kill"))
    assert run.error == "" and run.kernel_retries == [] and run.result["pid"] != spare


def test_a_kernel_that_dies_in_every_attempt_fails_the_run(archive, fresh_notebook):
    run = execute_notebook(archive, _fresh_job(fresh_notebook, "dies", fail="die"))
    assert run.result is None and "DeadKernelError" in run.error
    assert len(run.kernel_retries) == 1  # retried once on another kernel, then given up
    run.fail(archive, run.error)
    assert archive.get_run(run.run_id).status == "failed"


def test_cold_kernels_when_warm_kernels_are_off(archive, fresh_notebook):
    from traitlets.config import Config

    cfg = Config()
    cfg.DpuConfig.warm_kernels = False
    archive.config.config = cfg
    runs = [execute_notebook(archive, _fresh_job(fresh_notebook, f"cold{i}")) for i in range(2)]
    assert all(r.error == "" for r in runs) and runs[0].result["pid"] != runs[1].result["pid"]
    assert not runs[0].result["preloaded"]  # papermill's own kernel: nothing imported beforehand


# ------------------------------------------------------------------- QC notebooks sharing a kernel
SHARED = """\
import json, os, pathlib, sys
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
found = {'variable': 'secret' in globals(), 'figures': len(plt.get_fignums()),
         'linewidth': matplotlib.rcParams['lines.linewidth'], 'env': os.environ.get('MUSEWISE_TEST_LEAK'),
         'divide': np.geterr()['divide'], 'path': '/nowhere' in sys.path,
         'marker': getattr(sys, '_musewise_test_marker', None)}
secret = 1
plt.figure()
matplotlib.rcParams['lines.linewidth'] = 9.0
os.environ['MUSEWISE_TEST_LEAK'] = run_label
np.seterr(divide='raise')
sys.path.append('/nowhere')
sys._musewise_test_marker = run_label  # a module attribute: what a reset keeps (imports and their state)
pathlib.Path('side.json').write_text(json.dumps(dict(found, pid=os.getpid(), cwd=os.getcwd())))
if fail:
    raise ValueError(fail)
"""


@pytest.fixture
def shared_notebook(tmp_path) -> Path:
    return _label_notebook(tmp_path / "shared.ipynb", SHARED)


def _qc_job(notebook, label, fail="", reuse=True):
    job = _fresh_job(notebook, label, fail)
    job.kernel_kind = "qc" if reuse else ""
    return job


def _reuse_limit(archive, n):
    from traitlets.config import Config

    from musewise.dpu.kernelpool import close_pools

    close_pools()  # no kernel kept from an earlier test
    cfg = Config()
    cfg.DpuConfig.kernel_reuse_limit = n
    archive.config.config = cfg


def test_qc_notebooks_share_a_kernel_reset_between_them(archive, shared_notebook):
    _reuse_limit(archive, 3)
    runs = [execute_notebook(archive, _qc_job(shared_notebook, f"qc{i}")) for i in range(4)]
    assert all(r.error == "" for r in runs)
    pids = [r.result["pid"] for r in runs]
    assert pids[0] == pids[1] == pids[2] != pids[3]  # three notebooks, then a new kernel (the limit)
    assert [r.kernel_notebook for r in runs] == [1, 2, 3, 1]
    second = runs[1].result
    assert second["marker"] == "qc0"  # the same process: imported modules kept...
    # ...but nothing the first notebook set is seen by the second
    assert second == dict(second, variable=False, figures=0, linewidth=runs[0].result["linewidth"], env=None,
                          divide=runs[0].result["divide"], path=False)
    assert [r.result["cwd"] for r in runs] == [str(r.workdir) for r in runs]
    nb = nbformat.read(runs[1].notebook, as_version=4)
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert counts[0] == 1  # numbered as in a fresh kernel


def test_a_run_that_does_not_share_kernels_never_gets_a_used_one(archive, shared_notebook, fresh_notebook):
    _reuse_limit(archive, 5)
    qc = execute_notebook(archive, _qc_job(shared_notebook, "qc"))
    reduction = execute_notebook(archive, _fresh_job(fresh_notebook, "reduction"))
    assert qc.error == "" and reduction.error == ""
    assert reduction.result["pid"] != qc.result["pid"] and reduction.result["seen"] is None
    again = execute_notebook(archive, _qc_job(shared_notebook, "qc-again"))
    assert again.result["pid"] == qc.result["pid"]  # the QC kernel waited beside the reduction's


def test_a_failed_qc_notebook_kernel_is_not_reused(archive, shared_notebook):
    _reuse_limit(archive, 5)
    bad = execute_notebook(archive, _qc_job(shared_notebook, "bad", fail="spoiled"))
    after = execute_notebook(archive, _qc_job(shared_notebook, "after"))
    assert "spoiled" in bad.error and after.error == ""
    assert after.result["pid"] != bad.result["pid"] and after.kernel_notebook == 1


def test_no_kernel_sharing_when_the_limit_is_one(archive, shared_notebook):
    _reuse_limit(archive, 1)
    runs = [execute_notebook(archive, _qc_job(shared_notebook, f"one{i}")) for i in range(2)]
    assert runs[0].result["pid"] != runs[1].result["pid"] and runs[1].result["marker"] is None


def test_one_users_kernel_never_serves_another_users_run(archive, shared_notebook):
    # a service executing runs for several users in one process
    _reuse_limit(archive, 5)
    alice, bob = archive.as_user("alice"), archive.as_user("bob")
    a1 = execute_notebook(alice, _qc_job(shared_notebook, "alice-1"))
    b1 = execute_notebook(bob, _qc_job(shared_notebook, "bob-1"))
    a2 = execute_notebook(alice, _qc_job(shared_notebook, "alice-2"))
    assert a1.error == b1.error == a2.error == ""
    assert b1.result["pid"] != a1.result["pid"] and b1.result["marker"] is None  # nothing of alice's run
    assert a2.result["pid"] == a1.result["pid"] and a2.kernel_notebook == 2  # alice's kernel, kept for her


def test_a_kept_kernel_killed_before_the_next_run_is_replaced(archive, shared_notebook):
    _reuse_limit(archive, 5)
    first = execute_notebook(archive, _qc_job(shared_notebook, "first"))
    os.kill(first.result["pid"], signal.SIGKILL)  # killed while kept for the next run (out of memory...)
    after = execute_notebook(archive, _qc_job(shared_notebook, "after-kill"))
    assert after.error == "" and after.kernel_retries == []
    assert after.result["pid"] != first.result["pid"] and after.kernel_notebook == 1
