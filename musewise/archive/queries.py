"""Finding datasets: the filters of :meth:`Archive.query`, search-path lookups, counts.

Every query carries the privilege rule (:func:`musewise.archive.privileges.visible_datasets`)
of the acting user.
"""

from __future__ import annotations

from sqlalchemy import and_, exists, func, select

from ..exceptions import InvalidArgumentError
from .collections import resolve
from .records import DatasetRecord
from .schema import Collection, Dataset, DatasetIfu, Project, User

#: Columns users may sort query results by.
ORDERABLE = ("id", "date_obs", "mjd_obs", "night", "category", "created", "exptime", "ifu", "object")


def select_datasets(arch, s, *, kind=None, category=None, night=None, date_from=None,
                    date_to=None, ifu=None, valid=None, project=None, mode=None, run_id=None,
                    owner=None, object=None, privilege=None, exposure=None, collection=None,
                    collections=None):
    """The SELECT behind :meth:`Archive.query` in session ``s``, restricted to what the user may see."""
    q = select(Dataset).where(arch.visible(s))
    for col, val in ((Dataset.kind, kind), (Dataset.category, category), (Dataset.night, night),
                     (Dataset.mode, mode), (Dataset.run_id, run_id), (Dataset.object, object),
                     (Dataset.privilege, privilege), (Dataset.exposure, exposure)):
        if val is None:
            continue
        if isinstance(val, (list, tuple, set)):
            q = q.where(col.in_([getattr(v, "value", v) for v in val]))
        else:
            q = q.where(col == getattr(val, "value", val))
    if date_from is not None:
        q = q.where(Dataset.night >= str(date_from))
    if date_to is not None:
        q = q.where(Dataset.night <= str(date_to))
    if project is not None:
        q = q.join(Project, Dataset.project_id == Project.id).where(Project.name == project)
    if owner is not None:
        q = q.where(Dataset.owner_id == select(User.id).where(User.name == owner).scalar_subquery())
    if collection is not None:
        q = q.where(Dataset.collection_id == select(Collection.id).where(Collection.name == collection)
                    .scalar_subquery())
    if collections is not None:
        q = q.where(resolve(s, collections).contains(Dataset.collection_id))
    if ifu is not None:
        cond = [DatasetIfu.dataset_id == Dataset.id, DatasetIfu.ifu == int(ifu)]
        if valid is not None:
            cond.append(DatasetIfu.is_valid.is_(True))
        has_ifu = exists().where(and_(*cond))
        if valid is None:
            q = q.where(has_ifu)
        else:
            usable = and_(Dataset.is_valid.is_(True), Dataset.affected_by.is_(None), has_ifu)
            q = q.where(usable if valid else ~usable)
    elif valid is not None:
        bad_ifu = exists().where(and_(DatasetIfu.dataset_id == Dataset.id, DatasetIfu.is_valid.is_(False)))
        usable = and_(Dataset.is_valid.is_(True), Dataset.affected_by.is_(None), ~bad_ifu)
        q = q.where(usable if valid else ~usable)
    return q

def query(arch, *, order_by: str = "date_obs", descending: bool = False, limit: int | None = None,
          offset: int = 0, **filters) -> list[DatasetRecord]:
    """See :meth:`Archive.query`."""
    if order_by not in ORDERABLE:
        raise InvalidArgumentError(f"cannot order by {order_by!r}; choose one of {ORDERABLE}")
    with arch.session() as s:
        q = select_datasets(arch, s, **filters)
        col = getattr(Dataset, order_by)
        q = q.order_by(col.desc() if descending else col, Dataset.id).offset(int(offset))
        if limit is not None:
            q = q.limit(int(limit))
        return [arch.record(s, ds) for ds in s.scalars(q).unique()]

def find(arch, category: str, *, collections=None, ifu: int | None = None, **filters) -> list[DatasetRecord]:
    """See :meth:`Archive.find`."""
    with arch.session() as s:
        path = arch.resolve_path(s, collections)
        q = select_datasets(arch, s, category=category, ifu=ifu, valid=True, **filters)
        q = q.where(path.contains(Dataset.collection_id))
        q = q.order_by(path.rank(Dataset.collection_id), Dataset.created.desc(), Dataset.id.desc())
        return [arch.record(s, ds) for ds in s.scalars(q).unique()]

def count(arch, **filters) -> int:
    """See :meth:`Archive.count`."""
    with arch.session() as s:
        q = select_datasets(arch, s, **filters)
        return s.scalar(select(func.count()).select_from(q.subquery()))

__all__ = ["ORDERABLE", "count", "find", "query", "select_datasets"]
