"""QC numbers across datasets: the names measured and the values of one, for trends over nights.

:meth:`Archive.qc` gives the numbers of one dataset; these read one parameter over
every dataset the acting user may see, in one query, with the night and IFU each
belongs to (see :func:`musewise.qc.trends.qc_trend`).
"""

from __future__ import annotations

from sqlalchemy import distinct, func, select

from .schema import Dataset, QCParameter


def qc_names(arch, *, category=None) -> list[tuple[str, str, int]]:
    """See :meth:`Archive.qc_names`."""
    with arch.session() as s:
        q = (select(QCParameter.name, Dataset.category, func.count(distinct(QCParameter.dataset_id)))
             .join(Dataset, Dataset.id == QCParameter.dataset_id).where(arch.visible(s)))
        if category is not None:
            q = q.where(Dataset.category.in_([category] if isinstance(category, str) else list(category)))
        q = q.group_by(QCParameter.name, Dataset.category).order_by(QCParameter.name, Dataset.category)
        return [(n, c, int(k)) for n, c, k in s.execute(q)]


def qc_values(arch, name: str, *, category=None, date_from=None, date_to=None, ifu=None) -> list[dict]:
    """See :meth:`Archive.qc_values`."""
    with arch.session() as s:
        q = (select(QCParameter.dataset_id, QCParameter.ifu, QCParameter.value, QCParameter.unit,
                    QCParameter.run_id, Dataset.night, Dataset.category, Dataset.ifu)
             .join(Dataset, Dataset.id == QCParameter.dataset_id)
             .where(QCParameter.name == name, arch.visible(s)))
        if category is not None:
            q = q.where(Dataset.category.in_([category] if isinstance(category, str) else list(category)))
        if date_from is not None:
            q = q.where(Dataset.night >= str(date_from))
        if date_to is not None:
            q = q.where(Dataset.night <= str(date_to))
        rows = s.execute(q.order_by(Dataset.night, QCParameter.dataset_id, QCParameter.ifu)).all()
    out = []
    for did, qifu, value, unit, run_id, night, cat, difu in rows:
        # A number of a per-IFU product is stored with or without its IFU: it belongs to that IFU.
        which = qifu if qifu is not None else difu
        if ifu is not None and which != int(ifu):
            continue
        out.append({"dataset_id": did, "ifu": which, "value": value, "unit": unit or "", "run_id": run_id,
                    "night": night, "category": cat})
    return out


__all__ = ["qc_names", "qc_values"]
