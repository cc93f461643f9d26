"""Choosing the inputs of a run from the archive: frames of the night, best calibrations.

Everything here reads the archive and decides; nothing runs. A run is
described by a :class:`RunSpec` (plain, picklable data) that any worker
process can execute with its own archive connection.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date

from ..exceptions import CalibrationNotFoundError, NotFoundError
from ..vocabulary import DatasetKind, Privilege
from .steps import ATTACHED_WINDOW_DAYS, FIELD_CATEGORIES, PER_EXPOSURE, PER_IFU, PER_NIGHT, PER_TARGET, Step, split_of

#: Two products with MJD-OBS closer than this (days, ~0.1 s) belong to one exposure.
SAME_EXPOSURE_DAYS = 1e-6


@dataclass(frozen=True)
class RunInput:
    """One input of a run: archive ID, SOF tag, why it was chosen, and where to read it."""

    dataset_id: int
    tag: str
    reason: str
    path: str
    ifu: int | None = None


@dataclass
class RunSpec:
    """Everything needed to execute one run, as plain data (sent to Dask workers).

    Parameters
    ----------
    step : str
        Step name (``bias``).
    recipe : str
        Recipe name (``muse_bias``).
    night : str
        Observing night ``YYYY-MM-DD``.
    ifu : int or None
        The IFU of a per-IFU run; None when the run combines IFUs.
    mode : str or None
        Instrument mode of the reduced frames.
    inputs : list of RunInput
    params : dict
        Validated parameters given to the recipe (site defaults and the user's).
    privilege : int
        Privilege of the products (PRIVATE for trial runs; the configured
        ``reference_privilege`` for the reference reduction).
    project : str
        Project that owns the run.
    exposure : str
        Label of the exposure reduced by a per-exposure run (its DATE-OBS), else "".
    ifus : list of int
        IFUs whose data the run reads.
    reference : bool
        A run of the project's reference reduction (``commit=True``).
    collections : list of str
        The collection search path its inputs were chosen from.
    choices : list of dict
        Each calibration choice: category, IFU, the chosen ID, and the candidates that lost and why.
    target : str
        The ``OBJECT`` of a per-target run (its inputs come from every night of the target), else "".
    nights : list of str
        The nights whose products a per-target run reads (else the run's night only).
    """

    step: str
    recipe: str
    night: str
    ifu: int | None
    mode: str | None
    inputs: list[RunInput]
    params: dict
    privilege: int = int(Privilege.PRIVATE)
    project: str = ""
    exposure: str = ""
    ifus: list[int] = field(default_factory=list)
    reference: bool = False
    collections: list[str] = field(default_factory=list)
    choices: list[dict] = field(default_factory=list)
    target: str = ""
    nights: list[str] = field(default_factory=list)

    @property
    def sof(self) -> list[tuple[str, str]]:
        """The set of frames: (path, tag) pairs."""
        return [(i.path, i.tag) for i in self.inputs]

    @property
    def label(self) -> str:
        where = f"IFU {self.ifu:02d}" if self.ifu else (self.exposure or f"{len(self.ifus)} IFUs")
        if self.target and len(self.nights) > 1:
            return f"{self.step} {self.target} ({len(self.nights)} nights) {where}"
        return f"{self.step} {self.night} {where}"

    def describe(self) -> str:
        """The run and its inputs as text (what ``dry_run`` prints)."""
        params = ", ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        lines = [f"{self.recipe} {self.label}" + (f" ({params})" if params else "")]
        for i in self.inputs:
            lines.append(f"    {i.tag:<16} #{i.dataset_id:<6} {i.reason}")
        return "\n".join(lines)


def raw_frames(arch, tag: str, night: str, ifu: int | None = None, mode: str | None = None):
    """Raw frames of one type taken in a night (optionally holding a valid IFU, in a mode)."""
    kw = dict(kind=DatasetKind.RAW.value, category=tag, night=night, order_by="mjd_obs")
    if ifu is not None:
        kw.update(ifu=ifu, valid=True)
    if mode is not None:
        kw["mode"] = mode
    return arch.query(**kw)


def attached_frame(arch, tag: str, frames, night: str, ifu: int | None = None) -> RunInput | None:
    """The raw frame of type ``tag`` (ILLUM) taken with the OB of ``frames``, with the reason.

    One per run (muse_scibasic takes a single ILLUM): the ``tag`` frame of the OB
    (``ESO OBS ID``) of the middle frame, the closest in time to it; without one, the
    closest in time within :data:`~musewise.dpu.steps.ATTACHED_WINDOW_DAYS` of it (an
    attached flat of no OB of the frames). None if the night has none that close.
    """
    if not frames:
        return None
    ref = frames[len(frames) // 2]
    cands = [c for c in raw_frames(arch, tag, night, ifu=ifu) if c.mjd_obs is not None]
    if not cands:
        return None
    ob = ref.header.get("ESO OBS ID")
    same = [c for c in cands if ob is not None and c.header.get("ESO OBS ID") == ob]
    pool = same or [c for c in cands if abs(c.mjd_obs - ref.mjd_obs) <= ATTACHED_WINDOW_DAYS]
    if not pool:
        return None
    best = min(pool, key=lambda c: abs(c.mjd_obs - ref.mjd_obs))
    minutes = abs(best.mjd_obs - ref.mjd_obs) * 24 * 60
    where = f"of OB {ob}" if same else "of no OB of the frames"
    others = sorted({f.header.get("ESO OBS ID") for f in frames} - {ob})
    note = f"; the frames of OB(s) {', '.join(map(str, others))} share it (one {tag} per run)" if others else ""
    reason = (f"{tag} {where}, {minutes:.0f} min from exposure {_when(ref)}"
              + (f", IFU {ifu} valid" if ifu is not None else "") + note)
    return RunInput(best.id, tag, reason, arch.path(best.id), ifu)


def ifus_of_night(arch, night: str, tags=("BIAS", "FLAT", "ARC", "OBJECT")) -> list[int]:
    """IFUs present in the night's raw frames of the given types."""
    found = set()
    for rec in arch.query(kind=DatasetKind.RAW.value, category=list(tags), night=night):
        found.update(s.ifu for s in rec.ifus)
    return sorted(found)


def night_mode(arch, night: str) -> str | None:
    """The instrument mode of the night's science frames (None if there are none)."""
    for tag in ("OBJECT", "STD", "SKYFLAT"):
        for rec in raw_frames(arch, tag, night):
            if rec.mode:
                return rec.mode
    return None


def choose_calibration(arch, category: str, *, ifu: int | None, mjd: float, mode: str | None,
                       night: str, collections=None, reference: bool = False, choices=None,
                       window: float | None = None, field: str | None = None) -> RunInput:
    """The best calibration of ``category`` for an IFU at a time, with the reason.

    The choice is :meth:`Archive.best_calibration`'s, from the certified calibrations
    of the search path ``collections``, taken at most ``window`` nights from the
    frame's night (:attr:`DpuConfig.calibration_windows`; None: no limit); the
    choice and the candidates that lost are appended to ``choices`` (recorded with
    the run), saying from which night the calibration came. A calibration of one
    field (:data:`~musewise.dpu.steps.FIELD_CATEGORIES`: OFFSET_LIST, OUTPUT_WCS) is
    chosen only among those of ``field`` (the ``OBJECT`` reduced), when given.

    Raises
    ------
    CalibrationNotFoundError
        If none is eligible; the message says why the candidates were refused.
    """
    obj = field if category in FIELD_CATEGORIES else None
    if obj is not None:
        window = None  # chosen for its field, whenever the field was observed (the grid of all its nights)
    ch = arch.best_calibration(category, ifu=ifu or 1, mjd=mjd, mode=mode, collections=collections,
                               reference=reference, window_nights=window, object=obj)
    r = ch.record
    reason = ch.reason + (f"; of field {obj}" if obj else "")
    came = _night_note(r, night, window)
    if came:
        reason = f"{reason}; {came}"
    if choices is not None:
        choices.append({"category": category, "ifu": ifu, "chosen": r.id, "collection": ch.collection,
                        "reason": reason, "losers": [[lo.dataset_id, lo.collection, lo.reason] for lo in ch.losers],
                        "note": _origin_note(r), "night": r.night, "frame_night": night,
                        "window_nights": window})
    return RunInput(r.id, category, reason, arch.path(r.id), r.ifu or ifu)


def _night_note(rec, night: str, window) -> str:
    # Said when a calibration comes from another night than the frame's (a night without its own).
    if not rec.night or not night or rec.night == night:
        return ""
    n = abs((date.fromisoformat(rec.night) - date.fromisoformat(night)).days)
    side = "before" if rec.night < night else "after"
    limit = f" (within the {window:g}-night window of {rec.category})" if window is not None else ""
    return f"from night {rec.night}, {n} night(s) {side} night {night}{limit}"


def _origin_note(rec) -> str:
    # Which kind of calibration was used: a reduction's product, or a static table in its stead
    # (e.g. the static STD_RESPONSE when no standard star of a nearby night was reduced).
    from .steps import PRODUCER

    if rec.kind == DatasetKind.STATIC.value and rec.category in PRODUCER:
        return (f"static fallback: no {rec.category} made by step {PRODUCER[rec.category]!r} is certified "
                f"for this time in the search path")
    if rec.run_id is not None:
        return f"made by run {rec.run_id}"
    return f"{rec.kind} table"


def _calibrations(arch, step: Step, ifu, mjd, mode, night, collections, reference, choices,
                  params=None, windows=None, field: str | None = None) -> list[RunInput]:
    kw = dict(ifu=ifu, mjd=mjd, mode=mode, night=night, collections=collections, reference=reference,
              choices=choices, field=field)
    window_of = windows if callable(windows) else dict(windows or {}).get
    required = step.required_for(_effective(step, params))
    out = [choose_calibration(arch, cat, window=window_of(cat), **kw) for cat in required]
    for cat in step.optional:
        if cat in required:
            continue
        try:
            out.append(choose_calibration(arch, cat, window=window_of(cat), **kw))
        except CalibrationNotFoundError:
            pass  # optional: the recipe runs without it
    return out


def _effective(step: Step, params) -> dict:
    # The recipe's own defaults count too: muse_scipost models the sky unless told otherwise.
    if not step.required_when:
        return dict(params or {})
    from ..recipes import get_recipe

    return get_recipe(step.recipe).effective_params(dict(params or {}))


def made_by_preferred(recs, recipe_of, recipes) -> list:
    """Those of ``recs`` made by the first of ``recipes`` that made any of them, in their order.

    ``recipe_of`` gives the recipe of the run that made a record (None: made by none, e.g.
    ingested). Without ``recipes``, every record. The one rule of
    :attr:`Step.input_recipes` and :attr:`Step.target_inputs`, for the selection of a
    run's inputs and for the planner judging whether a product is current.
    """
    recs = list(recs)
    if not recipes:
        return recs
    made = [(r, recipe_of(r)) for r in recs]
    for recipe in recipes:
        mine = [r for r, name in made if name == recipe]
        if mine:
            return mine
    return []


def latest_products(arch, category: str, night, ifus=None, collections=None, recipes=()) -> dict:
    """The usable product of a category per (exposure, IFU) in a night, found through a search path.

    The first found wins: the earliest collection of the path, then the newest
    (see :meth:`Archive.find`). ``recipes``: only products made by the first of these
    recipes that made any (a combined cube is a DATACUBE_FINAL too, but no exposure's).
    ``night``: a night ``YYYY-MM-DD``, or a list of them.

    Returns
    -------
    dict
        ``{(mjd_obs rounded, ifu): DatasetRecord}``.
    """
    found: dict = {}
    recs = [r for r in arch.find(category, collections=collections, night=night)
            if r.kind != DatasetKind.RAW.value and (ifus is None or r.ifu in ifus)]
    if recipes:
        runs = arch.get_runs({r.run_id for r in recs if r.run_id is not None})
        recs = made_by_preferred(recs, lambda r: runs[r.run_id].recipe if r.run_id in runs else None, recipes)
    for rec in recs:
        found.setdefault((exposure_key(rec.mjd_obs), rec.ifu), rec)
    return found


def exposure_key(mjd: float | None) -> float | None:
    """A stable key for one exposure from its MJD-OBS (days)."""
    return None if mjd is None else round(float(mjd) / SAME_EXPOSURE_DAYS) * SAME_EXPOSURE_DAYS


def target_nights(arch, target: str) -> list[str]:
    """The nights a target (``OBJECT``) was observed in: those of its raw science frames, in order."""
    return sorted({r.night for r in arch.query(kind=DatasetKind.RAW.value, category="OBJECT", object=target)
                   if r.night})


def target_exposures(arch, target: str, night: str | None = None) -> list[float]:
    """The exposures (MJD-OBS keys, :func:`exposure_key`) of a target, of one night or all."""
    kw = dict(kind=DatasetKind.RAW.value, category="OBJECT", object=target, order_by="mjd_obs")
    if night is not None:
        kw["night"] = night
    return sorted({exposure_key(r.mjd_obs) for r in arch.query(**kw)})


def select_runs(arch, step: Step, night: str | None, ifus=None, mode: str | None = None,
                params: dict | None = None, privilege: int = int(Privilege.PRIVATE),
                project: str = "", skip_missing_ifus: bool = False, reference: bool = False,
                collections=None, target: str | None = None, windows=None) -> list[RunSpec]:
    """Describe the runs that reduce ``step`` for a night (or a target): inputs chosen, nothing run.

    Parameters
    ----------
    arch : Archive
    step : Step
    night : str or None
        ``YYYY-MM-DD``; None with a ``target``: every night of the target.
    ifus : list of int, optional
        Default: every IFU present in the night's raw frames (of all the target's nights).
    mode : str, optional
        Instrument mode; default: that of the night's science frames.
    params : dict
        Validated recipe parameters.
    reference : bool
        Choose for the project's reference reduction: read only its reference path.
    collections : list of str, optional
        Search path (default: the archive's, or the reference path).
    target : str, optional
        An ``OBJECT``: steps reducing products take only the target's exposures, and a
        per-night combination (exp_combine) takes those of every night of the target
        (:func:`~musewise.dpu.steps.split_of`: one :data:`PER_TARGET` run).
    windows : callable or dict, optional
        Category -> how many nights from the frame's a calibration may come from
        (default :meth:`DpuConfig.window_for` of the archive's configuration).

    Raises
    ------
    NotFoundError
        No frame to reduce.
    CalibrationNotFoundError
        A required calibration is missing for some IFU.
    """
    if windows is None:
        from .config import DpuConfig

        windows = DpuConfig.from_config(arch.config).window_for
    window_of = windows if callable(windows) else dict(windows).get
    split = split_of(step, target)
    if target and step.input_kind == "raw" and split != PER_TARGET:
        target = None  # raw frames (calibrations, a night's science) are reduced per night whatever the target
    if target:
        nights = target_nights(arch, target)
        if not nights:
            raise NotFoundError(f"no raw science frames of target {target!r} in the archive (nothing to reduce)")
        if night is not None and split != PER_TARGET:
            nights = [night] if night in nights else []
            if not nights:
                raise NotFoundError(f"target {target!r} was not observed in night {night}")
    else:
        if night is None:
            raise NotFoundError(f"{step.name}: say which night (date=...) or which target (target=...)")
        nights = [night]
    night = night or nights[0]
    mode = mode or night_mode(arch, night)
    if ifus is None:
        found = set()
        for n in nights:
            found.update(ifus_of_night(arch, n))
        ifus = found
    ifus = sorted({int(i) for i in ifus})
    if not ifus:
        raise NotFoundError(f"no raw frames of night {night} in the archive (nothing to reduce)")
    path = list(collections) if collections is not None else arch.search_path(reference=reference)
    base = dict(step=step.name, recipe=step.recipe, mode=mode, params=dict(params or {}),
                privilege=int(privilege), project=project, reference=reference, collections=path,
                target=target or "")
    specs = []

    def calibrations(ifu, mjd, choices, frame_night, field=None):
        # The field's own OFFSET_LIST and OUTPUT_WCS: the target's, else that of the frames reduced.
        return _calibrations(arch, step, ifu, mjd, mode, frame_night, path, reference, choices, params,
                             window_of, field=target or field)

    if step.input_kind == "raw" and step.per == PER_IFU:
        for ifu in ifus:
            frames = raw_frames(arch, step.input_tag, night, ifu=ifu)
            if mode and step.input_tag in ("OBJECT", "STD", "SKYFLAT", "SKY"):
                frames = [f for f in frames if f.mode in (mode, None)]
            if len(frames) < step.min_inputs:
                if skip_missing_ifus:
                    continue
                raise NotFoundError(
                    f"{step.recipe} needs at least {step.min_inputs} {step.input_tag} frame(s) with "
                    f"IFU {ifu} valid in night {night}; the archive has {len(frames)}"
                )
            mjd = frames[len(frames) // 2].mjd_obs
            inputs = [RunInput(f.id, step.input_tag, f"{step.input_tag} of night {night}, IFU {ifu} valid",
                               arch.path(f.id), ifu) for f in frames]
            for tag in step.attached:
                att = attached_frame(arch, tag, frames, night, ifu=ifu)
                if att is not None:
                    inputs.append(att)
            choices: list = []
            inputs += calibrations(ifu, mjd, choices, night, frames[len(frames) // 2].object)
            specs.append(RunSpec(night=night, ifu=ifu, inputs=inputs, ifus=[ifu], choices=choices, **base))
        return specs
    if step.input_kind == "raw":
        # One run of a night's frames; for a target's own step (field_grid), of the target's frames
        # of all its nights.
        mine = target if split == PER_TARGET else None
        frames = [f for n in (nights if mine else [night]) for f in raw_frames(arch, step.input_tag, n)
                  if any(f.usable_for(i) for i in ifus) and (mine is None or f.object == mine)]
        where = f"target {mine!r} (nights {', '.join(nights)})" if mine else f"night {night}"
        if len(frames) < max(step.min_inputs, 1):
            raise NotFoundError(f"{step.recipe} needs {step.input_tag} frames of {where}; found {len(frames)}")
        mjd = frames[len(frames) // 2].mjd_obs
        inputs = [RunInput(f.id, step.input_tag, f"{step.input_tag} of night {f.night or night}"
                           + (f", of target {mine}" if mine else ""), arch.path(f.id)) for f in frames]
        choices = []
        for ifu in ifus:
            inputs += calibrations(ifu, mjd, choices, night)
        return [RunSpec(night=night, ifu=None, inputs=_dedupe(inputs), ifus=ifus, choices=choices,
                        nights=sorted({f.night for f in frames if f.night}) if mine else [], **base)]
    # Steps reducing products of other runs (scipost, standard, exp_combine).
    recipes = step.input_recipes_for(target)
    where = f"target {target!r} (nights {', '.join(nights)})" if target else f"night {night}"
    how = f"target='{target}'" if target else f"date='{night}'"
    if target and step.target_inputs:
        # One run on the field's combined cube that is found first (the search path's earliest
        # collection, then the newest), whichever of the target's nights it is filed under.
        wanted = set(target_exposures(arch, target))
        newest = [rec for (key, _ifu), rec in latest_products(arch, step.input_tag, nights, ifus=set(ifus) | {None},
                                                              collections=path, recipes=recipes).items()
                  if key in wanted]
        if not newest:
            raise NotFoundError(
                f"no valid {step.input_tag} of {where} made by {' or '.join(recipes)}; combine the field first "
                f"(dpu.make('{step.name}', {how}) builds what is missing; date=... takes each exposure's cube)")
        groups = [{newest[0].ifu: newest[0]}]
    else:
        by_exposure: dict = defaultdict(dict)
        for n in nights:
            wanted = set(target_exposures(arch, target, n)) if target and step.input_tag != "PIXTABLE_STD" else None
            products = latest_products(arch, step.input_tag, n, ifus=set(ifus) | {None}, collections=path,
                                       recipes=recipes)
            for (key, ifu), rec in products.items():
                if wanted is None or key in wanted:
                    by_exposure[(n, key)][ifu] = rec
        if not by_exposure:
            raise NotFoundError(
                f"no valid {step.input_tag} of {where} for IFUs {ifus}; reduce them first "
                f"(dpu.make('{step.name}', {how}) builds what is missing)"
            )
        groups = [dict(sorted(v.items(), key=lambda kv: kv[0] or 0)) for _, v in sorted(by_exposure.items())]
    if split in (PER_NIGHT, PER_TARGET):
        merged = {}
        for g in groups:
            for ifu, rec in g.items():
                merged[(rec.id, ifu)] = rec
        groups = [merged]
    for g in groups:
        recs = list(g.values())
        if len(recs) < step.min_inputs:
            raise NotFoundError(f"{step.recipe} needs {step.min_inputs} {step.input_tag} of {where}; "
                                f"found {len(recs)}")
        mjd = recs[0].mjd_obs
        run_night = recs[0].night or night
        inputs = [RunInput(r.id, step.input_tag,
                           f"{step.input_tag}" + (f" of IFU {r.ifu}" if r.ifu else "")
                           + f" for exposure {_when(r)}" + (f" of night {r.night}" if split == PER_TARGET else "")
                           + f", first found in {r.collection}",
                           arch.path(r.id), r.ifu) for r in recs]
        used_ifus = sorted({r.ifu for r in recs if r.ifu})
        choices = []
        for ifu in used_ifus or [None]:
            inputs += calibrations(ifu, mjd, choices, run_night, recs[0].object)
        specs.append(RunSpec(night=run_night, ifu=None, inputs=_dedupe(inputs), ifus=used_ifus, choices=choices,
                             exposure=_when(recs[0]) if split == PER_EXPOSURE else "",
                             nights=sorted({r.night for r in recs if r.night}) if split == PER_TARGET else [],
                             **base))
    return specs


def _when(rec) -> str:
    return rec.date_obs.isoformat(timespec="seconds") if rec.date_obs else f"MJD {rec.mjd_obs}"


def _dedupe(inputs: list[RunInput]) -> list[RunInput]:
    seen, out = set(), []
    for i in inputs:
        if i.dataset_id not in seen:
            seen.add(i.dataset_id)
            out.append(i)
    return out


__all__ = ["RunInput", "RunSpec", "attached_frame", "choose_calibration", "ifus_of_night", "latest_products",
           "made_by_preferred", "night_mode", "raw_frames", "select_runs", "target_exposures", "target_nights"]
