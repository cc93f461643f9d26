"""``run_qc``: measure products in their QC notebook, store the numbers, flag what crosses a limit.

A QC run measures one product (:func:`run_qc`) or a batch of products of one type and
night (:func:`run_qc_batch`: a step's 24 master biases; :func:`run_qc_many` and the
post-run hook make the batches). It is recorded in the archive like a reduction: a run of recipe
``qc_<type>`` whose inputs are the products (plus the files their numbers are measured
against: the raw frames of a master bias, the TRACE_TABLE of a master flat, the
WAVECAL_RESIDUALS, the TRACE_TABLE and the previous nights' solutions of a wavelength solution, the
previous nights' STD_RESPONSE of a response, the OFFSET_LIST a combined cube was made with), whose executed notebook - figures
embedded - is archived with the run. The numbers go to :meth:`Archive.add_qc`
(named ``<type>.<measurement>``); a threshold crossed flags the product IFU with
:meth:`Archive.set_validity` and puts it in the review queue (state ``pending``).
A passing product keeps its flag (``unchecked``): a person still reviews it. When only
earlier QC runs flagged it (a rerun with new thresholds, a product measured again) and no
person has judged it since, a passing run takes their flag back and the product out of
``pending`` (audited as ``auto_clear``); a person's verdict always stands.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..exceptions import NotFoundError, QCError, QCNotApplicableError
from ..vocabulary import QualityFlag
from .thresholds import QC_TYPES, QCConfig, QCThresholds, Verdict

log = logging.getLogger(__name__)

#: The side file a QC notebook writes each product's numbers and verdict to (:func:`musewise.qc.notebook.save_results`).
RESULT_FILE = "qc_result.json"


@dataclass
class QCResult:
    """Outcome of one QC run.

    Attributes
    ----------
    dataset_id : int
    qc_type : str
        ``bias``, ``dark``, ``flat``, ``wavecal``, ``lsf``, ``twilight``, ``response``, ``cube`` and the
        others of :data:`~musewise.qc.thresholds.QC_TYPES`.
    run_id : int
        The archived ``qc_<type>`` run.
    notebook_id : int or None
        The archived executed notebook (figures inside).
    values, units : dict
        QC numbers as stored (``<type>.<name>``) and their units.
    verdict : Verdict
        Flag and threshold checks.
    flag_applied : bool
        Whether the flag was written to the archive (needs review rights); for a passing
        product, whether an earlier QC run's flag was taken back.
    notes : list of str
        What could not be measured.
    """

    dataset_id: int
    qc_type: str
    run_id: int
    notebook_id: int | None
    values: dict[str, float]
    units: dict[str, str]
    verdict: Verdict
    flag_applied: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def flag(self) -> str:
        return self.verdict.flag

    def __str__(self):
        return (f"QC {self.qc_type} of dataset {self.dataset_id} (run {self.run_id}): {self.flag} - "
                f"{self.verdict.summary()}")


def qc_type_of(category: str) -> str:
    """The QC type of a product category.

    Raises
    ------
    QCNotApplicableError
        If no QC notebook covers the category.
    """
    try:
        return QC_TYPES[category]
    except KeyError:
        raise QCNotApplicableError(
            f"no QC notebook for {category!r}; QC covers {', '.join(sorted(QC_TYPES))}") from None


def notebook_for(qc_type: str, config: QCConfig) -> Path:
    """The QC notebook of a type (``qc_<type>.ipynb`` in ``QCConfig.notebooks_dir``, else the shipped ones)."""
    from ..resources import shared_folder

    folder = Path(config.notebooks_dir) if config.notebooks_dir else shared_folder("qc_notebooks")
    path = folder / f"qc_{qc_type}.ipynb"
    if not path.is_file():
        raise NotFoundError(f"QC notebook {path} not found (set c.QCConfig.notebooks_dir)")
    return path


def _companions(arch, rec, qc_type, star_catalogue: str = ""):
    """Files a product's QC is measured against: (inputs for the run, siblings, raw paths).

    ``star_catalogue`` (``QCConfig.star_catalogue``) is handed to the QC of a cube.
    """
    inputs = [(rec.id, rec.category, "product under quality control")]
    siblings, raws = {}, []
    want = {"flat": "TRACE_TABLE", "wavecal": "WAVECAL_RESIDUALS", "fov": "DATACUBE_FINAL"}.get(qc_type)
    if rec.run_id is not None and want:
        for other in arch.query(run_id=rec.run_id, category=want):
            if rec.ifu is None or other.ifu in (None, rec.ifu):
                siblings[want] = arch.path(other.id)
                inputs.append((other.id, want, f"{want} made by the same run {rec.run_id}"))
                break
    if qc_type in COMPARED_WITH_PREVIOUS:
        for other in previous_products(arch, rec):
            siblings.setdefault(f"PREVIOUS_{rec.category}", []).append(arch.path(other.id))
            inputs.append((other.id, rec.category, f"{rec.category} of the earlier night {other.night}, compared with"))
    if qc_type in ("cube", "zap") and star_catalogue:
        siblings["STAR_CATALOG"] = str(star_catalogue)
    # What the run that made the product read, for the measures that need it (by QC type):
    # the trace the wavelength solutions are compared along (they are functions of the CCD
    # column), the offsets a cube was combined with, the raw biases a master was made of.
    # the sky lines scipost's fit started from, the cube ZAP cleaned, the images exp_align aligned.
    # the raw frames a field's grid must hold, and the slice geometry that places them.
    made_from = {"wavecal": [("TRACE_TABLE", "slice centres the solutions are compared along")],
                 "cube": [("OFFSET_LIST", "offsets the exposures were combined with")],
                 "bias": [("BIAS", "raw bias combined into the master")],
                 "sky": [("SKY_LINES", "sky lines the sky fit started from")],
                 "zap": [("DATACUBE_FINAL", "the cube before ZAP")],
                 "align": [("IMAGE_FOV", "exposure image aligned, with its header pointing")],
                 "grid": [("OBJECT", "exposure the grid must hold"),
                          ("GEOMETRY_TABLE", "slice positions the exposures are placed with")]}
    for tag, why in made_from.get(qc_type, []) if rec.run_id is not None else []:
        for i in _run_inputs(arch, rec.run_id, tag):
            try:
                path = arch.path(i.dataset_id)
            except NotFoundError:  # a raw frame the user may not see: compare without it
                continue
            inputs.append((i.dataset_id, tag, why))
            if tag in MADE_OF_MANY:
                raws.append(path)
            else:
                siblings[tag] = path
                break
    return inputs, siblings, raws


#: QC types compared with the same product of the :data:`N_PREVIOUS` earlier nights.
COMPARED_WITH_PREVIOUS = ("response", "wavecal", "trace", "sky")
#: Input tags of which every file (not only the first) is handed to the QC, as ``raws``.
MADE_OF_MANY = ("BIAS", "IMAGE_FOV", "OBJECT")


def _run_inputs(arch, run_id: int, tag: str) -> list:
    """The inputs of tag ``tag`` of run ``run_id`` (none if the run is not visible)."""
    try:
        return [i for i in arch.get_run(run_id).inputs if i.tag == tag]
    except NotFoundError:
        return []


#: How many earlier nights' products a product is compared with (STD_RESPONSE, WAVECAL_TABLE).
N_PREVIOUS = 5


def previous_products(arch, rec, n: int = N_PREVIOUS) -> list:
    """The newest ``n`` usable products of ``rec``'s category and mode from nights before ``rec``'s, newest first.

    Static calibrations are left out: the comparison is with what the instrument did
    on earlier nights. Products of an IFU compare with the same IFU's.
    """
    if not rec.night:
        return []
    filters = dict(category=rec.category, valid=True)
    if rec.mode:
        filters["mode"] = rec.mode
    if rec.ifu:
        filters["ifu"] = rec.ifu
    earlier = [r for r in arch.query(**filters) if r.night and r.night < rec.night and r.kind != "static"
               and r.id != rec.id]
    earlier.sort(key=lambda r: (r.night, r.id), reverse=True)
    out, nights = [], set()
    for r in earlier:  # one per night: the newest (a re-reduction replaces the older)
        if r.night not in nights:
            out.append(r)
            nights.add(r.night)
        if len(out) >= n:
            break
    return out


def run_qc(arch, dataset_id: int, *, thresholds: QCThresholds | None = None, config: QCConfig | None = None,
           keep_workdir: bool = False) -> QCResult:
    """Run the QC notebook of one product, archive it, store its numbers and flag the product.

    A QC run of this product alone (:func:`run_qc_batch` measures several in one run).

    Parameters
    ----------
    arch : Archive
    dataset_id : int
        A product of a category in :data:`~musewise.qc.thresholds.QC_TYPES`.
    thresholds : QCThresholds, optional
        Default: the site's (``c.QCThresholds...`` in the musewise config file).
    config : QCConfig, optional
        Notebook folder, time limit, claim time; default the site's.
    keep_workdir : bool
        Keep the scratch folder of the run (for debugging).

    Returns
    -------
    QCResult

    Raises
    ------
    QCNotApplicableError
        No QC notebook for this category.
    QCError
        The notebook failed or could not measure the product; the run and its notebook are archived.
    """
    (res,) = run_qc_batch(arch, [dataset_id], thresholds=thresholds, config=config, keep_workdir=keep_workdir)
    if isinstance(res, QCError):
        raise res
    return res


def batch_key(rec) -> tuple:
    """What products must share to be measured in one QC run: QC type, night, mode, privilege and project.

    A run is recorded with one night, privilege and project, which its products then
    share; its notebook is readable by whoever may read all of them.
    """
    return (qc_type_of(rec.category), rec.night or "", rec.mode or "", int(rec.privilege), rec.project or "")


def batches(records, size: int) -> list[list]:
    """``records`` in QC runs: grouped by :func:`batch_key`, at most ``size`` a run, in their order."""
    groups: dict[tuple, list] = {}
    for r in records:
        groups.setdefault(batch_key(r), []).append(r)
    size = max(1, int(size))
    return [g[i:i + size] for g in groups.values() for i in range(0, len(g), size)]


def qc_of(run) -> list[int]:
    """The products a QC run measured (its ``qc_of`` detail: a list; one ID in runs recorded before batches)."""
    got = (run.details or {}).get("qc_of")
    if got is None:
        return []
    return [int(i) for i in got] if isinstance(got, (list, tuple)) else [int(got)]


def run_qc_batch(arch, dataset_ids, *, thresholds: QCThresholds | None = None, config: QCConfig | None = None,
                 keep_workdir: bool = False) -> list:
    """Measure several products of one QC type in one QC run: one notebook, one archived run.

    The products must share a :func:`batch_key` (a step's products of one night: its
    24 master biases). The notebook measures each one, shows every number against the
    limits side by side and the figures of those that crossed a limit; each product gets
    its own numbers (:meth:`Archive.add_qc`, linked to the run), its own flag and review
    state, as from a run of its own. A product whose measurement failed gets a
    :class:`QCError` and the others go on; if none could be measured, or the notebook
    itself failed, the run is recorded as failed.

    Parameters
    ----------
    arch : Archive
    dataset_ids : sequence of int
    thresholds, config, keep_workdir
        As :func:`run_qc`.

    Returns
    -------
    list of QCResult or QCError
        One per product, in the order given.

    Raises
    ------
    QCNotApplicableError
        A category without a QC notebook.
    QCError
        The products do not share a batch key; nothing ran.
    NotFoundError
        A product does not exist or is not visible; nothing ran.
    """
    from ..dpu.executor import NotebookJob, execute_notebook

    thresholds = thresholds or QCThresholds(config=arch.config.config)
    config = config or QCConfig(config=arch.config.config)
    ids = [int(i) for i in dataset_ids]
    found = arch.get_many(ids)
    recs = [found.get(i) or arch.get(i) for i in ids]  # arch.get raises NotFoundError
    keys = {batch_key(r) for r in recs}
    if len(keys) != 1:
        raise QCError(f"datasets {ids} cannot share one QC run: they differ in QC type, night, mode, "
                      f"privilege or project ({sorted(keys)})", ids[0] if ids else None, None)
    qc_type = batch_key(recs[0])[0]
    template = notebook_for(qc_type, config)
    limits = thresholds.limits(qc_type)
    inputs, seen, products = [], set(), []
    for rec in recs:
        its_inputs, siblings, raws = _companions(arch, rec, qc_type, config.star_catalogue)
        for inp in its_inputs:  # the 24 master biases of a night share their raw frames
            if (inp[0], inp[1]) not in seen:
                seen.add((inp[0], inp[1]))
                inputs.append(inp)
        products.append(dict(dataset_id=rec.id, category=rec.category, ifu=rec.ifu or 0, night=rec.night or "",
                             product=arch.path(rec.id), siblings=siblings, raws=raws))

    def parameters(run_id: int, workdir: Path) -> dict:
        return dict(products=json.dumps(products), limits=json.dumps(limits), result_path=str(workdir / RESULT_FILE))

    ifus = {r.ifu for r in recs}
    first = recs[0]
    stem = f"qc_{qc_type}_{first.id}" + (f"_and_{len(recs) - 1}_more" if len(recs) > 1 else "")
    job = NotebookJob(
        recipe=f"qc_{qc_type}", params={"limits": limits}, template=template, folder=("qc",),
        notebook_stem=stem, parameters=parameters, result_file=RESULT_FILE,
        timeout=int(config.execution_timeout), keep_workdir=keep_workdir,
        kernel_kind="" if config.notebooks_dir else "qc",
        run_kw=dict(night=first.night, ifu=ifus.pop() if len(ifus) == 1 else None, mode=first.mode,
                    inputs=inputs, privilege=first.privilege, project=first.project,
                    details={"qc_of": [r.id for r in recs],
                             "category": ", ".join(sorted({r.category for r in recs}))}),
    )
    nbrun = execute_notebook(arch, job)
    res, run_id = nbrun.result, nbrun.run_id
    got = (res or {}).get("products") if isinstance(res, dict) else None
    error = nbrun.error or ("" if isinstance(got, dict) else "the QC notebook finished without writing its result")
    if not error and not any("verdict" in (got.get(str(r.id)) or {}) for r in recs):
        error = "; ".join(f"dataset {r.id}: {(got.get(str(r.id)) or {}).get('error', 'not measured')}" for r in recs)
    if error:
        nbrun.fail(arch, error, details=nbrun.details())
        return [QCError(f"QC of dataset {r.id} failed in run {run_id}: {error}", r.id, run_id) for r in recs]
    out, flags, failed = [], [], {}
    for rec in recs:
        entry = got.get(str(rec.id)) or {"error": "not measured"}
        if "verdict" not in entry:
            failed[str(rec.id)] = entry.get("error", "not measured")
            out.append(QCError(f"QC of dataset {rec.id} failed in run {run_id}: {failed[str(rec.id)]}",
                               rec.id, run_id))
            continue
        out.append(_record_qc(arch, rec, qc_type, run_id, entry, config))
        flags.append(out[-1].flag)
    rank = {QualityFlag.GOOD.value: 0, QualityFlag.WARNING.value: 1, QualityFlag.BAD.value: 2}
    worst = max(flags, key=lambda f: rank.get(f, 0))
    summary = "; ".join(f"dataset {r.dataset_id}: {r.verdict.summary()}" for r in out
                        if isinstance(r, QCResult) and r.flag != QualityFlag.GOOD.value) \
        or "all QC numbers within limits"
    nbrun.finish(arch, [], details=nbrun.details(
        flag=worst, summary=summary, failed=failed,
        notes=sorted({n for r in out if isinstance(r, QCResult) for n in r.notes})))
    notebook_id = arch.get_run(run_id).notebook_id
    for r in out:
        if isinstance(r, QCResult):
            r.notebook_id = notebook_id
    return out


def _record_qc(arch, rec, qc_type: str, run_id: int, entry: dict, config: QCConfig) -> QCResult:
    # One product's numbers of a QC run: stored, and its flag set or taken back.
    verdict = Verdict.from_dict(entry["verdict"])
    values = {f"{qc_type}.{k}": v for k, v in entry["values"].items()}
    # qc_parameters.unit holds 32 characters.
    units = {f"{qc_type}.{k}": (u or "")[:32] for k, u in entry["units"].items()}
    arch.add_qc(rec.id, values, ifu=rec.ifu, units=units, run_id=run_id)
    if verdict.flag != QualityFlag.GOOD.value:
        applied = _flag(arch, rec, verdict, run_id, qc_type, config)
    else:
        applied = _unflag(arch, rec, run_id, qc_type)
    return QCResult(rec.id, qc_type, run_id, None, values, units, verdict, applied, entry.get("notes", []))


def run_qc_many(arch, dataset_ids, *, thresholds: QCThresholds | None = None, config: QCConfig | None = None,
                engine: str | None = None, progress: bool = True, heavy=None, priority: int = 0) -> list:
    """Run QC on several products, in batches (:func:`batches`), in parallel on Dask as reductions are.

    Products sharing a :func:`batch_key` are measured together, at most
    ``QCConfig.products_per_run`` in one QC run (:func:`run_qc_batch`); the runs go to the
    engine as reductions do (``DpuConfig.engine``).

    Parameters
    ----------
    arch : Archive
    dataset_ids : iterable of int
    thresholds, config : optional
        As :func:`run_qc` (default: the site's); handed to workers as their values.
    engine : str, optional
        ``local``, ``dask`` or ``auto`` (default ``DpuConfig.engine``: Dask for several runs).
    progress : bool
        Show a progress bar.
    heavy : sequence of bool, optional
        Per product: its QC shares the memory-heavy reductions' limit on the Dask cluster
        (``DpuConfig.heavy_concurrency``), as a heavy run alone in its step does once the
        cluster is up (:func:`~musewise.dpu.executor.engine_name`). A batch holding one
        such product is heavy.
    priority : int
        Dask priority (:func:`~musewise.dpu.executor.run_all`): ``-1`` lets reductions
        waiting for the same workers go first.

    Returns
    -------
    list of QCResult or QCError
        In the order of ``dataset_ids``; a failed QC run gives its :class:`QCError`
        (recorded in the archive as a failed run) instead of stopping the others.

    Raises
    ------
    QCNotApplicableError
        A product's category has no QC notebook; nothing ran.
    NotFoundError
        A product does not exist or is not visible to the user; nothing ran.
    """
    from ..dpu.executor import run_all

    ids = [int(i) for i in dataset_ids]
    found = arch.get_many(ids)
    recs = [found.get(i) or arch.get(i) for i in ids]  # arch.get raises NotFoundError
    for r in recs:  # refuse before anything runs
        qc_type_of(r.category)
    thresholds = thresholds or QCThresholds(config=arch.config.config)
    config = config or QCConfig(config=arch.config.config)
    is_heavy = dict(zip(ids, heavy)) if heavy is not None else {}
    groups = [tuple(r.id for r in g) for g in batches(recs, config.products_per_run)]
    done = run_all(arch, qc_task, groups, engine=engine, progress=progress, desc="qc",
                   heavy=[any(is_heavy.get(i, False) for i in g) for g in groups] if heavy is not None else None,
                   priority=priority, thresholds=_values(thresholds), qc_config=_values(config))
    by_id = {r.dataset_id: r for results in done for r in results}
    return [by_id[i] for i in ids]


def qc_task(dataset_ids, settings: dict, thresholds: dict, qc_config: dict, arch=None) -> list:
    """One QC run of a batch as an engine task (:func:`musewise.dpu.executor.run_all`): a QCResult or QCError each."""
    from ..dpu.executor import open_archive

    arch = arch if arch is not None else open_archive(settings)
    return run_qc_batch(arch, list(dataset_ids), thresholds=QCThresholds(**thresholds),
                        config=QCConfig(**qc_config))


def _values(configurable) -> dict:
    # The configurable's settings as plain values (picklable, for a worker).
    return {k: getattr(configurable, k) for k in configurable.trait_names(config=True)}


#: How a QC run's flag is worded in the audit trail (``_flag``): ``qc_<type> run <id>: <why>``.
_QC_REASON = re.compile(r"^qc_[a-z_]+ run (\d+): ")


def _ifus_of(rec) -> list[int]:
    # the review states of a product: its IFU, each IFU of a multi-IFU file, else 0 (a merged cube)
    return ([rec.ifu] if rec.ifu else [s.ifu for s in rec.ifus]) or [0]


def _flag(arch, rec, verdict: Verdict, run_id: int, qc_type: str, config: QCConfig) -> bool:
    from .review import mark_pending

    reason = f"qc_{qc_type} run {run_id}: {verdict.summary()}"
    applied = False
    # A product of several IFUs, or of none recorded (a cube combined from IFUs held in one
    # file), is flagged as a whole: its per-IFU verdicts, if any, are a reviewer's.
    if arch.can_review(rec.id):
        invalidate = config.invalidate_bad and verdict.flag == QualityFlag.BAD.value
        arch.set_validity(rec.id, rec.ifu, flag=verdict.flag, is_valid=False if invalidate else None,
                          comment=reason)
        applied = True
    else:
        log.warning("dataset %s fails QC (%s) but user %s may not flag it; left for its reviewers",
                    rec.id, verdict.flag, arch.user_name)
    mark_pending(arch, rec.id, _ifus_of(rec), reason)
    return applied


def _unflag(arch, rec, run_id: int, qc_type: str) -> bool:
    """After a passing QC: undo what earlier QC runs of this product set, if nobody judged it since.

    The validity changes undone are the latest ones of the audit trail, as long as each
    was written by a QC run of this product (its comment names the run, and the run is a
    ``qc_*`` run of this dataset); the product gets the flag and validity it had before
    the first of them. Needs review rights: a member's own looser thresholds do not lift
    what the site's QC flagged for the reviewers.
    """
    from .review import clear_pending, review_state

    ifus = _ifus_of(rec)
    pending = [i for i, st in review_state(arch, rec.id).items() if st["state"] == "pending" and i in ifus]
    if not pending or not arch.can_review(rec.id):
        return False
    trailing = []
    for ev in reversed(arch.validity_history(rec.id)):
        m = _QC_REASON.match(ev["comment"] or "")
        if m is None:
            break
        trailing.append((ev, int(m.group(1))))
    runs = arch.get_runs([r for _, r in trailing])
    by_qc = []
    for ev, rid in trailing:
        r = runs.get(rid)
        if r is None or not r.recipe.startswith("qc_") or rec.id not in qc_of(r):
            break
        by_qc.append(ev)
    if not by_qc:  # a person changed the verdict since the QC flagged it: theirs stands
        return False
    first = by_qc[-1]
    reason = f"qc_{qc_type} run {run_id}: passes; the flag of the earlier QC is taken back"
    revalidate = any(ev["valid_before"] != ev["valid_after"] for ev in by_qc)
    arch.set_validity(rec.id, rec.ifu, flag=first["flag_before"],
                      is_valid=first["valid_before"] if revalidate else None, comment=reason)
    clear_pending(arch, rec.id, pending, reason)
    return True


def after_product(arch, record, **kw) -> QCResult | None:
    """Hook for the reduction layer: run QC on a new product if a QC notebook covers it.

    Never raises for a failing QC (the failed QC run is in the archive and logged), so
    a reduction is not lost because its QC broke.

    Parameters
    ----------
    arch : Archive
    record : DatasetRecord or int
        The product just archived.
    **kw
        Passed to :func:`run_qc`.

    Returns
    -------
    QCResult or None
        None when the category has no QC or the QC run failed.
    """
    rec = arch.get(record) if isinstance(record, int) else record
    if rec.category not in QC_TYPES:
        return None
    try:
        return run_qc(arch, rec.id, **kw)
    except (QCError, NotFoundError) as exc:
        log.warning("QC of dataset %s failed: %s", rec.id, exc)
        return None


def after_run(arch, outcomes, *, engine: str | None = None, progress: bool = True, priority: int = 0,
              thresholds: QCThresholds | None = None, config: QCConfig | None = None) -> list:
    """Post-run hook of the reduction layer (``DpuConfig.post_run_hooks``): QC of a batch's products.

    Every product the succeeded runs made whose category has a QC notebook
    (:data:`~musewise.qc.thresholds.QC_TYPES`) is measured by :func:`run_qc_many`, on
    the engine the runs used: numbers stored with the product, a crossed threshold
    flagging its IFU and queueing it for review, the executed notebook linked from the
    product by its ``qc_<type>`` run.

    Parameters
    ----------
    arch : Archive
    outcomes : list of RunOutcome
        The batch's runs (failed ones made nothing and are skipped).
    engine : str, optional
        The engine the reduction ran on (``local``, ``dask``).
    progress : bool
    priority : int
        Dask priority of the QC runs (``-1`` when they run beside the cascade's next step).
        The QC of a memory-heavy recipe's products (``DpuConfig.heavy_recipes``) waits
        for the heavy runs' limit, as those runs do.
    thresholds, config : optional
        As :func:`run_qc` (default: the site's).

    Returns
    -------
    list of QCResult or QCError
        One per product checked; a failed QC run is recorded and logged, never raised,
        so a reduction is not lost because its QC broke.
    """
    from ..dpu.config import DpuConfig

    heavy_recipes = set(DpuConfig.from_config(arch.config).heavy_recipes)
    made = [(int(p), _recipe_of(o.step) in heavy_recipes)
            for o in outcomes if getattr(o, "ok", False) for p in o.products]
    found = arch.get_many([i for i, _h in made]) if made else {}
    todo = [(i, h) for i, h in made if found.get(i) is not None and found[i].category in QC_TYPES]
    if not todo:
        return []
    results = run_qc_many(arch, [i for i, _h in todo], thresholds=thresholds, config=config, engine=engine,
                          progress=progress, heavy=[h for _i, h in todo], priority=priority)
    for r in results:
        if isinstance(r, QCError):
            log.warning("automatic QC failed: %s", r)
        elif r.flag != QualityFlag.GOOD.value:
            log.info("%s", r)
    if progress:
        failed = sum(isinstance(r, QCError) for r in results)
        flagged = [r for r in results if not isinstance(r, QCError) and r.flag != QualityFlag.GOOD.value]
        print(f"qc: {len(results) - failed}/{len(results)} product(s) checked, {len(flagged)} flagged"
              + "".join(f"\n  {r}" for r in flagged))
    return results


def _recipe_of(step_name: str) -> str:
    from ..dpu.steps import get_step

    try:
        return get_step(step_name).recipe if step_name else ""
    except NotFoundError:  # a step no longer registered: its products' QC is not held back
        return ""


def _gates_next_step(config) -> bool:
    # QC changes what the next step selects only where it marks bad products invalid.
    return bool(QCConfig(config=config).invalidate_bad)


#: Read by :class:`musewise.dpu.hooks.PostRunHooks`: the QC of a step may run beside the next
#: step's runs unless it can invalidate their inputs.
after_run.gates_next_step = _gates_next_step


__all__ = ["N_PREVIOUS", "QCResult", "after_product", "after_run", "batch_key", "batches", "notebook_for",
           "previous_products", "qc_of", "qc_task", "qc_type_of", "run_qc", "run_qc_batch", "run_qc_many"]
