"""Registry rows of a full MUSE reduction cascade, made directly (no files, no pipeline).

For tests and benchmarks of lineage at realistic size: :func:`add_cascade` writes,
for each night and each of the 24 IFUs, the runs and products of the standard
reduction (biases -> master bias -> flats -> master flat and trace table ->
arcs -> wavelength calibration -> twilight cube -> standard star -> pixel tables
per exposure -> one cube per exposure) and, across the nights, the combined
cube. Every run has an executed-notebook dataset. The stored-file rows point to
no bytes: only the registry is exercised.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from ..vocabulary import RAW_COLLECTION, STATIC_COLLECTION, CollectionType, DatasetKind, Privilege, RunStatus
from .collections import ensure_collection
from .schema import Dataset, DatasetIfu, Run, RunInput, StoredFile

__all__ = ["Cascade", "add_cascade"]

ALL_IFUS = tuple(range(1, 25))
#: Raw frames of each type per night.
RAW_PER_NIGHT = {"BIAS": 5, "FLAT": 3, "ARC": 3, "SKYFLAT": 3, "STD": 1}
STATIC = ("LINE_CATALOG", "GEOMETRY_TABLE", "EXTINCT_TABLE", "STD_FLUX_TABLE")


@dataclass
class Cascade:
    """Ids of what :func:`add_cascade` wrote."""

    combined: int = 0                                        #: the combined cube
    exposure_cubes: list[int] = field(default_factory=list)
    master_biases: dict[tuple[str, int], int] = field(default_factory=dict)  #: (night, IFU) -> id
    raw: list[int] = field(default_factory=list)
    static: list[int] = field(default_factory=list)
    products: list[int] = field(default_factory=list)        #: every product, the combined cube included
    runs: list[int] = field(default_factory=list)
    notebooks: list[int] = field(default_factory=list)

    @property
    def n_datasets(self) -> int:
        """Distinct datasets in the combined cube's history (notebooks are not inputs)."""
        return len(self.raw) + len(self.static) + len(self.products)


