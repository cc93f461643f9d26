"""Released products in the IVOA ObsCore 1.1 shape (table ``ivoa_obscore``).

Rows are written when a release is frozen, from the release manifest entries and
the product headers (spatial and spectral WCS). Units follow ObsCore: positions
and field of view in deg, spatial resolution in arcsec, times in MJD (d), exposure
in s, wavelengths in m, sizes in kbyte. A TAP service publishing the registry
database finds the released products under the standard column names.
"""

from __future__ import annotations

import math

import numpy as np
from traitlets import Unicode
from traitlets.config import Configurable

from ..vocabulary import CALIBRATION_CATEGORIES


class ReleaseConfig(Configurable):
    """How releases identify and locate their products for the Virtual Observatory."""

    publisher_authority = Unicode(
        "musewise.consortium",
        help="IVOA authority of obs_publisher_did: ivo://<authority>/release?<name>/<version>/<dataset id>.",
    ).tag(config=True)
    access_url_base = Unicode(
        "",
        help="URL under which exported release folders are served; access_url is "
        "<base>/<name>-<version>/<path in the folder>. Empty: the path inside the folder.",
    ).tag(config=True)
    origin = Unicode(
        "ESO",
        help="ORIGIN written in the ESO Phase 3 headers of exported science cubes: the "
        "institution that made the products ('ESO' is what the MUSE pipeline writes).",
    ).tag(config=True)
    reference = Unicode(
        "",
        help="REFERENC of the Phase 3 headers: the bibliographic code of the release's "
        "paper; empty until it is published (the standard allows an empty string).",
    ).tag(config=True)


#: ObsCore 1.1 mandatory columns, in the standard's order.
OBSCORE_COLUMNS = (
    "dataproduct_type", "calib_level", "obs_collection", "obs_id", "obs_publisher_did", "access_url",
    "access_format", "access_estsize", "target_name", "s_ra", "s_dec", "s_fov", "s_region", "s_resolution",
    "s_xel1", "s_xel2", "t_min", "t_max", "t_exptime", "t_resolution", "t_xel", "em_min", "em_max",
    "em_res_power", "em_xel", "o_ucd", "pol_states", "pol_xel", "facility_name", "instrument_name",
)

#: MUSE WFM resolving power at the ends of its range: (wavelength in Angstrom, R).
MUSE_RES_POWER_RANGE = ((4800.0, 1770.0), (9300.0, 3590.0))


def muse_resolving_power(wavelength: float) -> float:
    """Resolving power R = lambda / delta lambda of MUSE WFM at ``wavelength`` (Angstrom).

    Linear between R ~ 1770 at 4800 A and 3590 at 9300 A (the MUSE User Manual's
    figures), held at the end values outside them. ObsCore's ``em_res_power`` and
    Phase 3's ``SPEC_RES`` both take it at the centre of a product's range.
    """
    (w0, r0), (w1, r1) = MUSE_RES_POWER_RANGE
    w = min(max(float(wavelength), w0), w1)
    return r0 + (r1 - r0) * (w - w0) / (w1 - w0)


def _product_type(category: str, naxis: int) -> tuple[str, str, int]:
    """(dataproduct_type, dataproduct_subtype, calib_level) of a product category."""
    if category.startswith("DATACUBE"):
        return "cube", category.lower(), 3
    if category in ("IMAGE_FOV", "OBJECT_RESAMPLED"):
        return "image", category.lower(), 3
    if category.startswith("PIXTABLE"):
        return "measurements", category.lower(), 2
    if category in CALIBRATION_CATEGORIES:
        return ("image" if naxis >= 2 else "measurements"), f"calibration.{category.lower()}", 2
    return "measurements", category.lower(), 2


def wcs_info(path) -> dict:
    """Spatial footprint and spectral range of a cube or image (empty for tables and CCD frames).

    Returns
    -------
    dict
        ``naxis`` of the data extension; for a celestial WCS ``s_ra``, ``s_dec`` (the
        centre, deg), ``s_xel1``, ``s_xel2`` (pixels), ``s_fov`` (deg), ``s_region``;
        for a cube's spectral axis ``em_min``, ``em_max`` (pixel centres, m) and ``em_xel``.
    """
    from astropy.io import fits
    from astropy.wcs import WCS

    out = {}
    with fits.open(path, memmap=True) as h:
        ext = h["DATA"] if "DATA" in h else h[0]
        hdr = ext.header
        naxis = int(hdr.get("NAXIS", 0))
        out["naxis"] = naxis
        if naxis < 2 or "CTYPE1" not in hdr or "RA" not in str(hdr.get("CTYPE1", "")):
            return out
        nx, ny = int(hdr["NAXIS1"]), int(hdr["NAXIS2"])
        w = WCS(hdr).celestial
        corners = w.pixel_to_world_values(np.array([-0.5, nx - 0.5, nx - 0.5, -0.5]),
                                          np.array([-0.5, -0.5, ny - 0.5, ny - 0.5]))
        centre = w.pixel_to_world_values((nx - 1) / 2, (ny - 1) / 2)
        ra, dec = float(centre[0]), float(centre[1])
        out.update(s_ra=ra, s_dec=dec, s_xel1=nx, s_xel2=ny)
        cdec = math.cos(math.radians(dec))
        diag = [math.hypot((float(corners[0][i]) - ra) * cdec, float(corners[1][i]) - dec) for i in range(4)]
        out["s_fov"] = 2 * max(diag)
        out["s_region"] = "POLYGON ICRS " + " ".join(f"{float(a):.6f} {float(d):.6f}" for a, d in zip(*corners))
        if naxis >= 3 and "CRVAL3" in hdr:  # a cube without a spectral axis has no em_* columns
            from ..products.wcs import spectral_axis

            wave, _air = spectral_axis(hdr, int(hdr["NAXIS3"]), axis=3)
            out.update(em_min=float(wave.min()) * 1e-10, em_max=float(wave.max()) * 1e-10, em_xel=len(wave))
    return out


