"""How much disk a plan's runs will write, checked against the free space before anything runs.

A 24-IFU MUSE night writes 40-80 GB of products: master calibrations of 0.2 GB an IFU,
pixel tables of 0.38 GB an IFU and exposure, cubes of 3 GB. A reduction that fills the
disk half-way is recorded as failed and picks up where it stopped once space is made,
but it has cost hours; so :func:`musewise.dpu.make` adds up, before executing a plan, what
each of its runs will archive (:func:`plan_disk_need`) and refuses to start when the
datastore's filesystem has less free (:func:`check_free_disk`), naming what takes the room
and how to save less.

The sizes are those of the ESO MUSE pipeline's products (cpl-plugin-muse 2.8, measured on a
simulated 24-IFU night): per IFU for what a recipe writes per IFU, and for cubes per IFU
of the field they cover. They are estimates: the check keeps a margin
(:data:`MARGIN`).
"""

from __future__ import annotations

import os
import shutil
from collections import defaultdict
from dataclasses import dataclass, field

from ..exceptions import DiskSpaceError
from ..recipes.base import saved_products
from .steps import SAVED_BESIDES, get_step

GB = 1e9

#: A trimmed MUSE CCD image as the pipeline writes it: 4096 x 4112 pixels of float32 DATA and
#: STAT and int32 DQ (bytes).
CCD_IMAGE_BYTES = 4096 * 4112 * 12

#: Bytes one IFU's product of each category takes (cubes: their share of a field's cube, which
#: covers about the IFUs it is made from). Categories not listed are small (tables, masks,
#: FOV images): :data:`SMALL_PRODUCT_BYTES`.
BYTES_PER_IFU = {
    "MASTER_BIAS": CCD_IMAGE_BYTES,
    "MASTER_DARK": CCD_IMAGE_BYTES,
    "MASTER_FLAT": CCD_IMAGE_BYTES,
    "OBJECT_RED": CCD_IMAGE_BYTES,
    "STD_RED": CCD_IMAGE_BYTES,
    # ~16 M CCD pixels of the slices, 7 columns of 4 bytes (9.1 GB a 24-IFU exposure).
    "PIXTABLE_OBJECT": 380e6,
    "PIXTABLE_STD": 380e6,
    "PIXTABLE_REDUCED": 380e6,
    # 0.2 arcsec spaxels, 3681 planes of float32 DATA and STAT: ~3.2 GB for 24 IFUs.
    "DATACUBE_FINAL": 135e6,
    "DATACUBE_ZAP": 135e6,
    # muse_standard's cube of the star's exposure, on the IFUs' own footprint: 2.56 GB for 24 IFUs.
    "DATACUBE_STD": 107e6,
    # the field's grid: an int8 cube of the field's shape, 0.35 GB for 24 IFUs (muse_scipost reads
    # the size of all three axes from it).
    "OUTPUT_WCS": 15e6,
    # muse_twilight's cube of the sky flats is binned coarsely: 12 MB for 24 IFUs.
    "DATACUBE_SKYFLAT": 0.5e6,
    "LSF_PROFILE": 1e6,
    "WAVECAL_RESIDUALS": 8e6,
}

#: Bytes assumed for a product of a category not in :data:`BYTES_PER_IFU`.
SMALL_PRODUCT_BYTES = 5e6

#: Bytes of a run's executed notebook (with its figures) and logs: 0.1-0.3 MB measured.
RUN_RECORD_BYTES = 1e6

#: The free space asked for beyond the estimate: a fraction of it, for what the estimate
#: misses (a banded scipost holds its bands beside the joined cube until it is archived).
MARGIN = 0.05


@dataclass
class DiskNeed:
    """What a plan's runs will write (bytes), by product category and by step."""

    by_category: dict = field(default_factory=dict)
    by_step: dict = field(default_factory=dict)
    largest_run: int = 0

    @property
    def total(self) -> int:
        return int(sum(self.by_category.values()))

    def largest(self, n: int = 3) -> list:
        """The ``n`` categories that take the most, as (category, bytes)."""
        return sorted(self.by_category.items(), key=lambda kv: -kv[1])[:n]

    def summary(self) -> str:
        """``~41.2 GB: PIXTABLE_OBJECT 18.2 GB, ...``."""
        parts = ", ".join(f"{c} {b / GB:.1f} GB" for c, b in self.largest(4))
        return f"~{self.total / GB:.1f} GB ({parts})"


def saved_categories(step_name: str, params: dict) -> tuple[str, ...]:
    """The categories a run of ``step_name`` archives with the effective recipe ``params``.

    The step's products and what it saves besides them (:data:`~musewise.dpu.steps.SAVED_BESIDES`),
    less what the parameters switch off: muse_scipost writes a category only when its
    ``save`` list names it (``cube``, ``individual`` for PIXTABLE_REDUCED, ``skymodel``),
    muse_scibasic its ``*_RED`` images only with ``saveimage``.
    """
    step = get_step(step_name)
    cats = list(step.products) + list(SAVED_BESIDES.get(step_name, ()))
    if step.recipe == "muse_scipost" and "save" in params:
        saved = saved_products(params["save"])
        switched = {"DATACUBE_FINAL": "cube", "PIXTABLE_REDUCED": "individual"}
        sky = ("SKY_SPECTRUM", "SKY_LINES", "SKY_CONTINUUM", "SKY_MASK", "SKY_IMAGE")
        cats = [c for c in cats if (c not in switched or switched[c] in saved)
                and (c not in sky or "skymodel" in saved)]
    if step.recipe == "muse_scibasic" and not params.get("saveimage", True):
        cats = [c for c in cats if not c.endswith("_RED")]
    return tuple(cats)


