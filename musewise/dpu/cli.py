"""Command-line pieces of the reduction layer, wired into ``musewise`` by :mod:`musewise.cli`.

::

    musewise run bias --date 2026-11-20 --ifu 1 [--commit] [-p combine=median]
    musewise run scipost --date 2026-11-20 --commit -p crsigma=20
    musewise make scipost --date 2026-11-20 --ifu 1 --ifu 2 [--execute]
    musewise make exp_combine --target SIM-DEEP-FIELD [--execute]
"""

from __future__ import annotations

import argparse


def _kv(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    k, v = text.split("=", 1)
    return k.strip(), v.strip()


def _common(p):
    p.add_argument("--date", help="observing night YYYY-MM-DD (required unless --target is given)")
    p.add_argument("--target", metavar="OBJECT",
                   help="a target (the OBJECT of its science frames): every night it was observed in, "
                        "its exposures only; exp_combine takes the exposures of all its nights")
    p.add_argument("--ifu", type=int, action="append", metavar="N",
                   help="IFU to reduce (1-24; repeat for several; default: all of the night)")
    p.add_argument("--commit", action="store_true",
                   help="publish the products to the project (default: private trial products)")
    p.add_argument("-p", "--param", type=_kv, action="append", default=[], metavar="KEY=VALUE",
                   help="recipe parameter (repeatable), e.g. -p crsigma=20")
    p.add_argument("--engine", choices=("auto", "local", "dask"), help="where runs execute")
    p.add_argument("--user", default=argparse.SUPPRESS, help="archive user (default: the configured user)")


def add_run_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``run`` (and ``make``) to the ``musewise`` sub-commands; returns the ``run`` parser."""
    p = subparsers.add_parser(
        "run", help="reduce one step of a night (every IFU in parallel), recorded with lineage",
        description="Select the night's frames and the best calibrations from the archive, run "
        "the recipe's notebook for each IFU, archive products, notebook and provenance.")
    p.add_argument("recipe", help="step or recipe: bias, dark, flat, wavecal, lsf, twilight, "
                   "scibasic, scipost, standard, exp_combine (or muse_<name>, or a Python recipe)")
    _common(p)
    p.add_argument("--dry-run", action="store_true", help="only show the runs and their inputs")
    p.set_defaults(func=handle_run)

    m = subparsers.add_parser(
        "make", help="plan (and with --execute run) what a step needs for a night or a target, "
                     "reusing current products",
        description="Print the runs a step needs, each with why (missing, out of date...); with "
        "--target, across every night the target was observed in, calibrations of a night "
        "without its own taken from nearby nights. --execute builds them.")
    m.add_argument("step", help="the step to make, e.g. scipost or exp_combine")
    _common(m)
    m.add_argument("--execute", action="store_true", help="execute the plan (default: only print it)")
    m.set_defaults(func=handle_make)
    return p


def _archive(args):
    from ..archive import Archive

    return Archive.from_cli(args)


def _need_date(args) -> bool:
    if args.date is None and not args.target:
        print("error: say which night (--date YYYY-MM-DD) or which target (--target OBJECT)")
        return False
    return True


def handle_run(args) -> int:
    """Handler of ``musewise run``; returns the exit status."""
    from . import run
    from ..exceptions import ReductionFailed

    if not _need_date(args):
        return 2
    arch = _archive(args)
    try:
        outcomes = run(args.recipe, date=args.date, ifu=args.ifu, commit=args.commit,
                       p=dict(args.param), archive=arch, dry_run=args.dry_run, engine=args.engine,
                       target=args.target)
    except ReductionFailed as exc:
        outcomes = exc.outcomes
        _print(outcomes)
        print(f"error: {exc}")
        return 1
    if not args.dry_run:
        _print(outcomes)
    return 0


def handle_make(args) -> int:
    """Handler of ``musewise make``."""
    from ..exceptions import ReductionFailed
    from .planner import make

    if not _need_date(args):
        return 2
    arch = _archive(args)
    try:
        make(args.step, args.date, args.ifu, dry_run=not args.execute, commit=args.commit,
             archive=arch, p=dict(args.param), engine=args.engine, target=args.target)
    except ReductionFailed as exc:
        _print(exc.outcomes)
        print(f"error: {exc}")
        return 1
    return 0


def _print(outcomes) -> None:
    for o in outcomes:
        prods = ", ".join(f"#{i}" for i in o.products) or "-"
        print(f"run {o.run_id:>5} {o.label:<32} {o.status:<9} {o.seconds:6.1f} s  products {prods}"
              f"  notebook #{o.notebook_id}")
        if o.error:
            print("    " + o.error.splitlines()[0])


__all__ = ["add_run_parser", "handle_make", "handle_run"]
