"""Where files go in the datastore: templates over the data ID.

A path is derived from what a dataset *is* (kind, night, category, IFU, run),
plus a checksum prefix so two different files can never claim one name. Paths
are never used as identity; they only keep the store browsable by hand.
"""

from __future__ import annotations

import re

from ..ingest import FrameInfo

_SAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def _safe(name: str) -> str:
    return _SAFE.sub("_", name).strip("._") or "file"


def path_for(info: FrameInfo, filename: str, *, run_id: int | None = None, sha256: str | None = None) -> str:
    """Datastore location (relative path) of a file.

    Parameters
    ----------
    info : FrameInfo
        What the file is.
    filename : str
        Its original name (kept for readability).
    run_id : int, optional
        The producing run, for products and notebooks.
    sha256 : str, optional
        Checksum; its first 12 characters prefix the name.
    """
    night = info.night or "undated"
    prefix = f"{sha256[:12]}_" if sha256 else ""
    name = prefix + _safe(filename)
    if run_id is not None:
        return f"{info.kind.value}/{night}/run{run_id:06d}/{info.category}/{name}"
    return f"{info.kind.value}/{night}/{info.category}/{name}"
