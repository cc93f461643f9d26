"""Immutable views of registry rows handed to users (no live database session behind them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

from ..exceptions import NotFoundError
from ..vocabulary import Privilege


@dataclass(frozen=True)
class IfuState:
    """Validity and quality of one IFU of a dataset."""

    ifu: int
    is_valid: bool
    flag: str
    comment: str = ""
    updated_by: str | None = None
    updated: datetime | None = None


@dataclass(frozen=True)
class DatasetRecord:
    """One archived dataset as the archive reports it.

    ``id`` is its identity, with its data ID (``category``, ``night``, ``exposure``,
    ``ifu``, ``mode``, ``collection``); ``filename`` is only the stored file's name, and
    several datasets may share one stored file. ``is_valid`` and ``flag`` are the
    verdict on the dataset as a whole; ``ifus`` the verdicts per IFU it holds;
    ``affected_by`` the invalid dataset it was made from, if any.
    """

    id: int
    kind: str
    category: str
    night: str | None
    date_obs: datetime | None
    mjd_obs: float | None
    exptime: float | None
    mode: str | None
    object: str | None
    ifu: int | None
    ifus: tuple[IfuState, ...]
    owner: str
    project: str | None
    privilege: Privilege
    run_id: int | None
    sha256: str
    size: int
    filename: str
    storage_path: str
    pipeline_version: str | None
    created: datetime
    collection: str = ""
    exposure: str | None = None
    is_valid: bool = True
    flag: str = "unchecked"
    comment: str = ""
    affected_by: int | None = None
    header: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def all_ifus_valid(self) -> bool:
        """True when no IFU of the dataset is marked invalid."""
        return all(s.is_valid for s in self.ifus)

    @property
    def usable(self) -> bool:
        """May reductions and releases use it: valid, not affected, no IFU invalid."""
        return self.is_valid and self.affected_by is None and self.all_ifus_valid

    def usable_for(self, ifu: int | None) -> bool:
        """May a reduction of IFU ``ifu`` use it (a file without per-IFU rows serves every IFU)?"""
        if not self.is_valid or self.affected_by is not None:
            return False
        if ifu is None or not self.ifus:
            return self.all_ifus_valid
        return any(s.ifu == ifu and s.is_valid for s in self.ifus)

    def ifu_state(self, ifu: int) -> IfuState:
        for s in self.ifus:
            if s.ifu == ifu:
                return s
        raise NotFoundError(f"dataset {self.id} holds no IFU {ifu}")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["privilege"] = int(self.privilege)
        d["usable"] = self.usable
        return d


@dataclass(frozen=True)
class CalibrationLoser:
    """A calibration candidate that was not chosen, and why."""

    dataset_id: int
    collection: str
    reason: str


def range_covers(begin_mjd: float | None, end_mjd: float | None, mjd: float) -> bool:
    """True if the certified range ``[begin_mjd, end_mjd)`` (MJD, days; None: open) holds ``mjd``."""
    return (begin_mjd is None or begin_mjd <= mjd) and (end_mjd is None or mjd < end_mjd)


def range_text(begin_mjd: float | None, end_mjd: float | None) -> str:
    """A certified range as people read it: ``[61358.100, open)`` (MJD, days)."""
    def end(v):
        return "open" if v is None else f"{v:.3f}"
    return f"[{end(begin_mjd)}, {end(end_mjd)})"


@dataclass(frozen=True)
class CertificationRecord:
    """A calibration certified in a CALIBRATION collection for ``[begin_mjd, end_mjd)`` (MJD, days; None: open)."""

    id: int
    collection: str
    dataset_id: int
    category: str
    ifu: int | None
    mode: str | None
    begin_mjd: float | None
    end_mjd: float | None
    certified_by: str | None
    certified: datetime
    comment: str

    def covers(self, mjd: float) -> bool:
        """True if the range holds ``mjd`` (days)."""
        return range_covers(self.begin_mjd, self.end_mjd, mjd)


@dataclass(frozen=True)
class CollectionRecord:
    """A collection: its name, type, owner or project, and (for a chain) its members in search order."""

    id: int
    name: str
    type: str
    owner: str | None
    project: str | None
    description: str
    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunInputRecord:
    dataset_id: int
    tag: str
    reason: str


@dataclass(frozen=True)
class RunRecord:
    """One recipe execution: what ran, on what, with which parameters, and how it ended."""

    id: int
    recipe: str
    parameters: dict
    night: str | None
    ifu: int | None
    mode: str | None
    status: str
    pipeline_version: str | None
    musewise_version: str | None
    notebook_id: int | None
    user: str
    project: str | None
    privilege: Privilege
    started: datetime
    ended: datetime | None
    error: str | None
    details: dict
    inputs: tuple[RunInputRecord, ...]
    output_ids: tuple[int, ...] = ()
    collection: str = ""
    is_reference: bool = False
    collections: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        d = asdict(self)
        d["privilege"] = int(self.privilege)
        return d
