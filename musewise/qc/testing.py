"""Small MUSE-like files and archived products for tests and demos of QC, review and releases.

The files follow the layouts the MUSE pipeline writes (checked against real
``muse_bias`` output): raw frames with a ``CHANnn`` image extension whose
``ESO DET OUTn`` keywords give the four outputs with pre- and overscans; master
calibrations with primary + ``DATA``/``DQ``/``STAT``; cubes with ``DATA``/``STAT``
and a celestial + spectral WCS. Sizes are tiny (tens of pixels) so tests stay fast.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

#: Geometry of the small test CCD: per output NX x NY data pixels, PRSC prescan, OVSC overscan.
NX, NY, PRSC, OVSC = 48, 48, 4, 4
GAINS = (1.10, 1.12, 1.08, 1.15)  # e-/adu per output
LEVELS = (1000.0, 1010.0, 1025.0, 1040.0)  # raw bias level per output (adu)


def _det_keys(h, ext: bool) -> None:
    h["HIERARCH ESO DET OUTPUTS"] = 4
    h["HIERARCH ESO DET CHIP NX"] = 2 * NX
    h["HIERARCH ESO DET CHIP NY"] = 2 * NY
    for i, (x, y) in enumerate(((1, 1), (2 * NX, 1), (2 * NX, 2 * NY), (1, 2 * NY)), start=1):
        k = f"HIERARCH ESO DET OUT{i} "
        h[k + "X"], h[k + "Y"], h[k + "NX"], h[k + "NY"] = x, y, NX, NY
        h[k + "PRSCX"] = h[k + "PRSCY"] = PRSC
        h[k + "OVSCX"] = h[k + "OVSCY"] = OVSC
        h[k + "GAIN"] = GAINS[i - 1]


def _primary(date_obs: datetime, **keys):
    from astropy.io import fits
    from astropy.time import Time

    h = fits.Header()
    h["INSTRUME"] = "MUSE"
    h["TELESCOP"] = "ESO-VLT-U4"
    h["DATE-OBS"] = date_obs.strftime("%Y-%m-%dT%H:%M:%S.000")
    h["MJD-OBS"] = float(Time(date_obs).mjd)
    h["HIERARCH ESO INS MODE"] = "WFM-NOAO-N"
    for k, v in keys.items():
        h[k] = v
    return h


def write_raw_bias(path, date_obs: datetime, ron_adu: float = 2.2, seed: int = 0, ifu: int = 1) -> Path:
    """A raw BIAS frame: primary + ``CHANnn`` int16 image with pre/overscans (adu)."""
    from astropy.io import fits

    rng = np.random.default_rng(seed)
    full_x, full_y = 2 * (NX + PRSC + OVSC), 2 * (NY + PRSC + OVSC)
    img = np.empty((full_y, full_x), float)
    half_x, half_y = full_x // 2, full_y // 2
    # Quadrant order as the DET OUTn keywords: 1 bottom-left, 2 bottom-right, 3 top-right, 4 top-left.
    for (ys, xs), level in zip(((slice(0, half_y), slice(0, half_x)), (slice(0, half_y), slice(half_x, None)),
                                (slice(half_y, None), slice(half_x, None)), (slice(half_y, None), slice(0, half_x))),
                               LEVELS):
        img[ys, xs] = level
    img += rng.normal(0, ron_adu, img.shape)
    h0 = _primary(date_obs, EXPTIME=0.0, OBJECT="BIAS")
    h0["HIERARCH ESO DPR TYPE"] = "BIAS"
    h0["HIERARCH ESO DPR CATG"] = "CALIB"
    ext = fits.ImageHDU(np.round(img).astype(np.int16), name=f"CHAN{ifu:02d}")
    _det_keys(ext.header, True)
    fits.HDUList([fits.PrimaryHDU(header=h0), ext]).writeto(path, overwrite=True)
    return Path(path)


def _trim(img):
    full_x, full_y = img.shape[1], img.shape[0]
    out = np.empty((2 * NY, 2 * NX))
    out[:NY, :NX] = img[PRSC:PRSC + NY, PRSC:PRSC + NX]
    out[:NY, NX:] = img[PRSC:PRSC + NY, full_x - PRSC - NX:full_x - PRSC]
    out[NY:, NX:] = img[full_y - PRSC - NY:full_y - PRSC, full_x - PRSC - NX:full_x - PRSC]
    out[NY:, :NX] = img[full_y - PRSC - NY:full_y - PRSC, PRSC:PRSC + NX]
    return out


def write_master(path, category: str, data: np.ndarray, date_obs: datetime, **keys) -> Path:
    """A master calibration: primary (``ESO PRO CATG``, DET keywords) + DATA/DQ/STAT."""
    from astropy.io import fits

    h0 = _primary(date_obs, **keys)
    h0["HIERARCH ESO PRO CATG"] = category
    h0["HIERARCH ESO PRO REC1 PIPE ID"] = "muse/2.8.7"
    _det_keys(h0, False)
    hdus = [fits.PrimaryHDU(header=h0), fits.ImageHDU(data.astype(np.float32), name="DATA"),
            fits.ImageHDU(np.zeros(data.shape, np.int32), name="DQ"),
            fits.ImageHDU(np.full(data.shape, 1.0, np.float32), name="STAT")]
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return Path(path)


def write_master_bias(path, raw_paths, level_offset: float = 0.0, date_obs: datetime | None = None) -> Path:
    """MASTER_BIAS from raw frames: overscan level removed per output, frames averaged (adu)."""
    from astropy.io import fits

    trimmed = []
    for p in raw_paths:
        with fits.open(p) as h:
            t = _trim(np.asarray(h[1].data, float))
        for q, level in zip(((slice(0, NY), slice(0, NX)), (slice(0, NY), slice(NX, None)),
                             (slice(NY, None), slice(NX, None)), (slice(NY, None), slice(0, NX))), LEVELS):
            t[q] -= level
        trimmed.append(t)
    data = np.mean(trimmed, axis=0) + level_offset
    date_obs = date_obs or datetime(2026, 11, 20, 18, 0)
    return write_master(path, "MASTER_BIAS", data, date_obs)


def write_cube(path, date_obs: datetime, sky_residual: float = 0.0, fwhm_pix: float = 3.5, seed: int = 0,
               size: int = 24, object: str = "NGC 0000") -> Path:
    """A DATACUBE_FINAL (5400-6500 Angstrom) with a point source and optional sky-line residuals.

    ``sky_residual`` is the peak of the residual left at 5577 and 6300 Angstrom in
    units of the per-pixel noise (0.1).
    """
    from astropy.io import fits

    rng = np.random.default_rng(seed)
    nl = 880
    wave = 5400.0 + 1.25 * np.arange(nl)
    yy, xx = np.mgrid[:size, :size]
    s = fwhm_pix / 2.3548
    src = 50 * np.exp(-((yy - size / 2) ** 2 + (xx - size / 2 - 1) ** 2) / (2 * s * s))
    data = 1.0 + src[None] * (1 + 0.0002 * (wave - 5400))[:, None, None]
    for line in (5577.338, 6300.304):
        data += sky_residual * 0.1 * np.exp(-0.5 * ((wave - line) / 1.2) ** 2)[:, None, None]
    data += rng.normal(0, 0.1, data.shape)
    h0 = _primary(date_obs, EXPTIME=600.0, OBJECT=object, RA=150.1, DEC=-30.2)
    h0["HIERARCH ESO PRO CATG"] = "DATACUBE_FINAL"
    h0["HIERARCH ESO PRO REC1 PIPE ID"] = "muse/2.8.7"
    hd = fits.Header()
    hd.update({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CTYPE3": "AWAV", "CUNIT1": "deg", "CUNIT2": "deg",
               "CUNIT3": "Angstrom", "CRPIX1": size / 2, "CRPIX2": size / 2, "CRPIX3": 1.0, "CRVAL1": 150.1,
               "CRVAL2": -30.2, "CRVAL3": 5400.0, "CD1_1": -0.2 / 3600, "CD1_2": 0.0, "CD2_1": 0.0,
               "CD2_2": 0.2 / 3600, "CD3_3": 1.25, "CD1_3": 0.0, "CD2_3": 0.0, "CD3_1": 0.0, "CD3_2": 0.0,
               "BUNIT": "10**(-20)*erg/s/cm**2/Angstrom"})
    hdus = [fits.PrimaryHDU(header=h0), fits.ImageHDU(data.astype(np.float32), header=hd, name="DATA"),
            fits.ImageHDU(np.full(data.shape, 0.01, np.float32), header=hd, name="STAT")]
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return Path(path)


def archive_product(arch, path, recipe: str, inputs=(), *, night: str = "2026-11-20", ifu: int | None = 1,
                    category: str | None = None, privilege=None, project: str | None = None):
    """Record a run of ``recipe`` on ``inputs`` (dataset IDs) that made the file ``path``; return its record."""
    from ..vocabulary import Privilege

    run = arch.begin_run(recipe, {}, night=night, ifu=ifu, inputs=[(i, "INPUT", "test") for i in inputs],
                         privilege=Privilege.CONSORTIUM if privilege is None else privilege, project=project)
    made = arch.finish_run(run, [(str(path), category, ifu)])
    return made[0]


def bias_product(arch, folder, *, level_offset: float = 0.0, ron_adu: float = 2.2, seed: int = 0,
                 hour: int = 18, privilege=None, project: str | None = None):
    """Archive three raw biases and a MASTER_BIAS made from them; return (master record, raw IDs)."""
    from ..vocabulary import Privilege

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    t0 = datetime(2026, 11, 20, hour, 0)
    raws = []
    for k in range(3):
        p = write_raw_bias(folder / f"MUSE.bias{seed}.{k}.fits", t0 + timedelta(minutes=k), ron_adu, seed * 10 + k)
        raws.append(p)
    raw_ids = [arch.ingest(p).record.id for p in raws]
    master = write_master_bias(folder / "MASTER_BIAS-01.fits", raws, level_offset, t0)
    run = arch.begin_run("muse_bias", {}, night="2026-11-20", ifu=1,
                         inputs=[(i, "BIAS", "raw bias of the night") for i in raw_ids],
                         privilege=Privilege.CONSORTIUM if privilege is None else privilege, project=project)
    rec = arch.finish_run(run, [(str(master), "MASTER_BIAS", 1)])[0]
    return rec, raw_ids


def bias_trend(arch, folder, nights=("2026-11-20", "2026-11-21", "2026-11-22"), ifus=range(1, 25), *,
               ron: float = 2.8, scatter: float = 0.12, spoiled: dict | None = None, seed: int = 0,
               privilege=None, project: str | None = None) -> dict:
    """Archive a MASTER_BIAS per night and IFU, each with its read noise stored as ``bias.ron.max``.

    One ``muse_bias`` run per night makes the IFUs' masters (small 40 x 48 images, level ~0);
    the read noise (e-) of each is ``ron`` plus seeded Gaussian scatter, plus ``spoiled[(night,
    ifu)]`` for the IFUs spoiled on purpose. For QC trends in tests and example notebooks.

    Returns
    -------
    dict
        ``(night, ifu) -> dataset id``.
    """
    from ..vocabulary import Privilege

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    spoiled = spoiled or {}
    out = {}
    for night in nights:
        t0 = datetime.strptime(night, "%Y-%m-%d") + timedelta(hours=18)
        paths = [write_master(folder / f"MASTER_BIAS-{night}-{i:02d}.fits", "MASTER_BIAS",
                              rng.normal(0.0, 1.0, size=(48, 40)), t0) for i in ifus]
        run = arch.begin_run("muse_bias", {}, night=night,
                             privilege=Privilege.CONSORTIUM if privilege is None else privilege, project=project)
        made = arch.finish_run(run, [(str(p), "MASTER_BIAS", i) for p, i in zip(paths, ifus)])
        for rec, i in zip(made, ifus):
            value = ron + scatter * rng.normal() + spoiled.get((night, i), 0.0)
            arch.add_qc(rec.id, {"bias.ron.max": value}, ifu=i, units={"bias.ron.max": "e-"}, run_id=run)
            out[night, i] = rec.id
    return out


__all__ = ["archive_product", "bias_product", "bias_trend", "write_cube", "write_master", "write_master_bias",
           "write_raw_bias"]
