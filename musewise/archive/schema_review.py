"""Registry tables for distributed QC review and data releases.

Review
    :class:`QCClaim` - who is looking at a product now (one claimant per dataset,
    with an expiry time); :class:`ReviewState` - where an IFU of a product stands in
    the review (``pending``: flagged by a machine, awaiting a person; ``affected``:
    an input it was made from was invalidated; ``reviewed``: a person gave a verdict);
    :class:`ReviewEvent` - the audit trail of claims, reviews, affected-marking and
    release actions (validity changes themselves are audited by
    :class:`~musewise.archive.schema.ValidityEvent`).

Releases
    :class:`Release` and :class:`ReleaseItem` - a named, versioned, frozen set of
    products with the JSON manifest (checksums and provenance) as it was written;
    the database refuses any UPDATE or DELETE of these rows (triggers created by
    migration ``0002``; the ORM refuses too, see :func:`_refuse_change`).
    :class:`ObsCoreRecord` - the released products in the IVOA ObsCore 1.1 shape
    (table ``ivoa_obscore``) so that VO tools (TAP services) can find them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import Mapped, mapped_column

from ..exceptions import ReleaseFrozenError
from .schema import Base, utcnow

#: Messages of the database triggers and ORM guards that keep releases frozen.
FROZEN_MESSAGE = "data releases are frozen: their rows cannot be changed or deleted"


class QCClaim(Base):
    """A reviewer's claim on a product: nobody else may review it until it expires."""

    __tablename__ = "qc_claims"
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False)
    claimed: Mapped[datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    expires: Mapped[datetime] = mapped_column(DateTime, nullable=False)


class ReviewState(Base):
    """Where one IFU of a product stands in the review (``ifu`` 0: a product holding no IFU)."""

    __tablename__ = "qc_review_states"
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True)
    ifu: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: ``pending`` | ``affected`` | ``reviewed`` (:class:`musewise.qc.review.ReviewStatus`).
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    #: The invalidated dataset this one was made from (state ``affected``).
    source_dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"))
    reason: Mapped[str] = mapped_column(Text, default="", nullable=False)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    updated: Mapped[datetime] = mapped_column(DateTime, default=utcnow, nullable=False)

    __table_args__ = (Index("ix_qc_review_states_state", "state"),)


class ReviewEvent(Base):
    """Audit trail of the review and release work: who did what, when, on which product."""

    __tablename__ = "qc_review_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False)
    #: ``claim``, ``unclaim``, ``claim_expired``, ``review``, ``auto_flag``, ``affected``,
    #: ``release_create``, ``release_export``, ``released_invalidated``.
    action: Mapped[str] = mapped_column(String(32), nullable=False)
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    ifu: Mapped[int | None] = mapped_column(Integer)
    release_id: Mapped[int | None] = mapped_column(ForeignKey("releases.id"))
    comment: Mapped[str] = mapped_column(Text, default="", nullable=False)

    __table_args__ = (Index("ix_qc_review_events_dataset", "dataset_id"),)


class Release(Base):
    """A named, versioned, frozen data release."""

    __tablename__ = "releases"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), nullable=False)
    version: Mapped[str] = mapped_column(String(32), nullable=False)
    description: Mapped[str] = mapped_column(Text, default="", nullable=False)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False)
    #: The manifest exactly as written (UTF-8 JSON); its sha256 is ``manifest_sha256``.
    manifest: Mapped[str] = mapped_column(Text, nullable=False)
    manifest_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    n_products: Mapped[int] = mapped_column(Integer, nullable=False)
    total_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)

    __table_args__ = (UniqueConstraint("name", "version", name="uq_release_name_version"),)


class ReleaseItem(Base):
    """One product of a release, with the checksum it had when frozen."""

    __tablename__ = "release_items"
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"), primary_key=True)
    #: No cascade: a released dataset cannot be deleted from the archive.
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    #: Location inside an exported release folder, e.g. ``products/MASTER_BIAS/MASTER_BIAS-01.fits``.
    path: Mapped[str] = mapped_column(String(512), nullable=False)

    __table_args__ = (Index("ix_release_items_dataset", "dataset_id"),)


