"""Distributed quality control: a queue of products awaiting review, claims, verdicts, audit.

The review workflow of the consortium:

1. a product appears in the :func:`queue` of the reviewers who may judge it while one
   of its IFUs is ``unchecked``, or a machine flagged it (state ``pending``: a QC
   notebook crossed a threshold) or it is ``affected`` (an input it was made from
   was invalidated) - until a person gives a verdict;
2. a reviewer :func:`claim` s it: one claimant at a time, the claim expiring after
   ``QCConfig.claim_minutes`` so an abandoned review does not block others;
3. the reviewer looks at it (the QC panel of :mod:`musewise.widgets` uses this API)
   and gives a :func:`review`: validity and flag with a comment, written with
   :meth:`Archive.set_validity` (which audits who/when/before/after);
4. invalidating a product marks every product made from it as ``affected``
   (:func:`mark_affected`): a dedicated state in ``qc_review_states`` - recorded for
   *all* dependents, whoever owns them - plus flag ``warning`` with the comment
   ``affected by invalid #<id>`` on those the reviewer may flag, so tools that read
   only flags (calibration choice, viewers) see it too. Validity is left to a person.

Claims, releases of claims, expiries, verdicts and affected-marking are recorded in
``qc_review_events`` (:func:`review_history`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from ..exceptions import AlreadyClaimedError, InvalidArgumentError, PermissionDeniedError
from ..vocabulary import DatasetKind, QualityFlag
from ..archive.privileges import can_review
from ..archive.validity import dependents_of
from ..archive.schema import Dataset, DatasetIfu, User, utcnow
from ..archive.schema_review import QCClaim, ReleaseItem, ReviewEvent, ReviewState


class ReviewStatus(str, enum.Enum):
    """Where an IFU of a product stands in the review (beyond its quality flag)."""

    PENDING = "pending"      #: flagged by an automatic QC run; awaits a person
    AFFECTED = "affected"    #: made from a product since invalidated; awaits a person
    REVIEWED = "reviewed"    #: a person gave a verdict



#: Dataset kinds that are reviewed (raw frames and notebooks are not).
PRODUCT_KINDS = (DatasetKind.CALIBRATION.value, DatasetKind.SCIENCE.value)


@dataclass(frozen=True)
class Claim:
    """A reviewer's claim on a product (times UTC)."""

    dataset_id: int
    user: str
    claimed: datetime
    expires: datetime


@dataclass(frozen=True)
class QueueItem:
    """One IFU of a product awaiting review (``ifu`` 0: a product holding no IFU)."""

    dataset_id: int
    ifu: int
    category: str
    night: str | None
    flag: str
    is_valid: bool
    state: str            # "unchecked", "pending" or "affected"
    reason: str
    claimed_by: str | None
    claim_expires: datetime | None
    can_review: bool


@dataclass(frozen=True)
class AffectedProduct:
    """A product IFU marked affected by an invalid input; ``flagged``: its flag was set to warning."""

    dataset_id: int
    ifu: int
    flagged: bool


@dataclass(frozen=True)
class ReviewOutcome:
    """Result of :func:`review`: the product after the verdict and the products it affected."""

    record: object
    affected: tuple[AffectedProduct, ...]
    releases: tuple[str, ...]
    validity_recorded: bool


def _minutes(arch, minutes):
    if minutes is not None:
        return float(minutes)
    from .thresholds import QCConfig

    return QCConfig(config=arch.config.config).claim_minutes


def _event(s, user_id, action, dataset_id=None, ifu=None, comment="", release_id=None, at=None):
    s.add(ReviewEvent(user_id=user_id, action=action, dataset_id=dataset_id, ifu=ifu, comment=comment,
                      release_id=release_id, at=at or utcnow()))


def _set_state(s, dataset_id, ifu, state, reason, user_id, source=None, now=None):
    row = s.get(ReviewState, (int(dataset_id), int(ifu)))
    if row is None:
        row = ReviewState(dataset_id=int(dataset_id), ifu=int(ifu))
        s.add(row)
    row.state, row.reason, row.user_id = state, reason, user_id
    row.source_dataset_id = source
    row.updated = now or utcnow()


