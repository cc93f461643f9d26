"""Validity and quality of every dataset, with the audit trail and the *affected* mark.

Every dataset carries a verdict of its own (``is_valid``, ``flag``, ``comment``); a file
holding several IFUs (a raw exposure) carries one per IFU besides. Whatever path
invalidates a dataset - the Python API, the QC review, the web view - goes through
:func:`set_validity`, which marks every dataset made from it, directly or through other
products, *affected* (``affected_by`` = the invalid dataset), so it is neither selected
nor released until a person looks at it. Validating the dataset again lifts the mark
it caused. Marking an IFU of a multi-IFU file invalid affects only what was made from
that IFU (runs of that IFU, and runs combining IFUs).
"""

from __future__ import annotations

from sqlalchemy import or_, select, update

from ..exceptions import InvalidArgumentError, NotFoundError, PermissionDeniedError
from ..vocabulary import DatasetKind, QualityFlag
from .privileges import can_review
from .schema import Dataset, Run, RunInput, User, ValidityEvent, utcnow

#: Pseudo flag of the audit trail for "marked affected by an invalidated input".
AFFECTED = "affected"


def set_validity(arch, s, dataset_id, ifu, *, is_valid, flag, comment) -> None:
    """Change a dataset's (or one IFU's) verdict in session ``s``; see :meth:`Archive.set_validity`."""
    if flag is not None:
        try:
            flag = QualityFlag(getattr(flag, "value", flag)).value
        except ValueError:
            raise InvalidArgumentError(f"unknown quality flag {flag!r}; choose one of "
                                                 f"{[f.value for f in QualityFlag]}") from None
    if is_valid is False and not (comment or "").strip():
        raise InvalidArgumentError("say why in `comment` when marking data invalid")
    user = arch.acting_user(s)
    ds = arch.load(s, dataset_id)
    if not can_review(user, ds.owner_id, ds.project_id, arch.roles(s, user)):
        raise PermissionDeniedError(
            f"user {user.name!r} may not change the quality of dataset {dataset_id} "
            f"(owner, project reviewers and administrators may)")
    now = utcnow()
    whole = ifu is None or (ds.ifu is not None and int(ifu) == ds.ifu)
    if ifu is not None and not any(st.ifu == int(ifu) for st in ds.ifus):
        raise NotFoundError(f"dataset {dataset_id} holds no IFU {ifu}")
    became_invalid = became_valid = False
    if whole:
        new_valid = ds.is_valid if is_valid is None else bool(is_valid)
        new_flag = ds.flag if flag is None else flag
        # One audit event: a single-IFU product's verdict and its IFU's are one verdict.
        s.add(ValidityEvent(dataset_id=ds.id, ifu=ds.ifu, user_id=user.id, at=now, valid_before=ds.is_valid,
                            valid_after=new_valid, flag_before=ds.flag, flag_after=new_flag, comment=comment))
        became_invalid, became_valid = ds.is_valid and not new_valid, new_valid and not ds.is_valid
        ds.is_valid, ds.flag, ds.comment, ds.validity_by, ds.validity_at = new_valid, new_flag, comment, user.id, now
    # The IFU row the verdict also lands on: the one asked for, or a single-IFU product's own
    # (a multi-IFU file judged as a whole keeps its per-IFU verdicts).
    target = ds.ifu if whole else int(ifu)
    for st in ds.ifus:
        if st.ifu != target:
            continue
        new_valid = st.is_valid if is_valid is None else bool(is_valid)
        new_flag = st.flag if flag is None else flag
        if not whole:
            s.add(ValidityEvent(dataset_id=ds.id, ifu=st.ifu, user_id=user.id, at=now, valid_before=st.is_valid,
                                valid_after=new_valid, flag_before=st.flag, flag_after=new_flag, comment=comment))
            became_invalid |= st.is_valid and not new_valid
            became_valid |= new_valid and not st.is_valid
        st.is_valid, st.flag, st.comment, st.updated_by, st.updated = new_valid, new_flag, comment, user.id, now
    s.flush()
    only_ifu = None if whole or ds.ifu is not None else int(ifu)
    if became_invalid:
        mark_affected(s, ds.id, user, only_ifu, now)
    elif became_valid:
        lift_affected(s, ds.id, user, now)


def dependents_of(s, dataset_id: int, ifu: int | None = None) -> list[int]:
    """IDs of every product made from ``dataset_id``, directly or not (no visibility filter: the hook
    must reach everything). With ``ifu``, the first step follows only runs of that IFU or of all IFUs."""
    found: set[int] = set()
    frontier = [int(dataset_id)]
    first = True
    while frontier:
        runs = select(RunInput.run_id).where(RunInput.dataset_id.in_(frontier))
        if first and ifu is not None:
            runs = runs.join(Run, Run.id == RunInput.run_id).where(or_(Run.ifu == ifu, Run.ifu.is_(None)))
        first = False
        ids = s.scalars(select(Dataset.id).where(Dataset.run_id.in_(runs),
                                                 Dataset.kind != DatasetKind.NOTEBOOK.value)).all()
        frontier = [i for i in ids if i not in found]
        found.update(frontier)
    return sorted(found)


def mark_affected(s, source_id: int, user: User, ifu: int | None, now) -> list[int]:
    """Mark what was made from ``source_id`` affected by it (those not affected already); audited."""
    ids = dependents_of(s, source_id, ifu)
    if not ids:
        return []
    todo = s.scalars(select(Dataset.id).where(Dataset.id.in_(ids), Dataset.affected_by.is_(None))).all()
    text = f"affected by invalid #{source_id}"
    for did in todo:
        s.add(ValidityEvent(dataset_id=did, ifu=None, user_id=user.id, at=now, valid_before=True, valid_after=True,
                            flag_before="", flag_after=AFFECTED, comment=text))
    if todo:
        s.execute(update(Dataset).where(Dataset.id.in_(todo)).values(affected_by=int(source_id)))
    return list(todo)


def lift_affected(s, source_id: int, user: User, now) -> list[int]:
    """Lift the *affected* mark that ``source_id`` caused (it is valid again); audited."""
    todo = s.scalars(select(Dataset.id).where(Dataset.affected_by == int(source_id))).all()
    for did in todo:
        s.add(ValidityEvent(dataset_id=did, ifu=None, user_id=user.id, at=now, valid_before=True, valid_after=True,
                            flag_before=AFFECTED, flag_after="", comment=f"#{source_id} is valid again"))
    if todo:
        s.execute(update(Dataset).where(Dataset.id.in_(todo)).values(affected_by=None))
    return list(todo)


def history(s, dataset_id: int) -> list[dict]:
    """Audit trail of a dataset's verdicts, oldest first."""
    rows = s.execute(select(ValidityEvent, User.name).join(User, ValidityEvent.user_id == User.id)
                     .where(ValidityEvent.dataset_id == int(dataset_id)).order_by(ValidityEvent.id)).all()
    return [{"ifu": e.ifu, "user": name, "at": e.at, "valid_before": e.valid_before, "valid_after": e.valid_after,
             "flag_before": e.flag_before, "flag_after": e.flag_after, "comment": e.comment} for e, name in rows]


__all__ = ["AFFECTED", "dependents_of", "history", "lift_affected", "mark_affected", "set_validity"]
