"""Immutable views of registry rows handed to users (no live database session behind them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

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

    ``id`` is its identity; ``filename`` is only the stored file's name.
    ``is_valid`` is True when every IFU it holds is valid.
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
    header: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_valid(self) -> bool:
        return all(s.is_valid for s in self.ifus)

    def ifu_state(self, ifu: int) -> IfuState:
        for s in self.ifus:
            if s.ifu == ifu:
                return s
        raise KeyError(f"dataset {self.id} holds no IFU {ifu}")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["privilege"] = int(self.privilege)
        d["is_valid"] = self.is_valid
        return d


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

    def as_dict(self) -> dict:
        d = asdict(self)
        d["privilege"] = int(self.privilege)
        return d