def _live_claim(s, dataset_id, now):
    c = s.get(QCClaim, int(dataset_id))
    if c is not None and c.expires > now:
        return c
    return None


# ----------------------------------------------------------------------------- claims
def claim(arch, dataset_id: int, minutes: float | None = None) -> Claim:
    """Claim a product for review: nobody else may review it until the claim ends.

    Claiming again renews one's own claim; an expired claim of someone else is taken
    over (and the expiry audited).

    Parameters
    ----------
    dataset_id : int
    minutes : float, optional
        Claim duration (min); default ``QCConfig.claim_minutes``.

    Raises
    ------
    AlreadyClaimedError
        Another reviewer holds an unexpired claim.
    PermissionDeniedError
        The user may not review this product.
    """
    duration = timedelta(minutes=_minutes(arch, minutes))
    try:
        with arch.transaction() as tx:
            s = tx.session
            user = arch.acting_user(s)
            ds = arch.load(s, dataset_id)
            if not can_review(user, ds.owner_id, ds.project_id, arch.roles(s, user)):
                raise PermissionDeniedError(f"user {user.name!r} may not review dataset {dataset_id}")
            now = utcnow()
            c = s.scalar(select(QCClaim).where(QCClaim.dataset_id == ds.id).with_for_update())
            if c is not None and c.user_id != user.id:
                holder = s.get(User, c.user_id).name
                if c.expires > now:
                    raise AlreadyClaimedError(
                        f"dataset {dataset_id} is claimed by {holder!r} until {c.expires:%Y-%m-%d %H:%M} UTC")
                _event(s, user.id, "claim_expired", ds.id,
                       comment=f"claim of {holder} (since {c.claimed:%Y-%m-%d %H:%M}) expired at "
                               f"{c.expires:%Y-%m-%d %H:%M:%S}", at=now)
            if c is None:
                c = QCClaim(dataset_id=ds.id)
                s.add(c)
            c.user_id, c.claimed, c.expires = user.id, now, now + duration
            _event(s, user.id, "claim", ds.id, comment=f"until {c.expires:%Y-%m-%d %H:%M:%S} UTC", at=now)
            out = Claim(ds.id, user.name, c.claimed, c.expires)
    except SAIntegrityError:
        # Another reviewer inserted a claim between our read and our commit.
        raise AlreadyClaimedError(f"dataset {dataset_id} was just claimed by another reviewer") from None
    return out


def unclaim(arch, dataset_id: int) -> None:
    """Give up one's claim on a product (administrators may end anyone's)."""
    with arch.transaction() as tx:
        s = tx.session
        user = arch.acting_user(s)
        arch.load(s, dataset_id)
        c = s.get(QCClaim, int(dataset_id))
        if c is None:
            return
        if c.user_id != user.id and not user.is_admin:
            raise PermissionDeniedError(f"the claim on dataset {dataset_id} belongs to someone else")
        s.delete(c)
        _event(s, user.id, "unclaim", int(dataset_id))


def current_claim(arch, dataset_id: int) -> Claim | None:
    """The unexpired claim on a product, if any."""
    with arch.session() as s:
        arch.load(s, dataset_id)
        c = _live_claim(s, dataset_id, utcnow())
        return None if c is None else Claim(c.dataset_id, s.get(User, c.user_id).name, c.claimed, c.expires)


