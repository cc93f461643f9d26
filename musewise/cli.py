"""The ``musewise`` command line.

Sub-commands: ``simulate``, ``ingest``, ``ls``, ``query``, ``show``, ``provenance``,
``validity``, ``user``, ``project``, ``fsck``, and those the other layers add:
``run``, ``make``, ``runs``, ``qc``, ``release``, ``hub``. Every sub-command is always
listed; one that needs an optional package (``hub``: the ``hub`` extra) says
how to install it when it is used (:func:`musewise.optional.require`).
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import sys

from . import __version__
from .exceptions import ConfigurationError, MusewiseError

#: Layers that add their own sub-commands: (module, function adding the parser).
PLUGINS = (
    ("musewise.dpu.cli", "add_run_parser"),
    ("musewise.dpu.runs_cli", "add_runs_parser"),
    ("musewise.qc.cli", "add_qc_parser"),
    ("musewise.release", "add_release_parser"),
    ("musewise.hubcli", "add_hub_parser"),
)


def _archive(args):
    from .archive import Archive

    return Archive.from_cli(args)


def add_filters(p: argparse.ArgumentParser) -> None:
    """Dataset filters shared by ``ls`` and ``query``."""
    p.add_argument("--type", "-t", dest="category", action="append",
                   help="frame type or product category (BIAS, OBJECT, MASTER_FLAT, DATACUBE_FINAL...); repeatable")
    p.add_argument("--kind", choices=["raw", "static", "calibration", "science", "notebook", "auxiliary"])
    p.add_argument("--night", help="observing night YYYY-MM-DD")
    p.add_argument("--from", dest="date_from", help="first night YYYY-MM-DD")
    p.add_argument("--to", dest="date_to", help="last night YYYY-MM-DD")
    p.add_argument("--ifu", type=int, help="IFU 1-24")
    valid = p.add_mutually_exclusive_group()
    valid.add_argument("--valid", dest="valid", action="store_const", const=True, help="only valid data")
    valid.add_argument("--invalid", dest="valid", action="store_const", const=False, help="only data with an invalid IFU")
    p.add_argument("--project")
    p.add_argument("--mode", help="instrument mode, e.g. WFM-NOAO-N")
    p.add_argument("--run", dest="run_id", type=int, help="products of one run")
    p.add_argument("--limit", type=int)
    p.add_argument("--order-by", default="date_obs")


def _filters(args) -> dict:
    keys = ("category", "kind", "night", "date_from", "date_to", "ifu", "valid", "project", "mode", "run_id")
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


def _ifus(text: str) -> tuple[int, ...]:
    if text == "all":
        return tuple(range(1, 25))
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise ConfigurationError(f"--ifus must be comma-separated numbers or 'all', got {text!r}") from None


def cmd_simulate(args):
    outdir = args.out or args.outdir
    if outdir is None:
        raise ConfigurationError("give the output folder (OUTDIR or --out)")
    if args.programme:
        from .inm import simulate_programme

        if args.spoil:
            raise ConfigurationError("--spoil applies to one simulated night, not to --programme")

        nights = simulate_programme(outdir, args.programme, ifus=_ifus(args.ifus), mode=args.mode,
                                    seed=args.seed, progress=True)
        for night, paths in nights.items():
            print(f"{night}: wrote {len(paths)} files to {outdir}/{night}")
        return
    from .inm import simulate_night

    from .inm.spoil import as_spoils

    spoils = as_spoils(args.spoil)  # refused before any frame is written
    paths = simulate_night(outdir, night=args.night, ifus=_ifus(args.ifus), n_object=args.n_object,
                           mode=args.mode, seed=args.seed or 0, progress=True, spoils=spoils)
    print(f"wrote {len(paths)} files to {outdir}" + "".join(f"; spoiled: {sp.describe()}" for sp in spoils))


def cmd_ingest(args):
    from .vocabulary import Privilege

    arch = _archive(args)
    report = arch.ingest_many(args.paths, privilege=Privilege[args.privilege.upper()], project=args.project,
                              progress=not args.quiet)
    for path, reason in report.refused:
        print(f"refused: {path}: {reason}", file=sys.stderr)
    print(report.summary())
    return 1 if report.refused and not (report.ingested or report.duplicates) else 0


LS_COLUMNS = ("id", "category", "night", "ifu", "mode", "exptime", "object", "valid", "owner", "privilege", "filename")


def _row(rec) -> dict:
    ifus = ",".join(str(s.ifu) for s in rec.ifus)
    return {
        "id": rec.id, "kind": rec.kind, "category": rec.category, "night": rec.night or "",
        "date_obs": rec.date_obs.isoformat(timespec="seconds") if rec.date_obs else "",
        "ifu": rec.ifu if rec.ifu else ifus, "mode": rec.mode or "", "exptime": rec.exptime,
        "object": rec.object or "", "valid": "yes" if rec.is_valid else "NO", "owner": rec.owner,
        "project": rec.project or "", "privilege": rec.privilege.name.lower(), "run_id": rec.run_id or "",
        "size": rec.size, "sha256": rec.sha256, "filename": rec.filename,
    }


def print_table(rows: list[dict], columns) -> None:
    """Print rows as an aligned text table."""
    if not rows:
        print("(nothing found)")
        return
    cells = [[str(r.get(c, "")) if r.get(c) is not None else "" for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def cmd_ls(args):
    arch = _archive(args)
    recs = arch.query(order_by=args.order_by, limit=args.limit, **_filters(args))
    print_table([_row(r) for r in recs], LS_COLUMNS)
    total = arch.count(**_filters(args))
    print(f"{len(recs)} of {total} datasets")


def cmd_query(args):
    arch = _archive(args)
    if args.sql:
        from .web.sqlpage import run_readonly_sql

        columns, rows = run_readonly_sql(arch, args.sql, limit=args.limit or 1000)
        rows = [dict(zip(columns, r)) for r in rows]
    else:
        rows = [_row(r) for r in arch.query(order_by=args.order_by, limit=args.limit, **_filters(args))]
        columns = args.columns.split(",") if args.columns else list(rows[0]) if rows else list(LS_COLUMNS)
    if args.format == "json":
        json.dump(rows, sys.stdout, indent=1, default=str)
        print()
    elif args.format == "csv":
        w = csv.DictWriter(sys.stdout, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    elif args.format == "ids":
        print("\n".join(str(r["id"]) for r in rows))
    else:
        print_table(rows, columns)


def cmd_show(args):
    arch = _archive(args)
    rec = arch.get(args.id)
    for k, v in _row(rec).items():
        print(f"{k:>10}: {v}")
    print("      IFUs:")
    for s in rec.ifus:
        who = f" by {s.updated_by} at {s.updated:%Y-%m-%d %H:%M}" if s.updated_by else ""
        print(f"            {s.ifu:2d} {'valid' if s.is_valid else 'INVALID':8s} {s.flag:10s} {s.comment}{who}")
    if args.header:
        for k, v in rec.header.items():
            print(f"    {k} = {v}")


#: ``musewise provenance --format``: how each format renders a ProvenanceGraph.
PROVENANCE_FORMATS = {
    "text": lambda g: g.to_text(),
    "json": lambda g: json.dumps(g.to_dict(), indent=1, default=str),
    "prov-json": lambda g: g.to_prov_json(indent=1),
    "provn": lambda g: g.to_provn(),
    "dot": lambda g: g.to_dot(max_drawn=None),
}


def cmd_provenance(args):
    arch = _archive(args)
    graph = arch.provenance(args.id)
    fmt = "json" if args.json else args.format
    print(PROVENANCE_FORMATS[fmt](graph).rstrip("\n"))


def cmd_validity(args):
    arch = _archive(args)
    rec = arch.set_validity(args.id, args.ifu, is_valid=args.valid, flag=args.flag, comment=args.comment or "")
    print(f"dataset {rec.id}: " + ", ".join(f"IFU {s.ifu} {'valid' if s.is_valid else 'INVALID'} {s.flag}" for s in rec.ifus))


def cmd_user(args):
    arch = _archive(args)
    if args.action == "add":
        arch.add_user(args.name, admin=args.admin, member=not args.outside, projects=args.project or [])
        print(f"added user {args.name}")
    elif args.action == "groups":
        from .archive.filemodes import sync_unix_groups

        for group, names in sync_unix_groups(arch).items():
            print(f"{group}: added {', '.join(names) or 'nobody'}")
        print(f"set the modes of {arch.protect_files()} stored files")
    else:
        print_table([{**u, "projects": ",".join(f"{p}:{r}" for p, r in u["projects"].items())} for u in arch.users()],
                    ("name", "is_admin", "is_member", "projects"))


def cmd_project(args):
    arch = _archive(args)
    if args.action == "add":
        arch.add_project(args.name, args.description or "")
        print(f"added project {args.name}")
    else:
        if not args.member:
            raise ConfigurationError("say which user with --member")
        arch.add_member(args.member, args.name, args.role)
        print(f"{args.member} is {args.role} of {args.name}")


def cmd_fsck(args):
    arch = _archive(args)
    report = arch.fsck(verify_checksums=args.checksums, repair=args.repair, min_age=args.older_than)
    bad = 0
    for key, paths in report.items():
        print(f"{key}: {len(paths)}")
        for p in paths:
            print(f"    {p}")
        bad += len(paths) if key in ("missing", "corrupt") else 0
    return 1 if bad else 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``musewise`` (with the sub-commands of every installed layer)."""
    p = argparse.ArgumentParser(prog="musewise", description="MUSE data management: archive, reductions, QC.")
    p.add_argument("--version", action="version", version=f"musewise {__version__}")
    p.add_argument("--root", help="data root (default $MUSEWISE_ROOT or ~/musewise-data)")
    p.add_argument("--db-url", help="archive database URL (default SQLite in the data root)")
    p.add_argument("--user", help="act as this archive user (default $MUSEWISE_USER or login name; "
                                   "only root, the archive's service account and the owner of the archive "
                                   "may name another user than their own unix account)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("simulate", help="write a simulated MUSE night or observing programme "
                                        "(raw frames + static calibrations)")
    s.add_argument("outdir", nargs="?", help="output folder (or --out)")
    s.add_argument("--out", help="output folder")
    s.add_argument("--programme", metavar="NAME_OR_FILE",
                   help="simulate an observing programme over several nights: a built-in name "
                        "(deep-field, deep-field-4pa) or a YAML/JSON file (format: "
                        "musewise.inm.programme); writes OUT/<night>/ for each night")
    s.add_argument("--night", default="2026-11-20", help="the night to simulate (without --programme)")
    s.add_argument("--ifus", default="1,2", help="comma-separated IFUs or 'all'")
    s.add_argument("--n-object", type=int, default=2, help="science exposures (without --programme)")
    s.add_argument("--mode", default="WFM-NOAO-N")
    s.add_argument("--seed", type=int, default=None,
                   help="seed (default 0, or the programme's own)")
    s.add_argument("--spoil", action="append", metavar="KIND:IFU[:AMOUNT]",
                   help="spoil frames on purpose, to test QC (repeatable; without --programme): "
                        "lamp_off:IFU[:LEVEL] (flats, lamp scaled to LEVEL, default 0.02), "
                        "hot_column:IFU[:E] (biases, E electrons per pixel in column 1000, default 400), "
                        "arc_shift:IFU[:PIX] (arcs moved PIX pixels along the dispersion, default 3)")
    s.set_defaults(func=cmd_simulate)

    s = sub.add_parser("ingest", help="archive raw frames and static calibrations (files or folders)")
    s.add_argument("paths", nargs="+")
    s.add_argument("--privilege", default="consortium", choices=["private", "project", "consortium", "public"])
    s.add_argument("--project")
    s.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_ingest)

    s = sub.add_parser("ls", help="list datasets")
    add_filters(s)
    s.set_defaults(func=cmd_ls)

    s = sub.add_parser("query", help="search datasets; output as table, json, csv or ids")
    add_filters(s)
    s.add_argument("--format", choices=["table", "json", "csv", "ids"], default="table")
    s.add_argument("--columns", help="comma-separated columns")
    s.add_argument("--sql", help="a read-only SQL SELECT over the datasets you may see")
    s.set_defaults(func=cmd_query)

    s = sub.add_parser("show", help="one dataset: metadata, per-IFU validity, header")
    s.add_argument("id", type=int)
    s.add_argument("--header", action="store_true")
    s.set_defaults(func=cmd_show)

    s = sub.add_parser("provenance", help="the reduction history of a dataset")
    s.add_argument("id", type=int)
    s.add_argument("--format", choices=list(PROVENANCE_FORMATS), default="text",
                   help="text (readable, each dataset once), json (musewise's graph), prov-json or provn "
                        "(W3C PROV), dot (Graphviz, every node: `| dot -Tsvg > p.svg`)")
    s.add_argument("--json", action="store_true", help="same as --format json")
    s.set_defaults(func=cmd_provenance)

    s = sub.add_parser("validity", help="mark a dataset's IFU valid/invalid and set its quality flag")
    s.add_argument("id", type=int)
    s.add_argument("--ifu", type=int)
    g = s.add_mutually_exclusive_group()
    g.add_argument("--valid", dest="valid", action="store_const", const=True)
    g.add_argument("--invalid", dest="valid", action="store_const", const=False)
    s.add_argument("--flag", choices=["unchecked", "good", "warning", "bad"])
    s.add_argument("--comment", "-m")
    s.set_defaults(func=cmd_validity)

    s = sub.add_parser("user", help="list or add archive users (on PostgreSQL, add also makes their database "
                                    "role); groups: make the unix groups of the consortium and projects (root)")
    s.add_argument("action", choices=["list", "add", "groups"])
    s.add_argument("name", nargs="?")
    s.add_argument("--admin", action="store_true")
    s.add_argument("--outside", action="store_true", help="not a consortium member: public data only")
    s.add_argument("--project", action="append")
    s.set_defaults(func=cmd_user)

    s = sub.add_parser("project", help="add a project or a member")
    s.add_argument("action", choices=["add", "member"])
    s.add_argument("name")
    s.add_argument("--description")
    s.add_argument("--member", metavar="USER", help="the user to add to the project")
    s.add_argument("--role", default="member", choices=["member", "reviewer", "manager"])
    s.set_defaults(func=cmd_project)

    s = sub.add_parser("fsck", help="check the registry against the datastore")
    s.add_argument("--checksums", action="store_true", help="also re-read every file and check its sha256")
    s.add_argument("--repair", action="store_true",
                   help="remove orphans and temporaries left by killed ingests and runs (administrators)")
    s.add_argument("--older-than", type=float, default=3600.0, metavar="SECONDS",
                   help="with --repair, remove only leftovers unchanged for this long (default 3600): "
                        "younger ones may be still being written")
    s.set_defaults(func=cmd_fsck)

    for module, func in PLUGINS:
        # Part of musewise, so always importable: an ImportError here is a bug to see,
        # not a layer to hide. Optional packages are imported by the sub-command itself.
        getattr(importlib.import_module(module), func)(sub)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "user", None):
            # --user is a request, granted only to trusted processes (musewise.identity).
            from .config import MusewiseConfig

            config = MusewiseConfig.load(root=args.root, db_url=args.db_url)
            args.user = config.acting_user(args.user)
        return args.func(args) or 0
    except MusewiseError as exc:
        print(f"musewise: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("musewise: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
