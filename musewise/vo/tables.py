"""The archive's own tables as a data centre serves them: what its audience may see, for ADQL.

Besides the released products (``ivoa.obscore``, ``musewise.main``) a data centre
serves the archive's registry as the audience's reader sees it
(:func:`musewise.vo.publish.audience_archive`), through the archive's public API and
so its one privilege rule:

``musewise.datasets``
    every raw frame, calibration and product the audience may see: data ID, pointing,
    ``is_valid``, quality flag, and the ``obs_publisher_did`` of the released copy, if any;
``musewise.dataset_ifus``
    the verdict on each IFU of those datasets (a raw exposure holds 24);
``musewise.runs`` and ``musewise.run_inputs``
    the recipe runs that made them, with their parameters, and which inputs each used
    (only inputs the audience may see);
``musewise.qc``
    the QC numbers measured on them.

Only metadata: files are served for released products alone (DataLink). The column
names and units here are those of ``musewise.rd``, which declares the same tables.
"""

from __future__ import annotations

import hashlib
import json

#: Columns of each archive table, in the order of its CSV file (``<table>.csv``).
ARCHIVE_TABLES = {
    "datasets": ("dataset_id", "kind", "category", "collection", "night", "date_obs", "mjd_obs", "exptime",
                 "mode", "object", "ifu", "exposure", "ra", "dec", "airmass", "obs_name", "arcfile",
                 "is_valid", "flag", "usable", "affected_by", "privilege", "project", "run_id",
                 "pipeline_version", "sha256", "size", "filename", "released_did"),
    "dataset_ifus": ("dataset_id", "ifu", "is_valid", "flag", "comment"),
    "runs": ("run_id", "recipe", "night", "ifu", "mode", "status", "is_reference", "pipeline_version",
             "musewise_version", "started", "ended", "parameters", "collection", "notebook_id"),
    "run_inputs": ("run_id", "dataset_id", "tag", "reason"),
    "qc": ("dataset_id", "ifu", "name", "qc_value", "unit", "run_id"),  # VALUE is reserved in ADQL
}


def _iso(t) -> str | None:
    return None if t is None else t.isoformat(timespec="milliseconds")


def _number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def archive_tables(reader) -> dict[str, list[dict]]:
    """The rows of every archive table an audience's reader may see.

    Parameters
    ----------
    reader : Archive
        The archive as the audience sees it.

    Returns
    -------
    dict
        Table name (:data:`ARCHIVE_TABLES`) -> rows (dicts of its columns): RA/Dec in
        degrees, exposure times in seconds, times ISO UTC, MJD in days; ``released_did`` is left
        None for the publisher to fill (:func:`musewise.vo.publish.publish`).
    """
    datasets = reader.query(order_by="id", limit=None)
    seen = {d.id for d in datasets}
    rows = {name: [] for name in ARCHIVE_TABLES}
    for d in datasets:
        h = d.header or {}
        rows["datasets"].append({
            "dataset_id": d.id, "kind": d.kind, "category": d.category, "collection": d.collection,
            "night": d.night, "date_obs": _iso(d.date_obs), "mjd_obs": d.mjd_obs, "exptime": d.exptime,
            "mode": d.mode, "object": d.object, "ifu": d.ifu, "exposure": d.exposure,
            "ra": _number(h.get("RA")), "dec": _number(h.get("DEC")),
            "airmass": _number(h.get("ESO TEL AIRM START")), "obs_name": h.get("ESO OBS NAME"),
            "arcfile": h.get("ARCFILE"), "is_valid": d.is_valid, "flag": d.flag, "usable": d.usable,
            "affected_by": d.affected_by, "privilege": d.privilege.name.lower(), "project": d.project,
            "run_id": d.run_id, "pipeline_version": d.pipeline_version, "sha256": d.sha256, "size": d.size,
            "filename": d.filename, "released_did": None})
        rows["dataset_ifus"] += [{"dataset_id": d.id, "ifu": s.ifu, "is_valid": s.is_valid, "flag": s.flag,
                                  "comment": s.comment} for s in d.ifus]
    for r in sorted(reader.runs(), key=lambda r: r.id):
        rows["runs"].append({
            "run_id": r.id, "recipe": r.recipe, "night": r.night, "ifu": r.ifu, "mode": r.mode,
            "status": r.status, "is_reference": r.is_reference, "pipeline_version": r.pipeline_version,
            "musewise_version": r.musewise_version, "started": _iso(r.started), "ended": _iso(r.ended),
            "parameters": json.dumps(r.parameters, sort_keys=True, default=str), "collection": r.collection,
            "notebook_id": r.notebook_id if r.notebook_id in seen else None})
        rows["run_inputs"] += [{"run_id": r.id, "dataset_id": i.dataset_id, "tag": i.tag, "reason": i.reason}
                               for i in r.inputs if i.dataset_id in seen]
    for name in sorted({n for n, _category, _count in reader.qc_names()}):  # a name once per category
        rows["qc"] += [{"dataset_id": v["dataset_id"], "ifu": v["ifu"], "name": name, "qc_value": v["value"],
                        "unit": v["unit"], "run_id": v["run_id"]} for v in reader.qc_values(name)]
    return rows


def digest(tables: dict[str, list[dict]]) -> str:
    """sha256 of the rows: unchanged rows, unchanged digest (decides whether to import again)."""
    h = hashlib.sha256()
    for name in sorted(tables):
        h.update(name.encode())
        for row in tables[name]:
            h.update(json.dumps(row, sort_keys=True, default=str).encode())
    return h.hexdigest()
