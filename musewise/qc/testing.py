"""Archived test products for tests and demos of QC, review and releases.

The files themselves are written by :mod:`musewise.products.testing` (raw
frames, masters, cubes); this module records them in an archive as the runs
that made them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from ..products.testing import write_master, write_master_bias, write_raw_bias


def archive_product(arch, path, recipe: str, inputs=(), *, night: str = "2026-11-20", ifu: int | None = 1,
                    category: str | None = None, privilege=None, project: str | None = None):
    """Record a run of ``recipe`` on ``inputs`` (dataset IDs) that made the file ``path``; return its record."""
    from ..vocabulary import Privilege

    run = arch.begin_run(recipe, {}, night=night, ifu=ifu, inputs=[(i, "INPUT", "test") for i in inputs],
                         privilege=Privilege.CONSORTIUM if privilege is None else privilege, project=project)
    made = arch.finish_run(run, [(str(path), category, ifu)])
    return made[0]


def bias_product(arch, folder, *, level_offset: float = 0.0, ron_adu: float = 2.2, seed: int = 0,
                 hour: int = 18, privilege=None, project: str | None = None):
    """Archive three raw biases and a MASTER_BIAS made from them; return (master record, raw IDs)."""
    from ..vocabulary import Privilege

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    t0 = datetime(2026, 11, 20, hour, 0)
    raws = []
    for k in range(3):
        p = write_raw_bias(folder / f"MUSE.bias{seed}.{k}.fits", t0 + timedelta(minutes=k), ron_adu, seed * 10 + k)
        raws.append(p)
    raw_ids = [arch.ingest(p).record.id for p in raws]
    master = write_master_bias(folder / "MASTER_BIAS-01.fits", raws, level_offset, t0)
    run = arch.begin_run("muse_bias", {}, night="2026-11-20", ifu=1,
                         inputs=[(i, "BIAS", "raw bias of the night") for i in raw_ids],
                         privilege=Privilege.CONSORTIUM if privilege is None else privilege, project=project)
    rec = arch.finish_run(run, [(str(master), "MASTER_BIAS", 1)])[0]
    return rec, raw_ids


def bias_trend(arch, folder, nights=("2026-11-20", "2026-11-21", "2026-11-22"), ifus=range(1, 25), *,
               ron: float = 2.8, scatter: float = 0.12, spoiled: dict | None = None, seed: int = 0,
               privilege=None, project: str | None = None) -> dict:
    """Archive a MASTER_BIAS per night and IFU, each with its read noise stored as ``bias.ron.max``.

    One ``muse_bias`` run per night makes the IFUs' masters (small 40 x 48 images, level ~0);
    the read noise (e-) of each is ``ron`` plus seeded Gaussian scatter, plus ``spoiled[(night,
    ifu)]`` for the IFUs spoiled on purpose. For QC trends in tests and example notebooks.

    Returns
    -------
    dict
        ``(night, ifu) -> dataset id``.
    """
    from ..vocabulary import Privilege

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    spoiled = spoiled or {}
    out = {}
    for night in nights:
        t0 = datetime.strptime(night, "%Y-%m-%d") + timedelta(hours=18)
        paths = [write_master(folder / f"MASTER_BIAS-{night}-{i:02d}.fits", "MASTER_BIAS",
                              rng.normal(0.0, 1.0, size=(48, 40)), t0) for i in ifus]
        run = arch.begin_run("muse_bias", {}, night=night,
                             privilege=Privilege.CONSORTIUM if privilege is None else privilege, project=project)
        made = arch.finish_run(run, [(str(p), "MASTER_BIAS", i) for p, i in zip(paths, ifus)])
        for rec, i in zip(made, ifus):
            value = ron + scatter * rng.normal() + spoiled.get((night, i), 0.0)
            arch.add_qc(rec.id, {"bias.ron.max": value}, ifu=i, units={"bias.ron.max": "e-"}, run_id=run)
            out[night, i] = rec.id
    return out


__all__ = ["archive_product", "bias_product", "bias_trend"]
