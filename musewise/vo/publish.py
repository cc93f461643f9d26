"""Which releases a VO data centre publishes, and the rows and files it is given.

There are two audiences, each with a DaCHS data centre of its own
(:mod:`musewise.vo.dachs`):

``public``
    anyone, without a login: the releases all of whose products are public;
``consortium``
    consortium members with a hub token: also the releases of consortium data.

Which releases an audience gets is decided by the archive's one privilege rule
(:mod:`musewise.archive.privileges`), asked as an archive user that stands for the
audience (``vo-public``, an outside user; ``vo-consortium``, a member of no
project): a release is published when that user may see every product in it
(:func:`musewise.release.list_releases`). Project and private data never reach a
data centre, whoever asks.

The sources of a released catalogue (``SOURCE_CATALOG``, step ``sources``) become rows of the
data centre's ``musewise.sources`` table, with the catalogue's ``obs_publisher_did``.

A published release is a copy of its exported folder (:func:`musewise.release.export_release`:
products, provenance, notebooks, checksums) inside the data centre's inputs, made
once (releases are frozen) and verified by its own checksums on the way in. A release
an audience may no longer see (a product's privilege was narrowed, say) is removed
from that data centre at the next publication: its rows and its files.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..exceptions import InvalidArgumentError, PermissionDeniedError, ReleaseVerificationError
from ..products.catalog import SOURCE_CATALOG
from ..release import export_release, list_releases, manifest_of, notebook_path, obscore_rows, verify_folder
from .dachs import RESDIR, DachsServer
from .tables import archive_tables, digest

log = logging.getLogger(__name__)

#: Folder (inside the releases folder) of the quick-look PNGs, by release folder and dataset ID.
PREVIEWS = "previews"
#: ObsCore product types that get a quick-look PNG.
PREVIEWED = ("cube", "image")

#: Audience -> is the archive user standing for it a consortium member?
AUDIENCES = {"public": False, "consortium": True}


def reader_name(audience: str) -> str:
    """The archive user standing for an audience."""
    if audience not in AUDIENCES:
        raise InvalidArgumentError(f"unknown VO audience {audience!r}: one of {', '.join(AUDIENCES)}")
    return f"vo-{audience}"


def audience_archive(arch, audience: str):
    """The archive as the audience sees it (the user standing for it is registered if missing).

    Parameters
    ----------
    arch : Archive
        As an administrator (registering the user needs one).
    """
    name = reader_name(audience)
    reader = arch.as_user(name)
    try:
        reader.user  # one row: this runs at every check for new releases
    except PermissionDeniedError:
        arch.add_user(name, member=AUDIENCES[audience], full_name=f"VO readers ({audience})")
    return reader


def folder_name(release) -> str:
    """Folder of an exported release inside a data centre."""
    return f"{release.name}-{release.version}"


@dataclass
class Publication:
    """What a data centre publishes after :func:`publish`."""

    audience: str
    releases: list[str]
    n_products: int
    n_sources: int
    removed: list[str]
    #: Rows of each archive table (:data:`musewise.vo.tables.ARCHIVE_TABLES`) it serves.
    n_archive_rows: dict[str, int]
    #: What it was published from (:attr:`AudienceView.state`).
    state: tuple


@dataclass(frozen=True)
class AudienceView:
    """What an audience may see at one moment: its releases and the archive's tables as its reader reads them.

    ``state`` is their fingerprint: the releases' (id, manifest sha256) and the digest of the
    tables (:func:`musewise.vo.tables.digest`). The same fingerprint, nothing to publish again.
    """

    releases: list
    tables: dict
    state: tuple


def audience_view(arch, audience: str) -> AudienceView:
    """Read what ``audience`` may see now (its reader's releases and archive tables)."""
    reader = audience_archive(arch, audience)
    releases, tables = list_releases(reader), archive_tables(reader)
    return AudienceView(releases, tables, (tuple(sorted((r.id, r.manifest_sha256) for r in releases)), digest(tables)))


def publish(arch, server: DachsServer, audience: str, view: AudienceView | None = None) -> Publication:
    """Give a data centre the releases its audience may see and the archive tables, and import their rows.

    Parameters
    ----------
    arch : Archive
        As an administrator (exports are recorded against that user).
    server : DachsServer
        The audience's data centre (prepared).
    audience : str
        ``public`` or ``consortium``.
    view : AudienceView, optional
        What the audience may see, read already (:func:`audience_view`); default: read now.

    Returns
    -------
    Publication
    """
    reader = audience_archive(arch, audience)
    view = view or audience_view(arch, audience)
    releases = view.releases
    # Release folders are <name>-<version>: "previews" (no dash) can never be one.
    keep = {folder_name(r) for r in releases} | {PREVIEWS}
    removed = []
    server.releases_dir.mkdir(parents=True, exist_ok=True)
    for folder in server.releases_dir.iterdir():
        if folder.name not in keep:  # no longer for this audience, or a partial export
            shutil.rmtree(folder)
            removed.append(folder.name)
    for old in (server.releases_dir / PREVIEWS).glob("*"):  # the previews of those releases
        if old.name not in keep:
            shutil.rmtree(old)
    rows, sources = [], []
    for rel in releases:
        folder = server.releases_dir / folder_name(rel)
        if not folder.exists():
            _export(arch, rel, folder)
        manifest = manifest_of(reader, rel.name, rel.version)
        entries = {p["dataset_id"]: p for p in manifest["products"]}
        for o in obscore_rows(reader, release_name=rel.name):
            if o["release_id"] != rel.id:
                continue
            p = entries[o["dataset_id"]]
            rows.append(_row(o, p, rel, folder))
            if p["category"] == SOURCE_CATALOG:
                sources += [{**src, "catalog_did": o["obs_publisher_did"], "release": f"{rel.name} {rel.version}"}
                            for src in reader.sources(dataset_id=o["dataset_id"])]
    tables = {**view.tables, "datasets": [dict(d) for d in view.tables["datasets"]]}  # the view stays as read
    state = view.state
    released = {r["dataset_id"]: r["obs_publisher_did"] for r in rows}  # a product released twice: the latest
    for d in tables["datasets"]:
        d["released_did"] = released.get(d["dataset_id"])
    server.write_tables({"products": rows, "sources": sources, **tables})
    server.load()
    pub = Publication(audience, [f"{r.name} {r.version}" for r in releases], len(rows), len(sources), removed,
                      {name: len(t) for name, t in tables.items()}, state)
    log.info("VO %s: %d releases, %d products, %d catalogue sources, %d archive datasets%s", audience,
             len(releases), len(rows), len(sources), len(tables["datasets"]),
             f"; removed {', '.join(removed)}" if removed else "")
    return pub


def _export(arch, rel, folder: Path) -> None:
    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    # Copies, not hard links: the data centre's server account must read them, and the archive's
    # own files are readable by the consortium's group alone.
    export_release(arch, rel.name, rel.version, partial)
    report = verify_folder(partial)
    if not report.ok:
        shutil.rmtree(partial, ignore_errors=True)
        raise ReleaseVerificationError(report.problems)
    os.rename(partial, folder)  # published only once whole


def _row(obscore: dict, entry: dict, rel, folder: Path) -> dict:
    """The products.csv row of one released product."""
    did = entry["dataset_id"]
    path = entry["path"]
    rel_folder = f"releases/{folder.name}"
    made_by = {g["dataset_id"]: g["run_id"] for g in entry["provenance"]["generated"]}
    runs = {r["id"]: r for r in entry["provenance"]["runs"]}
    nb_id = runs.get(made_by.get(did), {}).get("notebook_id")
    nb = f"{rel_folder}/{notebook_path(nb_id)}" if nb_id is not None else None
    row = dict(obscore)
    row.update(
        release=f"{rel.name} {rel.version}", dataset_id=did,
        accref=f"{RESDIR}/{rel_folder}/{path}", size=(folder / path).stat().st_size,
        provenance_path=f"{rel_folder}/provenance/{did}.prov.json",
        notebook_path=nb if nb and (folder.parent.parent / nb).exists() else None,
        preview_path=_preview(obscore, folder / path, folder) if obscore.get("dataproduct_type") in PREVIEWED
        else None,
    )
    return row


def _preview(obscore: dict, file: Path, folder: Path) -> str | None:
    """Render (once) the quick-look PNG of a released file; its resdir-relative path."""
    from ..products.quicklook import render_quicklook

    png = folder.parent / PREVIEWS / folder.name / f"{obscore['dataset_id']}.png"
    if not png.exists():
        png.parent.mkdir(parents=True, exist_ok=True)
        tmp = png.with_suffix(".png.tmp")
        tmp.write_bytes(render_quicklook(file, title=obscore.get("obs_title") or ""))
        os.replace(tmp, png)
    return f"releases/{PREVIEWS}/{folder.name}/{png.name}"
