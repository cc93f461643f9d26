"""The 24-IFU grid of a product, as a reviewer sees it: per IFU its verdict, review state and QC numbers.

MUSE-WISE's DBView showed the IFUs of a product as a grid of 24 tiles ("Is_Valid - click
IFU to edit"). :func:`ifu_grid` gathers what each tile shows, without any UI, from
the archive seen by one user:

* for a file holding several IFUs (a raw exposure), the IFUs of that file;
* for a single-IFU product (a master bias of IFU 7), the products of the same category,
  night and mode, one per IFU (the newest where an IFU has several), the asked product
  kept for its own IFU - the way the pipeline writes a night's masters;
* a product of all IFUs (a combined cube) is one tile, IFU 0.

The web view's review page (:mod:`musewise.web.review`) draws it; verdicts go through
:func:`musewise.qc.review.review`, so claims and the audit trail are those of the widgets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..archive.records import DatasetRecord, IfuState
from ..vocabulary import N_IFU
from .review import Claim, current_claim, review_state
from .thresholds import QCThresholds
from .trends import limits_of, verdict_of

__all__ = ["IfuGrid", "IfuTile", "ifu_grid"]


@dataclass(frozen=True)
class IfuTile:
    """One IFU of the grid.

    Attributes
    ----------
    ifu : int
        1-24 (0: a product of all IFUs).
    record : DatasetRecord
        The product holding the IFU.
    state : IfuState
        Its validity, flag, comment, who and when.
    review : dict or None
        Its review state (``state``: pending, affected, reviewed; ``reason``; ``source``:
        the invalid input of an affected IFU), from :func:`~musewise.qc.review.review_state`.
    qc : tuple of dict
        QC numbers measured on this IFU (``name``, ``value``, ``unit``, ``ifu``), and those of
        the product as a whole (``ifu`` None); ``verdict`` says where the value lies against
        the site's limits (:func:`~musewise.qc.trends.verdict_of`: ``good``, ``warning``,
        ``bad``; ``unchecked`` for a parameter without limits).
    can_review : bool
        May the user give a verdict on it?
    claim : Claim or None
        The unexpired claim on its product.
    """

    ifu: int
    record: DatasetRecord
    state: IfuState
    review: dict | None
    qc: tuple[dict, ...]
    can_review: bool
    claim: Claim | None

    @property
    def dataset_id(self) -> int:
        return self.record.id

    @property
    def affected(self) -> bool:
        """Made from an input since invalidated (awaiting a person)."""
        return self.record.affected_by is not None or (self.review or {}).get("state") == "affected"


@dataclass(frozen=True)
class IfuGrid:
    """The tiles of a product's IFUs (``tiles[ifu]``; IFUs the product does not hold are absent)."""

    title: str
    category: str
    night: str | None
    tiles: dict[int, IfuTile] = field(default_factory=dict)

    @property
    def dataset_ids(self) -> list[int]:
        return sorted({t.dataset_id for t in self.tiles.values()})

    def tile(self, ifu: int) -> IfuTile | None:
        return self.tiles.get(int(ifu))


def _state(rec: DatasetRecord, ifu: int) -> IfuState:
    for s in rec.ifus:
        if s.ifu == ifu:
            return s
    # A product holding no per-IFU row: its own verdict applies to all of it.
    return IfuState(0, rec.is_valid, rec.flag, rec.comment)


def ifu_grid(arch, dataset_id: int) -> IfuGrid:
    """The IFUs of a product as grid tiles (see the module docstring).

    Parameters
    ----------
    arch : Archive
        Seen by the reviewing user: only products they may see are tiles.
    dataset_id : int

    Raises
    ------
    NotFoundError
        If the product is not visible to the user.
    """
    rec = arch.get(int(dataset_id))
    holders: dict[int, DatasetRecord] = {}
    if len(rec.ifus) == 1 and rec.ifu is not None and rec.night:
        # Oldest first: a newer product of an IFU replaces an older one.
        for other in arch.query(category=rec.category, night=rec.night, mode=rec.mode, order_by="created"):
            if other.ifu is not None and len(other.ifus) == 1:
                holders[other.ifu] = other
        holders[rec.ifu] = rec
        title = f"{rec.category} of {rec.night}"
    else:
        holders = {s.ifu: rec for s in rec.ifus} or {0: rec}
        title = f"#{rec.id} {rec.category}" + (f" of {rec.night}" if rec.night else "")
    by_id = {r.id: r for r in holders.values()}
    states = {did: review_state(arch, did) for did in by_id}
    qc = {did: arch.qc(did) for did in by_id}
    rights = {did: arch.can_review(did) for did in by_id}
    claims = {did: current_claim(arch, did) for did in by_id}
    thresholds = QCThresholds(config=arch.config.config)
    limits = {q["name"]: limits_of(q["name"], thresholds) for did in by_id for q in qc[did]}
    tiles = {}
    for ifu, r in sorted(holders.items()):
        if not 0 <= ifu <= N_IFU:
            continue
        mine = tuple({**q, "verdict": verdict_of(limits[q["name"]], q["value"])} for q in qc[r.id]
                     if q["ifu"] is None or q["ifu"] == ifu or ifu == 0)
        tiles[ifu] = IfuTile(ifu, r, _state(r, ifu), states[r.id].get(ifu), mine, rights[r.id], claims[r.id])
    return IfuGrid(title, rec.category, rec.night, tiles)
