"""Certified calibrations and the choice of the calibration for a frame.

A calibration is used only where it is **certified**: a row of :class:`Certification`
puts it in a CALIBRATION collection for a range of time ``[begin_mjd, end_mjd)``
(MJD, days; an open end is None). Runs certify what they make for the default range
of its category (:meth:`MusewiseConfig.validity_days`); static tables are certified
on ingest; reviewers change ranges later (every change audited).

For a frame of IFU *n* at MJD *t*, :func:`best_calibration` considers the
calibrations certified at *t* in the CALIBRATION collections of the search path
that the user may see, usable for IFU *n* (valid, not affected, IFU *n* valid) and
of the frame's mode. The first collection of the path wins, then the closest in
time, then the newest. Every candidate nearby that lost is reported with the
reason, and the reduction layer records them with the run.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from sqlalchemy import bindparam, or_, select, union_all

from ..exceptions import CalibrationNotFoundError, InvalidArgumentError, NotFoundError, PermissionDeniedError
from ..vocabulary import MAX_CERTIFIED_SPAN_DAYS, CollectionType
from .collections import get_collection, resolve
from .privileges import can_review, visible_datasets
from .records import CalibrationLoser, CertificationRecord, DatasetRecord, range_covers, range_text
from .schema import Certification, CertificationEvent, Collection, Dataset, DatasetIfu, User, utcnow

#: Candidates up to this many days outside their certified range are reported as losers (days).
LOSER_WINDOW_DAYS = 30.0
#: At most this many losers are reported for one choice.
MAX_LOSERS = 25


@dataclass(frozen=True)
class CalibrationChoice:
    """The chosen calibration, why, and the candidates that lost.

    Attributes
    ----------
    record : DatasetRecord
    reason : str
    n_candidates : int
        How many were eligible.
    collection : str
        The CALIBRATION collection it was found in.
    losers : tuple of CalibrationLoser
    """

    record: DatasetRecord
    reason: str
    n_candidates: int
    collection: str = ""
    losers: tuple[CalibrationLoser, ...] = ()


def _check_range(begin, end) -> None:
    if begin is not None and end is not None:
        if end <= begin:
            raise InvalidArgumentError(f"the certified range must end after it begins ({begin} >= {end})")
        if end - begin > MAX_CERTIFIED_SPAN_DAYS:
            raise InvalidArgumentError(f"a finite certified range spans at most {MAX_CERTIFIED_SPAN_DAYS:g} d "
                                            f"(here {end - begin:.1f} d); leave an end open for longer validity")


def certify_row(s, collection: Collection, ds: Dataset, begin, end, user: User | None, comment: str) -> Certification:
    """Certify (or re-range) ``ds`` in ``collection`` within an open session, with its audit event."""
    if collection.type != CollectionType.CALIBRATION.value:
        raise InvalidArgumentError(f"{collection.name!r} is a {collection.type} collection, "
                                        f"not a calibration collection")
    _check_range(begin, end)
    row = s.scalar(select(Certification).where(Certification.collection_id == collection.id,
                                               Certification.dataset_id == ds.id))
    before = (row.begin_mjd, row.end_mjd) if row is not None else (None, None)
    action = "change" if row is not None else "certify"
    if row is None:
        row = Certification(collection_id=collection.id, dataset_id=ds.id, category=ds.category, ifu=ds.ifu,
                            mode=ds.mode)
        s.add(row)
    row.begin_mjd, row.end_mjd = begin, end
    row.certified_by, row.certified, row.comment = (user.id if user else None), utcnow(), comment
    s.add(CertificationEvent(collection_id=collection.id, dataset_id=ds.id, user_id=user.id if user else None,
                             at=utcnow(), action=action, begin_before=before[0], end_before=before[1],
                             begin_after=begin, end_after=end, comment=comment))
    s.flush()
    return row


def default_range(config, ds: Dataset) -> tuple[float | None, float | None]:
    """The default certified range of a new calibration (MJD, days): its category's days around MJD-OBS
    (an infinite number of days: that end open)."""
    if ds.mjd_obs is None:
        return None, None
    before, after = config.validity_days(ds.category)
    return (ds.mjd_obs - before if math.isfinite(before) else None,
            ds.mjd_obs + after if math.isfinite(after) else None)


def _may_certify(arch, s, user: User, ds: Dataset, coll: Collection) -> None:
    roles = arch.roles(s, user)
    if not can_review(user, ds.owner_id, ds.project_id, roles):
        raise PermissionDeniedError(f"user {user.name!r} may not certify dataset {ds.id} "
                                    f"(its owner, its project's reviewers and administrators may)")
    if user.is_admin:
        return
    if coll.owner_id is not None and coll.owner_id != user.id:
        raise PermissionDeniedError(f"collection {coll.name!r} belongs to another user")
    if coll.owner_id is None and (coll.project_id is None or roles.get(coll.project_id) not in ("reviewer", "manager")):
        raise PermissionDeniedError(f"user {user.name!r} may not change the certifications of {coll.name!r} "
                                    f"(its project's reviewers and managers may)")


def _certifiable(arch, s, dataset_id, collection):
    # The acting user, the calibration and the collection, once the user may change its certification.
    user = arch.acting_user(s)
    ds = arch.load(s, dataset_id)
    coll = get_collection(s, collection)
    _may_certify(arch, s, user, ds, coll)
    return user, ds, coll


def certify(arch, dataset_id, collection, begin, end, comment) -> CertificationRecord:
    """See :meth:`Archive.certify`."""
    with arch.transaction() as tx:
        s = tx.session
        user, ds, coll = _certifiable(arch, s, dataset_id, collection)
        if begin is None and end is None:
            begin, end = default_range(arch.config, ds)
        row = certify_row(s, coll, ds, begin, end, user, comment)
        rid = row.id
    return list_certifications(arch, dataset_id=int(dataset_id), collection=collection, limit=1, _id=rid)[0]


def decertify(arch, dataset_id, collection, comment) -> None:
    """See :meth:`Archive.decertify`."""
    if not comment or not comment.strip():
        raise InvalidArgumentError("say why in `comment` when withdrawing a certification")
    with arch.transaction() as tx:
        s = tx.session
        user, ds, coll = _certifiable(arch, s, dataset_id, collection)
        row = s.scalar(select(Certification).where(Certification.collection_id == coll.id,
                                                   Certification.dataset_id == ds.id))
        if row is None:
            raise NotFoundError(f"dataset {dataset_id} is not certified in {collection!r}")
        s.add(CertificationEvent(collection_id=coll.id, dataset_id=ds.id, user_id=user.id, at=utcnow(),
                                 action="decertify", begin_before=row.begin_mjd, end_before=row.end_mjd,
                                 comment=comment))
        s.delete(row)


def list_certifications(arch, *, category=None, collection=None, dataset_id=None, ifu=None, mjd_from=None,
                        mjd_to=None, limit=5000, _id=None) -> list[CertificationRecord]:
    """See :meth:`Archive.certifications`."""
    with arch.session() as s:
        q = (select(Certification, Collection.name, User.name)
             .join(Collection, Collection.id == Certification.collection_id)
             .join(Dataset, Dataset.id == Certification.dataset_id)
             .outerjoin(User, User.id == Certification.certified_by)
             .where(arch.visible(s)))
        if _id is not None:
            q = q.where(Certification.id == _id)
        if category is not None:
            q = q.where(Certification.category == category)
        if collection is not None:
            q = q.where(Collection.name == collection)
        if dataset_id is not None:
            q = q.where(Certification.dataset_id == int(dataset_id))
        if ifu is not None:
            q = q.where(or_(Certification.ifu == int(ifu), Certification.ifu.is_(None)))
        if mjd_to is not None:
            q = q.where(or_(Certification.begin_mjd.is_(None), Certification.begin_mjd < mjd_to))
        if mjd_from is not None:
            q = q.where(or_(Certification.end_mjd.is_(None), Certification.end_mjd > mjd_from))
        q = q.order_by(Certification.category, Certification.ifu, Certification.begin_mjd, Certification.id)
        return [CertificationRecord(c.id, cname, c.dataset_id, c.category, c.ifu, c.mode, c.begin_mjd, c.end_mjd,
                                    uname, c.certified, c.comment or "")
                for c, cname, uname in s.execute(q.limit(int(limit))).all()]


def certification_history(arch, dataset_id: int) -> list[dict]:
    """Audit trail of a calibration's certifications, oldest first."""
    with arch.session() as s:
        arch.load(s, dataset_id)
        rows = s.execute(select(CertificationEvent, Collection.name, User.name)
                         .join(Collection, Collection.id == CertificationEvent.collection_id)
                         .outerjoin(User, User.id == CertificationEvent.user_id)
                         .where(CertificationEvent.dataset_id == int(dataset_id))
                         .order_by(CertificationEvent.id)).all()
        return [{"collection": c, "user": u, "at": e.at, "action": e.action,
                 "before": (e.begin_before, e.end_before), "after": (e.begin_after, e.end_after),
                 "comment": e.comment} for e, c, u in rows]


