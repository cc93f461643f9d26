"""Small MUSE-like files for tests, demos and benchmarks: raw frames, masters and cubes.

The files follow the layouts the MUSE pipeline writes (checked against real
``muse_bias`` output): raw frames with a ``CHANnn`` image extension whose
``ESO DET OUTn`` keywords give the four outputs with pre- and overscans; master
calibrations with primary + ``DATA``/``DQ``/``STAT``; cubes with ``DATA``/``STAT``
float32 (lambda, y, x), a celestial TAN WCS and a linear air wavelength axis
(``CTYPE3 = 'AWAV'``, Angstrom).

* :func:`write_raw_bias`, :func:`write_master`, :func:`write_master_bias`,
  :func:`write_cube`, :func:`write_image_fov`: tiny files (tens of pixels) for the QC, the archive and
  the web view;
* :func:`write_synthetic_cube`: a cube of any size up to a full 320 x 320 x 3681
  (~3 GB), generated and written in chunks of planes (a few tens of MB of
  memory), with a known scene (a continuum point source, an emission-line
  galaxy, a NaN edge column) for the viewers and their benchmarks.

Archived test products (which need an archive) are made by
:mod:`musewise.qc.testing`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..exceptions import InvalidArgumentError
from .ifu import chan_extname

__all__ = ["MUSE_BUNIT", "MUSE_CD3_3", "MUSE_CRVAL3", "SyntheticCube", "SyntheticSource", "cube_wcs_cards",
           "write_cube", "write_image_fov", "write_master", "write_master_bias", "write_raw_bias",
           "write_synthetic_cube"]

#: First wavelength of the MUSE WFM nominal cube (air), Angstrom.
MUSE_CRVAL3 = 4749.88
#: Wavelength step of MUSE cubes, Angstrom.
MUSE_CD3_3 = 1.25
#: Flux unit the MUSE pipeline writes in BUNIT.
MUSE_BUNIT = "10**(-20)*erg/s/cm**2/Angstrom"
_CHUNK_BYTES = 32 * 2**20  # per generated chunk: bounded memory whatever the cube size

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


def _primary(date_obs: datetime, **keys) -> fits.Header:
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
    ext = fits.ImageHDU(np.round(img).astype(np.int16), name=chan_extname(ifu))
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


def cube_wcs_cards(shape, crval3: float, step: float, *, ra: float, dec: float,
                   spectral: str = "CD", bunit: str = MUSE_BUNIT) -> dict:
    """WCS and unit cards of a cube extension, as the MUSE pipeline writes them.

    Parameters
    ----------
    shape : (n_lambda, ny, nx)
    crval3, step : float
        First wavelength and step, Angstrom (air).
    ra, dec : float
        Sky position of the reference spaxel (the centre), deg; 0.2 arcsec spaxels.
    spectral : {"CD", "PC", "CDELT"}
        ``CD``: a CDi_j matrix (the pipeline's way); ``PC``: ``CDELTi`` with a
        ``PCi_j`` matrix whose PC3_3 is 2 (so CDELT3 is half the step); ``CDELT``:
        ``CDELTi`` alone. All three describe the same wavelengths.
    bunit : str
        BUNIT.
    """
    _, ny, nx = shape
    scale = 0.2 / 3600
    cards = {"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CTYPE3": "AWAV", "CUNIT1": "deg",
             "CUNIT2": "deg", "CUNIT3": "Angstrom", "CRPIX1": nx / 2.0, "CRPIX2": ny / 2.0,
             "CRPIX3": 1.0, "CRVAL1": ra, "CRVAL2": dec, "CRVAL3": crval3}
    if spectral == "CD":
        cards.update({"CD1_1": -scale, "CD1_2": 0.0, "CD2_1": 0.0, "CD2_2": scale, "CD3_3": step,
                      "CD1_3": 0.0, "CD2_3": 0.0, "CD3_1": 0.0, "CD3_2": 0.0})
    elif spectral == "PC":
        cards.update({"CDELT1": -scale, "CDELT2": scale, "CDELT3": step / 2.0, "PC1_1": 1.0,
                      "PC2_2": 1.0, "PC3_3": 2.0})
    elif spectral == "CDELT":
        cards.update({"CDELT1": -scale, "CDELT2": scale, "CDELT3": step})
    else:
        raise InvalidArgumentError(f"spectral must be 'CD', 'PC' or 'CDELT', got {spectral!r}")
    cards["BUNIT"] = bunit
    return cards


def _cube_headers(shape, crval3, step, *, primary: fits.Header, category: str, ra: float,
                  dec: float, spectral: str = "CD"):
    """Primary, DATA and STAT headers of a cube written extension by extension."""
    nl, ny, nx = shape
    primary = primary.copy()
    primary["HIERARCH ESO PRO CATG"] = category
    primary["HIERARCH ESO PRO REC1 PIPE ID"] = "muse/2.8.7"

    def ext(name, bunit):
        h = fits.Header()
        h["XTENSION"] = "IMAGE"
        h["BITPIX"] = -32
        h["NAXIS"] = 3
        h["NAXIS1"] = nx
        h["NAXIS2"] = ny
        h["NAXIS3"] = nl
        h["PCOUNT"] = 0
        h["GCOUNT"] = 1
        h["EXTNAME"] = name
        h.update(cube_wcs_cards(shape, crval3, step, ra=ra, dec=dec, spectral=spectral, bunit=bunit))
        return h

    return primary, ext("DATA", MUSE_BUNIT), ext("STAT", f"({MUSE_BUNIT})**2")


def write_cube(path, date_obs: datetime, sky_residual: float = 0.0, fwhm_pix: float = 3.5, seed: int = 0,
               size: int = 24, object: str = "NGC 0000", spectral: str = "CD") -> Path:
    """A small DATACUBE_FINAL (5400-6500 Angstrom) with a point source and optional sky-line residuals.

    ``sky_residual`` is the peak of the residual left at 5577 and 6300 Angstrom in
    units of the per-pixel noise (0.1). ``spectral`` chooses how the WCS is
    written (:func:`cube_wcs_cards`).
    """
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
    h0, hd, hs = _cube_headers(data.shape, 5400.0, 1.25, category="DATACUBE_FINAL", ra=150.1, dec=-30.2,
                               spectral=spectral,
                               primary=_primary(date_obs, EXPTIME=600.0, OBJECT=object, RA=150.1, DEC=-30.2))
    hdus = [fits.PrimaryHDU(header=h0), fits.ImageHDU(data.astype(np.float32), header=hd, name="DATA"),
            fits.ImageHDU(np.full(data.shape, 0.01, np.float32), header=hs, name="STAT")]
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return Path(path)


def write_image_fov(path, cube_path) -> Path:
    """The IMAGE_FOV (white-light image) of a cube from :func:`write_cube`: its mean over wavelength.

    Primary (the cube's, ``ESO PRO CATG = 'IMAGE_FOV'``) + ``DATA`` with the cube's
    celestial WCS, as ``muse_scipost`` writes it beside the cube.
    """
    with fits.open(cube_path) as h:
        h0 = h[0].header.copy()
        hd = h["DATA"].header
        image = np.nanmean(h["DATA"].data, axis=0).astype(np.float32)
        wcs = {k: hd[k] for k in ("CTYPE1", "CTYPE2", "CUNIT1", "CUNIT2", "CRPIX1", "CRPIX2", "CRVAL1",
                                  "CRVAL2", "CD1_1", "CD1_2", "CD2_1", "CD2_2", "BUNIT") if k in hd}
    h0["HIERARCH ESO PRO CATG"] = "IMAGE_FOV"
    ext = fits.ImageHDU(image, name="DATA")
    ext.header.update(wcs)
    fits.HDUList([fits.PrimaryHDU(header=h0), ext]).writeto(path, overwrite=True)
    return Path(path)


@dataclass(frozen=True)
class SyntheticSource:
    """One source of a synthetic cube.

    Attributes
    ----------
    x, y : float
        Centre, spaxels (0-based, x along NAXIS1).
    continuum : float
        Continuum flux density at the peak spaxel, BUNIT.
    line_wavelength : float or None
        Centre of a Gaussian emission line, Angstrom (air).
    line_flux : float
        Line flux at the peak spaxel, BUNIT * Angstrom.
    line_sigma : float
        Gaussian sigma of the line, Angstrom.
    """

    x: float
    y: float
    continuum: float
    line_wavelength: float | None = None
    line_flux: float = 0.0
    line_sigma: float = 2.5


@dataclass(frozen=True)
class SyntheticCube:
    """What :func:`write_synthetic_cube` wrote: the path and the true scene."""

    path: Path
    shape: tuple[int, int, int]
    crval3: float
    cd3_3: float
    psf_sigma: float
    noise_sigma: float
    sources: tuple[SyntheticSource, ...] = field(default_factory=tuple)

    @property
    def wavelength(self) -> np.ndarray:
        """Wavelength of every plane, Angstrom."""
        return self.crval3 + self.cd3_3 * np.arange(self.shape[0])


def _scene_chunk(k0, k1, wave, shape, sources, psf_sigma, noise_sigma):
    """Noise-free model and variance for planes k0:k1, float32 (k, y, x)."""
    _, ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    lam = wave[k0:k1, None, None]
    model = np.zeros((k1 - k0, ny, nx), dtype=np.float32)
    for s in sources:
        psf = np.exp(-((xx - s.x) ** 2 + (yy - s.y) ** 2) / (2 * psf_sigma**2)).astype(np.float32)
        spec = np.full(k1 - k0, s.continuum, dtype=np.float64)
        if s.line_wavelength is not None:
            g = np.exp(-((lam[:, 0, 0] - s.line_wavelength) ** 2) / (2 * s.line_sigma**2))
            spec += s.line_flux * g / (np.sqrt(2 * np.pi) * s.line_sigma)
        model += spec.astype(np.float32)[:, None, None] * psf[None]
    # Variance: sky noise rising to the red plus a photon term of the sources.
    sky_var = (noise_sigma**2 * (1.0 + 0.5 * (lam - wave[0]) / max(wave[-1] - wave[0], 1.0)))
    var = (sky_var + 0.1 * np.abs(model)).astype(np.float32)
    return model, var


def write_synthetic_cube(
    path: str | os.PathLike,
    shape: tuple[int, int, int] = (3681, 320, 320),
    seed: int = 0,
    *,
    noise_sigma: float = 1.0,
    psf_sigma: float = 1.5,
    category: str = "DATACUBE_FINAL",
    spectral: str = "CD",
) -> SyntheticCube:
    """Write a synthetic MUSE cube plane-chunk by plane-chunk.

    Parameters
    ----------
    path : path-like
        Output FITS file (overwritten).
    shape : tuple of int
        (n_lambda, n_y, n_x); the default is a full MUSE WFM cube (~3 GB with STAT).
    seed : int
        Seed of the noise generator: the same seed gives the same bytes.
    noise_sigma : float
        Background noise at the blue end, BUNIT.
    psf_sigma : float
        Gaussian PSF sigma, spaxels.
    category : str
        ``ESO PRO CATG`` written in the primary header.
    spectral : {"CD", "PC", "CDELT"}
        How the linear WCS is written (see :func:`cube_wcs_cards`); the
        wavelengths are the same.

    Returns
    -------
    SyntheticCube
        The path and the true scene (source positions, line wavelength and flux).
    """
    path = Path(path)
    nl, ny, nx = (int(n) for n in shape)
    wave = MUSE_CRVAL3 + MUSE_CD3_3 * np.arange(nl)
    line = float(wave[int(0.6 * (nl - 1))])
    sources = (
        SyntheticSource(x=0.3 * nx, y=0.6 * ny, continuum=40.0),
        SyntheticSource(x=0.7 * nx, y=0.3 * ny, continuum=2.0, line_wavelength=line,
                        line_flux=300.0, line_sigma=2.5),
    )
    primary, hdata, hstat = _cube_headers((nl, ny, nx), MUSE_CRVAL3, MUSE_CD3_3, spectral=spectral,
                                          primary=_primary(datetime(2026, 1, 1, 3, 0), OBJECT="SYNTHETIC",
                                                           RA=53.1625, DEC=-27.7914),
                                          category=category, ra=53.1625, dec=-27.7914)
    rng = np.random.default_rng(seed)
    step = max(1, _CHUNK_BYTES // (ny * nx * 4 * 3))
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:
        f.write(fits.PrimaryHDU(header=primary).header.tostring().encode("ascii"))
        for hdr, which in ((hdata, "data"), (hstat, "stat")):
            f.write(hdr.tostring().encode("ascii"))
            nbytes = 0
            for k0 in range(0, nl, step):
                k1 = min(nl, k0 + step)
                model, var = _scene_chunk(k0, k1, wave, (nl, ny, nx), sources, psf_sigma,
                                          noise_sigma)
                if which == "data":
                    noise = rng.standard_normal(model.shape, dtype=np.float32)
                    out = model + noise * np.sqrt(var)
                else:
                    out = var
                out[:, :, 0] = np.nan  # the NaN edge of a resampled MUSE field
                buf = out.astype(">f4").tobytes()
                f.write(buf)
                nbytes += len(buf)
            f.write(b"\0" * (-nbytes % 2880))
    os.replace(tmp, path)
    return SyntheticCube(path=path, shape=(nl, ny, nx), crval3=MUSE_CRVAL3, cd3_3=MUSE_CD3_3,
                         psf_sigma=psf_sigma, noise_sigma=noise_sigma, sources=sources)
