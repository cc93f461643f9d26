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


class StoredFile(Base):
    """A file in the datastore: content-addressed by its sha256, written once."""

    __tablename__ = "files"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    #: Location relative to the datastore root (from a template over the data ID).
    path: Mapped[str] = mapped_column(String(512), unique=True, nullable=False)
    original_name: Mapped[str] = mapped_column(String(256), default="")
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
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    file: Mapped[StoredFile] = relationship(lazy="joined")
    owner: Mapped[User] = relationship(foreign_keys=[owner_id], lazy="joined")
    project: Mapped[Project | None] = relationship(lazy="joined")
    ifus: Mapped[list["DatasetIfu"]] = relationship(
        back_populates="dataset", cascade="all, delete-orphan", lazy="selectin",
        order_by="DatasetIfu.ifu",
    )

    __table_args__ = (
        UniqueConstraint("file_id", "category", name="uq_dataset_file_category"),
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
    """Audit trail of every change of ``is_valid`` / quality flag: who, when, why, before/after."""

    __tablename__ = "validity_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    ifu: Mapped[int] = mapped_column(Integer)
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


# Tables of the review queue and data releases live in their own module; importing it
# here registers them in Base.metadata for Alembic and create_all.
from . import schema_review  # noqa: E402,F401