def _nearby_statement():
    # Built once (bound parameters): this lookup runs for every calibration of every run.
    c = Certification
    lo, hi, after = bindparam("lo"), bindparam("hi"), bindparam("after")
    parts = []
    for on_ifu in (c.ifu == bindparam("ifu"), c.ifu.is_(None)):
        sel = select(c.id, c.collection_id).where(c.category == bindparam("category"), on_ifu)
        parts += [sel.where(c.begin_mjd.between(lo, hi), c.end_mjd > after),
                  sel.where(c.begin_mjd.is_(None), or_(c.end_mjd.is_(None), c.end_mjd > after)),
                  sel.where(c.end_mjd.is_(None), c.begin_mjd <= hi)]
    return union_all(*parts)


_NEARBY = _nearby_statement()


def _nearby(s, category, ifu, mjd, w: float) -> list:
    """``(id, collection_id)`` of the certifications of ``category`` for IFU ``ifu`` (or for every IFU)
    whose range comes within ``w`` days of ``mjd``.

    Index-only range scans of the certifications alone (no dataset is read): finite
    ranges begin at most :data:`MAX_CERTIFIED_SPAN_DAYS` before ``mjd``; open-begun ranges
    sort first in ``ix_certifications_lookup``; open-ended ones are in the partial index
    ``ix_certifications_open_end``. A registry of millions of certifications scans a few
    thousand index entries.
    """
    return s.execute(_NEARBY, {"category": category, "ifu": int(ifu), "lo": mjd - MAX_CERTIFIED_SPAN_DAYS - w,
                               "hi": mjd + w, "after": mjd - w}).all()


