"""QC trends: one QC parameter over the nights, per IFU, against its thresholds.

:func:`qc_trend` reads the numbers the QC runs stored (:meth:`Archive.qc_values`: one per
product and IFU), the state of each product IFU (its quality flag and validity) and the
limits of :class:`~musewise.qc.thresholds.QCThresholds` that apply to the parameter, and
returns one :class:`TrendPoint` per number, by night. Each point says where it lies against
the limits (``verdict``: good, warning, bad; the outliers of the survey). Parameters with
no limit (e.g. the pipeline's own QC keywords) come back with the limits None.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..exceptions import NotFoundError
from ..vocabulary import QualityFlag
from .thresholds import QC_TYPES, QCThresholds, judge

__all__ = ["Limits", "Trend", "TrendPoint", "limits_of", "qc_trend", "trend_parameters", "verdict_of"]


@dataclass(frozen=True)
class Limits:
    """The thresholds of one QC parameter, as a band of good values.

    Attributes
    ----------
    sense : str
        ``max`` (flagged above), ``max_incl`` (at or above) or ``min`` (below).
    warn, bad : float
        The limits (:class:`QCThresholds`), in the parameter's unit.
    """

    sense: str
    warn: float
    bad: float

    @property
    def low(self) -> float | None:
        """Lowest good value (None: no lower limit)."""
        return self.warn if self.sense == "min" else None

    @property
    def high(self) -> float | None:
        """Highest good value (None: no upper limit)."""
        return None if self.sense == "min" else self.warn

    @property
    def bad_low(self) -> float | None:
        """Below this a value is bad (None: no lower limit)."""
        return self.bad if self.sense == "min" else None

    @property
    def bad_high(self) -> float | None:
        """Above this a value is bad (None: no upper limit)."""
        return None if self.sense == "min" else self.bad


@dataclass(frozen=True)
class TrendPoint:
    """One QC number of one product IFU.

    Attributes
    ----------
    night : str
        ``YYYY-MM-DD``.
    ifu : int or None
        None for a product of all IFUs (a cube).
    dataset_id : int
    category : str
    value : float or None
        In ``unit``; None when it could not be measured.
    unit : str
    low, high : float or None
        The band of good values (the ``warning`` limits; None: open on that side).
    bad_low, bad_high : float or None
        The ``bad`` limits.
    verdict : str
        Where the value lies against the limits: ``good``, ``warning`` or ``bad``
        (``unchecked`` when there is no limit or no value).
    flag : str
        The product IFU's quality flag in the archive (what a reviewer decided, or QC set).
    is_valid : bool
        The product IFU's validity.
    run_id : int or None
        The QC run that measured it.
    """

    night: str
    ifu: int | None
    dataset_id: int
    category: str
    value: float | None
    unit: str
    low: float | None
    high: float | None
    bad_low: float | None
    bad_high: float | None
    verdict: str
    flag: str
    is_valid: bool
    run_id: int | None = None

    @property
    def outlier(self) -> bool:
        """Beyond a limit (``warning`` or ``bad``)."""
        return self.verdict in (QualityFlag.WARNING.value, QualityFlag.BAD.value)


@dataclass
class Trend:
    """A QC parameter over the nights: its points, unit and limits."""

    parameter: str
    unit: str
    limits: Limits | None
    points: list[TrendPoint] = field(default_factory=list)

    @property
    def nights(self) -> list[str]:
        return sorted({p.night for p in self.points if p.night})

    @property
    def ifus(self) -> list[int | None]:
        return sorted({p.ifu for p in self.points}, key=lambda i: -1 if i is None else i)

    def point(self, dataset_id: int, ifu: int | None = None) -> TrendPoint:
        """The point of a product (and IFU).

        Raises
        ------
        NotFoundError
            If the trend has none (a LookupError).
        """
        for p in self.points:
            if p.dataset_id == int(dataset_id) and (ifu is None or p.ifu == ifu):
                return p
        raise NotFoundError(f"dataset {dataset_id}{f' IFU {ifu}' if ifu else ''} is not on the trend of {self.parameter}")


def limits_of(parameter: str, thresholds: QCThresholds | None = None) -> Limits | None:
    """The limits of a stored QC parameter (``<type>.<measurement>``, e.g. ``bias.ron.max``), or None."""
    qc_type, _, measurement = parameter.partition(".")
    if qc_type not in set(QC_TYPES.values()):
        return None
    lim = (thresholds or QCThresholds()).limits(qc_type).get(measurement)
    return None if lim is None else Limits(lim["sense"], float(lim["warn"]), float(lim["bad"]))


def verdict_of(limits: Limits | None, value: float | None) -> str:
    """Where a value lies against a parameter's limits: ``good``, ``warning``, ``bad``
    (``unchecked`` without limits or value)."""
    if limits is None or value is None or not math.isfinite(value):
        return QualityFlag.UNCHECKED.value
    lim = {"v": {"sense": limits.sense, "warn": limits.warn, "bad": limits.bad, "unit": ""}}
    return judge(lim, {"v": value}).flag


def trend_parameters(archive, *, category=None) -> list[str]:
    """Names of the QC parameters stored for visible products (of ``category``), those with limits first."""
    names = sorted({n for n, _, _ in archive.qc_names(category=category)})
    return sorted(names, key=lambda n: (limits_of(n) is None, n))


def qc_trend(archive, parameter: str, *, category=None, ifus=None, date_from: str | None = None,
             date_to: str | None = None, thresholds: QCThresholds | None = None) -> Trend:
    """A QC parameter over the nights, one point per product IFU, with its limits.

    Parameters
    ----------
    archive : Archive
        Points are the products its user may see.
    parameter : str
        Stored name, e.g. ``bias.ron.max`` (:func:`trend_parameters` lists them).
    category : str or list of str, optional
        Only products of this category (``MASTER_BIAS``).
    ifus : list of int, optional
        Only these IFUs.
    date_from, date_to : str, optional
        Nights ``YYYY-MM-DD``, inclusive.
    thresholds : QCThresholds, optional
        Default: the site's (``QCThresholds(config=archive.config.config)``).

    Returns
    -------
    Trend
        Points by night, then IFU.
    """
    thresholds = thresholds or QCThresholds(config=archive.config.config)
    limits = limits_of(parameter, thresholds)
    rows = archive.qc_values(parameter, category=category, date_from=date_from, date_to=date_to)
    if ifus is not None:
        wanted = {int(i) for i in ([ifus] if isinstance(ifus, int) else ifus)}
        rows = [r for r in rows if r["ifu"] in wanted]
    records = archive.get_many(r["dataset_id"] for r in rows)
    points = []
    for r in rows:
        rec = records.get(r["dataset_id"])
        if rec is None:
            continue
        state = next((s for s in rec.ifus if s.ifu == r["ifu"]), None)
        value = r["value"] if r["value"] is not None and math.isfinite(r["value"]) else None
        verdict = verdict_of(limits, value)
        points.append(TrendPoint(
            night=r["night"] or "", ifu=r["ifu"], dataset_id=rec.id, category=rec.category, value=value,
            unit=r["unit"], low=limits.low if limits else None, high=limits.high if limits else None,
            bad_low=limits.bad_low if limits else None, bad_high=limits.bad_high if limits else None,
            verdict=verdict, flag=state.flag if state is not None else rec.flag,
            is_valid=state.is_valid if state is not None else rec.is_valid, run_id=r["run_id"]))
    points.sort(key=lambda p: (p.night, -1 if p.ifu is None else p.ifu, p.dataset_id))
    unit = next((p.unit for p in points if p.unit), "")
    return Trend(parameter, unit, limits, points)