def obscore_row(arch, rec, release, path_in_release: str) -> dict:
    """ObsCore column values of one released product.

    Parameters
    ----------
    arch : Archive
    rec : DatasetRecord
    release : Release row (with id, name, version, created)
    path_in_release : str
        Where the file is inside an exported release folder.
    """
    cfg = ReleaseConfig(config=arch.config.config)
    try:
        wcs = wcs_info(arch.path(rec.id))
    except Exception:  # a product whose WCS astropy cannot read is still released, unlocated
        wcs = {}
    ptype, subtype, level = _product_type(rec.category, wcs.get("naxis", 0))
    h = rec.header or {}
    base = cfg.access_url_base.rstrip("/")
    folder = f"{release.name}-{release.version}"
    fwhm = None
    for q in arch.qc(rec.id):
        if q["name"] == "cube.fwhm.median" and q["value"] is not None:
            fwhm = q["value"]
    em_min = wcs.get("em_min", 4.65e-7 if ptype == "cube" else None)
    em_max = wcs.get("em_max", 9.35e-7 if ptype == "cube" else None)
    res_power = muse_resolving_power((em_min + em_max) / 2 * 1e10) if em_min is not None else None
    t_min = rec.mjd_obs
    t_max = rec.mjd_obs + (rec.exptime or 0.0) / 86400.0 if rec.mjd_obs is not None else None
    row = dict(
        dataproduct_type=ptype, dataproduct_subtype=subtype, calib_level=level,
        obs_collection=f"MUSE {release.name} {release.version}",
        obs_id=str(h.get("ARCFILE") or h.get("ESO OBS NAME") or f"{rec.category}.{rec.night}.{rec.id}")[:128],
        obs_title=f"{rec.category} {rec.object or ''} {rec.night or ''}".strip()[:256],
        obs_publisher_did=f"ivo://{cfg.publisher_authority}/release?{release.name}/{release.version}/{rec.id}",
        obs_creator_did=None, obs_release_date=release.created,
        access_url=f"{base}/{folder}/{path_in_release}" if base else path_in_release,
        access_format="application/fits", access_estsize=int(math.ceil(rec.size / 1024)),
        target_name=rec.object,
        s_ra=wcs.get("s_ra", h.get("RA")), s_dec=wcs.get("s_dec", h.get("DEC")), s_fov=wcs.get("s_fov"),
        s_region=wcs.get("s_region"), s_resolution=fwhm, s_xel1=wcs.get("s_xel1"), s_xel2=wcs.get("s_xel2"),
        t_min=t_min, t_max=t_max, t_exptime=rec.exptime, t_resolution=rec.exptime, t_xel=1,
        em_min=em_min, em_max=em_max, em_res_power=res_power, em_xel=wcs.get("em_xel"), em_ucd="em.wl",
        o_ucd="phot.flux.density;em.wl" if ptype in ("cube", "image") and level == 3 else None,
        pol_states=None, pol_xel=None, facility_name="ESO-VLT-U4", instrument_name="MUSE",
        release_id=release.id, dataset_id=rec.id,
    )
    for k in ("s_ra", "s_dec"):
        try:
            row[k] = None if row[k] is None else float(row[k])
        except (TypeError, ValueError):
            row[k] = None
    return row


def obscore_rows(arch, release_name: str | None = None) -> list[dict]:
    """ObsCore rows of released products the user may see (optionally of one release name)."""
    from sqlalchemy import select

    from ..archive.schema import Dataset
    from ..archive.schema_review import ObsCoreRecord, Release

    with arch.session() as s:
        q = (select(ObsCoreRecord).join(Dataset, Dataset.id == ObsCoreRecord.dataset_id)
             .where(arch.visible(s)).order_by(ObsCoreRecord.id))
        if release_name is not None:
            q = q.join(Release, Release.id == ObsCoreRecord.release_id).where(Release.name == release_name)
        return [{c.name: getattr(o, c.name) for c in ObsCoreRecord.__table__.columns} for o in s.scalars(q)]


__all__ = ["MUSE_RES_POWER_RANGE", "OBSCORE_COLUMNS", "ReleaseConfig", "muse_resolving_power", "obscore_row",
           "obscore_rows", "wcs_info"]
