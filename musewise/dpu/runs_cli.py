"""``musewise runs``: the runs of the archive, after closing those whose process died.

::

    musewise runs [--status running|failed|succeeded] [--recipe muse_bias] [--night 2026-11-20] [--limit 30]

A run recorded ``running`` whose process is gone (killed, its machine rebooted, its
lease expired) is first closed as failed with the reason
(:meth:`musewise.archive.Archive.close_stale_runs`, limits from ``DpuConfig``), so
the listing shows only runs that are really running.
"""

from __future__ import annotations

import argparse


def add_runs_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``runs`` to the ``musewise`` sub-commands."""
    p = subparsers.add_parser("runs", help="list runs (closing as failed those whose process died)")
    p.add_argument("--status", choices=("running", "succeeded", "failed"), help="only runs of this status")
    p.add_argument("--recipe", help="only runs of this recipe, e.g. muse_bias")
    p.add_argument("--night", help="only runs of this night YYYY-MM-DD")
    p.add_argument("--limit", type=int, default=50, help="newest runs shown (default 50; 0: all)")
    p.add_argument("--user", default=argparse.SUPPRESS, help="archive user (default: the configured user)")
    p.set_defaults(func=handle_runs)
    return p


def handle_runs(args) -> int:
    """Handler of ``musewise runs``; returns the exit status."""
    from ..archive import Archive
    from .config import DpuConfig

    arch = Archive.from_cli(args)
    for st in arch.close_stale_runs(**DpuConfig.from_config(arch.config).stale_limits()):
        print(f"closed run {st.run_id} ({st.recipe}) as failed: {st.reason}")
    runs = arch.runs(recipe=args.recipe, night=args.night, status=args.status, limit=args.limit or None)
    for r in runs:
        where = f"IFU {r.ifu:02d}" if r.ifu else "-"
        host = r.details.get("host", "?")
        pid = r.details.get("pid", "?")
        job = f" ({r.details['batch_job']})" if r.details.get("batch_job") else ""
        print(f"run {r.id:>6} {r.recipe:<16} {r.night or '-':<10} {where:<6} {r.status:<9} "
              f"{r.started:%Y-%m-%d %H:%M:%S}  {r.user:<8} {host}:{pid}{job}")
        if r.error:
            print("    " + r.error.splitlines()[0][:200])
    if not runs:
        print("no runs")
    return 0


__all__ = ["add_runs_parser", "handle_runs"]