# ----------------------------------------------------------------------------- queue
def queue(arch, *, category=None, night: str | None = None, reviewable_only: bool = False,
          include_claimed: bool = True, limit: int | None = None) -> list[QueueItem]:
    """Product IFUs awaiting review that the user may see, oldest first.

    Parameters
    ----------
    category : str or list of str, optional
        Product categories (``MASTER_BIAS``...).
    night : str, optional
    reviewable_only : bool
        Only products the user may give a verdict on.
    include_claimed : bool
        Also list products claimed by someone else (with ``claimed_by``).
    limit : int, optional
        At most this many products.
    """
    now = utcnow()
    with arch.session() as s:
        user = arch.acting_user(s)
        roles = arch.roles(s, user)
        flagged = exists().where(and_(ReviewState.dataset_id == Dataset.id,
                                      ReviewState.state.in_([ReviewStatus.PENDING.value, ReviewStatus.AFFECTED.value])))
        awaiting = or_(
            exists().where(and_(DatasetIfu.dataset_id == Dataset.id,
                                DatasetIfu.flag == QualityFlag.UNCHECKED.value)),
            flagged,
            ~exists().where(DatasetIfu.dataset_id == Dataset.id),
        )
        # Auxiliary products (pixel tables, trace tables, sky models...) are many and only
        # queued when their QC flagged them; calibrations and science products also while unchecked.
        q = select(Dataset).where(arch.visible(s), or_(and_(Dataset.kind.in_(PRODUCT_KINDS), awaiting),
                                                       and_(Dataset.kind == DatasetKind.AUXILIARY.value, flagged)))
        if category is not None:
            q = q.where(Dataset.category.in_([category] if isinstance(category, str) else list(category)))
        if night is not None:
            q = q.where(Dataset.night == night)
        q = q.order_by(Dataset.created, Dataset.id)
        names = dict(s.execute(select(User.id, User.name)).all())
        out, n = [], 0
        for ds in s.scalars(q):
            may = can_review(user, ds.owner_id, ds.project_id, roles)
            if reviewable_only and not may:
                continue
            c = _live_claim(s, ds.id, now)
            if c is not None and c.user_id != user.id and not include_claimed:
                continue
            states = {r.ifu: r for r in s.scalars(select(ReviewState).where(ReviewState.dataset_id == ds.id))}
            ifus = [(i.ifu, i.flag, i.is_valid) for i in ds.ifus] or [(0, QualityFlag.UNCHECKED.value, True)]
            items = []
            for ifu, flag, valid in ifus:
                st = states.get(ifu)
                if st is not None and st.state in (ReviewStatus.PENDING.value, ReviewStatus.AFFECTED.value):
                    state, reason = st.state, st.reason
                elif (flag == QualityFlag.UNCHECKED.value and ds.kind in PRODUCT_KINDS
                      and (st is None or st.state != ReviewStatus.REVIEWED.value)):
                    state, reason = "unchecked", ""
                else:
                    continue
                items.append(QueueItem(ds.id, ifu, ds.category, ds.night, flag, valid, state, reason,
                                       names.get(c.user_id) if c else None, c.expires if c else None, may))
            if items:
                out += items
                n += 1
                if limit is not None and n >= limit:
                    break
        return out