@dataclass(frozen=True)
class _Candidate:
    """A certified calibration near the frame: what the choice and its losers' reasons read."""

    cert_id: int
    collection_id: int
    begin_mjd: float | None
    end_mjd: float | None
    id: int
    mjd_obs: float | None
    mode: str | None
    is_valid: bool
    flag: str
    comment: str
    affected_by: int | None
    privilege: int
    created: object
    owner: str
    collection: str
    ifus: dict  # {ifu: is_valid}
    object: str | None = None


def _candidates(s, user, category, ifu, mjd, calib_ids=None, near: bool = False, exclude=()) -> list[_Candidate]:
    """Certified calibrations around ``mjd`` for category/IFU, visible to ``user``.

    ``near`` False: those whose range covers ``mjd`` in the given collections; True:
    those within :data:`LOSER_WINDOW_DAYS` of it in any collection (the newest
    :data:`MAX_LOSERS`, ``exclude`` certification ids left out). The rows are picked by
    :func:`_nearby`, then only those few are read, as plain rows (two queries).
    """
    w = LOSER_WINDOW_DAYS if near else 0.0
    ids = [i for i, cid in _nearby(s, category, ifu, mjd, w)
           if i not in exclude and (calib_ids is None or cid in calib_ids)]
    if not ids:
        return []
    if near:
        ids = sorted(ids, reverse=True)[:MAX_LOSERS * 4]  # the newest; some may be hidden from the user
    c, d = Certification, Dataset
    q = (select(c.id, c.collection_id, c.begin_mjd, c.end_mjd, d.id, d.mjd_obs, d.mode, d.is_valid, d.flag,
                d.comment, d.affected_by, d.privilege, d.created, User.name, Collection.name, d.object)
         .join(d, d.id == c.dataset_id).join(User, User.id == d.owner_id)
         .join(Collection, Collection.id == c.collection_id)
         .where(c.id.in_(ids), visible_datasets(user)))
    if near:
        q = q.order_by(c.id.desc()).limit(MAX_LOSERS)  # no more are ever reported
    rows = s.execute(q).all()
    states: dict[int, dict] = {}
    if rows:
        for did, i, ok in s.execute(select(DatasetIfu.dataset_id, DatasetIfu.ifu, DatasetIfu.is_valid)
                                    .where(DatasetIfu.dataset_id.in_({r[4] for r in rows}))):
            states.setdefault(did, {})[i] = bool(ok)
    return [_Candidate(*r[:7], bool(r[7]), r[8], r[9] or "", *r[10:15], states.get(r[4], {}), r[15])
            for r in rows]