def add_cascade(arch, nights=("2026-11-20", "2026-11-21"), ifus=ALL_IFUS, exposures: int = 2, *,
                privilege: Privilege = Privilege.CONSORTIUM) -> Cascade:
    """Write the registry rows of a reduction of ``nights`` x ``ifus`` into ``arch``.

    Parameters
    ----------
    arch : Archive
        Rows are owned by its acting user and its configured project.
    nights : sequence of str
        Observing nights ``YYYY-MM-DD``.
    ifus : sequence of int
    exposures : int
        Science exposures per night.
    privilege : Privilege
        Of every dataset and run.

    Returns
    -------
    Cascade
    """
    out = Cascade()
    counter = [0]
    batch = uuid.uuid4().hex  # file rows of several cascades in one archive stay distinct
    with arch.transaction() as tx:
        s = tx.session
        user = arch.user
        # Rows made directly: raw and static frames in the instrument's collections, every
        # product in one RUN collection of this cascade.
        colls = {DatasetKind.RAW: ensure_collection(s, RAW_COLLECTION, CollectionType.RUN),
                 DatasetKind.STATIC: ensure_collection(s, STATIC_COLLECTION, CollectionType.RUN)}
        products_coll = ensure_collection(s, f"u/{user.name}/cascade/{batch}", CollectionType.RUN, owner_id=user.id)

        def dataset(kind, category, night=None, ifu=None, run_id=None, holds=None):
            counter[0] += 1
            n = counter[0]
            f = StoredFile(sha256=f"{batch}{n:032x}", size=2880, path=f"cascade/{batch}/{n:06d}-{category}.fits",
                           original_name=f"{category}{'-%02d' % ifu if ifu else ''}-{n}.fits")
            ds = Dataset(kind=kind.value, category=category, file=f, night=night, ifu=ifu, owner_id=user.id,
                         privilege=int(privilege), run_id=run_id, mode="WFM-NOAO-N", pipeline_version="muse-2.8.7",
                         collection_id=colls.get(kind, products_coll).id, is_valid=True, flag="unchecked",
                         comment="")
            ds.ifus = [DatasetIfu(ifu=i, is_valid=True, flag="unchecked")
                       for i in (holds if holds is not None else ((ifu,) if ifu else ifus))]
            s.add(ds)
            return ds

        pending_runs: list[tuple[Run, list, list]] = []

        def run(recipe, night, ifu, inputs, products, params=None):
            r = Run(recipe=recipe, parameters=params or {}, night=night, ifu=ifu, mode="WFM-NOAO-N",
                    status=RunStatus.SUCCEEDED.value, pipeline_version="muse-2.8.7", user_id=user.id,
                    privilege=int(privilege))
            s.add(r)
            unique = list({id(ds): (tag, ds) for tag, ds in inputs}.values())  # a dataset is one input once
            pending_runs.append((r, unique, products))
            return r

        def flush_runs():
            # Runs first (ids), then their products, inputs and notebooks: three batched flushes.
            s.flush()
            made = {}
            for r, inputs, products in pending_runs:
                for tag, ds in inputs:
                    s.add(RunInput(run_id=r.id, dataset_id=ds.id, tag=tag, reason=f"{tag} of {r.night}"))
                made[r.id] = [dataset(kind, cat, r.night, ifu, run_id=r.id) for kind, cat, ifu in products]
                nb = dataset(DatasetKind.NOTEBOOK, "NOTEBOOK", r.night, r.ifu, run_id=r.id, holds=())
                made[r.id].append(nb)
            s.flush()
            for r, _, _ in pending_runs:
                *prods, nb = made[r.id]
                r.notebook_id = nb.id
                out.runs.append(r.id)
                out.notebooks.append(nb.id)
                out.products.extend(p.id for p in prods)
            pending_runs.clear()
            return made

        cal, sci = DatasetKind.CALIBRATION, DatasetKind.SCIENCE
        static = {c: dataset(DatasetKind.STATIC, c) for c in STATIC}
        raw = {(n, t): [dataset(DatasetKind.RAW, t, n) for _ in range(k)]
               for n in nights for t, k in RAW_PER_NIGHT.items()}
        objects = {n: [dataset(DatasetKind.RAW, "OBJECT", n) for _ in range(exposures)] for n in nights}
        s.flush()
        out.static = [d.id for d in static.values()]
        out.raw = [d.id for v in raw.values() for d in v] + [d.id for v in objects.values() for d in v]

        def step(recipe, per_ifu_inputs, products, nights_=nights):
            runs_ = {(n, i): run(recipe, n, i, per_ifu_inputs(n, i), [(k, c, i) for k, c in products])
                     for n in nights_ for i in ifus}
            made = flush_runs()
            return {key: made[r.id] for key, r in runs_.items()}

        mb = step("muse_bias", lambda n, i: [("BIAS", d) for d in raw[n, "BIAS"]], [(cal, "MASTER_BIAS")])
        out.master_biases = {key: v[0].id for key, v in mb.items()}
        flat = step("muse_flat", lambda n, i: [("FLAT", d) for d in raw[n, "FLAT"]] + [("MASTER_BIAS", mb[n, i][0])],
                    [(cal, "MASTER_FLAT"), (cal, "TRACE_TABLE")])

        def calib(n, i):
            return [("MASTER_BIAS", mb[n, i][0]), ("MASTER_FLAT", flat[n, i][0]), ("TRACE_TABLE", flat[n, i][1])]

        wave = step("muse_wavecal", lambda n, i: [("ARC", d) for d in raw[n, "ARC"]] + calib(n, i)
                    + [("LINE_CATALOG", static["LINE_CATALOG"])], [(cal, "WAVECAL_TABLE")])

        def full(n, i):
            return calib(n, i) + [("WAVECAL_TABLE", wave[n, i][0]), ("GEOMETRY_TABLE", static["GEOMETRY_TABLE"])]

        twi_runs = {n: run("muse_twilight", n, None, [("SKYFLAT", d) for d in raw[n, "SKYFLAT"]]
                           + [x for i in ifus for x in full(n, i)], [(cal, "TWILIGHT_CUBE", None)]) for n in nights}
        made = flush_runs()
        twi = {n: made[r.id][0] for n, r in twi_runs.items()}
        pstd = step("muse_scibasic", lambda n, i: [("STD", raw[n, "STD"][0])] + full(n, i)
                    + [("TWILIGHT_CUBE", twi[n])], [(sci, "PIXTABLE_STD")])
        resp_runs = {n: run("muse_standard", n, None, [("PIXTABLE_STD", pstd[n, i][0]) for i in ifus]
                            + [("EXTINCT_TABLE", static["EXTINCT_TABLE"]),
                               ("STD_FLUX_TABLE", static["STD_FLUX_TABLE"])],
                            [(cal, "STD_RESPONSE", None)]) for n in nights}
        made = flush_runs()
        resp = {n: made[r.id][0] for n, r in resp_runs.items()}
        pix = {}
        for n in nights:
            for e, obj in enumerate(objects[n]):
                for i in ifus:
                    r = run("muse_scibasic", n, i, [("OBJECT", obj)] + full(n, i) + [("TWILIGHT_CUBE", twi[n])],
                            [(sci, "PIXTABLE_OBJECT", i)])
                    pix[n, e, i] = r
        made = flush_runs()
        cube_runs = {(n, e): run("muse_scipost", n, None, [("PIXTABLE_OBJECT", made[pix[n, e, i].id][0]) for i in ifus]
                                 + [("EXTINCT_TABLE", static["EXTINCT_TABLE"]), ("STD_RESPONSE", resp[n])],
                                 [(sci, "DATACUBE_FINAL", None)], {"save": "cube"})
                     for n in nights for e in range(exposures)}
        made = flush_runs()
        cubes = [made[r.id][0] for r in cube_runs.values()]
        out.exposure_cubes = [c.id for c in cubes]
        comb = run("muse_exp_combine", nights[-1], None, [("DATACUBE_FINAL", c) for c in cubes],
                   [(sci, "DATACUBE_FINAL", None)], {"pixfrac": 0.6})
        out.combined = flush_runs()[comb.id][0].id
    return out
