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
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..exceptions import NotFoundError
from ..vocabulary import DatasetKind
from .config import DpuConfig
from .selection import exposure_key, ifus_of_night, raw_frames
from .steps import PER_EXPOSURE, PER_IFU, PRODUCER, STEPS, Step, get_step

#: Steps always built on the way to a cube; others only when listed in DpuConfig.optional_steps.
#: lsf is one: the default sky subtraction (muse_scipost skymethod=model) needs LSF_PROFILE.
#: standard (with scibasic_std) too, for a night with a standard star: scipost's STD_RESPONSE.
#: twilight too, for a night with twilight flats: scibasic's TWILIGHT_CUBE.
#: exp_align too, towards exp_combine: its OFFSET_LIST aligns the exposures.
CORE_STEPS = ("bias", "flat", "wavecal", "lsf", "twilight", "scibasic", "scibasic_std", "standard",
              "exp_align")
#: Parameters musewise sets itself (not compared when judging a product current).
_MANAGED = ("nifu", "merge")


@dataclass
class PlannedRun:
    """One step for one IFU (or one exposure) in a plan.

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
    """

    step: str
    ifu: int | None
    exposure: float | None
    status: str
    reason: str
    product_id: int | None = None

    @property
    def needed(self) -> bool:
        return self.status != "current"

    def __str__(self):
        where = f"IFU {self.ifu:02d}" if self.ifu else (f"exposure MJD {self.exposure:.5f}" if self.exposure else "night")
        prod = f" (#{self.product_id})" if self.product_id else ""
        return f"{self.step:<12} {where:<22} {self.status:<11}{prod} {self.reason}"


@dataclass
class Plan:
    """The runs towards a target, in dependency order."""

    target: str
    night: str
    ifus: list[int]
    items: list[PlannedRun] = field(default_factory=list)

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
        head = (f"plan for {self.target} of night {self.night}, IFUs {self.ifus}: "
                f"{len(self.todo)} run(s) to do, {len(self.items) - len(self.todo)} current")
        return "\n".join([head] + [f"  {'->' if i.needed else '  '} {i}" for i in self.items])

    def __str__(self):
        return self.to_text()


def cascade(target: str, dcfg: DpuConfig) -> list[Step]:
    """The steps needed for ``target``, in dependency order."""
    enabled = set(CORE_STEPS) | set(dcfg.optional_steps)
    target_step = get_step(target)
    wanted: set[str] = set()

    def visit(step: Step):
        if step.name in wanted:
            return
        wanted.add(step.name)
        cats = list(step.calibrations) + list(step.optional)
        if step.input_kind == "product":
            cats.insert(0, step.input_tag)
        for cat in cats:
            prod = PRODUCER.get(cat)
            if prod and prod != step.name and (prod in enabled or cat == step.input_tag):
                visit(STEPS[prod])

    visit(target_step)
    order = list(STEPS)
    return sorted((STEPS.get(n, target_step) for n in wanted),
                  key=lambda s: order.index(s.name) if s.name in order else len(order))


def _deps(step: Step, steps: dict[str, Step]) -> list[str]:
    cats = list(step.calibrations) + list(step.optional)
    if step.input_kind == "product":
        cats.insert(0, step.input_tag)
    out = []
    for c in cats:
        p = PRODUCER.get(c)
        if p and p in steps and p != step.name and p not in out:
            out.append(p)
    return out