def _outside_window(ds: _Candidate, mjd: float, window_nights: float | None, category: str) -> str:
    # Why a dated calibration is too far from the frame for the reduction's window; "" if it is not.
    if window_nights is None or ds.mjd_obs is None:
        return ""
    n = nights_apart(ds.mjd_obs, mjd)
    if n <= window_nights:
        return ""
    return f"taken {n} night(s) from the frame's, outside the {window_nights:g}-night window of {category}"


def field_name(obj: str | None) -> str | None:
    """The field an ``OBJECT`` names: the pipeline names the images of a field, and what is
    made from them (muse_exp_align's OFFSET_LIST), ``'<OBJECT> (<filter>)'``, e.g.
    ``'SIM-FIELD (white)'``; the filter is no part of the field."""
    if obj is None:
        return None
    return re.sub(r"\s+\([^()]*\)$", "", obj.strip())


def _unusable(ds: _Candidate, ifu: int, mode, obj: str | None = None) -> str:
    # Why a calibration may not serve IFU ``ifu`` in ``mode`` (for field ``obj``); "" if it may.
    if not ds.is_valid:
        return f"marked invalid ({ds.flag}{': ' + ds.comment if ds.comment else ''})"
    if ds.affected_by is not None:
        return f"affected by invalid #{ds.affected_by}"
    if ds.ifus and ifu not in ds.ifus:
        return f"holds no IFU {ifu}"
    if ds.ifus.get(ifu) is False:
        return f"IFU {ifu} marked invalid"
    if mode is not None and ds.mode is not None and ds.mode != mode:
        return f"mode {ds.mode}, not {mode}"
    if obj is not None and field_name(ds.object) != field_name(obj):
        return f"of field {ds.object!r}, not {obj!r}"
    return ""


def nights_apart(mjd_a: float, mjd_b: float) -> int:
    """How many observing nights separate two times (MJD, days): 0 in the same night.

    A night runs from noon UTC to noon UTC (:func:`musewise.ingest.night_of`), so the
    night of MJD ``t`` is ``floor(t - 0.5)``.
    """
    return abs(math.floor(mjd_a - 0.5) - math.floor(mjd_b - 0.5))


