"""Target processing: which runs a product needs, reusing everything still current.

``plan('scipost', date=..., ifus=...)`` walks the cascade backwards from the
target and, for every step and IFU (or exposure), looks for the newest valid
product made by that step. A product is **current** when

* it exists and is valid for the IFU,
* the run that made it used the installed pipeline version,
* with the same effective parameters as would be used now,
* from inputs none of which has since been marked invalid,
* and every input step is itself current, with the product it used still the
  newest one (otherwise the product is rebuilt after its input).

Everything else is **missing** or **out of date**, and the plan lists those
runs in dependency order. Marking a master flat invalid therefore rebuilds
the flat and what was made from it (see :meth:`Archive.dependents`), never the bias.
A combination of exposures (exp_combine) is also out of date when an exposure's
newest usable input is not the one it read, or an exposure is missing from it;
one whose input was marked invalid is rebuilt without that exposure.

Across nights
-------------
``plan('exp_combine', target='<OBJECT>')`` plans every night the target was observed
in: the per-IFU and per-exposure steps of each night (per-exposure steps only for the
target's exposures) and one combination of all its exposures
(:data:`~musewise.dpu.steps.PER_TARGET`). A night without the frames of a calibration
step (no biases, no standard star) takes that calibration from the nearest night, the
night before first, within the category's window (:attr:`DpuConfig.calibration_windows`,
e.g. 1 night for the master bias, 5 for the response): that night's run is planned (and
built) instead, ``Plan.borrowed`` says so, and the calibration choice of each run
records from which night its calibration came.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date as Date, timedelta

from ..exceptions import NotFoundError
from ..vocabulary import DatasetKind, kind_of_category
from .config import DpuConfig
from .diskneed import DiskNeed, check_free_disk, plan_disk_need
from .selection import exposure_key, ifus_of_night, made_by_preferred, raw_frames, target_exposures, target_nights
from .steps import PER_EXPOSURE, PER_IFU, PER_TARGET, PRODUCER, STEPS, Step, get_step, input_step, split_of

#: Steps always built on the way to a cube; others only when listed in DpuConfig.optional_steps.
#: lsf is one: the default sky subtraction (muse_scipost skymethod=model) needs LSF_PROFILE.
#: standard (with scibasic_std) too, for a night with a standard star: scipost's STD_RESPONSE.
#: twilight too, for a night with twilight flats: scibasic's TWILIGHT_CUBE.
#: exp_align too, towards exp_combine: its OFFSET_LIST aligns the exposures.
#: field_grid too, for a target: the OUTPUT_WCS every exposure's cube is resampled onto (a step
#: split per target by itself, :data:`~.steps.PER_TARGET`, is planned for a target only).
CORE_STEPS = ("bias", "flat", "wavecal", "lsf", "twilight", "scibasic", "scibasic_std", "standard",
              "field_grid", "exp_align")
#: Parameters musewise sets itself (not compared when judging a product current).
#: wavelength_bands (musewise.recipes.bands) only shares the work out to fit in memory.
_MANAGED = ("nifu", "merge", "wavelength_bands")


class RunPlace:
    """What a planned run is about and whether it is needed, for a row of a plan (needs
    ``status``, ``ifu``, ``exposure`` and ``night``)."""

    @property
    def needed(self) -> bool:
        return self.status != "current"

    @property
    def where(self) -> str:
        """``IFU 01``, ``exposure MJD 61365.06250``, ``night`` or ``all nights`` (a target's run)."""
        if self.ifu:
            return f"IFU {self.ifu:02d}"
        if self.exposure:
            return f"exposure MJD {self.exposure:.5f}"
        return "night" if self.night else "all nights"


@dataclass
class PlannedRun(RunPlace):
    """One step for one IFU (or one exposure, one night, one target) in a plan.

    Attributes
    ----------
    step : str
    ifu : int or None
    exposure : float or None
        MJD-OBS (days) of the exposure of a per-exposure step.
    status : str
        ``current``, ``missing`` or ``out of date``.
    reason : str
    product_id : int or None
        The current (or outdated) product found.
    night : str
        The night of the run (``YYYY-MM-DD``); "" for a run over every night of a target.
    """

    step: str
    ifu: int | None
    exposure: float | None
    status: str
    reason: str
    product_id: int | None = None
    night: str = ""

    def __str__(self):
        prod = f" (#{self.product_id})" if self.product_id else ""
        return f"{self.step:<12} {self.where:<22} {self.status:<11}{prod} {self.reason}"


@dataclass
class Plan:
    """The runs towards a target step, in dependency order.

    Attributes
    ----------
    target : str
        The step planned for (``scipost``).
    night : str
        The night planned (the first one for a target observed over several).
    ifus : list of int
    items : list of PlannedRun
    nights : list of str
        Every night with a run in the plan (a target's nights, and those lending calibrations).
    object : str
        The target (``OBJECT``) planned for, "" for one night.
    borrowed : list of str
        For each night without its own frames for a calibration step: the night it takes
        that calibration from, and why.
    disk : DiskNeed or None
        What the runs to do will archive (:mod:`musewise.dpu.diskneed`).
    """

    target: str
    night: str
    ifus: list[int]
    items: list[PlannedRun] = field(default_factory=list)
    nights: list[str] = field(default_factory=list)
    object: str = ""
    borrowed: list[str] = field(default_factory=list)
    disk: DiskNeed | None = None

    @property
    def todo(self) -> list[PlannedRun]:
        """The runs to execute (missing or out of date), in order."""
        return [i for i in self.items if i.needed]

    @property
    def steps(self) -> list[str]:
        """Steps with something to run, in order."""
        out = []
        for i in self.todo:
            if i.step not in out:
                out.append(i.step)
        return out

    def to_text(self) -> str:
        what = (f"target {self.object} ({len(self.nights)} night(s): {', '.join(self.nights)})" if self.object
                else f"night {self.night}")
        head = (f"plan for {self.target} of {what}, IFUs {self.ifus}: "
                f"{len(self.todo)} run(s) to do, {len(self.items) - len(self.todo)} current")
        many = len(self.nights) > 1
        lines = [head] + [f"  {'->' if i.needed else '  '} " + (f"{i.night or 'all':<10} " if many else "") + str(i)
                          for i in self.items]
        lines += [f"  calibration: {b}" for b in self.borrowed]
        if self.disk is not None and self.todo:
            lines.append(f"  disk: the runs to do archive {self.disk.summary()}")
        return "\n".join(lines)

    def __str__(self):
        return self.to_text()


def cascade(target: str, dcfg: DpuConfig, for_target: bool = False) -> list[Step]:
    """The steps needed for ``target`` (a step name), in dependency order.

    ``for_target``: planned for a target (an ``OBJECT``) rather than one night; only then are
    the steps that are split per target by themselves (``field_grid``) built on the way.
    """
    enabled = set(CORE_STEPS) | set(dcfg.optional_steps)
    if not for_target:
        enabled -= {n for n in enabled if n in STEPS and STEPS[n].per == PER_TARGET}
    target_step = get_step(target)
    wanted: set[str] = set()

    def visit(step: Step):
        if step.name in wanted:
            return
        wanted.add(step.name)
        for prod in _deps(step, enabled, for_target):
            visit(STEPS[prod])

    visit(target_step)
    order = list(STEPS)
    return sorted((STEPS.get(n, target_step) for n in wanted),
                  key=lambda s: order.index(s.name) if s.name in order else len(order))


def _deps(step: Step, known, target=None) -> list[str]:
    # The steps making what ``step`` reads: its input's (for ``target`` or a night, always) and
    # its calibrations' (those of ``known``, the enabled steps or the cascade).
    first = input_step(step, target)
    out = [first] if first and first != step.name else []
    for c in step.calibrations + step.optional:
        p = PRODUCER.get(c)
        if p and p in known and p != step.name and p not in out:
            out.append(p)
    return out


class _Planner:
    """Judges every (step, night, IFU or exposure) of a plan once (memoised by ``state``).

    ``nights`` maps each night planned to its IFUs; more nights join when a night without
    its own calibration frames takes a calibration from a nearby one (:meth:`lender`).
    ``target`` (an ``OBJECT``) restricts per-exposure steps to its exposures and makes a
    per-night combination one run over all its nights (:func:`~.steps.split_of`).
    """

    def __init__(self, arch, nights: dict, dcfg, params, collections, target: str | None = None,
                 ifus=None):
        from ..recipes import configure, get_recipe

        configure(arch.config)  # the site's esorex describes the recipes planned
        self.arch, self.nights, self.dcfg = arch, dict(nights), dcfg
        self.target = target or None
        self.fixed_ifus = ifus  # the IFUs asked for (None: each night's own)
        self.collections = collections
        self._found: dict = {}
        self.params = params
        self.get_recipe = get_recipe
        self.memo: dict = {}
        self._runs: dict = {}
        self._records: dict = {}
        self._raw: dict = {}
        self._exposures: dict = {}
        self.borrowed: list[str] = []

    # ------------------------------------------------------------------ archive reads (cached)
    def run_of(self, run_id):
        self._load_runs([run_id])
        if self._runs.get(run_id) is None:
            raise NotFoundError(f"no run {run_id} visible to user {self.arch.user_name!r}")
        return self._runs[run_id]

    def recipe_of(self, rec):
        """The recipe of the run that made ``rec`` (None: ingested, not made by a run)."""
        return None if rec.run_id is None else self.run_of(rec.run_id).recipe

    def _load_runs(self, run_ids) -> None:
        # The runs of a step's products and the records of all their inputs, in one batch each:
        # judging a night reads hundreds of runs and inputs, one query apiece would dominate.
        todo = {int(r) for r in run_ids} - set(self._runs)
        if not todo:
            return
        got = self.arch.get_runs(todo)
        self._runs.update({r: got.get(r) for r in todo})
        self._load_records(i.dataset_id for run in got.values() for i in run.inputs)

    def _load_records(self, ids) -> None:
        todo = {int(i) for i in ids} - set(self._records)
        if todo:
            got = self.arch.get_many(todo)
            self._records.update({i: got.get(i) for i in todo})  # None: gone, or not visible

    def ifus_of(self, night) -> list[int]:
        if night not in self.nights:
            self.nights[night] = (list(self.fixed_ifus) if self.fixed_ifus is not None
                                  else ifus_of_night(self.arch, night))
        return self.nights[night]

    def raw(self, tag, night, ifu=None):
        key = (tag, night, ifu)
        if key not in self._raw:
            self._raw[key] = raw_frames(self.arch, tag, night, ifu=ifu)
        return self._raw[key]

    def found(self, category, night):
        """Usable datasets of ``category`` of a night (a list: any of them) through the search path, best last."""
        key = (category, tuple(night) if isinstance(night, list) else night)
        if key not in self._found:
            found = list(reversed(self.arch.find(category, collections=self.collections, night=night)))
            self._found[key] = found
            self._load_runs(r.run_id for r in found if r.kind != DatasetKind.RAW.value and r.run_id is not None)
        return self._found[key]

    def products(self, step: Step, ifu, night):
        """Usable products of the step's main category of a night (None: every night of the target), best last."""
        where = night if night is not None else self.target_nights()
        out = []
        for rec in self.found(step.main_product, where):
            if rec.kind == DatasetKind.RAW.value or rec.run_id is None:
                continue
            if ifu is not None and rec.ifu != ifu:
                continue
            if self.run_of(rec.run_id).recipe != step.recipe:
                continue
            out.append(rec)
        if night is None:  # a target's run: its products are dated by one of the target's exposures
            keys = set(self.target_exposures(None))
            out = [r for r in out if exposure_key(r.mjd_obs) in keys]
        return out

    def target_nights(self) -> list[str]:
        return [n for n in self.nights if n in self._target_nights] if self.target else list(self.nights)

    @property
    def _target_nights(self):
        if "nights" not in self._exposures:
            self._exposures["nights"] = set(target_nights(self.arch, self.target)) if self.target else set()
        return self._exposures["nights"]

    def target_exposures(self, night) -> list[float]:
        key = ("target", night)
        if key not in self._exposures:
            self._exposures[key] = target_exposures(self.arch, self.target, night)
        return self._exposures[key]

    def exposures(self, step: Step, night) -> list[float]:
        """The exposures a per-exposure step reduces in a night (only the target's, for a target)."""
        raw = {"PIXTABLE_OBJECT": "OBJECT", "PIXTABLE_STD": "STD"}.get(
            step.input_tag, step.input_tag if step.input_kind == "raw" else "OBJECT")
        keys = sorted({exposure_key(f.mjd_obs) for f in self.raw(raw, night)})
        if self.target and raw == "OBJECT":
            mine = set(self.target_exposures(night))
            keys = [k for k in keys if k in mine]
        return keys

    # ------------------------------------------------------------------ judging
    def expected_params(self, step: Step) -> dict:
        rec = self.get_recipe(step.recipe)
        given = self.dcfg.parameters_for(step.recipe, self.params.get(step.name))
        eff = rec.effective_params(given)
        return {k: v for k, v in eff.items() if k not in _MANAGED}

    def input_valid(self, did, ifu):
        """(usable for ``ifu``, record or None) of an input dataset."""
        self._load_records([did])
        rec = self._records[int(did)]
        if rec is None:
            return False, None
        return rec.usable_for(ifu if any(s.ifu == ifu for s in rec.ifus) else None), rec

    def judge(self, step: Step, ifu, product, dep_items, mjd=None, night=None) -> tuple[str, str]:
        """Status and reason for an existing product (of exposure ``mjd`` for per-exposure steps)."""
        run = self.run_of(product.run_id)
        recipe = self.get_recipe(step.recipe)
        if run.pipeline_version != recipe.pipeline_version:
            return "out of date", f"made with {run.pipeline_version}, installed {recipe.pipeline_version}"
        used = {k: v for k, v in (run.details.get("effective_parameters") or {}).items() if k not in _MANAGED}
        want = self.expected_params(step)
        diff = recipe.changed_parameters(used, want)
        if diff:
            return "out of date", "other parameters: " + ", ".join(
                f"{k}={used.get(k)!r} (now {want.get(k)!r})" for k in diff[:4])
        for inp in run.inputs:
            ok, rec = self.input_valid(inp.dataset_id, ifu)
            if not ok:
                what = f"{rec.category} #{rec.id}" if rec else f"#{inp.dataset_id}"
                return "out of date", f"made from {what}, since marked invalid (or affected)"
        used_ids = {i.dataset_id for i in run.inputs}
        for d in dep_items:
            if d.needed and STEPS[d.step].fallback and d.product_id is None:
                # Never built (e.g. muse_standard fails on one IFU): the product was made with
                # the fallback, and stays current until the step succeeds (a newer product then).
                continue
            if d.needed:
                return "out of date", f"its input step {d.step} will be rebuilt"
            newest = d.product_id
            if mjd is not None and d.exposure is None and d.ifu is not None and newest:
                # a per-IFU step makes one product per exposure: compare with this exposure's newest
                same = [p for p in self.products(STEPS[d.step], d.ifu, d.night) if exposure_key(p.mjd_obs) == mjd]
                newest = same[-1].id if same else None
            if newest and newest not in used_ids:
                if _category_used(run, self, d):
                    return "out of date", f"a newer {STEPS[d.step].main_product} #{newest} exists"
                if STEPS[d.step].per == PER_TARGET:
                    # made before its target had one (a cube fitted to its own data, not on the field's grid)
                    return "out of date", f"made without the {STEPS[d.step].main_product} #{newest} of its target"
        if step.input_kind == "product" and mjd is None:
            # A combination of exposures (exp_combine): it must hold the newest usable input
            # of every exposure, and no more (a new exposure, a rebuilt one, one left out).
            why = self._inputs_changed(step, run, night)
            if why:
                return "out of date", why
        elif night is None:
            # A target's run on raw frames (field_grid): it must have read every exposure of the target.
            why = self._exposures_missing(step, run)
            if why:
                return "out of date", why
        return "current", f"run {run.id}, {run.pipeline_version}"

    def _exposures_missing(self, step: Step, run) -> str:
        now = {exposure_key(f.mjd_obs) for n in self.target_nights() for f in self.raw(step.input_tag, n)
               if f.object == self.target and any(f.usable_for(i) for i in self.ifus_of(n))}
        used = set()
        for inp in run.inputs:
            if inp.tag == step.input_tag:
                _ok, rec = self.input_valid(inp.dataset_id, None)
                if rec is not None:
                    used.add(exposure_key(rec.mjd_obs))
        new = sorted(now - used)
        return f"exposure(s) MJD {', '.join(f'{m:.5f}' for m in new[:4])} not in it" if new else ""

    def _inputs_changed(self, step: Step, run, night) -> str:
        nights = [night] if night is not None else self.target_nights()
        recipes = step.input_recipes_for(self.target)
        single = bool(self.target and step.target_inputs)
        now: dict = {}
        # One run on the field's combined cube reads the first found over all the target's nights
        # (as selection.select_runs chooses it); a combination, the first of each exposure and IFU.
        for n in ([nights] if single else nights):
            keys = set(self.target_exposures(None if single else n)) if self.target else None
            ifus = {i for m in ([n] if isinstance(n, str) else n) for i in self.ifus_of(m)} | {None}
            cands = [rec for rec in reversed(self.found(step.input_tag, n))  # best first, as selection takes them
                     if rec.kind != DatasetKind.RAW.value and rec.ifu in ifus
                     and (keys is None or exposure_key(rec.mjd_obs) in keys)]
            # a combined cube is a DATACUBE_FINAL too, but no exposure's input (and the other way round)
            for rec in made_by_preferred(cands, self.recipe_of, recipes):
                now.setdefault((exposure_key(rec.mjd_obs), rec.ifu), rec.id)
        if single and now:
            first = next(iter(now.values()))
            used_ids = {i.dataset_id for i in run.inputs if i.tag == step.input_tag}
            return "" if used_ids == {first} else f"a newer {step.input_tag} #{first} exists"
        used = {}
        for inp in run.inputs:
            if inp.tag == step.input_tag:
                ok, rec = self.input_valid(inp.dataset_id, None)
                if rec is not None:
                    used[(exposure_key(rec.mjd_obs), rec.ifu)] = rec.id
        new = sorted({k[0] for k in set(now) - set(used)})
        if new:
            return f"exposure(s) MJD {', '.join(f'{m:.5f}' for m in new[:4])} not in it"
        newer = [now[k] for k in used if k in now and now[k] != used[k]]
        if newer:
            return f"a newer {step.input_tag} #{newer[0]} exists"
        return ""

    # ------------------------------------------------------------------ walking the cascade
    def has_input(self, step: Step, night, ifu) -> bool:
        """Does ``night`` hold what ``step`` reduces (for IFU ``ifu``)?"""
        if step.input_kind == "raw":
            return len(self.raw(step.input_tag, night, ifu)) >= max(1, step.min_inputs)
        if step.per == PER_EXPOSURE:
            return bool(self.exposures(step, night))
        return bool(self.raw("OBJECT", night))

    def lender(self, step: Step, night, ifu):
        """The nearest night within the window of the step's product that holds its input, and the window.

        Only for calibrations: a night without bias frames takes the master bias of the
        night before (or after); a night without science has no cube to borrow.
        """
        if kind_of_category(step.main_product) != DatasetKind.CALIBRATION:
            return None, 0
        window = self.dcfg.window_for(step.main_product)
        day = Date.fromisoformat(night)
        for k in range(1, window + 1):
            # the night before first: reduced in order, its calibrations exist already
            for other in (day - timedelta(days=k), day + timedelta(days=k)):
                n = other.isoformat()
                if self.has_input(step, n, ifu):
                    return n, window
        return None, window

    def state(self, step: Step, ifu, steps, night=None) -> list[PlannedRun]:
        split = split_of(step, self.target)
        if split == PER_TARGET:
            night = None
        key = (step.name, night, ifu)
        if key in self.memo:
            return self.memo[key]
        if night is not None and not self.has_input(step, night, ifu):
            src, window = self.lender(step, night, ifu)
            if src is not None:
                items = self.state(step, ifu, steps, night=src)
                side = "before" if src < night else "after"
                apart = abs((Date.fromisoformat(src) - Date.fromisoformat(night)).days)
                note = (f"night {night} has no {step.input_tag}" + (f" for IFU {ifu}" if ifu else "")
                        + f": {step.name} of night {src} makes its {step.main_product} ({apart} night(s) "
                          f"{side}, within the {window}-night window of {step.main_product})")
                if note not in self.borrowed:
                    self.borrowed.append(note)
                self.memo[key] = items
                return items
            if step.skip_without_input:
                self.memo[key] = []  # e.g. no standard star near this night: the fallback serves
                return []
            lacking = (f"; night {night} has no {step.input_tag} to make one"
                       + (f", nor any night within the {window}-night window of {step.main_product}"
                          if kind_of_category(step.main_product) == DatasetKind.CALIBRATION else ""))
        else:
            lacking = ""
        dep_items = []
        for dname in [d for d in _deps(step, steps, self.target) if d in steps]:
            dstep = steps[dname]
            dnights = [night] if night is not None else self.target_nights()
            if split_of(dstep, self.target) == PER_TARGET:
                dep_items += self.state(dstep, None, steps)
                continue
            for n in dnights:
                if dstep.per == PER_IFU:
                    for i in ([ifu] if ifu is not None else self.ifus_of(n)):
                        dep_items += self.state(dstep, i, steps, night=n)
                else:
                    dep_items += self.state(dstep, None, steps, night=n)
        if night is not None and step.skip_without_input and step.input_kind == "raw" \
                and not self.raw(step.input_tag, night, ifu):
            items = []  # e.g. no standard star this night: nothing to build, nothing missing
        elif split == PER_IFU:
            items = [self._judge_one(step, night, ifu, None, dep_items)]
        elif split == PER_EXPOSURE:
            items = []
            for mjd in self.exposures(step, night):
                mine = [d for d in dep_items if d.exposure in (None, mjd)]
                items.append(self._judge_one(step, night, None, mjd, mine))
        else:
            items = [self._judge_one(step, night, None, None, dep_items)]
        if lacking:
            for i in items:
                if i.status == "missing":
                    i.reason += lacking
        self.memo[key] = items
        return items

    def _judge_one(self, step, night, ifu, mjd, dep_items) -> PlannedRun:
        prods = self.products(step, ifu, night)
        if mjd is not None:
            prods = [p for p in prods if exposure_key(p.mjd_obs) == mjd]
            if step.combines_ifus:
                want = set(self.ifus_of(night))
                if kind_of_category(step.main_product) == DatasetKind.CALIBRATION:
                    # A calibration of more IFUs serves fewer (a STD_RESPONSE from IFUs 1-2 for a
                    # reduction of IFU 1: the standard star needs room that one IFU's strip lacks).
                    prods = [p for p in prods if want <= set(self._ifus_of_run(p.run_id))]
                else:
                    prods = [p for p in prods if set(self._ifus_of_run(p.run_id)) == want]
        if not prods:
            gone = self._unusable(step, night, ifu, mjd)
            if gone is not None:
                # It was built, but it (or what it was made from) has been marked invalid since.
                if gone.affected_by is not None:
                    self._load_records([gone.affected_by])
                    src = self._records.get(int(gone.affected_by))
                    what = f"{src.category} #{src.id}" if src is not None else f"#{gone.affected_by}"
                    why = f"made from {what}, since marked invalid"
                else:
                    why = f"marked invalid ({gone.flag}{': ' + gone.comment if gone.comment else ''})"
                return PlannedRun(step.name, ifu, mjd, "out of date", f"{step.main_product} #{gone.id} {why}",
                                  gone.id, night=night or "")
            where = f" of night {night}" if night is not None else f" of target {self.target}"
            return PlannedRun(step.name, ifu, mjd, "missing", f"no valid {step.main_product}"
                              + (f" for IFU {ifu}" if ifu else "") + where, night=night or "")
        product = prods[-1]
        status, reason = self.judge(step, ifu, product, dep_items, mjd, night)
        return PlannedRun(step.name, ifu, mjd, status, reason, product.id, night=night or "")

    def _unusable(self, step: Step, night, ifu, mjd):
        """The newest product of the step that is no longer usable (invalid, or affected), or None."""
        where = night if night is not None else self.target_nights()
        found = self.arch.query(category=step.main_product, night=where, valid=False,
                                collections=self.collections, order_by="created")
        keys = set(self.target_exposures(None)) if night is None else None
        out = None
        for rec in found:
            if rec.kind == DatasetKind.RAW.value or rec.run_id is None or (ifu is not None and rec.ifu != ifu):
                continue
            if mjd is not None and exposure_key(rec.mjd_obs) != mjd:
                continue
            if keys is not None and exposure_key(rec.mjd_obs) not in keys:
                continue
            self._load_runs([rec.run_id])
            run = self._runs.get(rec.run_id)
            if run is None or run.recipe != step.recipe:
                continue
            out = rec
        return out

    def _ifus_of_run(self, run_id):
        run = self.run_of(run_id)
        return run.details.get("ifus") or ([run.ifu] if run.ifu else [])


def _category_used(run, planner, dep: PlannedRun) -> bool:
    # Did the run read a product of the dependency's category? (Only then can a newer one matter.)
    cat = STEPS[dep.step].main_product
    for inp in run.inputs:
        if inp.tag == cat:
            ok, rec = planner.input_valid(inp.dataset_id, dep.ifu)
            if rec is not None and (dep.ifu is None or rec.ifu in (None, dep.ifu)) \
                    and (dep.exposure is None or exposure_key(rec.mjd_obs) == dep.exposure):
                return True
    return False


def plan(step: str, date: str | None = None, ifus=None, *, archive=None, p: dict | None = None,
         step_params: dict | None = None, commit: bool = False, collections=None,
         target: str | None = None) -> Plan:
    """The ordered runs needed to make ``step`` for a night or a target (see the module docstring).

    Parameters
    ----------
    step : str
        Step name, e.g. ``scipost`` (the first positional argument; it was once called ``target``).
    date : str, optional
        Night ``YYYY-MM-DD``; with ``target``, only that night of the target.
    ifus : list of int, optional
        Default: all IFUs of each night's raw frames.
    p : dict, optional
        Parameters of the target step.
    step_params : dict, optional
        Parameters of other steps: ``{'flat': {...}}``.
    commit : bool
        Plan the project's reference reduction (its reference path) rather than a personal trial.
    collections : list of str, optional
        Search path of a personal trial (default: the archive's).
    target : str, optional
        A target (``OBJECT``): plan every night it was observed in, its exposures only; a
        per-night combination (exp_combine) becomes one run over all its nights. A night
        without its own calibration frames takes each calibration from the nearest night
        within :attr:`DpuConfig.calibration_windows` (planned there, said in ``Plan.borrowed``).

    Returns
    -------
    Plan

    Raises
    ------
    NotFoundError
        No raw frames of the night, or of the target.
    """
    from .api import open_default_archive

    arch = open_default_archive(archive)
    dcfg = DpuConfig.from_config(arch.config)
    # A run whose process was killed stays "running" until someone looks: close it as failed,
    # so that its step is planned again (its products never entered the archive).
    for st in arch.close_stale_runs(**dcfg.stale_limits()):
        print(f"run {st.run_id} ({st.recipe}) closed as failed: {st.reason}")
    tstep = get_step(step)
    params = dict(step_params or {})
    if p:
        params[tstep.name] = p
    fixed = sorted(int(i) for i in ([ifus] if isinstance(ifus, int) else ifus)) if ifus is not None else None
    if target:
        nights = target_nights(arch, target)
        if date is not None:
            nights = [n for n in nights if n == str(date)]
        if not nights:
            raise NotFoundError(f"no raw science frames of target {target!r}"
                                + (f" in night {date}" if date is not None else "") + " in the archive")
    else:
        if date is None:
            raise NotFoundError(f"plan {tstep.name}: say which night (date=...) or which target (target=...)")
        nights = [str(date)]
    per_night = {n: (fixed if fixed is not None else ifus_of_night(arch, n)) for n in nights}
    if not any(per_night.values()):
        raise NotFoundError(f"no raw frames of night {nights[0]} in the archive (nothing to plan)")
    steps = {s.name: s for s in cascade(tstep.name, dcfg, for_target=bool(target))}
    path = arch.search_path(reference=True) if commit else (
        list(collections) if collections is not None else arch.search_path())
    pl = _Planner(arch, per_night, dcfg, params, path, target=target, ifus=fixed)
    for s in steps.values():
        if split_of(s, target) == PER_TARGET:
            pl.state(s, None, steps)
            continue
        for n in nights:
            if s.per == PER_IFU:
                for i in per_night[n]:
                    pl.state(s, i, steps, night=n)
            else:
                pl.state(s, None, steps, night=n)
    all_ifus = sorted({i for v in pl.nights.values() for i in v})
    out = Plan(tstep.name, nights[0], all_ifus, object=target or "", borrowed=list(pl.borrowed))
    seen = set()
    for s in steps.values():
        for (name, _n, _i), items in pl.memo.items():
            if name != s.name:
                continue
            for item in items:
                if id(item) not in seen:
                    seen.add(id(item))
                    out.items.append(item)
    out.nights = sorted({i.night for i in out.items if i.night} | set(nights))
    out.disk = plan_disk_need(out, lambda name: pl.expected_params(steps[name]),
                              lambda item: len(pl.exposures(steps[item.step], item.night)) if item.night else 1)
    return out


def make(step: str, date: str | None = None, ifus=None, *, dry_run: bool = True, commit: bool = False,
         archive=None, p: dict | None = None, step_params: dict | None = None,
         engine: str | None = None, progress: bool = True, target: str | None = None) -> Plan:
    """Print the plan for ``step`` (of a night, or of a ``target``); with ``dry_run=False`` execute it.

    Runs execute in dependency order; each step's runs (one per IFU, or per exposure)
    execute in parallel; a failed run stops the cascade
    (:class:`~musewise.dpu.api.ReductionFailed`). ``target`` as for :func:`plan`.

    Returns
    -------
    Plan
        The plan as it was before execution.

    Raises
    ------
    DiskSpaceError
        The datastore's filesystem has less free space than the plan's runs would archive
        (``Plan.disk``, plus a margin): nothing was run.

    Examples
    --------
    >>> dpu.make('exp_combine', target='SIM-DEEP-FIELD')                 # doctest: +SKIP
    >>> dpu.make('exp_combine', target='SIM-DEEP-FIELD', dry_run=False)  # doctest: +SKIP
    """
    from .api import open_default_archive
    from .plan_table import execute_plan

    arch = open_default_archive(archive)
    pl = plan(step, date, ifus, archive=arch, p=p, step_params=step_params, commit=commit, target=target)
    print(pl.to_text())
    if dry_run or not pl.todo:
        return pl
    check_free_disk(pl.disk, arch.datastore.root if arch.datastore.is_local else None, arch.config.scratch)
    execute_plan(pl, arch, commit=commit, p=p, step_params=step_params, engine=engine, progress=progress)
    return pl


def provenance_tree(dataset_id: int, archive=None) -> str:
    """The provenance of a product as text: each dataset once, with the run that
    made it (recipe, parameters) and that run's inputs, down to the raw frames.

    ``archive.provenance(dataset_id)`` gives the graph itself (PROV, Graphviz).
    """
    from .api import open_default_archive

    return open_default_archive(archive).provenance(dataset_id).to_text()


def demo_target(arch, night: str) -> tuple[str, dict]:
    """What the demo reduces a night to: ``(step, keywords of make)``.

    A night with one field (``OBJECT``) observed in two or more exposures: that field's
    combined cube, ``('combine_cubes', {'target': field})``; otherwise each exposure's cube,
    ``('scipost', {'date': night})``.
    """
    fields = {r.object for r in raw_frames(arch, "OBJECT", night) if r.object}
    if len(fields) == 1 and len(target_exposures(arch, next(iter(fields)), night)) >= 2:
        return "combine_cubes", {"target": next(iter(fields))}
    return "scipost", {"date": night}


def demo_cascade(arch, night: str, ifus=(1,), *, commit: bool = False, engine: str | None = None,
                 progress: bool = True) -> int:
    """Reduce an already ingested night to the cube of its field (:func:`demo_target`); ingests nothing.

    The calibrations, the field's grid, each exposure's cube on it and their combination,
    or, for a night without a field observed twice, each exposure's cube.

    Returns
    -------
    int
        Archive ID of the combined cube, else of the newest valid ``DATACUBE_FINAL`` of the night.
    """
    path = arch.search_path(reference=commit)
    step, kw = demo_target(arch, night)
    make(step, ifus=list(ifus), dry_run=False, commit=commit, archive=arch, engine=engine, progress=progress, **kw)
    if "target" in kw:
        cubes = [c for c in arch.find("DATACUBE_FINAL", collections=path, night=night, object=kw["target"])
                 if c.run_id is not None and arch.get_run(c.run_id).recipe == "combine_cubes"]
    else:
        cubes = arch.find("DATACUBE_FINAL", collections=path, night=night)
    if not cubes:
        raise NotFoundError(f"the cascade of night {night} made no DATACUBE_FINAL")
    return cubes[0].id


__all__ = ["CORE_STEPS", "Plan", "PlannedRun", "cascade", "demo_cascade", "demo_target", "make", "plan", "provenance_tree"]
