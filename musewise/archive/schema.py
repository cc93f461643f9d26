"""SQLAlchemy tables of the archive registry (metadata and lineage, not bytes).

The registry records *what exists and where it came from*; the bytes live in
the datastore (:mod:`musewise.archive.datastore`). A dataset's identity is its
integer ``id`` (and its data ID: category, night, IFU, ...), never a path.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    """Current UTC time, timezone-naive (stored the same way in SQLite and PostgreSQL)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class User(Base):
    """A consortium member (or an external, public-only user)."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    full_name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str] = mapped_column(String(200), default="")
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    #: False for a user outside the consortium: sees only PUBLIC data.
    is_member: Mapped[bool] = mapped_column(Boolean, default=True)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Project(Base):
    """A science or calibration project that owns committed products."""

    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    description: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Membership(Base):
    """A user's role in a project: ``member`` (read), ``reviewer`` (may set QC flags), ``manager``."""

    __tablename__ = "memberships"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(16), default="member")


class Collection(Base):
    """A named set of datasets (see :class:`musewise.vocabulary.CollectionType`).

    RUN collections hold the datasets one run (or one ingest stream) wrote;
    CHAINED collections are search paths over others (:class:`CollectionChain`);
    CALIBRATION collections certify calibrations for time ranges (:class:`Certification`).
    """

    __tablename__ = "collections"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True, nullable=False)
    type: Mapped[str] = mapped_column(String(16), nullable=False)  # CollectionType
    #: The user a personal collection belongs to (None: the project's or the instrument's).
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    #: The project whose reference reduction this collection is part of.
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"))
    description: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    #: Resolving a search path lists the few chained and calibration collections among a
    #: million RUN collections.
    __table_args__ = (Index("ix_collections_type", "type"),)


class CollectionChain(Base):
    """One member of a CHAINED collection; members are searched highest ``position`` first."""

    __tablename__ = "collection_chains"
    parent_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True)
    child_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, nullable=False)

    __table_args__ = (Index("ix_collection_chains_child", "child_id"),)


class Certification(Base):
    """A calibration certified in a CALIBRATION collection for ``[begin_mjd, end_mjd)`` (MJD, days).

    ``begin_mjd``/``end_mjd`` None: open at that end. ``category``, ``ifu`` and ``mode``
    repeat the dataset's so that a lookup is one index range scan.
    """

    __tablename__ = "certifications"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), nullable=False)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), nullable=False)
    category: Mapped[str] = mapped_column(String(32), nullable=False)
    ifu: Mapped[int | None] = mapped_column(Integer)
    mode: Mapped[str | None] = mapped_column(String(16))
    begin_mjd: Mapped[float | None] = mapped_column(Float)
    end_mjd: Mapped[float | None] = mapped_column(Float)
    certified_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    certified: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    comment: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (
        UniqueConstraint("collection_id", "dataset_id", name="uq_certification_collection_dataset"),
        # A lookup reads the range and collection from the index alone (no table row) for the
        # thousands of certifications it passes over, then only the few that match.
        Index("ix_certifications_lookup", "category", "ifu", "begin_mjd", "end_mjd", "collection_id",
              postgresql_include=["id"]),
        # Open-ended ranges (``end_mjd`` None) may begin at any time: a small index of their own.
        Index("ix_certifications_open_end", "category", "ifu", "begin_mjd", "collection_id",
              sqlite_where=text("end_mjd IS NULL"), postgresql_where=text("end_mjd IS NULL"),
              postgresql_include=["id"]),
        Index("ix_certifications_dataset", "dataset_id"),
    )


class CertificationEvent(Base):
    """Audit trail of certifications: who certified, changed or withdrew a validity range, when, why."""

    __tablename__ = "certification_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    #: ``certify``, ``change`` or ``decertify``.
    action: Mapped[str] = mapped_column(String(16))
    begin_before: Mapped[float | None] = mapped_column(Float)
    end_before: Mapped[float | None] = mapped_column(Float)
    begin_after: Mapped[float | None] = mapped_column(Float)
    end_after: Mapped[float | None] = mapped_column(Float)
    comment: Mapped[str] = mapped_column(Text, default="")


