"""Choosing calibrations by validity range.

A calibration is eligible for a frame of IFU *n* taken at MJD *t* when it is
of the wanted category, its IFU *n* is valid, it was taken in the same
instrument mode, within the validity window around *t*, and the user may see
it. Among eligible ones the closest in time wins, then the newest version
(the most recent rebuild). The choice comes with its reason, which the
reduction layer records in the run's inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, exists, func, or_, select

from ..exceptions import CalibrationNotFoundError
from ..vocabulary import STATIC_CATEGORIES
from .records import DatasetRecord
from .schema import Dataset, DatasetIfu


@dataclass(frozen=True)
class CalibrationChoice:
    """The chosen calibration and why."""

    record: DatasetRecord
    reason: str
    n_candidates: int


def best_calibration(arch, category: str, *, ifu: int, mjd: float, mode: str | None,
                     window_days: float) -> CalibrationChoice:
    """Select the best calibration of ``category`` for IFU ``ifu`` at time ``mjd``.

    Parameters
    ----------
    category : str
        ``ESO PRO CATG`` wanted, e.g. ``MASTER_FLAT``.
    ifu : int
        IFU number (1-24).
    mjd : float
        MJD of the frame to calibrate (days).
    mode : str or None
        Instrument mode; None accepts any. Static calibrations without a mode always match.
    window_days : float
        Half-width of the validity window (days). Static calibrations have no date and always match.

    Raises
    ------
    CalibrationNotFoundError
        If nothing is eligible; the message says how many candidates failed which test.
    """
    from ..ingest import night_of
    from astropy.time import Time

    night = night_of(Time(mjd, format="mjd").to_datetime())
    with arch.session() as s:
        vis = arch._visible(s)
        # valid for this IFU, or instrument-wide (a merged product holds no per-IFU rows)
        valid_here = or_(
            exists().where(and_(DatasetIfu.dataset_id == Dataset.id, DatasetIfu.ifu == int(ifu),
                                DatasetIfu.is_valid.is_(True))),
            ~exists().where(DatasetIfu.dataset_id == Dataset.id),
        )
        # per-IFU products of another IFU are excluded cheaply before the per-IFU validity test
        base = [Dataset.category == category, or_(Dataset.ifu == int(ifu), Dataset.ifu.is_(None)), vis]
        # Undated calibrations (static tables, or defaults such as a shipped STD_RESPONSE) serve any
        # mode and date; for a dated category they are only the fallback when no dated one is eligible.
        undated = Dataset.mjd_obs.is_(None)
        if category in STATIC_CATEGORIES:
            in_window = undated
        else:
            # plain equality and range terms, so the (category, mode, mjd_obs) index is used
            dated = [Dataset.mode == mode] if mode is not None else []
            in_window = and_(*dated, Dataset.mjd_obs.between(mjd - window_days, mjd + window_days))
        distance = func.abs(func.coalesce(Dataset.mjd_obs, mjd) - mjd)

        def pick(window):
            q = (select(Dataset, distance.label("dist")).where(*base, window, valid_here)
                 .order_by(distance, Dataset.created.desc(), Dataset.id.desc()).limit(1))
            return s.execute(q).first(), window

        row, in_window = pick(in_window)
        if row is None and category not in STATIC_CATEGORIES:
            row, fallback = pick(undated)
            if row is not None:
                in_window = fallback
        if row is None:
            n_any = s.scalar(select(func.count()).select_from(Dataset).where(*base))
            n_window = s.scalar(select(func.count()).select_from(Dataset).where(*base, in_window))
            raise CalibrationNotFoundError(
                category, ifu, night,
                f"{n_any} of that type visible" + (f" in mode {mode}" if mode else "")
                + f", {n_window} within +-{window_days:g} d, none of them with IFU {ifu} valid"
                if n_any else "none archived; build it first (see `dpu.plan`)",
            )
        ds, dist = row
        n = s.scalar(select(func.count()).select_from(Dataset).where(*base, in_window, valid_here))
        rec = arch._record(s, ds)
        when = "undated default calibration" if ds.mjd_obs is None else (
            f"{dist:.2f} d {'before' if ds.mjd_obs <= mjd else 'after'} the frame (window +-{window_days:g} d)")
        reason = (f"{category} #{ds.id}: IFU {ifu} valid, mode {ds.mode or 'any'}, {when}; "
                  f"best of {n} eligible (closest in time, then newest)")
        return CalibrationChoice(rec, reason, n)
