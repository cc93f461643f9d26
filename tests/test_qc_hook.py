"""Automatic QC after reductions, against frames the instrument model spoiled on purpose.

Fixtures here
-------------
spoiled_bias_night (module)
    Three raw biases of IFUs 1 and 2 with a hot column in IFU 2 (``hot_column:2``): the
    spoiled IFU and a good one in the same frames.
reduced_biases (module)
    ``dpu.make('bias')`` of that night on SQLite with the real pipeline, committed: the
    post-run hook has run QC on both master biases.
"""

from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import pytest
from traitlets.config import Config

from musewise import dpu
from musewise.exceptions import ConfigurationError
from musewise.inm import InstrumentModel, Spoil, SpoilKind
from musewise.qc import qc_of
from musewise.vocabulary import FrameType

NIGHT = "2026-11-21"

#: Engines the recording hook below was called with (a module-level hook, imported by name).
HOOK_CALLS: list = []


def recording_hook(arch, outcomes, *, engine, progress):
    HOOK_CALLS.append((engine, [o.step for o in outcomes]))
    return "recorded"


def broken_hook(arch, outcomes, *, engine, progress):
    raise RuntimeError("hook broke")


#: Set by a test to let ``waiting_hook`` return.
RELEASE = threading.Event()


def waiting_hook(arch, outcomes, *, engine, progress, priority=0):
    """A hook that cannot change the next step's inputs and holds until the test releases it."""
    assert RELEASE.wait(60), "the test never released the hook"
    return {"priority": priority, "thread": threading.current_thread().name, "progress": progress}


waiting_hook.gates_next_step = lambda config: False


def where_hook(arch, outcomes, *, engine, progress, priority=0):
    """Where and how it was called: in the caller's thread, or beside the next batch."""
    HOOK_CALLS.append((engine, [o.step for o in outcomes], priority, threading.current_thread().name))
    return "recorded"


where_hook.gates_next_step = lambda config: False


# ------------------------------------------------------------------------------ the instrument model
def test_spoils_change_only_the_spoiled_ifu_and_frame_type():
    m = InstrumentModel(ifus=(1, 2), spoils=["hot_column:2", "lamp_off:2:0.1", "arc_shift:2:4"])
    bias2 = m.electrons(2, FrameType.BIAS, 0.0)
    assert bias2[:, 1000].min() == bias2[:, 1000].max() == 400.0  # e- in every row of column 1000
    assert np.count_nonzero(bias2) == bias2.shape[0]
    assert m.electrons(1, FrameType.BIAS, 0.0) is None  # IFU 1 untouched
    good = InstrumentModel(ifus=(1, 2))
    flat_good = good.electrons(2, FrameType.FLAT, 10.0).copy()
    flat_bad = m.electrons(2, FrameType.FLAT, 10.0).copy()
    lit = flat_good > 1000
    dark_current = 0.5  # e- of the 10 s flat that are not lamp light (dark current, hot pixels)
    assert np.median(flat_bad[lit] / flat_good[lit]) == pytest.approx(0.1, abs=dark_current / 1000)
    arc_good = good.electrons(2, FrameType.ARC, 15.0, lamp="Ne").copy()
    arc_bad = m.electrons(2, FrameType.ARC, 15.0, lamp="Ne").copy()
    col = int(np.argmax(arc_good.sum(axis=0)))  # a lit column
    lag = np.argmax(np.correlate(arc_bad[:, col] - arc_bad[:, col].mean(),
                                 arc_good[:, col] - arc_good[:, col].mean(), "full")) - (arc_good.shape[0] - 1)
    assert lag == 4  # lines moved 4 rows along the dispersion
    # a spoil concerns only its frame types: the flat of a hot-column model is the good one
    hc = InstrumentModel(ifus=(1, 2), spoils=[Spoil(SpoilKind.HOT_COLUMN, 2)])
    assert np.array_equal(hc.electrons(2, FrameType.FLAT, 10.0), flat_good)


def test_spoil_text_is_checked():
    assert Spoil.parse("hot_column:2:800") == Spoil(SpoilKind.HOT_COLUMN, 2, 800.0)
    assert Spoil.parse("lamp_off:3").amount == 0.02
    with pytest.raises(ConfigurationError, match="unknown spoil"):
        Spoil.parse("lamp_of:2")
    with pytest.raises(ConfigurationError, match="IFU must be 1-24"):
        Spoil.parse("hot_column:25")
    with pytest.raises(ConfigurationError, match="KIND:IFU"):
        Spoil.parse("hot_column")
    with pytest.raises(ConfigurationError, match="level must be 0-1"):
        Spoil("lamp_off", 1, 2.0)


