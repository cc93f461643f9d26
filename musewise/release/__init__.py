"""Data releases: frozen, versioned sets of products with checksums and provenance.

Public API: :func:`create_release`, :func:`list_releases`, :func:`get_release`,
:func:`manifest_of`, :func:`release_status`, :func:`export_release`,
:func:`verify_folder`, :func:`obscore_rows`; the CLI hook :func:`add_release_parser`.
The design decisions are in :mod:`musewise.release.core`; the ESO Phase 3 headers of
exported science cubes in :mod:`musewise.release.phase3`.
"""

from .cli import add_release_parser
from .core import (
    ReleaseFrozenError,
    ReleaseRecord,
    ReleaseVerificationError,
    VerifyReport,
    create_release,
    export_release,
    get_release,
    list_releases,
    manifest_of,
    notebook_path,
    release_status,
    verify_folder,
)
from .obscore import OBSCORE_COLUMNS, ReleaseConfig, obscore_rows

__all__ = ["OBSCORE_COLUMNS", "ReleaseConfig", "ReleaseFrozenError", "ReleaseRecord", "ReleaseVerificationError",
           "VerifyReport", "add_release_parser", "create_release", "export_release", "get_release",
           "list_releases", "manifest_of", "notebook_path", "obscore_rows", "release_status", "verify_folder"]