class _Planner:
    def __init__(self, arch, night, ifus, dcfg, params, collections):
        from ..recipes import configure, get_recipe

        configure(arch.config)  # the site's esorex describes the recipes planned
        self.arch, self.night, self.ifus, self.dcfg = arch, night, ifus, dcfg
        self.collections = collections
        self._found: dict = {}
        self.params = params
        self.get_recipe = get_recipe
        self.memo: dict = {}
        self._runs: dict = {}
        self._records: dict = {}

    def run_of(self, run_id):
        self._load_runs([run_id])
        if self._runs.get(run_id) is None:
            raise NotFoundError(f"no run {run_id} visible to user {self.arch.user_name!r}")
        return self._runs[run_id]

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

    def products(self, step: Step, ifu):
        """Usable products of the step's main category this night found through the search path, best last."""
        if step.main_product not in self._found:
            found = list(reversed(self.arch.find(step.main_product, collections=self.collections, night=self.night)))
            self._found[step.main_product] = found
            self._load_runs(r.run_id for r in found if r.kind != DatasetKind.RAW.value and r.run_id is not None)
        out = []
        for rec in self._found[step.main_product]:
            if rec.kind == DatasetKind.RAW.value or rec.run_id is None:
                continue
            if ifu is not None and rec.ifu != ifu:
                continue
            if self.run_of(rec.run_id).recipe != step.recipe:
                continue
            out.append(rec)
        return out

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

    def judge(self, step: Step, ifu, product, dep_items, mjd=None) -> tuple[str, str]:
        """Status and reason for an existing product (of exposure ``mjd`` for per-exposure steps)."""
        run = self.run_of(product.run_id)
        recipe = self.get_recipe(step.recipe)
        if run.pipeline_version != recipe.pipeline_version:
            return "out of date", f"made with {run.pipeline_version}, installed {recipe.pipeline_version}"
        used = {k: v for k, v in (run.details.get("effective_parameters") or {}).items() if k not in _MANAGED}
        want = self.expected_params(step)
        diff = sorted(k for k in set(used) | set(want) if used.get(k) != want.get(k))
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
            if mjd is not None and d.exposure is None and newest:
                # a per-IFU step makes one product per exposure: compare with this exposure's newest
                same = [p for p in self.products(STEPS[d.step], d.ifu) if exposure_key(p.mjd_obs) == mjd]
                newest = same[-1].id if same else None
            if newest and newest not in used_ids and _category_used(run, self, d):
                return "out of date", f"a newer {STEPS[d.step].main_product} #{newest} exists"
        return "current", f"run {run.id}, {run.pipeline_version}"

    def state(self, step: Step, ifu, steps) -> list[PlannedRun]:
        key = (step.name, ifu)
        if key in self.memo:
            return self.memo[key]
        dep_items = []
        for dname in _deps(step, steps):
            dstep = steps[dname]
            if dstep.per == PER_IFU:
                for i in ([ifu] if ifu is not None else self.ifus):
                    dep_items += self.state(dstep, i, steps)
            else:
                dep_items += self.state(dstep, None, steps)
        if step.skip_without_input and step.input_kind == "raw" \
                and not raw_frames(self.arch, step.input_tag, self.night, ifu=ifu):
            items = []  # e.g. no standard star this night: nothing to build, nothing missing
        elif step.per == PER_IFU:
            items = [self._judge_one(step, ifu, None, dep_items)]
        elif step.per == PER_EXPOSURE:
            items = []
            for mjd in self.exposures(step):
                mine = [d for d in dep_items if d.exposure in (None, mjd)]
                items.append(self._judge_one(step, None, mjd, mine))
        else:
            items = [self._judge_one(step, None, None, dep_items)]
        self.memo[key] = items
        return items

    def exposures(self, step: Step) -> list[float]:
        raw = {"PIXTABLE_OBJECT": "OBJECT", "PIXTABLE_STD": "STD"}.get(step.input_tag, "OBJECT")
        return sorted({exposure_key(f.mjd_obs) for f in raw_frames(self.arch, raw, self.night)})

    def _judge_one(self, step, ifu, mjd, dep_items) -> PlannedRun:
        prods = self.products(step, ifu)
        if mjd is not None:
            prods = [p for p in prods if exposure_key(p.mjd_obs) == mjd]
            if step.combines_ifus:
                prods = [p for p in prods if sorted(self._ifus_of_run(p.run_id)) == self.ifus]
        if not prods:
            return PlannedRun(step.name, ifu, mjd, "missing", f"no valid {step.main_product}"
                              + (f" for IFU {ifu}" if ifu else "") + f" of night {self.night}")
        product = prods[-1]
        status, reason = self.judge(step, ifu, product, dep_items, mjd)
        return PlannedRun(step.name, ifu, mjd, status, reason, product.id)

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


