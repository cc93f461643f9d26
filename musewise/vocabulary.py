"""Controlled vocabulary of the archive: frame types, product categories, privileges.

Values are the strings ESO uses in ``ESO DPR TYPE`` / ``ESO PRO CATG`` so that
what the archive stores matches what the pipeline reads and writes.
"""

from __future__ import annotations

import enum
import math

from .exceptions import InvalidArgumentError


class Privilege(enum.IntEnum):
    """Who may see a dataset or run.

    PRIVATE (1) only its owner; PROJECT (2) members of its project;
    CONSORTIUM (3) every registered consortium member; PUBLIC (4) everyone.
    Administrators see everything.
    """

    PRIVATE = 1
    PROJECT = 2
    CONSORTIUM = 3
    PUBLIC = 4


class DatasetKind(str, enum.Enum):
    """Broad class of an archived file."""

    RAW = "raw"                  #: a frame as it came off the telescope (or the simulator)
    STATIC = "static"            #: a static calibration shipped with the pipeline
    CALIBRATION = "calibration"  #: a master calibration made by a reduction run
    SCIENCE = "science"          #: a science product (pixel table, cube, image)
    NOTEBOOK = "notebook"        #: an executed reduction or QC notebook
    AUXILIARY = "auxiliary"      #: figures, logs and other by-products


class FrameType(str, enum.Enum):
    """Raw frame types, named by the set-of-frames tag the MUSE pipeline expects."""

    BIAS = "BIAS"
    DARK = "DARK"
    FLAT = "FLAT"
    ARC = "ARC"
    SKYFLAT = "SKYFLAT"
    STD = "STD"
    OBJECT = "OBJECT"
    SKY = "SKY"
    #: Lamp flat attached to a science OB (``ESO DPR TYPE FLAT,LAMP,ILLUM``): muse_scibasic
    #: uses it to correct the relative illumination of the slices at the time of the OB.
    ILLUM = "ILLUM"

    @classmethod
    def from_dpr(cls, dpr_type: str, dpr_catg: str = "") -> "FrameType":
        """Map ``ESO DPR TYPE`` (e.g. ``FLAT,LAMP``) to a frame type.

        Raises
        ------
        InvalidArgumentError
            If the DPR type is not a MUSE raw frame type.
        """
        t = (dpr_type or "").strip().upper()
        table = {
            "BIAS": cls.BIAS, "DARK": cls.DARK, "FLAT,LAMP": cls.FLAT,
            "WAVE": cls.ARC, "FLAT,SKY": cls.SKYFLAT, "STD": cls.STD,
            "OBJECT": cls.OBJECT, "SKY": cls.SKY, "FLAT,LAMP,ILLUM": cls.ILLUM,
        }
        if t not in table:
            raise InvalidArgumentError(f"unknown ESO DPR TYPE {dpr_type!r}")
        return table[t]


#: Product categories (``ESO PRO CATG``) that are calibrations, keyed to the
#: astronomer's name for them.
CALIBRATION_CATEGORIES = {
    "MASTER_BIAS": "MasterBias",
    "MASTER_DARK": "MasterDark",
    "MASTER_FLAT": "MasterFlat",
    "TRACE_TABLE": "TraceTable",
    "WAVECAL_TABLE": "WavecalTable",
    "WAVECAL_RESIDUALS": "WavecalResiduals",
    "LSF_PROFILE": "LSF",
    "TWILIGHT_CUBE": "TwilightCube",
    "STD_RESPONSE": "StdResponse",
    "STD_TELLURIC": "StdTelluric",
    "BADPIX_TABLE": "BadPixTable",
    "ASTROMETRY_WCS": "AstrometryWcs",
    "OFFSET_LIST": "OffsetList",
    "OUTPUT_WCS": "OutputWcs",
}

#: Static calibrations delivered with the pipeline (never made by a run here).
STATIC_CATEGORIES = {
    "LINE_CATALOG": "LineCatalog",
    "GEOMETRY_TABLE": "GeometryTable",
    "EXTINCT_TABLE": "ExtinctionTable",
    "STD_FLUX_TABLE": "StdFluxTable",
    "FILTER_LIST": "FilterList",
    "SKY_LINES": "SkyLines",
}

#: Science products.
SCIENCE_CATEGORIES = {
    "PIXTABLE_OBJECT": "PixTable",
    "PIXTABLE_STD": "PixTable",
    "PIXTABLE_SKY": "PixTable",
    "PIXTABLE_REDUCED": "PixTable",
    "PIXTABLE_POSITIONED": "PixTable",
    "PIXTABLE_COMBINED": "PixTable",
    "DATACUBE_FINAL": "DataCube",
    "DATACUBE_ZAP": "DataCube",
    "DATACUBE_STD": "DataCube",
    "IMAGE_FOV": "Image",
    "OBJECT_RESAMPLED": "Image",
    # the emission-line and continuum sources of a cube (step ``sources``, musewise.products.catalog)
    "SOURCE_CATALOG": "SourceCatalog",
}


