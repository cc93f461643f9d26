"""Flux of a known star in a cube against its catalogue: the end-to-end check of the flux calibration.

The brightest catalogued star inside a DATACUBE_FINAL is fitted with a Moffat PSF (two on one
centre when they fit better: a cube combined from exposures of different seeing) on the
cube's mean image over a band, at the position the cube's WCS gives its catalogue
RA/Dec; the PSF's total flux is compared with the catalogue's mean flux density over the
same band. A fit of the whole PSF, not an aperture, because a MUSE cube of a few IFUs is a
strip 2.4 arcsec high per IFU: an aperture would cut the star's wings.

The catalogue is a table with ``ra``, ``dec`` (deg) and ``flux`` (erg s-1 cm-2
Angstrom-1) on the wavelengths of ``meta['wave']`` (Angstrom): the instrument model's
truth (:mod:`musewise.inm.truth`, ``STAR_CATALOG.ecsv``) or photometry of a real field
written in the same form. Set it with ``c.QCConfig.star_catalogue``.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..exceptions import InvalidFrameError

#: Band (Angstrom) the star's flux is measured over: inside MUSE's range in both modes,
#: where the response is best known.
STAR_BAND = (5000.0, 9000.0)
#: Moffat index of the fitted PSF (MUSE's WFM PSF: 2.5, as the instrument model's).
MOFFAT_BETA = 2.5
#: Fraction of the fitted box's spaxels that must have data before a second Moffat component is
#: fitted (:func:`psf_fit`).
MIN_OBSERVED_FOR_TWO = 0.95
#: Cube flux units the comparison understands, as a factor to erg s-1 cm-2 Angstrom-1.
FLUX_UNITS = {"10**(-20)*erg/s/cm**2/Angstrom": 1e-20, "erg/s/cm**2/Angstrom": 1.0,
              "1e-20erg/s/cm2/Angstrom": 1e-20}


def read_catalogue(path):
    """The star catalogue at ``path`` (ECSV or FITS) as (table, wavelengths in Angstrom).

    Raises
    ------
    InvalidFrameError
        The table lacks ``ra``, ``dec``, ``flux`` or its ``meta['wave']`` (a ValueError too).
    """
    from astropy.table import Table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = Table.read(str(path))
    missing = {"ra", "dec", "flux"} - set(t.colnames)
    if missing or "wave" not in t.meta:
        raise InvalidFrameError(str(path), f"is no star catalogue: it needs columns ra, dec, flux and meta['wave'] "
                                f"(missing {sorted(missing) or 'meta wave'})")
    return t, np.asarray(t.meta["wave"], dtype=float)


def moffat_fit(image: np.ndarray, x0: float, y0: float, half: int = 8, beta: float = MOFFAT_BETA,
               components: int = 1) -> dict:
    """Fit a Moffat PSF (or the sum of two, on one centre) plus a flat background around pixel (x0, y0).

    Pixels without data (NaN: outside the IFUs) are left out of the fit, so a star near
    the edge of the field is still measured from the part that was observed. Two
    components describe the PSF of a cube combined from exposures of different seeing
    (the mean of their Moffats), which one Moffat fits ~6 % short in flux (0.62 and
    1.04 arcsec seeing, measured).

    Returns
    -------
    dict
        ``x``, ``y`` (pixels, 0-based), ``fwhm`` (pixels; of the narrower component),
        ``flux`` (total of the PSF, image units x pixels), ``background`` (image units),
        ``coverage`` the fraction of the fitted PSF's flux that fell on observed pixels of
        the box, ``observed`` the fraction of the box's spaxels with data, ``rss`` the sum of
        squared residuals and ``n`` the pixels fitted, for comparing models; an empty dict
        when the fit fails.
    """
    from scipy import optimize

    ny, nx = image.shape
    xi, yi = int(round(x0)), int(round(y0))
    ylo, yhi, xlo, xhi = max(0, yi - half), min(ny, yi + half + 1), max(0, xi - half), min(nx, xi + half + 1)
    box = np.asarray(image[ylo:yhi, xlo:xhi], dtype=float)
    yy, xx = np.mgrid[ylo:yhi, xlo:xhi]
    ok = np.isfinite(box)
    if ok.sum() < 12 + 2 * components:
        return {}

    def model(p, yy, xx, bkg=True):
        # p: x, y, background, then (flux, alpha) per component
        r2 = (xx - p[0]) ** 2 + (yy - p[1]) ** 2
        out = p[2] if bkg else 0.0
        for flux, alpha in zip(p[3::2], p[4::2]):
            out = out + flux * (beta - 1.0) / (np.pi * alpha ** 2) * (1.0 + r2 / alpha ** 2) ** -beta
        return out

    bkg0 = float(np.nanpercentile(box, 10))  # the box's faint edge: sky left in the cube
    flux0 = max(float(np.nansum(box - bkg0)), 1e-12)
    shapes = [(flux0, 2.0)] if components == 1 else [(flux0 / 2, 1.5), (flux0 / 2, 3.0)]
    p0 = [x0, y0, bkg0] + [v for fa in shapes for v in fa]
    lo = [x0 - 3, y0 - 3, -np.inf] + [0, 0.3] * components
    hi = [x0 + 3, y0 + 3, np.inf] + [np.inf, 20] * components
    try:
        res = optimize.least_squares(lambda p: (model(p, yy[ok], xx[ok]) - box[ok]), p0, bounds=(lo, hi))
    except (ValueError, RuntimeError):
        return {}
    if not res.success:
        return {}
    p = [float(v) for v in res.x]
    flux = float(sum(p[3::2]))
    alpha = min(a for f, a in zip(p[3::2], p[4::2]) if f > 0) if flux > 0 else p[4]
    psf = model(p, yy, xx, bkg=False)
    return dict(x=p[0], y=p[1], fwhm=2.0 * alpha * np.sqrt(2.0 ** (1.0 / beta) - 1.0), flux=flux, background=p[2],
                coverage=float(psf[ok].sum() / flux) if flux > 0 else 0.0,
                observed=float(ok.mean()), rss=float(np.sum(res.fun ** 2)), n=int(ok.sum()),
                components=components)


def psf_fit(image: np.ndarray, x0: float, y0: float, half: int = 8) -> dict:
    """The star's flux from one Moffat, or from two when the data ask for them.

    Both are fitted (:func:`moffat_fit`); two are taken when the Bayesian information
    criterion (``n ln(RSS/n) + k ln n``, ``k`` the parameters) says they describe the star
    better, as for a cube combined from exposures of different seeing, and only when the
    box fitted is observed (:data:`MIN_OBSERVED_FOR_TWO` of its spaxels): on a strip of one
    IFU a second component's wings are extrapolated (1.11 of the flux, measured). ``fwhm`` is the
    single Moffat's either way: the PSF width the seeing is compared with.
    """
    one = moffat_fit(image, x0, y0, half)
    if not one or one["observed"] < MIN_OBSERVED_FOR_TWO:
        # A star cut by the edge of a strip (one or two IFUs) leaves a second, broader
        # component's wings unobserved: its flux would be extrapolated, not measured.
        return one
    two = moffat_fit(image, x0, y0, half, components=2)
    if not two:
        return one

    def bic(f, k):
        return f["n"] * np.log(max(f["rss"], 1e-300) / f["n"]) + k * np.log(f["n"])

    if bic(two, 7) < bic(one, 5):
        return {**two, "fwhm": one["fwhm"]}
    return one


def measure_star_flux(cube_path, catalogue_path, band=STAR_BAND) -> dict:
    """Flux of the brightest catalogued star inside a cube, over its catalogue flux.

    Parameters
    ----------
    cube_path : path-like
        A DATACUBE_FINAL (DATA extension with a celestial and a spectral WCS, BUNIT one
        of :data:`FLUX_UNITS`).
    catalogue_path : path-like
        A star catalogue (:func:`read_catalogue`).
    band : (float, float)
        Wavelength range (Angstrom), clipped to the cube's.

    Returns
    -------
    dict
        ``name``, ``ra``, ``dec`` of the star; ``x``, ``y`` where it was fitted (pixels);
        ``ratio`` measured / catalogue flux; ``dmag`` = -2.5 log10 ratio (mag; positive
        when the cube is too faint); ``fwhm`` (arcsec); ``offset`` between the fitted and
        catalogue positions (arcsec); ``coverage`` of the PSF by observed spaxels; or
        ``{"note": why}`` when no star could be measured.
    """
    from astropy.io import fits
    from astropy.wcs import WCS

    from ..products import MuseCube
    from ..products.wcs import pixel_scale_arcsec

    table, cat_wave = read_catalogue(catalogue_path)
    header = fits.getheader(cube_path, "DATA")
    unit = str(header.get("BUNIT", "")).replace(" ", "")
    if unit not in FLUX_UNITS:
        return {"note": f"cube unit {unit!r} is not a flux density: star flux not measured"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wcs = WCS(header).celestial
    with MuseCube.open(cube_path) as cube:
        lam = np.asarray(cube.wave, dtype=float)
        lo, hi = max(band[0], lam.min(), cat_wave.min()), min(band[1], lam.max(), cat_wave.max())
        i0, i1 = np.searchsorted(lam, (lo, hi))
        if i1 - i0 < 10:
            return {"note": f"the band {band} is outside the cube or the catalogue"}
        image = np.asarray(cube.mean_over_wavelength(int(i0), int(i1)), dtype=float)
    ny, nx = image.shape
    xs, ys = wcs.world_to_pixel_values(np.asarray(table["ra"], float), np.asarray(table["dec"], float))
    band_flux = np.array([float(np.mean(np.interp(lam[i0:i1], cat_wave, np.asarray(f, float))))
                          for f in table["flux"]])
    scale = pixel_scale_arcsec(header)
    inside = [k for k in np.argsort(-band_flux)
              if 0 <= xs[k] < nx and 0 <= ys[k] < ny and np.isfinite(image[int(ys[k]), int(xs[k])])]
    for k in inside:  # the brightest star the cube covers, whose fit converges
        fit = psf_fit(image, float(xs[k]), float(ys[k]))
        if not fit or fit["coverage"] < 0.5:  # less than half the star observed: no flux to trust
            continue
        measured = fit["flux"] * FLUX_UNITS[unit]
        ratio = measured / band_flux[k]
        ra, dec = wcs.pixel_to_world_values(fit["x"], fit["y"])
        cosd = np.cos(np.radians(float(table["dec"][k])))
        offset = 3600.0 * np.hypot((float(ra) - float(table["ra"][k])) * cosd, float(dec) - float(table["dec"][k]))
        return dict(name=str(table["name"][k]) if "name" in table.colnames else str(k),
                    ra=float(table["ra"][k]), dec=float(table["dec"][k]), x=fit["x"], y=fit["y"],
                    ratio=float(ratio), dmag=float(-2.5 * np.log10(ratio)) if ratio > 0 else float("inf"),
                    fwhm=fit["fwhm"] * scale, offset=float(offset), coverage=fit["coverage"],
                    catalogue_flux=float(band_flux[k]), band=(float(lam[i0]), float(lam[i1 - 1])))
    return {"note": "no catalogued star inside the cube could be fitted" if inside
            else "no catalogued star inside the cube"}


__all__ = ["FLUX_UNITS", "MIN_OBSERVED_FOR_TWO", "MOFFAT_BETA", "STAR_BAND", "measure_star_flux", "moffat_fit", "psf_fit", "read_catalogue"]
