"""Synthetic MUSE cubes for tests and benchmarks, written without holding the cube in memory.

The file has the layout of a pipeline ``DATACUBE_FINAL``: an empty primary HDU
with the observation keywords, then ``DATA`` and ``STAT`` image extensions of
float32 with axes (lambda, y, x), a celestial TAN WCS and a linear air
wavelength axis (``CTYPE3 = 'AWAV'``, Angstrom). Planes are generated and
written in chunks, so a full-size 320 x 320 x 3681 cube (~3 GB) needs only a
few tens of MB of memory.

The scene: zero-mean sky-subtracted background with Gaussian noise whose
variance is recorded in ``STAT``, a continuum point source, and an
emission-line galaxy with a weak continuum and one Gaussian emission line; the
first spaxel column is NaN like the edge of a MUSE field.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

__all__ = ["SyntheticSource", "SyntheticCube", "write_synthetic_cube", "MUSE_CRVAL3", "MUSE_CD3_3"]

#: First wavelength of the MUSE WFM nominal cube (air), Angstrom.
MUSE_CRVAL3 = 4749.88
#: Wavelength step of MUSE cubes, Angstrom.
MUSE_CD3_3 = 1.25
#: Flux unit the MUSE pipeline writes in BUNIT.
MUSE_BUNIT = "10**(-20)*erg/s/cm**2/Angstrom"
_CHUNK_BYTES = 32 * 2**20  # per generated chunk: bounded memory whatever the cube size


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


def _headers(shape, crval3, cd3_3, category):
    nl, ny, nx = shape
    primary = fits.Header()
    primary["SIMPLE"] = True
    primary["BITPIX"] = 8
    primary["NAXIS"] = 0
    primary["EXTEND"] = True
    primary["TELESCOP"] = "ESO-VLT-U4"
    primary["INSTRUME"] = "MUSE"
    primary["OBJECT"] = "SYNTHETIC"
    primary["DATE-OBS"] = "2026-01-01T03:00:00.000"
    primary["RA"] = 53.1625
    primary["DEC"] = -27.7914
    primary["HIERARCH ESO INS MODE"] = "WFM-NOAO-N"
    primary["HIERARCH ESO PRO CATG"] = category

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
        h["BUNIT"] = bunit
        h["CTYPE1"], h["CTYPE2"], h["CTYPE3"] = "RA---TAN", "DEC--TAN", "AWAV"
        h["CUNIT1"], h["CUNIT2"], h["CUNIT3"] = "deg", "deg", "Angstrom"
        h["CRPIX1"], h["CRPIX2"], h["CRPIX3"] = nx / 2.0, ny / 2.0, 1.0
        h["CRVAL1"], h["CRVAL2"], h["CRVAL3"] = 53.1625, -27.7914, crval3
        h["CD1_1"], h["CD1_2"], h["CD2_1"], h["CD2_2"] = -0.2 / 3600, 0.0, 0.0, 0.2 / 3600
        h["CD3_3"] = cd3_3
        h["CD1_3"] = h["CD2_3"] = h["CD3_1"] = h["CD3_2"] = 0.0
        return h

    return primary, ext("DATA", MUSE_BUNIT), ext("STAT", f"({MUSE_BUNIT})**2")


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
    primary, hdata, hstat = _headers((nl, ny, nx), MUSE_CRVAL3, MUSE_CD3_3, category)
    rng = np.random.default_rng(seed)
    step = max(1, _CHUNK_BYTES // (ny * nx * 4 * 3))
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:
        f.write(primary.tostring().encode("ascii"))
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


if __name__ == "__main__":  # pragma: no cover - manual helper
    import sys

    print(write_synthetic_cube(sys.argv[1]))
