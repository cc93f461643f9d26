"""``make demo``: a simulated MUSE night from raw frames to a cube with its full history, then the hub.

Steps, each printed as it happens:

1. the instrument model writes a night of raw frames (calibrations, a standard
   star, science exposures) and the static calibrations;
2. the archive ingests them (checksummed, atomically) and says what it holds;
3. the reduction cascade bias -> flat -> wavecal -> lsf -> twilight -> scibasic (science
   and standard star) -> standard -> field_grid (the field's common grid, from the
   exposures' pointings) -> scipost (flux calibration from the night's standard, sky
   subtraction with the pipeline's sky model, each exposure resampled onto the field's
   grid) -> combine_cubes (the exposures combined, sigma-clipped) runs through the
   template notebooks and the real ESO MUSE pipeline on Dask;
4. the provenance graph of the combined cube is printed (each dataset and run once) and
   written as W3C PROV-JSON and a Graphviz drawing beside the archive;
5. the shared JupyterHub starts on 127.0.0.1:8000 and its address and demo
   logins are printed (Ctrl-C stops it).

Usage: ``python -m musewise.demo --root demo --ifus 2`` (``--ifus 24`` for a full night).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

DEMO_USERS = {"alice": {"consortium": "reviewer"}, "bob": {"consortium": "member"}, "carol": {}}
#: The demo archive's administrator, who ingests and reduces the night.
DEMO_ADMIN = "admin"


def write_demo_config(root: Path) -> Path:
    """Make the demo's administrator the default user of ``musewise --root <root> ...``.

    The demo archive is the person's own sandbox: the commands it prints should work
    as printed, whoever is logged in (``--user`` or ``$MUSEWISE_USER`` still choose
    another user, and hub users act as themselves). An existing file is left alone.
    """
    cfg = root / "musewise_config.py"
    if not cfg.exists():
        root.mkdir(parents=True, exist_ok=True)
        cfg.write_text("# Written by `make demo`: musewise commands on this data root act as the demo's\n"
                       "# administrator unless --user or $MUSEWISE_USER says otherwise.\n"
                       f"c.MusewiseConfig.user = {DEMO_ADMIN!r}\n")
    return cfg


def fit_disk(arch, root: Path, night: str, ifus, copies_of_largest_run: int = 0) -> bool:
    """Save less where the disk cannot hold the night's default products; True if it had to.

    Plans the demo's reduction (:func:`musewise.dpu.demo_target`) and compares what its runs
    would archive (``Plan.disk``), plus ``copies_of_largest_run`` times its largest run's
    products (what a benchmark's shell replay writes beside the archive), with the free
    space of the data root. When only the lean products
    (:data:`musewise.dpu.config.LEAN_PARAMETERS`: no reduced pixel tables, no pre-reduced
    CCD images) fit, they are written into the data root's config file, so that
    every later run on this archive (the demo run again, the hub's users) saves the same.
    When not even those fit, the reduction refuses before it starts
    (:class:`~musewise.exceptions.DiskSpaceError`).
    """
    from .dpu import demo_target, plan
    from .dpu.config import DpuConfig
    from .dpu.diskneed import fits, free_bytes

    free = free_bytes(str(root))
    step, kw = demo_target(arch, night)
    need = plan(step, ifus=list(ifus), archive=arch, commit=True, **kw).disk
    beside = copies_of_largest_run * need.largest_run
    if fits(need, str(root), beside):
        if need.total:
            print(f"disk: the reduction archives {need.summary()}; {free / 1e9:.1f} GB free")
        return False
    lean = DpuConfig.from_config(arch.config).lean_parameters()
    cfg = root / "musewise_config.py"
    with open(cfg, "a") as fh:
        fh.write(f"\n# Written by musewise.demo.fit_disk (`make demo`): the night's default products need\n"
                 f"# {need.total / 1e9:.1f} GB and {free / 1e9:.1f} GB were free, so this archive saves less\n"
                 "# (musewise.dpu.config.LEAN_PARAMETERS: no reduced pixel tables, no pre-reduced CCD images).\n"
                 f"c.DpuConfig.default_parameters = {lean!r}\n")
    conf = arch.config.config
    conf.DpuConfig.default_parameters = lean
    arch.config.config = conf
    after = plan(step, ifus=list(ifus), archive=arch, commit=True, **kw).disk
    room = f" (and {beside / 1e9:.1f} GB kept for what is written beside them)" if beside else ""
    print(f"disk: the default products need {need.summary()}{room}, more than the {free / 1e9:.1f} GB free; "
          f"saving less instead ({cfg.name}: no reduced pixel tables, no pre-reduced CCD images): "
          f"{after.summary()}", flush=True)
    return True


def start_hub_database(root: Path) -> bool:
    """Start the hub's own PostgreSQL when an earlier ``make demo`` left the archive in it.

    Once the demo's hub has started, the data root's archive is the hub's PostgreSQL
    (:mod:`musewise.hubdb`), which stops with the hub: running the demo again starts it, so
    that the reduction goes on where it stopped. True if it was started here.
    """
    from . import hubdb
    from .archive.pgserver import PostgresServer, start_site_database
    from .config import MusewiseConfig

    if not hubdb.is_managed(MusewiseConfig.load(root=str(root)).db_url, root):
        return False
    if PostgresServer(hubdb.server_dir(root)).running():
        return False
    start_site_database(root)
    print(f"archive database: the hub's PostgreSQL in {hubdb.server_dir(root)}, started again", flush=True)
    return True


def musewise_command() -> str:
    """How to type the ``musewise`` command of this environment in the user's shell.

    ``musewise`` if it is on ``$PATH`` (an activated virtualenv), else the path of
    the virtualenv's console script (``.venv/bin/musewise`` after ``make demo``).
    """
    script = Path(sys.executable).parent / "musewise"
    found = shutil.which("musewise")
    if found and Path(found).resolve() == script.resolve():
        return "musewise"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def describe_archive(arch) -> None:
    """Print what the archive holds, by kind and category, with per-IFU validity."""
    recs = arch.query(order_by="id")
    by = Counter((r.kind, r.category) for r in recs)
    size = sum(r.size for r in recs)
    print(f"{len(recs)} datasets, {size / 1e9:.2f} GB")
    for (kind, cat), n in sorted(by.items()):
        invalid = sum(1 for r in recs if r.category == cat and not r.is_valid)
        print(f"  {kind:12s} {cat:20s} {n:4d}" + (f"   ({invalid} with an invalid IFU)" if invalid else ""))


def archived_ifus(arch, night: str) -> set[int]:
    """IFUs of which the archive holds the night's raw science exposures (empty if none)."""
    held = set()
    for rec in arch.query(kind="raw", night=night, category="OBJECT"):
        held.update(state.ifu for state in rec.ifus)
    return held


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default="demo", help="data root of the demo archive")
    ap.add_argument("--ifus", default="2", help="number of IFUs (1-24) or a comma-separated list")
    ap.add_argument("--night", default="2026-11-20")
    ap.add_argument("--exposures", type=int, default=2, help="science exposures of the night")
    ap.add_argument("--no-hub", action="store_true", help="stop after the reduction")
    args = ap.parse_args(argv)
    ifus = (tuple(int(x) for x in args.ifus.split(",")) if "," in args.ifus
            else tuple(range(1, int(args.ifus) + 1)))
    root = Path(args.root).resolve()
    write_demo_config(root)
    started_db = start_hub_database(root)
    try:
        return _run(args, root, ifus)
    finally:
        if started_db:  # the hub, if it ran, stopped it already
            from . import hubdb

            hubdb.stop(root)


def release_cube(arch, night: str, cube_id: int) -> None:
    """Freeze the field's cube as release ``DEMO-<night>`` (version: the cube's ID), for VO clients.

    The demo's products are consortium data, so the hub's VO service shows the release to
    hub users with a token (``/hub/token``), not to anonymous clients. Running the demo again
    keeps an existing release; a cube that may not be released is said, not fatal.
    """
    from .exceptions import DuplicateError, MusewiseError
    from .release import create_release

    banner(f"5. the field's cube as data release DEMO-{night} {cube_id}")
    try:
        rel = create_release(arch, f"DEMO-{night}", str(cube_id), [cube_id],
                             f"musewise demo: the combined cube of the simulated night {night}")
        print(f"release {rel.label}: {rel.n_products} product, {rel.total_bytes / 1e9:.2f} GB")
    except DuplicateError:
        print(f"release DEMO-{night} {cube_id} exists already")
    except MusewiseError as exc:
        print(f"not released: {exc}")
        return
    print("  VO clients (with a hub token, consortium data): pyvo.dal.TAPService("
          "'http://127.0.0.1:8000/services/vo/tap', session=<requests.Session with Authorization: token ...>)")


def _run(args, root: Path, ifus) -> int:
    from .archive import Archive
    from .exceptions import DiskSpaceError, DuplicateError, ReductionFailed
    from .inm import simulate_night

    t0 = time.time()
    arch = Archive.open(user=DEMO_ADMIN, root=str(root))
    held = archived_ifus(arch, args.night)
    if set(ifus) <= held:
        # Running the demo again goes on with the reduction: simulating the night again
        # would write the same frames (15 GB at 24 IFUs) only for ingest to refuse them.
        banner(f"1-2. the archive already holds the raw frames of {args.night} for IFUs "
               f"{','.join(map(str, ifus))}: not simulating them again")
    else:
        banner(f"1. simulating the night of {args.night}, IFUs {','.join(map(str, ifus))}")
        incoming = root / "incoming" / args.night
        raw = simulate_night(incoming, night=args.night, ifus=ifus, n_object=args.exposures, seed=0,
                             progress=True)
        print(f"wrote {len(raw)} raw frames and the static calibrations to {incoming}")

        banner("2. ingesting into the archive")
        for name, projects in DEMO_USERS.items():
            try:
                arch.add_user(name, projects=projects)
            except DuplicateError:
                pass
        # The simulated frames are scratch: moved into the datastore, not copied (half the disk).
        report = arch.ingest_many([incoming], progress=True, move=True)
        print(report.summary())
        for path, reason in report.refused:
            print(f"  refused {path}: {reason}")
    describe_archive(arch)
    # The instrument model's stars and fluxes, written beside the raw frames (and left
    # there by the ingest, which moves FITS files only): the QC of the cubes measures
    # the brightest star it covers against them.
    from .inm.truth import CATALOGUE_NAME

    catalogue = root / "incoming" / args.night / CATALOGUE_NAME
    if catalogue.is_file():
        cfg = arch.config.config
        cfg.QCConfig.star_catalogue = str(catalogue)
        arch.config.config = cfg

    banner("3. reducing the night with the ESO MUSE pipeline (notebooks on Dask)")
    from . import dpu

    try:
        fit_disk(arch, root, args.night, ifus)
        cube_id = dpu.demo_cascade(arch, args.night, ifus, commit=True)
    except DiskSpaceError as exc:
        print(f"\nthe reduction did not start: {exc}", file=sys.stderr)
        return 1
    except ReductionFailed as exc:
        # Recorded in the archive with its reason; what succeeded is kept, and running the
        # demo again picks up from there.
        print(f"\nthe reduction stopped: {exc}\nThe failed run is archived with its notebook and log; "
              "what succeeded is kept, and running the demo again goes on from there.", file=sys.stderr)
        describe_archive(arch)
        return 1
    describe_archive(arch)

    banner(f"4. provenance of the field's cube (dataset {cube_id})")
    graph = arch.provenance(cube_id)
    print(graph.to_text())
    (root / f"provenance-{cube_id}.prov.json").write_text(graph.to_prov_json(indent=1))
    (root / f"provenance-{cube_id}.svg").write_text(graph.to_svg())
    print(f"\nW3C PROV-JSON: {root / f'provenance-{cube_id}.prov.json'}; drawing: {root / f'provenance-{cube_id}.svg'}")
    print(f"\nreduced in {time.time() - t0:.0f} s; archive in {root}")
    mw = musewise_command()
    print(f"  look at it: {mw} --root {root} ls --kind science ; {mw} --root {root} provenance {cube_id}")

    release_cube(arch, args.night, cube_id)
    if args.no_hub:
        return 0
    banner("6. starting the shared JupyterHub")
    from .cli import main as cli_main

    return cli_main(["--root", str(root), "hub"])


if __name__ == "__main__":
    sys.exit(main())