# ----------------------------------------------------------------------------- verdicts
def review(arch, dataset_id: int, ifu: int | None, is_valid: bool, flag: QualityFlag | str,
           comment: str, *, mark_dependents: bool = True) -> ReviewOutcome:
    """Give a reviewer's verdict on a product IFU (all IFUs with ``ifu=None``).

    Parameters
    ----------
    dataset_id : int
    ifu : int or None
    is_valid : bool
        May the IFU be used?
    flag : QualityFlag or str
        ``good``, ``warning`` or ``bad``.
    comment : str
        Why (required).
    mark_dependents : bool
        When the verdict invalidates the product, mark what was made from it as
        affected (:func:`mark_affected`).

    Returns
    -------
    ReviewOutcome
        ``releases`` names the data releases (``name/version``) holding the product:
        a released product invalidated stays in its frozen release, and the
        invalidation is recorded against the release (see :mod:`musewise.release`).

    Raises
    ------
    AlreadyClaimedError
        Another reviewer holds the claim.
    PermissionDeniedError
        The user may not review the product.
    """
    flag = QualityFlag(getattr(flag, "value", flag)).value
    if not comment.strip():
        raise InvalidArgumentError("a review needs a comment saying what was looked at and why")
    releases, affected = [], []
    # One transaction: the verdict, its review state, the claim's end and the affected marks
    # all land together or not at all.
    with arch.transaction() as tx:
        s = tx.session
        user = arch.acting_user(s)
        ds = arch.load(s, dataset_id)
        if not can_review(user, ds.owner_id, ds.project_id, arch.roles(s, user)):
            raise PermissionDeniedError(f"user {user.name!r} may not review dataset {dataset_id}")
        now = utcnow()
        c = _live_claim(s, dataset_id, now)
        if c is not None and c.user_id != user.id:
            raise AlreadyClaimedError(f"dataset {dataset_id} is claimed by {s.get(User, c.user_id).name!r} "
                                      f"until {c.expires:%Y-%m-%d %H:%M} UTC")
        held = [st.ifu for st in ds.ifus]
        ifus = [i for i in held if ifu is None or i == int(ifu)] or [0]
        was_valid = ds.is_valid and all(st.is_valid for st in ds.ifus if st.ifu in ifus)
        arch.set_validity(dataset_id, ifu, is_valid=is_valid, flag=flag, comment=comment, tx=tx)
        text = f"valid={is_valid} flag={flag}: {comment}"
        for i in ifus:
            _set_state(s, dataset_id, i, ReviewStatus.REVIEWED.value, text, user.id, now=now)
            _event(s, user.id, "review", int(dataset_id), i, text, at=now)
        c = s.get(QCClaim, int(dataset_id))
        if c is not None and c.user_id == user.id:
            s.delete(c)
        if not is_valid:
            from ..archive.schema_review import Release

            for rel in s.scalars(select(Release).join(ReleaseItem, ReleaseItem.release_id == Release.id)
                                 .where(ReleaseItem.dataset_id == int(dataset_id))):
                releases.append(f"{rel.name}/{rel.version}")
                _event(s, user.id, "released_invalidated", int(dataset_id), ifu, release_id=rel.id,
                       comment=f"invalidated after release {rel.name} {rel.version}; the release stays frozen: "
                               f"{comment}", at=now)
        if mark_dependents and not is_valid and was_valid:
            affected = _queue_affected(arch, tx, user, int(dataset_id), ifu, None, now)
    return ReviewOutcome(arch.get(dataset_id), tuple(affected), tuple(releases), True)


def _queue_affected(arch, tx, user, dataset_id: int, ifu, comment, now) -> list[AffectedProduct]:
    # The archive marks dependents affected (its one hook); here they join the review
    # queue, and those the reviewer may flag get a warning.
    s = tx.session
    text = comment or f"affected by invalid #{dataset_id}"
    roles = arch.roles(s, user)
    out, to_flag = [], []
    for did in dependents_of(s, dataset_id, ifu):
        d = s.get(Dataset, did)
        held = [i.ifu for i in d.ifus]
        ifus = [int(ifu)] if ifu is not None and int(ifu) in held else (held or [0])
        may = can_review(user, d.owner_id, d.project_id, roles)
        for i in ifus:
            _set_state(s, d.id, i, ReviewStatus.AFFECTED.value, text, user.id, source=dataset_id, now=now)
            _event(s, user.id, "affected", d.id, i, text, at=now)
            st = next((x for x in d.ifus if x.ifu == i), None)
            flag_it = may and st is not None and st.flag in (QualityFlag.UNCHECKED.value, QualityFlag.GOOD.value)
            if flag_it:
                to_flag.append((d.id, i))
            out.append(AffectedProduct(d.id, i, flag_it))
    for did, i in to_flag:
        arch.set_validity(did, i, flag=QualityFlag.WARNING, comment=text, tx=tx)
    return out