class StoredFile(Base):
    """A file in the datastore, written once; several datasets may share it."""

    __tablename__ = "files"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    #: Location relative to the datastore root (from a template over the data ID).
    path: Mapped[str] = mapped_column(String(512), unique=True, nullable=False)
    original_name: Mapped[str] = mapped_column(String(256), default="")
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class FileClaim(Base):
    """A user who showed the datastore's writer service the bytes of a stored file.

    Written only by the writer service (:mod:`musewise.archive.storeservice`), which
    checksummed the bytes the caller's process handed over: proof that the user holds
    them. It lets the user add a dataset over a file whose row their privileges do not
    show (identical bytes archived by someone else), never over one they merely name.
    """

    __tablename__ = "file_claims"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), primary_key=True)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Dataset(Base):
    """A raw frame, static calibration, product or executed notebook."""

    __tablename__ = "datasets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # DatasetKind
    #: ESO DPR-derived frame type for raw data (BIAS...) or ESO PRO CATG for products.
    category: Mapped[str] = mapped_column(String(32), nullable=False)
    file_id: Mapped[int] = mapped_column(ForeignKey("files.id"), nullable=False)
    #: Observing night, local evening date YYYY-MM-DD (noon-to-noon in Chile).
    night: Mapped[str | None] = mapped_column(String(10))
    date_obs: Mapped[datetime | None] = mapped_column(DateTime)
    mjd_obs: Mapped[float | None] = mapped_column(Float)
    exptime: Mapped[float | None] = mapped_column(Float)  # seconds
    mode: Mapped[str | None] = mapped_column(String(16))  # ESO INS MODE
    object: Mapped[str | None] = mapped_column(String(80))
    #: The IFU of a single-IFU product; NULL when the file holds several IFUs.
    ifu: Mapped[int | None] = mapped_column(Integer)
    pipeline_version: Mapped[str | None] = mapped_column(String(32))
    header: Mapped[dict | None] = mapped_column(JSON)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"))
    privilege: Mapped[int] = mapped_column(Integer, nullable=False, default=3)
    #: The run that produced this dataset (NULL for raw frames and static calibrations).
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    #: The RUN collection the dataset was written to (part of its data ID).
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id"), nullable=False)
    #: The exposure a per-exposure frame or product belongs to (its DATE-OBS, ISO seconds).
    exposure: Mapped[str | None] = mapped_column(String(32))
    #: The verdict on the dataset as a whole (per-IFU verdicts are in :class:`DatasetIfu`).
    is_valid: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)
    flag: Mapped[str] = mapped_column(String(16), default="unchecked", nullable=False)  # QualityFlag
    comment: Mapped[str] = mapped_column(Text, default="", nullable=False)
    validity_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    validity_at: Mapped[datetime | None] = mapped_column(DateTime)
    #: Set while an input this dataset was made from (directly or not) is invalid: the
    #: ID of that invalid dataset. An affected dataset is never selected nor released.
    affected_by: Mapped[int | None] = mapped_column(Integer)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    file: Mapped[StoredFile] = relationship(lazy="joined")
    owner: Mapped[User] = relationship(foreign_keys=[owner_id], lazy="joined")
    project: Mapped[Project | None] = relationship(lazy="joined")
    collection: Mapped[Collection] = relationship(lazy="joined")
    ifus: Mapped[list["DatasetIfu"]] = relationship(
        back_populates="dataset", cascade="all, delete-orphan", lazy="selectin",
        order_by="DatasetIfu.ifu",
    )

    __table_args__ = (
        Index("ix_datasets_file", "file_id"),
        Index("ix_datasets_collection", "collection_id", "category"),
        Index("ix_datasets_select", "category", "mode", "mjd_obs"),
        Index("ix_datasets_night", "night", "category"),
        Index("ix_datasets_run", "run_id"),
    )


class DatasetIfu(Base):
    """Per-IFU state of a dataset: is it usable, and how good is it."""

    __tablename__ = "dataset_ifus"
    dataset_id: Mapped[int] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True
    )
    ifu: Mapped[int] = mapped_column(Integer, primary_key=True)
    is_valid: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)
    flag: Mapped[str] = mapped_column(String(16), default="unchecked")  # QualityFlag
    comment: Mapped[str] = mapped_column(Text, default="")
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    updated: Mapped[datetime | None] = mapped_column(DateTime)
    dataset: Mapped[Dataset] = relationship(back_populates="ifus")

    __table_args__ = (Index("ix_dataset_ifus_valid", "ifu", "is_valid"),)


