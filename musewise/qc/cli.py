"""``musewise qc``: run QC notebooks and do the review work from the command line.

``musewise qc run ID``, ``musewise qc queue``, ``musewise qc claim ID``,
``musewise qc unclaim ID``, ``musewise qc review ID --valid|--invalid --flag F -m TEXT``,
``musewise qc history ID``.
"""

from __future__ import annotations

import argparse


def _archive(args):
    from ..archive import Archive

    return Archive.from_cli(args)


def add_qc_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``qc`` and its sub-commands to the ``musewise`` parser."""
    p = subparsers.add_parser("qc", help="quality control: run QC notebooks, review queue, claims, verdicts")
    sub = p.add_subparsers(dest="qc_command", required=True)
    s = sub.add_parser("run", help="run the QC notebook of products and flag those crossing a limit")
    s.add_argument("ids", type=int, nargs="+", metavar="ID")
    s.set_defaults(func=handle_run)
    s = sub.add_parser("queue", help="products awaiting review")
    s.add_argument("--type", "-t", dest="category", action="append", help="product category; repeatable")
    s.add_argument("--night")
    s.add_argument("--mine", action="store_true", help="only products you may review")
    s.add_argument("--limit", type=int)
    s.set_defaults(func=handle_queue)
    s = sub.add_parser("claim", help="claim a product for review")
    s.add_argument("id", type=int)
    s.add_argument("--minutes", type=float, help="claim duration (default: QCConfig.claim_minutes)")
    s.set_defaults(func=handle_claim)
    s = sub.add_parser("unclaim", help="give up a claim")
    s.add_argument("id", type=int)
    s.set_defaults(func=handle_unclaim)
    s = sub.add_parser("review", help="give a verdict: validity, flag and comment")
    s.add_argument("id", type=int)
    s.add_argument("--ifu", type=int, help="IFU (default: all IFUs of the product)")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--valid", dest="valid", action="store_const", const=True)
    g.add_argument("--invalid", dest="valid", action="store_const", const=False)
    s.add_argument("--flag", required=True, choices=["good", "warning", "bad"])
    s.add_argument("--comment", "-m", required=True)
    s.set_defaults(func=handle_review)
    s = sub.add_parser("history", help="audit trail of a product's review")
    s.add_argument("id", type=int)
    s.set_defaults(func=handle_history)
    return p


def handle_run(args) -> int:
    """Exit status 0 when every product passes or only warns, 1 when one is bad, 2 when a QC run failed."""
    import sys

    from ..exceptions import QCError
    from .runner import run_qc_many

    worst = 0
    # Several products run in parallel on the reduction engine (DpuConfig.engine).
    for res in run_qc_many(_archive(args), args.ids):
        if isinstance(res, QCError):
            print(f"musewise: error: {res}", file=sys.stderr)
            worst = 2
            continue
        print(res)
        worst = max(worst, {"good": 0, "warning": 0, "bad": 1}[res.flag])
    return worst


def handle_queue(args) -> int:
    from ..cli import print_table
    from .review import queue

    items = queue(_archive(args), category=args.category, night=args.night, reviewable_only=args.mine,
                  limit=args.limit)
    print_table([{"id": i.dataset_id, "ifu": i.ifu, "category": i.category, "night": i.night or "",
                  "flag": i.flag, "state": i.state, "claimed_by": i.claimed_by or "",
                  "reviewable": "yes" if i.can_review else "no", "reason": i.reason[:60]} for i in items],
                ("id", "ifu", "category", "night", "flag", "state", "claimed_by", "reviewable", "reason"))
    return 0


def handle_claim(args) -> int:
    from .review import claim

    c = claim(_archive(args), args.id, minutes=args.minutes)
    print(f"dataset {c.dataset_id} claimed by {c.user} until {c.expires:%Y-%m-%d %H:%M} UTC")
    return 0


def handle_unclaim(args) -> int:
    from .review import unclaim

    unclaim(_archive(args), args.id)
    print(f"claim on dataset {args.id} released")
    return 0


def handle_review(args) -> int:
    from .review import review

    out = review(_archive(args), args.id, args.ifu, args.valid, args.flag, args.comment)
    rec = out.record
    print(f"dataset {rec.id}: " + ", ".join(f"IFU {s.ifu} {'valid' if s.is_valid else 'INVALID'} {s.flag}"
                                           for s in rec.ifus))
    if out.affected:
        print(f"{len(out.affected)} product IFU(s) made from it marked affected: "
              + ", ".join(f"#{a.dataset_id}/{a.ifu}" for a in out.affected))
    for r in out.releases:
        print(f"note: dataset {rec.id} is part of frozen release {r}; the invalidation is recorded against it")
    return 0


def handle_history(args) -> int:
    from ..cli import print_table
    from .review import review_history

    rows = review_history(_archive(args), args.id)
    print_table([{**r, "at": f"{r['at']:%Y-%m-%d %H:%M:%S}", "ifu": r["ifu"] if r["ifu"] is not None else ""}
                 for r in rows], ("at", "user", "action", "ifu", "comment"))
    return 0