def test_cli_refuses_a_bad_spoil_before_writing(tmp_path, capsys):
    from musewise.cli import main

    assert main(["simulate", str(tmp_path / "night"), "--ifus", "1", "--spoil", "hot_col:1"]) != 0
    assert "unknown spoil 'hot_col'" in capsys.readouterr().err
    assert not (tmp_path / "night").exists()


# ------------------------------------------------------------------------------ post-run hooks
def test_post_run_hooks_are_loaded_by_name_and_checked_before_anything_runs(archive):
    from musewise.dpu.hooks import load_hook, run_post_run_hooks
    from musewise.qc.runner import after_run

    assert load_hook("musewise.qc.runner:after_run") is after_run
    assert dpu.DpuConfig().post_run_hooks == ["musewise.qc.runner:after_run"]  # QC by default
    for bad, match in (("musewise.qc.runner", "module.path:function"),
                       ("musewise.no_such_module:f", "No post-run hook"),
                       ("musewise.qc.runner:no_such_function", "has no function")):
        with pytest.raises(ConfigurationError, match=match):
            load_hook(bad)
    # a misspelt hook stops a reduction before any run is recorded
    cfg = Config()
    cfg.DpuConfig.post_run_hooks = ["musewise.qc.runner:aftr_run"]
    archive.config.config = cfg
    with pytest.raises(ConfigurationError, match="aftr_run"):
        dpu.api.execute([], archive)
    assert archive.runs() == []
    # a hook that raises is reported, the others still run
    got = run_post_run_hooks(archive, [], [("b", broken_hook), ("r", recording_hook)], engine="local")
    assert isinstance(got["b"], RuntimeError) and got["r"] == "recorded"


def _succeeded(step="bias"):
    from musewise.dpu.runner import RunOutcome

    return RunOutcome(1, f"{step} {NIGHT} IFU 1", "succeeded", [], None, step=step, ifu=1)


def test_hooks_that_cannot_change_the_next_step_run_beside_it_on_dask(archive):
    from musewise.dpu.hooks import BESIDE_PRIORITY, PostRunHooks

    RELEASE.clear()
    hooks = PostRunHooks(archive, ["test_qc_hook:waiting_hook"])
    assert hooks.beside
    pending = hooks.after([_succeeded()], engine="dask")
    # the caller goes on (the next batch starts) while the hook still holds
    assert not pending.done()
    RELEASE.set()
    (got,) = hooks.wait()
    assert pending.done()
    result = got["test_qc_hook:waiting_hook"]
    assert result["priority"] == BESIDE_PRIORITY < 0  # its Dask tasks give way to the reductions
    assert result["thread"].startswith("musewise-post-run-hooks") and result["progress"] is False
    assert hooks.wait() == []  # nothing left
    # the local engine runs one thing after the other: the hook runs there and then
    now = hooks.after([_succeeded()], engine="local")
    assert now["test_qc_hook:waiting_hook"]["priority"] == 0
    assert now["test_qc_hook:waiting_hook"]["thread"] == threading.current_thread().name
    # a batch whose runs all failed made nothing to look at
    failed = _succeeded()
    failed.status = "failed"
    assert hooks.after([failed], engine="dask") == {} and hooks.wait() == []


def test_a_hook_that_may_gate_the_next_step_ends_before_it(archive):
    from musewise.dpu.hooks import PostRunHooks

    RELEASE.set()
    HOOK_CALLS.clear()
    # recording_hook does not say whether it gates: assumed to, so all hooks run before the next batch
    hooks = PostRunHooks(archive, ["test_qc_hook:waiting_hook", "test_qc_hook:recording_hook"])
    assert not hooks.beside
    got = hooks.after([_succeeded()], engine="dask")
    assert got["test_qc_hook:recording_hook"] == "recorded" and HOOK_CALLS == [("dask", ["bias"])]
    assert got["test_qc_hook:waiting_hook"]["priority"] == 0
    # a cascade told not to overlap (a single dpu.run) neither
    assert not PostRunHooks(archive, ["test_qc_hook:waiting_hook"], beside=False).beside