def run_bytes_by_category(step_name: str, n_ifus: int, params: dict) -> dict:
    """Bytes a run of ``step_name`` over ``n_ifus`` IFUs archives with the recipe ``params``,
    by category (its executed notebook and logs under ``notebooks and logs``)."""
    out = {c: BYTES_PER_IFU.get(c, SMALL_PRODUCT_BYTES / max(n_ifus, 1)) * n_ifus
           for c in saved_categories(step_name, params)}
    out["notebooks and logs"] = RUN_RECORD_BYTES
    return out


def plan_disk_need(plan, params_of, frames_of=None) -> DiskNeed:
    """What the runs still to do in ``plan`` will archive.

    Parameters
    ----------
    plan : musewise.dpu.planner.Plan
    params_of : callable
        ``params_of(step_name) -> dict``: the effective recipe parameters of that step.
    frames_of : callable, optional
        ``frames_of(planned_run) -> int``: how many frames a run of a step that reduces each
        frame on its own (:attr:`~musewise.dpu.steps.Step.per_frame`, muse_scibasic) takes,
        so makes products for. Default 1.

    Returns
    -------
    DiskNeed
    """
    by_category, by_step, largest = defaultdict(float), defaultdict(float), 0
    params = {}
    for item in plan.todo:
        if item.step not in params:
            params[item.step] = params_of(item.step)
        # A per-IFU run holds one IFU; the others (per exposure, night, target) all the plan's.
        run = run_bytes_by_category(item.step, 1 if item.ifu else max(len(plan.ifus), 1), params[item.step])
        if frames_of is not None and get_step(item.step).per_frame:
            n = max(frames_of(item), 1)  # a product per frame; one notebook for the run
            run = {c: b if c == "notebooks and logs" else b * n for c, b in run.items()}
        for c, b in run.items():
            by_category[c] += b
        by_step[item.step] += sum(run.values())
        largest = max(largest, int(sum(run.values())))
    return DiskNeed(dict(by_category), dict(by_step), largest)


def _existing(path: str) -> str:
    # The path, or its nearest existing parent (a datastore or scratch folder not made yet).
    p = os.path.abspath(path)
    while not os.path.exists(p):
        p = os.path.dirname(p)
    return p


def free_bytes(path: str) -> int:
    """Free bytes of the filesystem holding ``path`` (its nearest existing parent)."""
    return shutil.disk_usage(_existing(path)).free


def fits(need: DiskNeed, path: str, extra: int = 0) -> bool:
    """Whether the filesystem holding ``path`` has room for ``need`` plus :data:`MARGIN`, and
    ``extra`` bytes besides (what another program writes there meanwhile)."""
    return need.total * (1 + MARGIN) + extra <= free_bytes(path)


def check_free_disk(need: DiskNeed, datastore_path: str | None, scratch_path: str | None = None) -> None:
    """Refuse a plan the disk cannot hold, before any run starts.

    Parameters
    ----------
    need : DiskNeed
    datastore_path : str or None
        Local folder of the datastore (None: a remote store, not checked).
    scratch_path : str, optional
        The runs' scratch folder; when on another filesystem it must hold the largest run.

    Raises
    ------
    DiskSpaceError
        Naming what the plan would write, what is free, where, and what takes the room.
    """
    if not datastore_path:
        return
    checks = [(datastore_path, need.total * (1 + MARGIN), "the archive's products")]
    if scratch_path and os.stat(_existing(scratch_path)).st_dev != os.stat(_existing(datastore_path)).st_dev:
        checks.append((scratch_path, need.largest_run * (1 + MARGIN), "the largest run's working files"))
    for path, wanted, what in checks:
        free = free_bytes(path)
        if free < wanted:
            raise DiskSpaceError(
                f"not enough free disk for this plan: {what} need {wanted / GB:.1f} GB "
                f"(estimate {need.summary()}, plus {MARGIN:.0%}), and {path} has {free / GB:.1f} GB free. "
                "Nothing was run. Free some space, or save less: without the reduced pixel tables "
                "(muse_scipost save='cube,skymodel') and the pre-reduced CCD images "
                "(muse_scibasic saveimage=False), see LEAN_PARAMETERS in musewise.dpu.config.")


__all__ = ["BYTES_PER_IFU", "CCD_IMAGE_BYTES", "DiskNeed", "DiskSpaceError", "MARGIN", "check_free_disk",
           "fits", "free_bytes", "RUN_RECORD_BYTES", "plan_disk_need", "run_bytes_by_category", "saved_categories"]