class ValidityEvent(Base):
    """Audit trail of every change of ``is_valid`` / quality flag: who, when, why, before/after.

    ``ifu`` None: the verdict on the dataset as a whole. ``flag_after`` ``affected``: the
    dataset was marked affected by an invalidated input (``comment`` names it).
    """

    __tablename__ = "validity_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    ifu: Mapped[int | None] = mapped_column(Integer)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    valid_before: Mapped[bool] = mapped_column(Boolean)
    valid_after: Mapped[bool] = mapped_column(Boolean)
    flag_before: Mapped[str] = mapped_column(String(16))
    flag_after: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str] = mapped_column(Text, default="")


class Run(Base):
    """One execution of a recipe (pipeline or Python) on one IFU or on merged data."""

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recipe: Mapped[str] = mapped_column(String(64), nullable=False)
    parameters: Mapped[dict] = mapped_column(JSON, default=dict)
    night: Mapped[str | None] = mapped_column(String(10))
    ifu: Mapped[int | None] = mapped_column(Integer)
    mode: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="running")  # RunStatus
    pipeline_version: Mapped[str | None] = mapped_column(String(64))
    musewise_version: Mapped[str | None] = mapped_column(String(32))
    #: The executed notebook of this run (a Dataset of kind 'notebook').
    notebook_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", use_alter=True))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"))
    privilege: Mapped[int] = mapped_column(Integer, default=1)
    started: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    ended: Mapped[datetime | None] = mapped_column(DateTime)
    error: Mapped[str | None] = mapped_column(Text)
    #: Free-form extra record: esorex command, host, calibration choices...
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    #: The RUN collection the run writes its products to.
    collection_id: Mapped[int | None] = mapped_column(ForeignKey("collections.id"))
    #: True for a run of the reference reduction (``commit=True``): it reads only the
    #: reference chain, raw and static data, and its products join the reference chain.
    is_reference: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    #: The collection search path the run's inputs were chosen from.
    collections: Mapped[list | None] = mapped_column(JSON)
    user: Mapped[User] = relationship(lazy="joined")
    inputs: Mapped[list["RunInput"]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", back_populates="run"
    )


class RunInput(Base):
    """An input dataset of a run, with the tag it was given and why it was chosen."""

    __tablename__ = "run_inputs"
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text, default="")
    run: Mapped[Run] = relationship(back_populates="inputs")

    __table_args__ = (Index("ix_run_inputs_dataset", "dataset_id"),)


class QCParameter(Base):
    """A quality-control number measured on a dataset (per IFU or global)."""

    __tablename__ = "qc_parameters"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    ifu: Mapped[int | None] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[float | None] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(32), default="")
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))

    __table_args__ = (Index("ix_qc_dataset", "dataset_id", "name"),)


class CatalogSource(Base):
    """A source of an archived ``SOURCE_CATALOG``: one row of its ``SOURCES`` table, for SQL.

    Seen by exactly those who may see the catalogue dataset (its privilege rule);
    written when the catalogue is archived, in the same transaction.
    """

    __tablename__ = "sources"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), nullable=False)
    source_id: Mapped[int] = mapped_column(Integer)           # "id" in the catalogue file
    kind: Mapped[str] = mapped_column(String(16))             # line or continuum
    ra: Mapped[float] = mapped_column(Float)                  # deg
    dec: Mapped[float] = mapped_column(Float)                 # deg
    x: Mapped[float | None] = mapped_column(Float)            # spaxel of the cube, 0-based
    y: Mapped[float | None] = mapped_column(Float)
    wavelength: Mapped[float | None] = mapped_column(Float)   # Angstrom (air); NULL for continuum
    flux: Mapped[float | None] = mapped_column(Float)         # BUNIT * Angstrom (line) or BUNIT (continuum)
    flux_err: Mapped[float | None] = mapped_column(Float)
    snr: Mapped[float | None] = mapped_column(Float)
    spectrum: Mapped[str] = mapped_column(String(16), default="")  # extension of its spectrum
    image: Mapped[str] = mapped_column(String(16), default="")     # extension of its image

    __table_args__ = (Index("ix_sources_dataset", "dataset_id", "source_id"),
                      Index("ix_sources_wavelength", "kind", "wavelength"))


# Tables of the review queue and data releases live in their own module; importing it
# here registers them in Base.metadata for Alembic and create_all.
from . import schema_review  # noqa: E402,F401