def test_qc_runs_beside_the_next_step_unless_it_marks_bad_products_invalid(archive):
    from musewise.dpu.hooks import PostRunHooks

    assert PostRunHooks(archive, ["musewise.qc.runner:after_run"]).beside  # the default: QC flags only
    cfg = Config()
    cfg.QCConfig.invalidate_bad = True  # QC can take a product out of the next step's selection
    archive.config.config = cfg
    assert not PostRunHooks(archive, ["musewise.qc.runner:after_run"]).beside


def test_hooks_beside_the_batches_have_ended_when_the_cascade_raises(archive):
    from musewise.dpu.hooks import PostRunHooks

    RELEASE.clear()
    timer = threading.Timer(0.5, RELEASE.set)
    timer.start()
    with pytest.raises(RuntimeError, match="a later step failed"):
        with PostRunHooks(archive, ["test_qc_hook:waiting_hook"]) as hooks:
            fut = hooks.after([_succeeded()], engine="dask")
            raise RuntimeError("a later step failed")
    # the QC of what was made is not abandoned: it ended before the error reached the caller
    assert fut.done() and fut.result()["test_qc_hook:waiting_hook"]["priority"] < 0
    timer.join()


# ------------------------------------------------------------------------------ a reduced spoiled night
def _need_esorex():
    from conftest import need

    need(shutil.which("esorex") is not None, "esorex not installed (apt-get install esorex cpl-plugin-muse)")


@pytest.fixture(scope="module")
def spoiled_bias_night(tmp_path_factory):
    from conftest import fixture_tmp
    from musewise.inm import simulate_night

    with fixture_tmp(tmp_path_factory, "spoiled-night") as out:
        yield simulate_night(out, night=NIGHT, ifus=(1, 2), n_bias=3, n_dark=0, n_flat=0, n_arc_per_lamp=0,
                             n_skyflat=0, n_std=0, n_object=0, seed=5, progress=False, static=False,
                             spoils=["hot_column:2"])


@pytest.fixture(scope="module")
def reduced_biases(tmp_path_factory, spoiled_bias_night):
    _need_esorex()
    from conftest import fixture_tmp
    from musewise.archive import Archive
    from musewise.config import MusewiseConfig

    with fixture_tmp(tmp_path_factory, "spoiled-archive") as root:
        arch = Archive(MusewiseConfig.load(root=str(root), user="admin", project="consortium"), user="admin")
        cfg = arch.config.config
        cfg.DpuConfig.post_run_hooks = ["musewise.qc.runner:after_run", "test_qc_hook:recording_hook"]
        cfg.DpuConfig.shared_kernels = ["qc"]  # each reduction in a fresh kernel: the reference below
        arch.config.config = cfg
        try:
            rep = arch.ingest_many(spoiled_bias_night, progress=False)
            assert not rep.refused
            HOOK_CALLS.clear()
            from musewise.dpu.kernelpool import close_pools

            close_pools()  # no kernel kept by an earlier test: the first QC gets a fresh one
            dpu.make("bias", NIGHT, [1, 2], dry_run=False, commit=True, archive=arch, engine="local",
                     progress=False)
            yield arch
        finally:
            arch.close()


