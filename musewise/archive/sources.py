"""The sources of archived source catalogues (``SOURCE_CATALOG``) as rows of the ``sources`` table.

When a run archives a catalogue (:func:`musewise.archive.lineage.finish_run`), its ``SOURCES``
table (:func:`musewise.products.catalog.read_sources`, read before the transaction) becomes rows of ``sources``, written in
the same transaction as the dataset: a catalogue is never archived without its rows, nor
rows without their catalogue. Each row carries the catalogue's dataset id and is seen by
exactly those who may see that dataset: :func:`sources` filters by the privilege rule, on
PostgreSQL row-level security does the same (:mod:`musewise.archive.rls`), and the SQL page
copies only the rows of visible datasets (:data:`musewise.web.sqlpage.TABLES`).
"""

from __future__ import annotations

import math

import numpy as np

from sqlalchemy import select

from ..exceptions import InvalidArgumentError
from ..products.catalog import SOURCE_CATALOG
from .schema import CatalogSource, Dataset

#: Columns of a source row as :func:`sources` returns them (besides ``dataset_id``).
FIELDS = ("source_id", "kind", "ra", "dec", "x", "y", "wavelength", "flux", "flux_err", "snr", "spectrum",
          "image")


def _number(v) -> float | None:
    if np.ma.is_masked(v):  # astropy reads a NaN of a FITS table as masked
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None  # NaN (no line of a continuum source) is SQL NULL


def record_sources(session, dataset: Dataset, table) -> int:
    """Add the rows of a catalogue's ``SOURCES`` table archived as ``dataset``, in ``session`` (the run's transaction).

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        The session of the transaction archiving ``dataset``.
    dataset : Dataset
        The catalogue's row (flushed: it has its id).
    table : astropy.table.Table or None
        :func:`musewise.products.catalog.read_sources` of its file; None adds nothing.

    Returns
    -------
    int
        Rows added (0 for a dataset that is not a ``SOURCE_CATALOG``).
    """
    if table is None or dataset.category != SOURCE_CATALOG:
        return 0
    if dataset.id is None:
        session.flush()
    for r in table:
        session.add(CatalogSource(
            dataset_id=dataset.id, source_id=int(r["id"]), kind=str(r["kind"]), ra=float(r["ra"]),
            dec=float(r["dec"]), x=_number(r["x"]), y=_number(r["y"]), wavelength=_number(r["wavelength"]),
            flux=_number(r["flux"]), flux_err=_number(r["flux_err"]), snr=_number(r["snr"]),
            spectrum=str(r["spectrum"]), image=str(r["image"])))
    return len(table)


def sources(arch, *, dataset_id: int | None = None, kind: str | None = None, wave_min: float | None = None,
            wave_max: float | None = None, min_snr: float | None = None) -> list[dict]:
    """See :meth:`Archive.sources`."""
    if kind is not None and kind not in ("line", "continuum"):
        raise InvalidArgumentError(f"kind must be 'line' or 'continuum', got {kind!r}")
    with arch.session() as s:
        q = (select(CatalogSource).join(Dataset, Dataset.id == CatalogSource.dataset_id).where(arch.visible(s)))
        if dataset_id is not None:
            q = q.where(CatalogSource.dataset_id == int(dataset_id))
        if kind is not None:
            q = q.where(CatalogSource.kind == kind)
        if wave_min is not None:
            q = q.where(CatalogSource.wavelength >= float(wave_min))
        if wave_max is not None:
            q = q.where(CatalogSource.wavelength <= float(wave_max))
        if min_snr is not None:
            q = q.where(CatalogSource.snr >= float(min_snr))
        rows = s.scalars(q.order_by(CatalogSource.dataset_id, CatalogSource.source_id)).all()
        return [{"dataset_id": r.dataset_id, **{f: getattr(r, f) for f in FIELDS}} for r in rows]


__all__ = ["FIELDS", "record_sources", "sources"]