class ObsCoreRecord(Base):
    """A released product described with the IVOA ObsCore 1.1 columns (table ``ivoa_obscore``).

    Units follow the standard: angles in deg, times in MJD (d), exposure in s,
    wavelengths in m, estimated size in kbyte.
    """

    __tablename__ = "ivoa_obscore"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataproduct_type: Mapped[str | None] = mapped_column(String(32))
    dataproduct_subtype: Mapped[str | None] = mapped_column(String(64))
    calib_level: Mapped[int] = mapped_column(Integer, nullable=False)
    obs_collection: Mapped[str] = mapped_column(String(128), nullable=False)
    obs_id: Mapped[str] = mapped_column(String(128), nullable=False)
    obs_title: Mapped[str | None] = mapped_column(String(256))
    obs_publisher_did: Mapped[str] = mapped_column(String(256), nullable=False, unique=True)
    obs_creator_did: Mapped[str | None] = mapped_column(String(256))
    obs_release_date: Mapped[datetime | None] = mapped_column(DateTime)
    access_url: Mapped[str | None] = mapped_column(String(512))
    access_format: Mapped[str | None] = mapped_column(String(64))
    access_estsize: Mapped[int | None] = mapped_column(BigInteger)  # kbyte
    target_name: Mapped[str | None] = mapped_column(String(80))
    s_ra: Mapped[float | None] = mapped_column(Float)  # deg ICRS
    s_dec: Mapped[float | None] = mapped_column(Float)  # deg ICRS
    s_fov: Mapped[float | None] = mapped_column(Float)  # deg
    s_region: Mapped[str | None] = mapped_column(Text)  # STC-S
    s_resolution: Mapped[float | None] = mapped_column(Float)  # arcsec
    s_xel1: Mapped[int | None] = mapped_column(BigInteger)
    s_xel2: Mapped[int | None] = mapped_column(BigInteger)
    t_min: Mapped[float | None] = mapped_column(Float)  # MJD
    t_max: Mapped[float | None] = mapped_column(Float)  # MJD
    t_exptime: Mapped[float | None] = mapped_column(Float)  # s
    t_resolution: Mapped[float | None] = mapped_column(Float)  # s
    t_xel: Mapped[int | None] = mapped_column(BigInteger)
    em_min: Mapped[float | None] = mapped_column(Float)  # m
    em_max: Mapped[float | None] = mapped_column(Float)  # m
    em_res_power: Mapped[float | None] = mapped_column(Float)
    em_xel: Mapped[int | None] = mapped_column(BigInteger)
    em_ucd: Mapped[str | None] = mapped_column(String(64))
    o_ucd: Mapped[str | None] = mapped_column(String(64))
    pol_states: Mapped[str | None] = mapped_column(String(32))
    pol_xel: Mapped[int | None] = mapped_column(BigInteger)
    facility_name: Mapped[str | None] = mapped_column(String(64))
    instrument_name: Mapped[str | None] = mapped_column(String(64))
    #: musewise links (not ObsCore): the release and the archive dataset.
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"), nullable=False)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), nullable=False)

    __table_args__ = (UniqueConstraint("release_id", "dataset_id", name="uq_obscore_release_dataset"),)



def _refuse_change(mapper, connection, target):
    raise ReleaseFrozenError(f"{FROZEN_MESSAGE} ({type(target).__tablename__} row)")


# The database triggers are the real guard (they stop raw SQL too); these stop the ORM
# before it even tries, with a clearer error.
for _cls in (Release, ReleaseItem, ObsCoreRecord):
    event.listen(_cls, "before_update", _refuse_change)
    event.listen(_cls, "before_delete", _refuse_change)


__all__ = ["FROZEN_MESSAGE", "ObsCoreRecord", "QCClaim", "Release", "ReleaseFrozenError", "ReleaseItem",
           "ReviewEvent", "ReviewState"]