def best_calibration(arch, category: str, *, ifu: int, mjd: float, mode: str | None, collections,
                     reference: bool = False, window_nights: float | None = None,
                     object: str | None = None) -> CalibrationChoice:
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
        Instrument mode; None accepts any. A calibration without a mode serves every mode.
    collections : list of str
        The search path; its CALIBRATION collections (chains stand for their members) are searched.
    reference : bool
        The choice is for a reference run (losers from personal trials say so).
    window_nights : float, optional
        The reduction's own limit: a dated calibration taken more than this many nights
        from the frame's night (:func:`nights_apart`) is refused, whatever its certified
        range (a night without its own flats takes the previous night's, not last week's).
        Undated (static) calibrations are never refused for it. None: no limit.
    object : str, optional
        Only a calibration of this ``OBJECT`` (a field's OFFSET_LIST or OUTPUT_WCS, which
        belong to one field whatever the time they are certified for). None: any.

    Raises
    ------
    CalibrationNotFoundError
        If nothing is eligible; the message says which candidates were refused and why.
    """
    from astropy.time import Time

    from ..ingest import night_of

    with arch.session() as s:
        user = arch.acting_user(s)
        path = resolve(s, collections)
        order = {cid: i for i, cid in enumerate(path.calibration_ids)}
        eligible, losers, seen = [], [], set()
        for ds in _candidates(s, user, category, ifu, mjd, list(order)):
            cert, cname = ds, ds.collection
            seen.add(ds.cert_id)
            why = _unusable(ds, ifu, mode, object) or _outside_window(ds, mjd, window_nights, category)
            if why:
                losers.append((ds, cname, why))
            else:
                # A field's calibration (object given) is the field's newest, however far in time:
                # a grid made after the field's latest night covers more exposures than older ones.
                apart = abs((ds.mjd_obs if ds.mjd_obs is not None else mjd) - mjd) if object is None else 0.0
                eligible.append((order[cert.collection_id], apart, -ds.created.timestamp(), -ds.id, cert, ds, cname))
        eligible.sort(key=lambda e: e[:4])
        for ds in _candidates(s, user, category, ifu, mjd, near=True, exclude=seen):
            cert, cname = ds, ds.collection
            seen.add(ds.cert_id)
            if cert.collection_id not in order:
                if reference and ds.privilege == 1:
                    why = (f"personal trial of {ds.owner} in {cname}: a reference run reads only the "
                           f"reference reduction, raw frames and static data")
                else:
                    why = f"in collection {cname}, which is not in the search path"
            elif not range_covers(cert.begin_mjd, cert.end_mjd, mjd):
                why = f"certified for {range_text(cert.begin_mjd, cert.end_mjd)}, which does not cover MJD {mjd:.3f}"
            else:
                why = _unusable(ds, ifu, mode, object) or _outside_window(ds, mjd, window_nights, category) \
                    or "not eligible"
            losers.append((ds, cname, why))
        if not eligible:
            night = night_of(Time(mjd, format="mjd").to_datetime())
            detail = "; ".join(f"#{d.id} ({c}) {w}" for d, c, w in losers[:8])
            raise CalibrationNotFoundError(
                category, ifu, night,
                (f"no certified candidate covers MJD {mjd:.3f} in {list(path.names)}; refused: {detail}"
                 if losers else f"none certified near MJD {mjd:.3f} in {list(path.names)}; build it first "
                                f"(see `dpu.plan`)"))
        rank, dist, _, _, cert, ds, cname = eligible[0]
        for e in eligible[1:]:
            r2, d2, _, _, _, ds2, c2 = e
            why = (f"in {c2}, later in the search path than {cname}" if r2 > rank else
                   f"{d2:.2f} d from the frame, farther than #{ds.id} ({dist:.2f} d)" if d2 > dist else
                   f"older version than #{ds.id}")
            losers.insert(0, (ds2, c2, why))
        rec = arch.records(s, select(Dataset).where(Dataset.id == ds.id))[0]
        when = "undated" if ds.mjd_obs is None else (
            f"{dist:.2f} d {'before' if ds.mjd_obs <= mjd else 'after'} the frame"
            + (f", {nights_apart(ds.mjd_obs, mjd)} night(s) away (window {window_nights:g})"
               if window_nights is not None else ""))
        reason = (f"{category} #{ds.id} in {cname}: certified {range_text(cert.begin_mjd, cert.end_mjd)} "
                  f"covers MJD {mjd:.3f}; IFU {ifu} valid; mode {ds.mode or 'any'}; {when}; best of "
                  f"{len(eligible)} eligible (search path order, then closest in time, then newest)")
        out = tuple(CalibrationLoser(d.id, c, w) for d, c, w in losers[:MAX_LOSERS])
        return CalibrationChoice(rec, reason, len(eligible), cname, out)


__all__ = ["CalibrationChoice", "best_calibration", "field_name", "nights_apart", "certification_history", "certify", "certify_row",
           "decertify", "default_range", "list_certifications"]
