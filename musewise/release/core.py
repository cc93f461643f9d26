"""Data releases: a named, versioned, frozen set of products with checksums and provenance.

Decisions
---------
* **Frozen.** A release's rows (``releases``, ``release_items``, ``ivoa_obscore``)
  can never be updated or deleted: the database refuses (triggers of migration 0002),
  and so does the ORM (:class:`ReleaseFrozenError`). A new version is a new release.
* **What may be released.** Products (calibrations, science products) the releasing
  user may review (owner, project reviewers/managers, administrators), all of whose
  IFUs are valid. The manifest records each product's flags at release time.
* **Invalidated after release.** Validity stays editable - the archive's audit
  trail is the truth about data quality - but never silently: :func:`release_status`
  lists every invalidation of a released product since the release (read from the
  validity audit trail, whichever path made it), :func:`musewise.qc.review` records it
  against the release, and the release itself stays as frozen.
* **Manifest.** JSON (UTF-8, sorted keys) with, per product, its data ID, sha256,
  size, path inside the release folder, record and full provenance graph
  (:meth:`Archive.provenance`, ``to_dict``). Its own sha256 is stored with the release and in
  ``manifest.sha256`` of an exported folder.
* **Export** writes ``products/<CATEGORY>/<file>``, ``manifest.json``,
  ``manifest.sha256``, ``provenance/<id>.txt`` and ``provenance/<id>.prov.json``
  with ``notebooks/<notebook id>.ipynb`` (the executed notebook of every run in the history)
  (W3C PROV-JSON), ``obscore.csv`` and a
  ``README.md``; :func:`verify_folder` checks it anywhere, without an archive.
* **Phase 3.** Science cubes and their white-light images are exported as ESO
  Phase 3 products: a copy with the Phase 3 headers, the data bytes unchanged,
  decided and checksummed when the release is frozen (manifest format
  ``musewise-release/2``: the entry's ``phase3``); see :mod:`musewise.release.phase3`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from .. import __version__
from ..archive.datastore import sha256_file
from ..archive.privileges import can_review
from ..archive.schema import Dataset, User, ValidityEvent, utcnow
from ..archive.schema_review import ObsCoreRecord, Release, ReleaseFrozenError, ReleaseItem, ReviewEvent
from ..exceptions import (DuplicateError, InvalidArgumentError, MusewiseError, NotFoundError,
                          PermissionDeniedError, ReleaseRefusedError, ReleaseVerificationError)
from ..vocabulary import DatasetKind
from .phase3 import export_phase3, exported_checksum, plan_release

MANIFEST = "manifest.json"
MANIFEST_SUM = "manifest.sha256"
#: ``format`` of the manifests written now: 2 adds the Phase 3 copies (``phase3`` entries).
MANIFEST_FORMAT = "musewise-release/2"
#: sha256 of every exported file that is not a product (provenance, README, obscore.csv).
FILES_SUM = "files.sha256"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")



@dataclass(frozen=True)
class ReleaseRecord:
    """A data release as the archive reports it."""

    id: int
    name: str
    version: str
    description: str
    created: datetime
    created_by: str
    manifest_sha256: str
    n_products: int
    total_bytes: int
    dataset_ids: tuple[int, ...] = field(default=())

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"


@dataclass
class VerifyReport:
    """Outcome of checking a release (folder or archive files) against its manifest."""

    checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def canonical_json(obj) -> bytes:
    """The bytes a manifest is written as (sorted keys, UTF-8): its checksum is over these."""
    return json.dumps(obj, sort_keys=True, indent=1, default=str, ensure_ascii=False).encode("utf-8") + b"\n"


def _record(s, rel: Release) -> ReleaseRecord:
    ids = tuple(s.scalars(select(ReleaseItem.dataset_id).where(ReleaseItem.release_id == rel.id)
                          .order_by(ReleaseItem.dataset_id)))
    return ReleaseRecord(rel.id, rel.name, rel.version, rel.description, rel.created,
                         s.get(User, rel.created_by).name, rel.manifest_sha256, rel.n_products, rel.total_bytes, ids)


def notebook_path(notebook_id: int) -> str:
    """Where an exported release folder keeps the executed notebook of archive dataset ``notebook_id``."""
    return f"notebooks/{int(notebook_id)}.ipynb"


def _release_path(rec) -> str:
    return f"products/{rec.category}/{rec.id:06d}_{rec.filename}"


def create_release(arch, name: str, version: str, dataset_ids, description: str = "") -> ReleaseRecord:
    """Freeze products as data release ``name`` ``version``.

    Parameters
    ----------
    arch : Archive
    name, version : str
        Identity of the release (letters, digits, ``._+-``); the pair is unique.
    dataset_ids : iterable of int
        The products.
    description : str
        What the release is, for its README.

    Returns
    -------
    ReleaseRecord

    Raises
    ------
    DuplicateError
        A release with this name and version exists.
    PermissionDeniedError
        The user may not review one of the products.
    ValueError
        A dataset is not a product, or has an invalid IFU, or the list is empty.
    IntegrityError
        A product's stored file no longer matches its checksum.
    """
    for label, v in (("name", name), ("version", version)):
        if not _NAME.match(str(v)):
            raise InvalidArgumentError(f"release {label} {v!r}: use letters, digits and ._+- only")
    ids = sorted({int(i) for i in dataset_ids})
    if not ids:
        raise InvalidArgumentError("a release needs at least one product")
    from .obscore import obscore_row

    with arch.session() as s:
        user = arch.acting_user(s)
        if s.scalar(select(Release.id).where(Release.name == name, Release.version == version)) is not None:
            raise DuplicateError(f"release {name} {version} already exists; releases are frozen, "
                                 f"make a new version")
        roles = arch.roles(s, user)
        for did in ids:
            ds = arch.load(s, did)
            if ds.kind not in (DatasetKind.CALIBRATION.value, DatasetKind.SCIENCE.value):
                raise ReleaseRefusedError(f"dataset {did} is a {ds.kind} dataset, not a product")
            if not can_review(user, ds.owner_id, ds.project_id, roles):
                raise PermissionDeniedError(f"user {user.name!r} may not release dataset {did} "
                                            f"(owner, project reviewers and administrators may)")
            if not ds.is_valid:
                raise ReleaseRefusedError(f"dataset {did} is marked invalid ({ds.flag}: {ds.comment}); "
                                          f"only valid products are released")
            if ds.affected_by is not None:
                seen = s.scalar(select(Dataset.id).where(Dataset.id == ds.affected_by, arch.visible(s)))
                which = f"#{ds.affected_by}" if seen is not None else "input (one you may not see)"
                raise ReleaseRefusedError(f"dataset {did} is affected by invalid {which}; rebuild it "
                                          f"or have a reviewer clear the input before releasing")
            bad = [i.ifu for i in ds.ifus if not i.is_valid]
            if bad:
                raise ReleaseRefusedError(f"dataset {did} has invalid IFU(s) {bad}; only valid products are released")
    now = utcnow()
    products = []
    rows = []
    graphs = {}
    for did in ids:
        rec = arch.get(did)
        arch.verify(did)  # a release must never freeze bytes that already differ from the record
        graphs[did] = arch.provenance(did)
        products.append({
            "dataset_id": rec.id, "category": rec.category, "night": rec.night, "ifu": rec.ifu,
            "filename": rec.filename, "path": _release_path(rec), "sha256": rec.sha256, "size": rec.size,
            "flags": {str(st.ifu): st.flag for st in rec.ifus}, "flag": rec.flag, "collection": rec.collection,
            "record": rec.as_dict(), "provenance": graphs[did].to_dict(),
        })
        rows.append((rec, _release_path(rec)))
    plan_release(arch, products, graphs)
    manifest = {
        "format": MANIFEST_FORMAT, "name": name, "version": version, "description": description,
        "created": now.isoformat(timespec="seconds") + "Z", "created_by": arch.user_name,
        "musewise_version": __version__, "products": products,
    }
    blob = canonical_json(manifest)
    digest = hashlib.sha256(blob).hexdigest()
    try:
        with arch.transaction() as tx:
            s = tx.session
            user = arch.acting_user(s)
            rel = Release(name=name, version=version, description=description, created=now, created_by=user.id,
                          manifest=blob.decode("utf-8"), manifest_sha256=digest, n_products=len(products),
                          total_bytes=sum(p["size"] for p in products))
            s.add(rel)
            s.flush()
            for rec, path in rows:
                s.add(ReleaseItem(release_id=rel.id, dataset_id=rec.id, sha256=rec.sha256, size=rec.size, path=path))
                s.add(ObsCoreRecord(**obscore_row(arch, rec, rel, path)))
                s.add(ReviewEvent(user_id=user.id, action="release_create", dataset_id=rec.id, release_id=rel.id,
                                  comment=f"frozen in release {name} {version}", at=now))
            s.flush()
            out = _record(s, rel)
    except Exception as exc:
        from sqlalchemy.exc import IntegrityError as SAIntegrityError

        if isinstance(exc, SAIntegrityError):
            raise DuplicateError(f"release {name} {version} already exists") from None
        raise
    return out


def _find(s, name: str, version: str | None) -> Release:
    q = select(Release).where(Release.name == name)
    if version is not None:
        q = q.where(Release.version == version)
    rel = s.scalars(q.order_by(Release.created.desc(), Release.id.desc())).first()
    if rel is None:
        raise NotFoundError(f"no release {name}" + (f" {version}" if version else ""))
    return rel


def _visible_release(arch, s, rel: Release) -> bool:
    ids = list(s.scalars(select(ReleaseItem.dataset_id).where(ReleaseItem.release_id == rel.id)))
    seen = s.scalar(select(Dataset.id).where(Dataset.id.in_(ids), ~arch.visible(s)).limit(1))
    return seen is None


def get_release(arch, name: str, version: str | None = None) -> ReleaseRecord:
    """A release (the newest version when ``version`` is None) whose products the user may all see."""
    with arch.session() as s:
        rel = _find(s, name, version)
        if not _visible_release(arch, s, rel):
            raise NotFoundError(f"no release {name} {version or ''} visible to user {arch.user_name!r}")
        return _record(s, rel)


def list_releases(arch) -> list[ReleaseRecord]:
    """Releases whose products the user may all see, newest first."""
    with arch.session() as s:
        rels = s.scalars(select(Release).order_by(Release.created.desc(), Release.id.desc())).all()
        return [_record(s, r) for r in rels if _visible_release(arch, s, r)]


def manifest_of(arch, name: str, version: str | None = None) -> dict:
    """The manifest of a release, checked against its recorded checksum.

    Raises
    ------
    ReleaseVerificationError
        If the stored manifest no longer matches its checksum.
    """
    get_release(arch, name, version)
    with arch.session() as s:
        rel = _find(s, name, version)
        blob = rel.manifest.encode("utf-8")
        if hashlib.sha256(blob).hexdigest() != rel.manifest_sha256:
            raise ReleaseVerificationError([f"manifest of release {rel.name} {rel.version}: checksum differs"])
        return json.loads(blob)


def release_status(arch, name: str, version: str | None = None, verify_files: bool = True) -> dict:
    """Is a release intact, and what happened to its products since?

    Returns
    -------
    dict
        ``release`` (ReleaseRecord), ``files`` (VerifyReport over the archived files:
        a changed byte in the datastore shows here), ``invalidated`` (list of dicts:
        dataset_id, ifu, user, at, comment) - invalidations since the release.
    """
    rec = get_release(arch, name, version)
    manifest = manifest_of(arch, name, version)
    report = VerifyReport()
    if verify_files:
        for p in manifest["products"]:
            report.checked += 1
            try:
                r = arch.get(p["dataset_id"])
                if r.sha256 != p["sha256"]:
                    report.problems.append(f"#{p['dataset_id']}: archive record checksum differs from the release")
                arch.datastore.verify(r.storage_path, p["sha256"])
            except MusewiseError as exc:
                report.problems.append(f"#{p['dataset_id']} {p['filename']}: {exc}")
    with arch.session() as s:
        rows = s.execute(select(ValidityEvent, User.name).join(User, ValidityEvent.user_id == User.id)
                         .where(ValidityEvent.dataset_id.in_(rec.dataset_ids), ValidityEvent.at >= rec.created,
                                ValidityEvent.valid_before.is_(True), ValidityEvent.valid_after.is_(False))
                         .order_by(ValidityEvent.id)).all()
        inval = [{"dataset_id": e.dataset_id, "ifu": e.ifu, "user": u, "at": e.at, "comment": e.comment}
                 for e, u in rows]
    return {"release": rec, "files": report, "invalidated": inval}


def _readme(manifest: dict, digest: str) -> str:
    lines = [
        f"# MUSE data release {manifest['name']} {manifest['version']}", "",
        manifest.get("description") or "", "",
        f"Frozen {manifest['created']} by {manifest['created_by']} with musewise {manifest['musewise_version']}.",
        f"{len(manifest['products'])} products.", "",
        "## Contents", "",
        "* `products/<CATEGORY>/` - the product files (FITS), named `<archive id>_<file name>`; "
        "science cubes and their white-light images as ESO Phase 3 products (headers with PRODCATG, "
        "ASSONi, PROVi..., data as archived)",
        f"* `{MANIFEST}` - every product with its sha256 checksum, size, archive record and full provenance",
        f"* `{MANIFEST_SUM}` - the sha256 of `{MANIFEST}` and of `{FILES_SUM}` "
        f"(`sha256sum -c {MANIFEST_SUM}` checks them)",
        f"* `{FILES_SUM}` - the sha256 of every other file here (provenance, this README, obscore.csv)",
        "* `provenance/<id>.txt` - the reduction history of each product, readable",
        "* `notebooks/<id>.ipynb` - the executed notebook of each run of that history (archive dataset ID)",
        "* `obscore.csv` - the products described with the IVOA ObsCore 1.1 columns", "",
        "## Checking a copy", "",
        "    musewise release verify THIS_FOLDER", "",
        "checks the manifest against its checksum, every product file against the manifest and",
        f"every other file against `{FILES_SUM}`, reporting any changed, missing, unexpected or",
        "symbolically linked file. Without musewise:", "",
        f"    sha256sum -c {MANIFEST_SUM} && sha256sum -c {FILES_SUM}", "",
        "## Products", "",
        "| id | category | night | IFU | file | sha256 |", "|---|---|---|---|---|---|",
    ]
    for p in manifest["products"]:
        lines.append(f"| {p['dataset_id']} | {p['category']} | {p['night'] or ''} | {p['ifu'] or ''} | "
                     f"`{p['path']}` | `{exported_checksum(p)[0][:16]}...` |")
    phase3 = [p for p in manifest["products"] if p.get("phase3")]
    if phase3:
        lines += ["", "## ESO Phase 3", "",
                  "These files carry the headers of ESO Phase 3 science data products (ESO Science Data "
                  "Products standard, " + phase3[0]["phase3"]["standard"] + "); their data are the archived "
                  "products' bytes. Keywords the standard asks for that could not be filled:", "",
                  "| id | PRODCATG | not filled |", "|---|---|---|"]
        lines += [f"| {p['dataset_id']} | {p['phase3']['prodcatg']} | {', '.join(p['phase3']['missing']) or '-'} |"
                  for p in phase3]
    lines += ["", f"Manifest sha256: `{digest}`", ""]
    return "\n".join(lines)


def export_release(arch, name: str, version: str | None, folder, *, link: bool = False) -> Path:
    """Write a release as a self-contained folder to copy to another site.

    Parameters
    ----------
    folder : path-like
        Target; created, must be empty or absent.
    link : bool
        Hard-link product files instead of copying (same filesystem only); Phase 3
        copies are always written.

    Returns
    -------
    Path
        The folder.

    Raises
    ------
    ReleaseVerificationError
        If an archived file no longer matches the release (nothing is exported), or a
        Phase 3 copy written now is not the one frozen with the release.
    """
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise DuplicateError(f"{folder} is not empty")
    status = release_status(arch, name, version)
    if not status["files"].ok:
        raise ReleaseVerificationError(status["files"].problems)
    rec = status["release"]
    with arch.session() as s:
        rel = _find(s, rec.name, rec.version)
        blob, digest = rel.manifest.encode("utf-8"), rel.manifest_sha256
        obs = [{c.name: getattr(o, c.name) for c in ObsCoreRecord.__table__.columns}
               for o in s.scalars(select(ObsCoreRecord).where(ObsCoreRecord.release_id == rel.id)
                                  .order_by(ObsCoreRecord.dataset_id))]
    manifest = json.loads(blob)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "provenance").mkdir()
    for p in manifest["products"]:
        src = arch.path(p["dataset_id"])
        dst = folder / p["path"]
        dst.parent.mkdir(parents=True, exist_ok=True)
        if p.get("phase3"):
            export_phase3(src, p, dst)  # its own bytes: never a link to the archive's file
        elif link:
            # One inode for both: it must stay read-only (the datastore stores files so), or
            # editing the export would edit the archive.
            os.chmod(src, os.stat(src).st_mode & ~0o222)
            os.link(src, dst)
        else:
            shutil.copyfile(src, dst)
        graph = arch.provenance(p["dataset_id"])
        (folder / "provenance" / f"{p['dataset_id']}.txt").write_text(graph.to_text() + "\n")
        (folder / "provenance" / f"{p['dataset_id']}.prov.json").write_text(graph.to_prov_json(indent=1) + "\n")
        # The executed notebook of every run in the history: what each run did, with its figures.
        for run in graph.runs.values():
            if run.notebook_id is not None:
                nb = folder / notebook_path(run.notebook_id)
                if not nb.exists():
                    nb.parent.mkdir(exist_ok=True)
                    shutil.copyfile(arch.path(run.notebook_id), nb)
    (folder / MANIFEST).write_bytes(blob)
    (folder / "README.md").write_text(_readme(manifest, digest))
    if obs:
        with open(folder / "obscore.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(obs[0]))
            w.writeheader()
            w.writerows(obs)
    others = sorted(f.relative_to(folder).as_posix() for f in folder.rglob("*")
                    if f.is_file() and not f.relative_to(folder).as_posix().startswith("products/")
                    and f.name != MANIFEST)
    sums = "".join(f"{sha256_file(folder / rel)[0]}  {rel}\n" for rel in others)
    (folder / FILES_SUM).write_text(sums)
    sums_digest = hashlib.sha256(sums.encode()).hexdigest()
    (folder / MANIFEST_SUM).write_text(f"{digest}  {MANIFEST}\n{sums_digest}  {FILES_SUM}\n")
    with arch.transaction() as tx:
        user = arch.acting_user(tx.session)
        tx.session.add(ReviewEvent(user_id=user.id, action="release_export", release_id=rec.id,
                                   comment=f"exported to {folder}"))
    return folder


def verify_folder(folder) -> VerifyReport:
    """Check an exported release folder: the manifest against its checksum, every file against the manifest.

    Needs no archive: this runs at the receiving site.

    Returns
    -------
    VerifyReport
        ``problems`` names each changed, missing or unexpected file (empty when intact).
    """
    folder = Path(folder)
    report = VerifyReport()
    mpath, spath = folder / MANIFEST, folder / MANIFEST_SUM
    if not mpath.is_file() or mpath.is_symlink():
        report.problems.append(f"{MANIFEST} missing")
        return report
    blob = mpath.read_bytes()
    sums = _sum_lines(spath.read_text()) if spath.is_file() and not spath.is_symlink() else None
    if sums is None:
        report.problems.append(f"{MANIFEST_SUM} missing: the manifest cannot be checked")
        sums = {}
    digest = hashlib.sha256(blob).hexdigest()
    if spath.is_file() and sums.get(MANIFEST) != digest:
        report.problems.append(f"{MANIFEST}: sha256 {digest[:16]}... differs from {MANIFEST_SUM} "
                               f"({(sums.get(MANIFEST) or '')[:16]}...): the manifest was changed")
    try:
        manifest = json.loads(blob)
        products = manifest["products"]
    except (ValueError, KeyError) as exc:
        report.problems.append(f"{MANIFEST} unreadable: {exc}")
        return report
    # What each file should hold: products from the manifest (the Phase 3 copy's checksum
    # where the release wrote one), the rest from files.sha256.
    expected = {Path(p["path"]).as_posix(): exported_checksum(p) for p in products}
    fpath = folder / FILES_SUM
    if not fpath.is_file() or fpath.is_symlink():
        report.problems.append(f"{FILES_SUM} missing: provenance, README and obscore.csv cannot be checked")
    else:
        text = fpath.read_text()
        if sums.get(FILES_SUM) != hashlib.sha256(text.encode()).hexdigest():
            report.problems.append(f"{FILES_SUM}: differs from its sha256 in {MANIFEST_SUM}: it was changed")
        expected.update({rel: (sha, None) for rel, sha in _sum_lines(text).items()})
    for rel, (sha, size) in sorted(expected.items()):
        path = folder / rel
        report.checked += size is not None
        if path.is_symlink():
            report.problems.append(f"{rel}: a symbolic link, not the released file")
            continue
        if not path.is_file():
            report.problems.append(f"{rel}: missing")
            continue
        got, got_size = sha256_file(path)
        if size is not None and got_size != size:
            report.problems.append(f"{rel}: {got_size} bytes, manifest says {size}")
        elif got != sha:
            report.problems.append(f"{rel}: changed (sha256 {got[:16]}... instead of {sha[:16]}...)")
    for f in sorted(folder.rglob("*")):
        rel = f.relative_to(folder).as_posix()
        if rel in expected or rel in (MANIFEST, MANIFEST_SUM, FILES_SUM):
            continue
        if f.is_symlink():
            report.problems.append(f"{rel}: a symbolic link, not in the manifest")
        elif f.is_file():
            report.problems.append(f"{rel}: not in the manifest")
    return report


def _sum_lines(text: str) -> dict[str, str]:
    """``{path: sha256}`` from ``sha256sum`` output."""
    out = {}
    for line in text.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2:
            out[parts[1].lstrip("*").strip()] = parts[0]
    return out


__all__ = ["ReleaseFrozenError", "ReleaseRecord", "ReleaseVerificationError", "VerifyReport",
           "canonical_json", "create_release", "export_release", "get_release", "list_releases", "manifest_of",
           "release_status", "verify_folder"]
