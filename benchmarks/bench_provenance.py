"""Provenance of a combined cube of 2 nights x 24 IFUs: the graph, its exports, the product page.

Writes the registry rows of a full reduction (:func:`musewise.archive.testdata.add_cascade`:
per night and IFU master bias, flat, wavelength solution, standard star and science pixel
tables; a twilight cube, a response and a cube per exposure; one combined cube), on
SQLite and PostgreSQL, then times, in the same run:

* ``Archive.provenance(cube)``, the graph (goal: under 0.5 s), against one
  recursive SQL query (``WITH RECURSIVE``) that only finds the ids of the same
  ancestors - the least any walk of the registry can do;
* the old tree expansion (one query per node, shared inputs repeated),
  reimplemented here as it was, on a small cascade (1 night x 2 IFUs), and the
  number of nodes the tree would have for the full cascade;
* the exports (text, PROV-JSON, PROV-N, SVG) and the web view's provenance
  section (graph + drawing + list), which the product page builds.

Usage::

    .venv/bin/python benchmarks/bench_provenance.py [--repeat 5] [--skip-postgres]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from functools import lru_cache
from pathlib import Path

from sqlalchemy import select, text

from musewise.archive import Archive
from musewise.archive.schema import Dataset, Run
from musewise.archive.testdata import add_cascade
from musewise.config import MusewiseConfig
from musewise.testing import TemporaryPostgres, postgres_bindir
from musewise.web.provenance import provenance_section

ANCESTORS_SQL = text("""
WITH RECURSIVE anc(id) AS (
    SELECT CAST(:root AS INTEGER)
  UNION
    SELECT ri.dataset_id FROM anc
    JOIN datasets d ON d.id = anc.id
    JOIN run_inputs ri ON ri.run_id = d.run_id
)
SELECT count(*) FROM anc
""")


def best(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times), out


def old_tree_walk(arch, dataset_id) -> int:
    """The provenance tree as musewise built it before the graph: one query per node, no memo.

    Returns the number of tree nodes.
    """
    from musewise.archive.privileges import visible_datasets, visible_runs

    user = arch.user
    with arch.session() as s:

        def node(did, depth=0):
            ds = s.scalar(select(Dataset).where(Dataset.id == did, visible_datasets(user)))
            if ds is None or ds.run_id is None or depth >= 25:
                return 1
            run = s.scalar(select(Run).where(Run.id == ds.run_id, visible_runs(user)))
            if run is None:
                return 1
            return 1 + sum(node(i.dataset_id, depth + 1) for i in run.inputs)

        return node(int(dataset_id))


def tree_size(graph) -> int:
    """Nodes the tree expansion would hold: each path from the product to an input is one node."""

    @lru_cache(maxsize=None)
    def size(did):
        run = graph.producer(did)
        if run is None or not run.visible:
            return 1
        return 1 + sum(size(d.id) for _, d in graph.inputs(run.id))

    return size(graph.root_id)


def bench(name: str, db_url: str, workdir: Path, repeat: int) -> None:
    arch = Archive(MusewiseConfig.load(root=str(workdir / name), db_url=db_url, user="bench"), user="bench")
    t = time.perf_counter()
    c = add_cascade(arch, nights=("2026-11-20", "2026-11-21"))
    print(f"\n[{name}] cascade of 2 nights x 24 IFUs: {c.n_datasets} datasets, {len(c.runs)} runs "
          f"(+{len(c.notebooks)} notebooks) written in {time.perf_counter() - t:.1f} s")
    t_graph, med_graph, graph = best(lambda: arch.provenance(c.combined), repeat)
    with arch.engine.connect() as conn:
        t_cte, med_cte, n_cte = best(lambda: conn.execute(ANCESTORS_SQL, {"root": c.combined}).scalar(), repeat)
    assert n_cte == len(graph.datasets), (n_cte, len(graph.datasets))
    print(f"  provenance graph of the combined cube: {t_graph * 1000:7.1f} ms (median {med_graph * 1000:.1f})  "
          f"{len(graph.datasets)} datasets + {len(graph.runs)} runs, {len(graph.used)} used edges   "
          f"goal < 500 ms: {'yes' if t_graph < 0.5 else 'NO'}")
    print(f"  recursive SQL of the same ancestor ids (baseline): {t_cte * 1000:6.1f} ms "
          f"(median {med_cte * 1000:.1f})")
    print(f"  ratio graph / recursive SQL: {t_graph / t_cte:.1f}")
    print(f"  the old tree would hold {tree_size(graph):,} nodes for the same cube")

    small = add_cascade(arch, nights=("2026-12-01",), ifus=(1, 2))
    t_small_graph, _, small_graph = best(lambda: arch.provenance(small.combined), repeat)
    t_tree, _, n_tree = best(lambda: old_tree_walk(arch, small.combined), 1)
    print(f"  small cascade (1 night x 2 IFUs): old tree walk {t_tree * 1000:.0f} ms for {n_tree:,} tree nodes; "
          f"graph {t_small_graph * 1000:.1f} ms for {len(small_graph.datasets) + len(small_graph.runs)} nodes; "
          f"ratio tree / graph {t_tree / t_small_graph:.0f}")

    for label, fn in (("to_text", graph.to_text), ("to_prov_json", graph.to_prov_json),
                      ("to_provn", graph.to_provn), ("to_svg (condensed)", graph.to_svg)):
        t_exp, _, out = best(fn, repeat)
        print(f"  {label:<20s} {t_exp * 1000:7.1f} ms  ({len(out) / 1e3:.0f} kB)")
    t_page, _, html = best(lambda: provenance_section(arch, c.combined, lambda p: "/services/archive/" + p),
                           repeat)
    print(f"  web provenance section (graph + drawing + list): {t_page * 1000:.1f} ms ({len(html) / 1e3:.0f} kB)   "
          f"goal < 1 s: {'yes' if t_page < 1 else 'NO'}")
    arch.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="timings per measure (the best is printed)")
    ap.add_argument("--skip-postgres", action="store_true")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mwbench-prov-"))
    try:
        bench("sqlite", f"sqlite:///{workdir / 'archive.sqlite'}", workdir, args.repeat)
        if not args.skip_postgres and postgres_bindir() is not None:
            with TemporaryPostgres() as pg:
                bench("postgresql", pg.create_database(), workdir, args.repeat)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
