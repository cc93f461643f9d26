"""Disk before a reduction starts: the plan says what its runs will archive, and a plan the
disk cannot hold is refused with nothing run; the demo saves less where only that fits.

Runs on the ingested simulated night (``sim_frames``, IFU 1, a field of two exposures) in a
real small filesystem (``small_fs``, a tmpfs); planning reads the installed pipeline's recipe
descriptions, nothing is reduced.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from musewise import dpu
from musewise.dpu.diskneed import BYTES_PER_IFU, CCD_IMAGE_BYTES, MARGIN, check_free_disk
from musewise.exceptions import DiskSpaceError

NIGHT = "2026-11-20"


def _frames(sim_frames) -> list:
    return [p for paths in sim_frames.values() for p in paths]


def _open(root: Path, **kw):
    from musewise.archive import Archive
    from musewise.config import MusewiseConfig

    return Archive(MusewiseConfig.load(root=str(root), user="admin", project="consortium", **kw), user="admin")


def _ingested(root: Path, sim_frames, **kw):
    arch = _open(root, **kw)
    rep = arch.ingest_many(_frames(sim_frames), progress=False)
    assert not rep.refused, rep.refused
    return arch


def _stored(store: Path) -> dict:
    return {p.relative_to(store): p.stat().st_size for p in store.rglob("*") if p.is_file()}


def test_the_plan_counts_what_each_run_archives_and_the_lean_products_leave_out(tmp_path, sim_frames):
    arch = _ingested(tmp_path / "root", sim_frames)
    pl = dpu.plan("scipost", NIGHT, [1], archive=arch)
    need = pl.disk
    n_exposures = sum(1 for i in pl.todo if i.step == "scipost")
    assert n_exposures == 2
    # One master bias and flat of IFU 1; a pixel table, a pre-reduced CCD image, a reduced pixel
    # table and a cube for each exposure; the standard star's pixel table and image.
    assert need.by_category["MASTER_BIAS"] == CCD_IMAGE_BYTES
    assert need.by_category["PIXTABLE_OBJECT"] == 2 * BYTES_PER_IFU["PIXTABLE_OBJECT"]
    assert need.by_category["OBJECT_RED"] == 2 * CCD_IMAGE_BYTES
    assert need.by_category["PIXTABLE_REDUCED"] == 2 * BYTES_PER_IFU["PIXTABLE_REDUCED"]
    assert need.by_category["PIXTABLE_STD"] == BYTES_PER_IFU["PIXTABLE_STD"]
    assert need.total == pytest.approx(sum(need.by_step.values()))
    assert "disk: the runs to do archive ~" in pl.to_text()

    cfg = arch.config.config
    cfg.DpuConfig.default_parameters = dpu.DpuConfig.from_config(arch.config).lean_parameters()
    arch.config.config = cfg
    lean = dpu.plan("scipost", NIGHT, [1], archive=arch).disk
    assert "PIXTABLE_REDUCED" not in lean.by_category and "OBJECT_RED" not in lean.by_category
    assert "STD_RED" not in lean.by_category and lean.by_category["PIXTABLE_OBJECT"] == need.by_category["PIXTABLE_OBJECT"]
    assert need.total - lean.total == pytest.approx(2 * BYTES_PER_IFU["PIXTABLE_REDUCED"] + 3 * CCD_IMAGE_BYTES)
    arch.close()


def test_a_plan_the_disk_cannot_hold_is_refused_before_any_run(tmp_path, sim_frames, small_fs):
    raw = sum(p.stat().st_size for p in _frames(sim_frames))
    disk = small_fs("disk", raw + 100 * 2**20)
    store = disk / "store"
    arch = _ingested(tmp_path / "root", sim_frames, datastore_url=str(store))
    before = _stored(store)
    with pytest.raises(DiskSpaceError) as exc:
        dpu.make("scipost", NIGHT, [1], dry_run=False, archive=arch, engine="local", progress=False)
    msg = str(exc.value)
    assert str(store) in msg and "GB free" in msg and "Nothing was run" in msg
    assert "PIXTABLE_OBJECT" in msg and "saveimage=False" in msg  # what takes the room, how to save less
    assert arch.runs() == []
    assert _stored(store) == before
    # A plan that fits goes through the check: one master bias is 0.2 GB, more than the 0.1 GB free.
    small = dpu.plan("bias", NIGHT, [1], archive=arch).disk
    with pytest.raises(DiskSpaceError):
        check_free_disk(small, str(store))
    arch.close()


def test_the_demo_saves_less_where_only_the_lean_products_fit_and_keeps_to_it(tmp_path, sim_frames, small_fs, capsys):
    from musewise.demo import fit_disk

    probe = _ingested(tmp_path / "probe", sim_frames)
    step, kw = dpu.demo_target(probe, NIGHT)
    assert (step, kw) == ("combine_cubes", {"target": "SIM-DEEP-FIELD"})
    full = dpu.plan(step, ifus=[1], archive=probe, commit=True, **kw).disk.total
    cfg = probe.config.config
    cfg.DpuConfig.default_parameters = dpu.DpuConfig.from_config(probe.config).lean_parameters()
    probe.config.config = cfg
    lean = dpu.plan(step, ifus=[1], archive=probe, commit=True, **kw).disk.total
    probe.close()
    raw = sum(p.stat().st_size for p in _frames(sim_frames))

    root = small_fs("root", raw + 5 * 2**20 + (lean + full) / 2 * (1 + MARGIN))  # lean fits, full does not
    arch = _ingested(root, sim_frames)
    assert fit_disk(arch, root, NIGHT, [1]) is True
    out = capsys.readouterr().out
    assert "more than the" in out and "saving less instead" in out
    written = (root / "musewise_config.py").read_text()
    assert "'saveimage': False" in written and "'save': 'cube,skymodel'" in written
    pl = dpu.plan(step, ifus=[1], archive=arch, commit=True, **kw)
    assert pl.disk.total == pytest.approx(lean)
    check_free_disk(pl.disk, str(root))  # make would start
    arch.close()

    # The data root's config keeps it: the archive opened again plans the lean products, and
    # the demo run again has nothing more to change.
    again = _open(root)
    assert dpu.plan(step, ifus=[1], archive=again, commit=True, **kw).disk.total == pytest.approx(lean)
    assert fit_disk(again, root, NIGHT, [1]) is False
    assert (root / "musewise_config.py").read_text() == written
    again.close()
