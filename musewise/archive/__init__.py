"""The archive: a registry of metadata and lineage beside a write-once datastore.

Public API: :class:`Archive` (open, ingest, query, validity, runs, provenance,
calibration selection), :class:`DatasetRecord`, :class:`RunRecord`,
:class:`ProvenanceGraph`.
"""

from .calibrations import CalibrationChoice
from .core import Archive, IngestReport, IngestResult
from .provenance import ProvenanceGraph
from .records import DatasetRecord, IfuState, RunRecord

__all__ = ["Archive", "CalibrationChoice", "DatasetRecord", "IfuState", "IngestReport", "IngestResult",
           "ProvenanceGraph", "RunRecord"]
