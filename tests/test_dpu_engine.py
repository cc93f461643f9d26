"""Execution engines: memory-heavy runs never run together, whatever the number of workers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest


def _timed(item):
    # A run standing in for esorex: records when it ran (s, wall clock).
    folder, name = item
    t0 = time.time()
    time.sleep(0.6)
    Path(folder, name).write_text(f"{t0} {time.time()}")
    return name


def _overlap(a, b) -> bool:
    return a[0] < b[1] and b[0] < a[1]


@pytest.fixture
def dask_engine(tmp_path):
    from musewise.config import MusewiseConfig
    from musewise.dpu.config import DpuConfig
    from musewise.dpu.engine import close_clients, get_engine

    cfg = MusewiseConfig.load(root=str(tmp_path / "root"), n_workers=2)
    yield get_engine("dask", cfg, DpuConfig(heavy_concurrency=1))
    close_clients()


def test_heavy_runs_take_turns_and_light_ones_run_together(dask_engine, tmp_path):
    items = [(str(tmp_path), n) for n in ("light1", "light2", "heavy1", "heavy2")]
    out = dask_engine.map(_timed, items, progress=False, heavy=[False, False, True, True])
    assert out == ["light1", "light2", "heavy1", "heavy2"]
    span = {n: tuple(map(float, (tmp_path / n).read_text().split())) for _, n in items}
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