def kind_of_category(category: str) -> DatasetKind:
    """Return the dataset kind of a product category (``ESO PRO CATG``).

    Unknown categories made by a reduction are treated as auxiliary products.
    """
    if category in STATIC_CATEGORIES:
        return DatasetKind.STATIC
    if category in CALIBRATION_CATEGORIES:
        return DatasetKind.CALIBRATION
    if category in SCIENCE_CATEGORIES:
        return DatasetKind.SCIENCE
    if category in FrameType.__members__:
        return DatasetKind.RAW
    return DatasetKind.AUXILIARY


class CollectionType(str, enum.Enum):
    """The kinds of collection a dataset can be found through (after LSST's Butler).

    RUN: where one run (or one ingest stream) writes its datasets; every dataset
    belongs to exactly one RUN collection. CHAINED: an ordered search path over
    other collections, e.g. a project's reference chain (newest run first) or a
    user's own trials. CALIBRATION: calibrations certified for a time range
    (MJD, days); a calibration lookup searches these.
    """

    RUN = "run"
    CHAINED = "chained"
    CALIBRATION = "calibration"


#: Collection of every raw frame ingested (a RUN collection).
RAW_COLLECTION = "MUSE/raw"
#: Collection of the static calibration tables ingested (a RUN collection).
STATIC_COLLECTION = "MUSE/static"
#: Calibration collection certifying the static tables for their dates of validity.
STATIC_CALIB_COLLECTION = "MUSE/calib"


def reference_chain(project: str) -> str:
    """Name of a project's reference chain: the reference reduction everyone shares."""
    return f"{project}/reference"


def reference_calibrations(project: str) -> str:
    """Name of the calibration collection of a project's reference reduction."""
    return f"{project}/calib"


def user_chain(user: str) -> str:
    """Name of a user's chain of personal trial runs (``commit=False``)."""
    return f"u/{user}"


def user_calibrations(user: str) -> str:
    """Name of the calibration collection of a user's personal trials."""
    return f"u/{user}/calib"


def run_collection(run_id: int, *, project: str | None = None, user: str | None = None) -> str:
    """Name of the RUN collection a run writes to: under its project (reference) or its user (trial)."""
    owner = f"{project}" if project is not None else f"u/{user}"
    return f"{owner}/run/{int(run_id):06d}"


#: Default certified validity of a calibration, per category: (days before, days after) its MJD-OBS.
#: Nightly calibrations serve the nights around them; slowly varying ones serve longer.
DEFAULT_VALIDITY_DAYS = {
    "MASTER_BIAS": (7.0, 7.0),
    "MASTER_DARK": (30.0, 30.0),
    "MASTER_FLAT": (3.0, 3.0),
    "TRACE_TABLE": (3.0, 3.0),
    "WAVECAL_TABLE": (3.0, 3.0),
    "WAVECAL_RESIDUALS": (3.0, 3.0),
    "LSF_PROFILE": (30.0, 30.0),
    "TWILIGHT_CUBE": (5.0, 5.0),
    "STD_RESPONSE": (5.0, 5.0),
    "STD_TELLURIC": (5.0, 5.0),
    "BADPIX_TABLE": (180.0, 180.0),
    # The offsets muse_exp_align measures hold for the exposures of its night only.
    "OFFSET_LIST": (0.5, 0.5),
    # The grid of a field serves every exposure of the field, whenever it was taken (it is chosen
    # for its field only): open-ended.
    "OUTPUT_WCS": (math.inf, math.inf),
}
#: Validity of a calibration category not listed above (days before, after).
FALLBACK_VALIDITY_DAYS = (14.0, 14.0)
#: Longest finite certified range (days): longer validity is open-ended (``end`` None),
#: which keeps a lookup an index range scan.
MAX_CERTIFIED_SPAN_DAYS = 400.0


class RunStatus(str, enum.Enum):
    """Life cycle of a reduction run."""

    PLANNED = "planned"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class QualityFlag(str, enum.Enum):
    """Quality grade a reviewer or a QC notebook gives one IFU of a dataset."""

    UNCHECKED = "unchecked"
    GOOD = "good"
    WARNING = "warning"
    BAD = "bad"


#: Raw frame types that are exposures of the sky (their DATE-OBS names an exposure).
EXPOSURE_TYPES = ("OBJECT", "STD", "SKY", "SKYFLAT")


#: Observing modes of MUSE (``ESO INS MODE``).
INSTRUMENT_MODES = ("WFM-NOAO-N", "WFM-NOAO-E", "WFM-AO-N", "WFM-AO-E", "NFM-AO-N")

#: Number of IFUs of MUSE.
N_IFU = 24
