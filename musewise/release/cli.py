"""``musewise release create|list|show|export|verify``."""

from __future__ import annotations

import argparse
import sys


def _archive(args):
    from ..archive import Archive

    return Archive.from_cli(args)


def add_release_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``release`` and its sub-commands to the ``musewise`` parser."""
    p = subparsers.add_parser("release", help="data releases: freeze, list, export, verify")
    sub = p.add_subparsers(dest="release_command", required=True)
    s = sub.add_parser("create", help="freeze products as a named, versioned release")
    s.add_argument("name")
    s.add_argument("version")
    s.add_argument("ids", type=int, nargs="*", metavar="ID", help="product IDs (or --from-file / stdin '-')")
    s.add_argument("--from-file", help="file of product IDs, one a line ('-': standard input)")
    s.add_argument("--description", "-d", default="")
    s.set_defaults(func=handle_create)
    s = sub.add_parser("list", help="releases you may see")
    s.set_defaults(func=handle_list)
    s = sub.add_parser("show", help="a release: products, file check, invalidations since")
    s.add_argument("name")
    s.add_argument("version", nargs="?")
    s.set_defaults(func=handle_show)
    s = sub.add_parser("export", help="write a release as a folder to copy to another site")
    s.add_argument("name")
    s.add_argument("version")
    s.add_argument("folder")
    s.add_argument("--link", action="store_true", help="hard-link files instead of copying")
    s.set_defaults(func=handle_export)
    s = sub.add_parser("verify", help="check an exported release folder (no archive needed)")
    s.add_argument("folder")
    s.set_defaults(func=handle_verify)
    return p


def handle_create(args) -> int:
    from .core import create_release

    ids = list(args.ids)
    if args.from_file:
        text = sys.stdin.read() if args.from_file == "-" else open(args.from_file).read()
        ids += [int(x) for x in text.split()]
    rel = create_release(_archive(args), args.name, args.version, ids, args.description)
    print(f"release {rel.label}: {rel.n_products} products, {rel.total_bytes / 1e6:.1f} MB, "
          f"manifest sha256 {rel.manifest_sha256}")
    return 0


def handle_list(args) -> int:
    from ..cli import print_table
    from .core import list_releases

    print_table([{"name": r.name, "version": r.version, "created": f"{r.created:%Y-%m-%d %H:%M}",
                  "by": r.created_by, "products": r.n_products, "MB": f"{r.total_bytes / 1e6:.1f}",
                  "description": r.description[:50]} for r in list_releases(_archive(args))],
                ("name", "version", "created", "by", "products", "MB", "description"))
    return 0


def handle_show(args) -> int:
    from .core import release_status

    st = release_status(_archive(args), args.name, args.version)
    r = st["release"]
    print(f"release {r.label} (frozen {r.created:%Y-%m-%d %H:%M} by {r.created_by}): {r.description}")
    print(f"  {r.n_products} products: {', '.join(map(str, r.dataset_ids))}")
    print(f"  manifest sha256 {r.manifest_sha256}")
    files = st["files"]
    print(f"  files: {files.checked} checked, " + ("all intact" if files.ok else f"{len(files.problems)} problem(s)"))
    for p in files.problems:
        print(f"    {p}")
    for e in st["invalidated"]:
        print(f"  invalidated since release: #{e['dataset_id']} IFU {e['ifu']} by {e['user']} "
              f"at {e['at']:%Y-%m-%d %H:%M}: {e['comment']}")
    return 0 if files.ok else 1


def handle_export(args) -> int:
    from .core import export_release

    folder = export_release(_archive(args), args.name, args.version, args.folder, link=args.link)
    print(f"release {args.name} {args.version} exported to {folder}")
    return 0


def handle_verify(args) -> int:
    from .core import verify_folder

    rep = verify_folder(args.folder)
    for p in rep.problems:
        print(f"FAILED: {p}")
    print(f"{rep.checked} product file(s) checked: " + ("release intact" if rep.ok else
                                                        f"{len(rep.problems)} problem(s)"))
    return 0 if rep.ok else 1