def plan(target: str, date: str, ifus=None, *, archive=None, p: dict | None = None,
         step_params: dict | None = None, commit: bool = False, collections=None) -> Plan:
    """The ordered runs needed to make ``target`` for a night (see the module docstring).

    Parameters
    ----------
    target : str
        Step name, e.g. ``scipost``.
    date : str
        Night ``YYYY-MM-DD``.
    ifus : list of int, optional
        Default: all IFUs of the night's raw frames.
    p : dict, optional
        Parameters of the target step.
    step_params : dict, optional
        Parameters of other steps: ``{'flat': {...}}``.
    commit : bool
        Plan the project's reference reduction (its reference path) rather than a personal trial.
    collections : list of str, optional
        Search path of a personal trial (default: the archive's).

    Returns
    -------
    Plan
    """
    from .api import open_default_archive

    arch = open_default_archive(archive)
    dcfg = DpuConfig.from_config(arch.config)
    tstep = get_step(target)
    params = dict(step_params or {})
    if p:
        params[tstep.name] = p
    ifus = sorted(int(i) for i in ([ifus] if isinstance(ifus, int) else ifus)) if ifus is not None \
        else ifus_of_night(arch, str(date))
    if not ifus:
        raise NotFoundError(f"no raw frames of night {date} in the archive (nothing to plan)")
    steps = {s.name: s for s in cascade(target, dcfg)}
    path = arch.search_path(reference=True) if commit else (
        list(collections) if collections is not None else arch.search_path())
    pl = _Planner(arch, str(date), ifus, dcfg, params, path)
    for s in steps.values():
        if s.per == PER_IFU:
            for i in ifus:
                pl.state(s, i, steps)
        else:
            pl.state(s, None, steps)
    out = Plan(tstep.name, str(date), ifus)
    for s in steps.values():
        for (name, _i), items in pl.memo.items():
            if name == s.name:
                out.items += items
    return out


def make(target: str, date: str, ifus=None, *, dry_run: bool = True, commit: bool = False,
         archive=None, p: dict | None = None, step_params: dict | None = None,
         engine: str | None = None, progress: bool = True) -> Plan:
    """Print the plan for ``target``; with ``dry_run=False`` execute it in dependency order.

    Each step's runs (one per IFU, or per exposure) execute in parallel; a
    failed run stops the cascade (:class:`~musewise.dpu.api.ReductionFailed`).

    Returns
    -------
    Plan
        The plan as it was before execution.
    """
    from .api import open_default_archive
    from .plan_table import execute_plan

    arch = open_default_archive(archive)
    pl = plan(target, date, ifus, archive=arch, p=p, step_params=step_params, commit=commit)
    print(pl.to_text())
    if dry_run or not pl.todo:
        return pl
    execute_plan(pl, arch, commit=commit, p=p, step_params=step_params, engine=engine, progress=progress)
    return pl


def provenance_tree(dataset_id: int, archive=None) -> str:
    """The provenance of a product as text: each dataset once, with the run that
    made it (recipe, parameters) and that run's inputs, down to the raw frames.

    ``archive.provenance(dataset_id)`` gives the graph itself (PROV, Graphviz).
    """
    from .api import open_default_archive

    return open_default_archive(archive).provenance(dataset_id).to_text()


def demo_cascade(arch, night: str, ifus=(1,), *, commit: bool = False, engine: str | None = None,
                 progress: bool = True) -> int:
    """Reduce an already ingested night to a final cube (``make('scipost')``); ingests nothing.

    Returns
    -------
    int
        Archive ID of the newest valid ``DATACUBE_FINAL`` of the night.
    """
    make("scipost", night, list(ifus), dry_run=False, commit=commit, archive=arch, engine=engine,
         progress=progress)
    cubes = arch.find("DATACUBE_FINAL", collections=arch.search_path(reference=commit), night=night)
    if not cubes:
        raise NotFoundError(f"the cascade of night {night} made no DATACUBE_FINAL")
    return cubes[0].id


__all__ = ["CORE_STEPS", "Plan", "PlannedRun", "cascade", "demo_cascade", "make", "plan", "provenance_tree"]
