"""Shared fixtures of the musewise test suite.

Fixtures
--------
postgres_server (session)
    A real PostgreSQL server from Debian's packages (:class:`musewise.testing.TemporaryPostgres`),
    started in a temporary folder on 127.0.0.1 and a free port, stopped at the end; its
    ``create_database()`` returns the URL of a fresh database. Skips (locally) or fails
    (with ``CI=true``) when PostgreSQL is not installed.
db_url (parametrised: ``sqlite``, ``postgresql``)
    A fresh, empty database for each test, on each backend.
archive_config
    A :class:`MusewiseConfig` rooted in a temporary folder, with ``db_url``.
archive
    An :class:`Archive` opened by user ``admin`` (first user: administrator),
    with users ``alice`` and ``bob`` (members of project ``galaxies``), ``carol``
    (consortium member, no project) and ``eve`` (outside user, public data only).
sim_frames (session)
    A small simulated night for IFU 1 written by the instrument model.
small_fs
    ``small_fs(name, size)``: a real tmpfs of ``size`` bytes, unmounted after the test.
page
    A headless Chromium page (Playwright, ``/usr/bin/chromium``), closed after the test.
output_dir
    ``test-output/<test name>/`` for screenshots and other artefacts a person may look at.
field (session, plugin ``tests/fieldfixture.py``)
    A 2-night, 4-exposure field of IFU 1 reduced once with the real pipeline, for the
    target, up to both combined cubes (exp_combine, and scipost onto one OUTPUT_WCS +
    combine_cubes); read-only. ``--field-root=DIR`` keeps it in ``DIR`` for the next run.

Temporary files: pytest keeps a test's ``tmp_path`` only if the test failed, and
only for the last session (``tmp_path_retention_*`` in ``pyproject.toml``).
Module- and session-scoped fixtures make their folders with :func:`fixture_tmp`,
which removes them when the fixture ends, failed or not: they are rebuilt by the
next run, and a full run would otherwise leave gigabytes of frames and reductions.
Notebooks run the kernel of ``MusewiseConfig.kernel_name``; the session registers
it in the virtualenv if ``make setup`` has not (:func:`musewise.kernel.ensure_kernelspec`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import pytest

from musewise.testing import TemporaryPostgres, free_port, postgres_bindir  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
pytest_plugins = ["fieldfixture"]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@contextlib.contextmanager
def fixture_tmp(tmp_path_factory, name: str):
    """A folder for a module- or session-scoped fixture, removed when the fixture ends."""
    path = tmp_path_factory.mktemp(name)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def pytest_configure(config):
    # papermill looks the kernel up by name; CI's `make setup` registers it, a bare venv may not.
    from musewise.config import MusewiseConfig
    from musewise.kernel import ensure_kernelspec

    ensure_kernelspec(MusewiseConfig.class_traits()["kernel_name"].default_value)


def need(condition: bool, reason: str):
    """Skip locally, but fail in CI, when a real part is missing: CI must run everything."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server on 127.0.0.1 (a :class:`TemporaryPostgres`)."""
    need(postgres_bindir() is not None,
         "PostgreSQL server not installed (make test installs it: apt-get install postgresql)")
    with TemporaryPostgres() as pg:
        yield pg


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A fresh empty database URL on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'archive.sqlite'}"
    return request.getfixturevalue("postgres_server").create_database()


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 server on 127.0.0.1 (a :class:`TemporaryS3`: moto's standalone server)."""
    pytest.importorskip("moto.server", reason="moto not installed (make test installs it: pip install -e .[test])")
    pytest.importorskip("s3fs", reason="s3fs not installed (make test installs it: pip install -e .[test])")
    from musewise.testing import TemporaryS3

    with TemporaryS3() as s3:
        yield s3


@pytest.fixture
def datastore_settings():
    """MusewiseConfig settings of the datastore: a local folder under the root.

    A test module that must hold on every kind of store overrides it with
    :func:`each_datastore`.
    """
    return {}


def each_datastore(request, tmp_path) -> dict:
    """Datastore settings for ``request.param``: "folder" (under the root) or "s3" (a fresh
    prefix of a bucket of the session's S3 server)."""
    if request.param == "folder":
        return {}
    return s3_settings(request.getfixturevalue("s3_server"), tmp_path)


def s3_settings(s3, tmp_path) -> dict:
    """Datastore settings of a fresh prefix of the S3 server ``s3``'s bucket, for one test."""
    return {"datastore_url": s3.url(f"{tmp_path.name}-{os.getpid()}"), "datastore_options": s3.options}


@pytest.fixture
def archive_config(tmp_path, db_url, datastore_settings):
    from musewise.config import MusewiseConfig

    root = tmp_path / "root"
    if datastore_settings:
        # as a site keeps it: in the root's config file, which the CLI and every process read
        root.mkdir(parents=True, exist_ok=True)
        (root / "musewise_config.py").write_text("".join(
            f"c.MusewiseConfig.{k} = {v!r}\n" for k, v in datastore_settings.items()))
    return MusewiseConfig.load(root=str(root), db_url=db_url, user="admin", project="consortium")


@pytest.fixture
def archive(archive_config):
    from musewise.archive import Archive

    arch = Archive(archive_config, user="admin")
    arch.add_project("galaxies", "a science project")
    arch.add_user("alice", projects={"galaxies": "reviewer"})
    arch.add_user("bob", projects=["galaxies"])
    arch.add_user("carol")
    arch.add_user("eve", member=False)
    yield arch
    arch.close()


@pytest.fixture(scope="session")
def sim_frames(tmp_path_factory):
    """A small simulated night (IFU 1): a dict frame type -> list of paths, plus 'static'."""
    from musewise.inm import simulate_night

    from musewise.ingest import inspect_file

    with fixture_tmp(tmp_path_factory, "night") as out:
        paths = simulate_night(out, night="2026-11-20", ifus=(1,), n_bias=3, n_dark=1, n_flat=2,
                               n_arc_per_lamp=1, n_skyflat=1, n_std=1, n_object=2, seed=7, progress=False)
        frames: dict[str, list[Path]] = {}
        for p in list(paths) + sorted((out / "static").glob("*.fits")):
            info = inspect_file(p)
            key = info.category if info.kind.value == "raw" else "static"
            frames.setdefault(key, []).append(Path(p))
        yield frames


@pytest.fixture
def small_fs(tmp_path):
    """``small_fs(name, size_bytes)``: a tmpfs of that size mounted at ``tmp_path/name``; unmounted after.

    A real small filesystem for the full-disk tests (skips where mounting needs privileges
    the test lacks).
    """
    import subprocess

    mounted = []

    def mount(name: str, size: int) -> Path:
        path = tmp_path / name
        path.mkdir()
        need(shutil.which("mount") is not None, "no mount command")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={int(size)}", "tmpfs", str(path)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs for the full-disk test (needs root or CAP_SYS_ADMIN): "
                        f"{r.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def page():
    """A headless Debian Chromium page (Playwright); skipped locally, failed in CI, when missing."""
    from musewise.testing import CHROMIUM, chromium_page

    need(Path(CHROMIUM).exists(), f"{CHROMIUM} is missing (apt-get install chromium)")
    with chromium_page(1300, 1000) as pg:
        yield pg


@pytest.fixture
def output_dir(request) -> Path:
    d = REPO / "test-output" / request.node.name.replace("/", "_").replace("[", "_").replace("]", "")
    d.mkdir(parents=True, exist_ok=True)
    return d


@contextlib.contextmanager
def another_cluster(kind: str, tmp_path):
    """A cluster musewise did not start, as configuration: ``(MusewiseConfig settings, DpuConfig
    settings, cluster)``. ``site``: a site's ``dask scheduler`` and ``dask worker`` processes, given by
    address; ``slurm``: a one-node Slurm cluster whose batch jobs dask-jobqueue starts as workers."""
    from musewise.testing import TemporaryDaskCluster, TemporarySlurm

    if kind == "site":
        with TemporaryDaskCluster(2, dir=tmp_path / "dask") as site:
            yield {"dask_scheduler": site.address}, {}, site
        return
    need(TemporarySlurm.installed(), "Slurm not installed (apt-get install slurm-wlm munge)")
    pytest.importorskip("dask_jobqueue")
    with TemporarySlurm(dir=tmp_path / "slurm") as slurm:
        yield {"dask_scheduler": "jobqueue:slurm"}, slurm.dpu_settings(tmp_path / "jobs"), slurm
