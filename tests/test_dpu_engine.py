"""Execution engines: memory-heavy runs never run together, whatever the number of workers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest


def _timed(item):
    # A run standing in for esorex: records when it ran (s, wall clock). One given peers
    # waits (up to 60 s) until they have started too, so runs that may run together
    # overlap however late a loaded machine starts the second one.
    folder, name, *peers = item
    t0 = time.time()
    Path(folder, name + ".started").touch()
    time.sleep(0.6)
    deadline = time.time() + 60
    while peers and time.time() < deadline and not all(Path(folder, p + ".started").exists() for p in peers):
        time.sleep(0.05)
    Path(folder, name).write_text(f"{t0} {time.time()}")
    return name


def _overlap(a, b) -> bool:
    return a[0] < b[1] and b[0] < a[1]


@pytest.fixture(params=["local", "site"])
def dask_engine(request, tmp_path):
    """The Dask engine on musewise's own LocalCluster, and on a site's scheduler and workers given by address."""
    from musewise.config import MusewiseConfig
    from musewise.dpu.config import DpuConfig
    from musewise.dpu.engine import close_clients, get_engine
    from musewise.testing import TemporaryDaskCluster

    if request.param == "local":
        cfg = MusewiseConfig.load(root=str(tmp_path / "root"), n_workers=2)
        yield get_engine("dask", cfg, DpuConfig(heavy_concurrency=1))
        close_clients()
        return
    # the site's scheduler and workers import this module's functions, as a site's own code
    with TemporaryDaskCluster(2, dir=tmp_path / "dask", pythonpath=[Path(__file__).parent]) as site:
        cfg = MusewiseConfig.load(root=str(tmp_path / "root"), dask_scheduler=site.address)
        try:
            yield get_engine("dask", cfg, DpuConfig(heavy_concurrency=1))
        finally:
            close_clients()


def test_heavy_runs_take_turns_and_light_ones_run_together(dask_engine, tmp_path):
    folder = str(tmp_path)
    items = [(folder, "light1", "light2"), (folder, "light2", "light1"), (folder, "heavy1"), (folder, "heavy2")]
    out = dask_engine.map(_timed, items, progress=False, heavy=[False, False, True, True])
    assert out == ["light1", "light2", "heavy1", "heavy2"]
    span = {n: tuple(map(float, (tmp_path / n).read_text().split())) for _, n, *_ in items}
    assert not _overlap(span["heavy1"], span["heavy2"]), span
    assert _overlap(span["light1"], span["light2"]), span


def test_a_single_heavy_run_takes_the_clusters_heavy_limit_once_the_cluster_is_up(dask_engine, tmp_path):
    from musewise.dpu.engine import close_clients, get_client
    from musewise.dpu.executor import engine_name

    cfg = dask_engine.config
    close_clients()
    assert engine_name("auto", 1, cfg) == "local"  # no cluster started for one run
    assert engine_name("auto", 2, cfg) == "dask"
    get_client(cfg, dask_engine.dpu_config)  # an earlier step of the cascade started it
    assert engine_name("auto", 1, cfg) == "dask"
    assert engine_name("local", 5, cfg) == "local"  # a site's explicit choice stands
    # A heavy product's QC running beside the cascade (another thread) and the lone heavy
    # run of the next step take turns: a local run would have overlapped it.
    from concurrent.futures import ThreadPoolExecutor

    from musewise.dpu.engine import get_engine

    with ThreadPoolExecutor(1) as beside:
        qc = beside.submit(dask_engine.map, _timed, [(str(tmp_path), "heavy-qc")], progress=False, heavy=[True],
                           priority=-1)
        time.sleep(0.2)
        get_engine(engine_name("auto", 1, cfg), cfg, dask_engine.dpu_config).map(
            _timed, [(str(tmp_path), "heavy-run")], progress=False, heavy=[True])
        qc.result()
    span = {n: tuple(map(float, (tmp_path / n).read_text().split())) for n in ("heavy-qc", "heavy-run")}
    assert not _overlap(span["heavy-qc"], span["heavy-run"]), span


def _worker_setting(key):
    import dask

    return dask.config.get(key)


def test_the_local_clusters_workers_take_the_configured_dask_settings(tmp_path):
    # Their statistical profiler samples every thread's stack every 10 ms: CPU that a worker
    # on a core of its own takes from the esorex beside it. Off by default, on if a site asks.
    from musewise.config import MusewiseConfig
    from musewise.dpu.config import DpuConfig
    from musewise.dpu.engine import close_clients, get_engine

    key = "distributed.worker.profile.enabled"
    cfg = MusewiseConfig.load(root=str(tmp_path / "root"), n_workers=2)
    try:
        assert get_engine("dask", cfg, DpuConfig()).map(_worker_setting, [key, key], progress=False) == [False, False]
        close_clients()
        site = DpuConfig(local_cluster_dask_config={key: True, "distributed.worker.profile.interval": "20ms"})
        engine = get_engine("dask", cfg, site)
        assert engine.map(_worker_setting, [key, "distributed.worker.profile.interval"], progress=False) == [True, "20ms"]
    finally:
        close_clients()
    import dask

    assert dask.config.get(key) is True  # this process's own Dask settings are left as they were


def test_runs_at_once_share_the_cores_for_their_openmp_threads():
    from musewise.dpu.api import runs_at_once
    from musewise.dpu.config import DpuConfig

    d = DpuConfig()
    # the local engine runs one at a time; Dask as many as workers, heavy ones heavy_concurrency
    assert runs_at_once("local", [False] * 4, 2, 1) == 1
    assert runs_at_once("dask", [False] * 4, 2, 1) == 2
    assert runs_at_once("dask", [False], 2, 1) == 1  # one IFU: the other worker idles
    assert runs_at_once("dask", [True] * 3, 2, 1) == 1  # scipost runs take turns
    assert runs_at_once("dask", [True, False, False], 4, 1) == 3
    assert [d.threads_per_run(n, cores=2) for n in (1, 2, 3)] == [2, 1, 1]
    assert d.threads_per_run(4, cores=24) == 6
    assert DpuConfig(recipe_threads=3).threads_per_run(2, cores=2) == 3  # the site's choice wins


def test_batch_jobs_run_one_call_each_and_heavy_recipes_ask_the_batch_system_for_their_own_size(tmp_path):
    """On Slurm through dask-jobqueue: the job script of a heavy recipe's worker asks for its memory and
    cores, the others' for theirs; each job is one worker of one thread; esorex gets the job's cores."""
    pytest.importorskip("dask_jobqueue")
    from musewise.config import MusewiseConfig
    from musewise.dpu.api import recipe_threads
    from musewise.dpu.config import DpuConfig
    from musewise.dpu.engine import batch_cluster
    from musewise.exceptions import ConfigurationError

    dcfg = DpuConfig(cluster_kwargs={"queue": "muse", "memory": "6GB", "walltime": "01:00:00",
                                     "log_directory": str(tmp_path),
                                     "scheduler_options": {"host": "127.0.0.1", "dashboard_address": ":0"}},
                     heavy_cluster_kwargs={"memory": "20GB", "job_cpu": 2})
    scripts = {}
    for heavy in (False, True):
        cluster = batch_cluster("slurm", dcfg, heavy=heavy)
        try:
            scripts[heavy] = cluster.job_script()
        finally:
            cluster.close()
    light, big = scripts[False], scripts[True]
    assert "#SBATCH -p muse" in light and "#SBATCH -p muse" in big  # the rest of cluster_kwargs is shared
    assert "#SBATCH --mem=6G" in light and "#SBATCH --cpus-per-task=1" in light
    assert "#SBATCH --mem=19G" in big and "#SBATCH --cpus-per-task=2" in big  # 20 GB are 18.6 GiB
    assert "-J musewise-heavy" in big and "-J musewise\n" in light
    for script in (light, big):
        # one worker process of one thread: one pipeline call at a time
        assert "--nthreads 1" in script and "--nworkers" not in script

    slurm = MusewiseConfig.load(root=str(tmp_path / "root"), dask_scheduler="jobqueue:slurm")
    assert recipe_threads("dask", [True], slurm, dcfg) == 2  # the heavy job's cores
    assert recipe_threads("dask", [False, False], slurm, dcfg) == 1
    assert recipe_threads("dask", [True], slurm, DpuConfig(recipe_threads=4)) == 4  # the site's choice wins
    here = MusewiseConfig.load(root=str(tmp_path / "root"), n_workers=2)
    assert recipe_threads("dask", [False, False], here, dcfg) == dcfg.threads_per_run(2)

    with pytest.raises(ConfigurationError, match="cores=4.*one pipeline call at a time.*job_cpu"):
        DpuConfig(cluster_kwargs={"cores": 4}).batch_job_kwargs()
    with pytest.raises(ConfigurationError, match="processes=2"):
        DpuConfig(heavy_cluster_kwargs={"processes": 2}).batch_job_kwargs(heavy=True)
    with pytest.raises(ConfigurationError, match="unknown dask-jobqueue system 'torque'"):
        batch_cluster("torque", dcfg)