def mark_affected(arch, dataset_id: int, ifu: int | None = None, comment: str | None = None) -> list[AffectedProduct]:
    """Queue for review the products made (directly or not) from an invalid dataset.

    The archive itself marks them affected when the dataset is invalidated (by any
    path); this records their review state ``affected`` so reviewers see them, and
    gives a ``warning`` flag to those the user may flag. Per dependent product, the IFU
    matching ``ifu`` is marked if it holds it, else all its IFUs (0 for a product
    holding none). Flags only get worse: a ``bad`` product stays ``bad``.

    Returns
    -------
    list of AffectedProduct
        Including products the user may not see or flag (their state is recorded
        for their own reviewers).
    """
    with arch.transaction() as tx:
        user = arch.acting_user(tx.session)
        arch.load(tx.session, dataset_id)
        return _queue_affected(arch, tx, user, int(dataset_id), ifu, comment, utcnow())


def mark_pending(arch, dataset_id: int, ifus, reason: str) -> None:
    """Record that a machine (a QC notebook) flagged product IFUs, so they await a person."""
    with arch.transaction() as tx:
        s = tx.session
        user = arch.acting_user(s)
        now = utcnow()
        for i in ifus:
            _set_state(s, dataset_id, i, ReviewStatus.PENDING.value, reason, user.id, now=now)
            _event(s, user.id, "auto_flag", int(dataset_id), i, reason, at=now)


def clear_pending(arch, dataset_id: int, ifus, reason: str) -> list[int]:
    """Take product IFUs out of ``pending`` once a later QC run passes them (see :func:`musewise.qc.run_qc`).

    Only IFUs still ``pending`` change: a person's verdict (``reviewed``) or an invalid
    input (``affected``) stands. Audited as ``auto_clear`` with ``reason``. Returns the
    IFUs cleared.
    """
    cleared = []
    with arch.transaction() as tx:
        s = tx.session
        user = arch.acting_user(s)
        now = utcnow()
        for i in ifus:
            row = s.get(ReviewState, (int(dataset_id), int(i)))
            if row is not None and row.state == ReviewStatus.PENDING.value:
                s.delete(row)
                _event(s, user.id, "auto_clear", int(dataset_id), int(i), reason, at=now)
                cleared.append(int(i))
    return cleared


def review_state(arch, dataset_id: int) -> dict[int, dict]:
    """Review state of each IFU of a product that has one: ``{ifu: {state, reason, source, user, updated}}``."""
    with arch.session() as s:
        arch.load(s, dataset_id)
        names = dict(s.execute(select(User.id, User.name)).all())
        return {r.ifu: {"state": r.state, "reason": r.reason, "source": r.source_dataset_id,
                        "user": names.get(r.user_id), "updated": r.updated}
                for r in s.scalars(select(ReviewState).where(ReviewState.dataset_id == int(dataset_id)))}


def review_history(arch, dataset_id: int) -> list[dict]:
    """Audit trail of a product's review work (claims, verdicts, flags, affected), oldest first.

    Validity changes are merged in from :meth:`Archive.validity_history` (``action``
    ``validity``).
    """
    with arch.session() as s:
        arch.load(s, dataset_id)
        rows = s.execute(select(ReviewEvent, User.name).join(User, ReviewEvent.user_id == User.id)
                         .where(ReviewEvent.dataset_id == int(dataset_id)).order_by(ReviewEvent.id)).all()
        events = [{"at": e.at, "user": name, "action": e.action, "ifu": e.ifu, "comment": e.comment,
                   "release_id": e.release_id} for e, name in rows]
    for v in arch.validity_history(dataset_id):
        events.append({"at": v["at"], "user": v["user"], "action": "validity", "ifu": v["ifu"],
                       "comment": f"valid {v['valid_before']}->{v['valid_after']}, flag {v['flag_before']}->"
                                  f"{v['flag_after']}: {v['comment']}", "release_id": None})
    return sorted(events, key=lambda e: e["at"])


__all__ = ["AffectedProduct", "AlreadyClaimedError", "Claim", "QueueItem", "ReviewOutcome", "ReviewStatus",
           "claim", "clear_pending", "current_claim", "mark_affected", "mark_pending", "queue", "review", "review_history",
           "review_state", "unclaim"]
