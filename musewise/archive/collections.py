"""Collections: where datasets were written (RUN), search paths (CHAINED), certified calibrations.

A dataset's data ID includes the RUN collection it was written to, so two runs that
make the same product (same category, night, exposure, IFU) give two datasets that
never collide. What a reduction reads is decided by a **search path**: an ordered
list of collection names. A CHAINED collection in the path stands for its members,
newest first; among candidates for the same data ID the one found earliest in the
path wins, then the newest.

The default paths (:func:`default_search_path`):

- a personal trial (``commit=False``) of user *u* in project *p* reads
  ``u/<u>/calib, u/<u>, <p>/calib, <p>/reference, MUSE/calib, MUSE/static, MUSE/ingested, MUSE/raw``:
  the user's own trials first, then the shared reference reduction;
- a reference run (``commit=True``) reads ``<p>/calib, <p>/reference, MUSE/calib,
  MUSE/static, MUSE/ingested, MUSE/raw`` only, so the reference reduction never rests
  on somebody's private trial.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, false, func, or_, select
from sqlalchemy.orm import Session

from ..exceptions import InvalidArgumentError, NotFoundError
from ..vocabulary import (
    RAW_COLLECTION,
    STATIC_CALIB_COLLECTION,
    STATIC_COLLECTION,
    CollectionType,
    reference_calibrations,
    reference_chain,
    user_calibrations,
    user_chain,
)
from .schema import Collection, CollectionChain, utcnow

#: RUN collection of products ingested by hand (not made by a run here).
INGESTED_COLLECTION = "MUSE/ingested"
#: Collections every search path ends with: the instrument's own data.
INSTRUMENT_COLLECTIONS = (STATIC_CALIB_COLLECTION, STATIC_COLLECTION, INGESTED_COLLECTION, RAW_COLLECTION)


def default_search_path(user: str, project: str, *, reference: bool) -> list[str]:
    """The collections a run reads from, in order (see the module docstring)."""
    shared = [reference_calibrations(project), reference_chain(project), *INSTRUMENT_COLLECTIONS]
    if reference:
        return shared
    return [user_calibrations(user), user_chain(user), *shared]


def ensure_collection(s: Session, name: str, type_: CollectionType, *, owner_id: int | None = None,
                      project_id: int | None = None, description: str = "") -> Collection:
    """The collection called ``name``, created with these properties if it does not exist.

    Raises
    ------
    InvalidArgumentError
        If it exists with another type.
    """
    c = s.scalar(select(Collection).where(Collection.name == name))
    if c is None:
        c = Collection(name=name, type=CollectionType(type_).value, owner_id=owner_id, project_id=project_id,
                       description=description, created=utcnow())
        s.add(c)
        s.flush()
    elif c.type != CollectionType(type_).value:
        raise InvalidArgumentError(f"collection {name!r} is a {c.type} collection, not {type_.value}")
    return c


def get_collection(s: Session, name: str) -> Collection:
    """The collection called ``name``.

    Raises
    ------
    NotFoundError
        ``no collection named ...``.
    """
    c = s.scalar(select(Collection).where(Collection.name == name))
    if c is None:
        raise NotFoundError(f"no collection named {name!r}")
    return c


def chain_prepend(s: Session, parent: Collection, child: Collection) -> None:
    """Put ``child`` first in the chain ``parent`` (it is searched before older members)."""
    top = s.scalar(select(func.max(CollectionChain.position)).where(CollectionChain.parent_id == parent.id))
    row = s.get(CollectionChain, (parent.id, child.id))
    if row is None:
        s.add(CollectionChain(parent_id=parent.id, child_id=child.id, position=(top or 0) + 1))
    else:
        row.position = (top or 0) + 1


def set_chain(s: Session, parent: Collection, children: list[Collection]) -> None:
    """Replace the members of ``parent``: ``children[0]`` is searched first.

    Raises
    ------
    InvalidArgumentError
        If ``parent`` is not CHAINED or a member would make the chain contain itself.
    """
    if parent.type != CollectionType.CHAINED.value:
        raise InvalidArgumentError(f"{parent.name!r} is not a chained collection")
    for c in children:
        if c.id == parent.id or parent.id in _chains_below(s, [c.id]):
            raise InvalidArgumentError(f"chaining {c.name!r} into {parent.name!r} makes a cycle")
    s.query(CollectionChain).filter(CollectionChain.parent_id == parent.id).delete()
    n = len(children)
    for i, c in enumerate(children):
        s.add(CollectionChain(parent_id=parent.id, child_id=c.id, position=n - i))


def chain_members(s: Session, parent: Collection, limit: int | None = None) -> list[Collection]:
    """Members of a chain, in search order (first searched first)."""
    q = (select(Collection).join(CollectionChain, CollectionChain.child_id == Collection.id)
         .where(CollectionChain.parent_id == parent.id).order_by(CollectionChain.position.desc()))
    if limit:
        q = q.limit(limit)
    return list(s.scalars(q))


def _chains_below(s: Session, ids: list[int]) -> set[int]:
    # Every chained collection reachable from ``ids`` (the ids themselves included).
    seen: set[int] = set()
    frontier = [i for i in ids]
    while frontier:
        rows = s.execute(select(Collection.id, Collection.type).where(Collection.id.in_(frontier))).all()
        chains = [cid for cid, t in rows if t == CollectionType.CHAINED.value and cid not in seen]
        seen.update(chains)
        frontier = list(s.scalars(select(CollectionChain.child_id).where(CollectionChain.parent_id.in_(chains)))) \
            if chains else []
    return seen


@dataclass(frozen=True)
class SearchPath:
    """A resolved collection search path.

    Attributes
    ----------
    names : tuple of str
        The path as given (existing collections only; missing ones are skipped: a new
        user has no trials yet).
    entries : tuple of (tuple of int, tuple of int)
        For each entry of the path: the ids of its RUN/CALIBRATION leaves named
        directly, and the ids of the CHAINED collections whose members it stands for.
    calibration_ids : tuple of int
        The CALIBRATION collections of the path, in search order.
    """

    names: tuple[str, ...]
    entries: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]
    calibration_ids: tuple[int, ...]

    def _member(self, column, leaves, chains):
        conds = []
        if leaves:
            conds.append(column.in_(leaves))
        if chains:
            conds.append(column.in_(select(CollectionChain.child_id).where(CollectionChain.parent_id.in_(chains))))
        return or_(*conds) if conds else false()

    def contains(self, column):
        """SQL condition: ``column`` (a collection id) is a collection of this path."""
        leaves = tuple(i for lv, _ in self.entries for i in lv)
        chains = tuple(i for _, ch in self.entries for i in ch)
        return self._member(column, leaves, chains)

    def rank(self, column):
        """SQL expression: the position in the path of the entry holding ``column`` (0 first)."""
        whens = [(self._member(column, lv, ch), i) for i, (lv, ch) in enumerate(self.entries)]
        return case(*whens, else_=len(self.entries)) if whens else func.abs(0)

    def calibration_rank(self, column):
        """SQL expression: the position of a calibration collection id in the path."""
        ids = self.calibration_ids
        return case(*[(column == cid, i) for i, cid in enumerate(ids)], else_=len(ids)) if ids else func.abs(0)


def resolve(s: Session, names) -> SearchPath:
    """Resolve collection names into a :class:`SearchPath` (chains stay symbolic: no expansion of runs)."""
    names = [str(n) for n in names]
    rows = {c.name: c for c in s.scalars(select(Collection).where(Collection.name.in_(names)))}
    entries, calib, kept = [], [], []
    for name in names:
        c = rows.get(name)
        if c is None:
            continue
        kept.append(name)
        if c.type == CollectionType.CHAINED.value:
            chains = _chains_below(s, [c.id])
            direct = [cid for cid, t in s.execute(
                select(Collection.id, Collection.type).join(CollectionChain, CollectionChain.child_id == Collection.id)
                .where(CollectionChain.parent_id.in_(chains), Collection.type == CollectionType.CALIBRATION.value)
                .order_by(CollectionChain.position.desc())).all()]
            calib.extend(i for i in direct if i not in calib)
            entries.append(((), tuple(sorted(chains))))
        else:
            if c.type == CollectionType.CALIBRATION.value and c.id not in calib:
                calib.append(c.id)
            entries.append(((c.id,), ()))
    return SearchPath(tuple(kept), tuple(entries), tuple(calib))


__all__ = ["INGESTED_COLLECTION", "INSTRUMENT_COLLECTIONS", "SearchPath", "chain_members", "chain_prepend",
           "default_search_path", "ensure_collection", "get_collection", "resolve", "set_chain"]