@pytest.mark.pipeline
def test_reduction_runs_qc_and_flags_the_spoiled_ifu_only(reduced_biases):
    from musewise.qc import queue, review_state

    arch = reduced_biases
    assert HOOK_CALLS == [("local", ["bias", "bias"])]  # once per batch, with the reduction's engine
    masters = {r.ifu: r for r in arch.query(category="MASTER_BIAS")}
    assert sorted(masters) == [1, 2]
    # the step's two master biases are measured in one QC run, one notebook
    (qc_run,) = arch.runs(recipe="qc_bias")
    assert qc_run.status == "succeeded" and sorted(qc_of(qc_run)) == sorted(r.id for r in masters.values())
    assert qc_run.details["flag"] == "warning" and qc_run.ifu is None
    for ifu, rec in masters.items():
        values = {q["name"]: q["value"] for q in arch.qc(rec.id)}
        assert values["bias.ron.max"] == pytest.approx(2.8, abs=0.6), ifu  # the simulated CCDs' read noise
        assert {q["run_id"] for q in arch.qc(rec.id) if q["name"].startswith("bias.")} == {qc_run.id}
    nb = json.loads(open(arch.path(qc_run.notebook_id)).read())
    figures = [o for c in nb["cells"] for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    text = "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))
    # the numbers of both IFUs against the limits, then the figure of the flagged IFU only
    assert len(figures) == 2, text
    assert f"dataset {masters[2].id} MASTER_BIAS IFU 02 night {NIGHT}: WARNING - hot_columns" in text
    bad, good = masters[2], masters[1]
    assert {q["name"]: q["value"] for q in arch.qc(bad.id)}["bias.hot_columns"] == 1
    assert {q["name"]: q["value"] for q in arch.qc(good.id)}["bias.hot_columns"] == 0
    assert arch.get(bad.id).flag == "warning"
    assert arch.get(good.id).flag == "unchecked"  # passing: still for a person to look at, not flagged
    assert review_state(arch, bad.id)[2]["state"] == "pending"
    assert "hot_columns" in review_state(arch, bad.id)[2]["reason"]
    assert review_state(arch, good.id) == {}
    states = {i.dataset_id: i.state for i in queue(arch, category="MASTER_BIAS")}
    assert states[bad.id] == "pending"  # queued by QC, for a reviewer
    assert states[good.id] == "unchecked"


@pytest.mark.pipeline
def test_reductions_in_a_shared_kernel_make_the_same_masters(tmp_path, spoiled_bias_night, reduced_biases):
    from astropy.io import fits

    from musewise.archive import Archive
    from musewise.config import MusewiseConfig
    from musewise.dpu.kernelpool import close_pools

    close_pools()  # the first run starts from a fresh kernel, the second in the first one's
    arch = Archive(MusewiseConfig.load(root=str(tmp_path / "archive"), user="admin", project="consortium"),
                   user="admin")
    try:
        cfg = arch.config.config
        cfg.DpuConfig.shared_kernels = ["qc", "reduction"]
        cfg.DpuConfig.post_run_hooks = []
        arch.config.config = cfg
        assert not arch.ingest_many(spoiled_bias_night, progress=False).refused
        dpu.make("bias", NIGHT, [1, 2], dry_run=False, commit=True, archive=arch, engine="local", progress=False)
        runs = arch.runs(recipe="muse_bias")
        assert sorted(r.details.get("kernel_notebook", 1) for r in runs) == [1, 2]
        for rec in arch.query(category="MASTER_BIAS"):
            (fresh,) = reduced_biases.query(category="MASTER_BIAS", ifu=rec.ifu)
            with fits.open(arch.path(rec.id)) as a, fits.open(reduced_biases.path(fresh.id)) as b:
                assert np.array_equal(a["DATA"].data, b["DATA"].data), rec.ifu  # as from a fresh kernel
    finally:
        arch.close()
        close_pools()


@pytest.mark.pipeline
def test_qc_beside_a_dask_cascade_has_ended_when_make_returns(tmp_path, spoiled_bias_night):
    """On Dask the QC runs beside the next step (here: after the last one): make returns once it ended."""
    _need_esorex()
    from musewise.archive import Archive
    from musewise.config import MusewiseConfig
    from musewise.dpu.hooks import BESIDE_PRIORITY

    arch = Archive(MusewiseConfig.load(root=str(tmp_path / "archive"), user="admin", project="consortium",
                                       n_workers=2), user="admin")
    try:
        cfg = arch.config.config
        cfg.DpuConfig.post_run_hooks = ["musewise.qc.runner:after_run", "test_qc_hook:where_hook"]
        arch.config.config = cfg
        assert not arch.ingest_many(spoiled_bias_night, progress=False).refused
        HOOK_CALLS.clear()
        dpu.make("bias", NIGHT, [1, 2], dry_run=False, commit=True, archive=arch, engine="dask", progress=False)
        ((engine, steps, priority, thread),) = HOOK_CALLS
        assert (engine, sorted(steps), priority) == ("dask", ["bias", "bias"], BESIDE_PRIORITY)
        assert thread.startswith("musewise-post-run-hooks")
        masters = {r.ifu: r for r in arch.query(category="MASTER_BIAS")}
        for ifu, rec in masters.items():
            (qc_run,) = [r for r in arch.runs(recipe="qc_bias") if rec.id in qc_of(r)]
            assert qc_run.status == "succeeded", ifu
        assert arch.get(masters[2].id).flag == "warning" and arch.get(masters[1].id).flag == "unchecked"
        assert not [r for r in arch.runs() if r.status == "running"]
    finally:
        arch.close()
