"""QC measurements of the calibrations made late in the cascade: LSF, twilight cube, standard response.

Plain functions reading files only, returning a :class:`~musewise.qc.measures.Measurement`
as :mod:`musewise.qc.measures` does (which covers biases, darks, flats, wavelength
solutions and cubes). Units: wavelengths and widths in Angstrom, responses in the
pipeline's magnitudes (``response`` column of STD_RESPONSE: -2.5 log10 of the
conversion from counts to flux), illumination corrections dimensionless.
"""

from __future__ import annotations

import warnings

import numpy as np

from .measures import N_SLICES, Measurement, robust_std

#: Wavelength bands (Angstrom) where a response is compared with the previous nights'
#: (clear of the telluric A and B bands and of the spectrum's ends).
RESPONSE_BANDS = ((4800.0, 5400.0), (5400.0, 6200.0), (6300.0, 6850.0), (7000.0, 7550.0),
                  (7700.0, 8600.0), (8600.0, 9300.0))


# ----------------------------------------------------------------------------- LSF
def profile_fwhm(x: np.ndarray, y: np.ndarray) -> float:
    """FWHM of a sampled profile ``y(x)`` (units of ``x``) from its half-maximum crossings.

    Linear interpolation on both sides of the peak; NaN when the profile never falls
    below half its peak on one side (not resolved by the sampling).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 3:
        return float("nan")
    order = np.argsort(x)
    x, y = x[order], y[order]
    k = int(np.argmax(y))
    half = 0.5 * y[k]
    if half <= 0:
        return float("nan")
    left = np.nonzero(y[:k] < half)[0]
    right = np.nonzero(y[k:] < half)[0]
    if not left.size or not right.size:
        return float("nan")
    i, j = left[-1], k + right[0]
    xl = x[i] + (half - y[i]) * (x[i + 1] - x[i]) / (y[i + 1] - y[i])
    xr = x[j - 1] + (half - y[j - 1]) * (x[j] - x[j - 1]) / (y[j] - y[j - 1])
    return float(xr - xl)


def _axis(header, n: int, axis: int) -> np.ndarray:
    crval = float(header.get(f"CRVAL{axis}", 0.0))
    crpix = float(header.get(f"CRPIX{axis}", 1.0))
    cdelt = float(header.get(f"CD{axis}_{axis}", header.get(f"CDELT{axis}", 1.0)))
    return crval + (np.arange(n) + 1 - crpix) * cdelt


def measure_lsf(lsf_path) -> Measurement:
    """Width of the line spread function of each slice of an LSF_PROFILE.

    The LSF_PROFILE of ``muse_lsf`` (method ``interpolate``, MUSE DRS 2.8) is one
    image extension ``LSF_PROFILE`` of 48 planes (axis 3: the slices), each an image of
    the LSF with axis 1 the offset from the line centre (Angstrom, 0.1 A steps over
    +-7.5 A) and axis 2 the wavelength (Angstrom, 30 steps of 160 A from 4650 A); one
    two-axis extension per slice is read the same way. The FWHM of the profile is
    measured at each sampled wavelength.

    Returns
    -------
    Measurement
        ``n_slices`` slices with a profile (expected 48), ``missing_slices``;
        ``fwhm.median``, ``fwhm.min``, ``fwhm.max`` over slices of the median FWHM along
        the wavelength (Angstrom); ``fwhm.spread`` = (max - min) / median over slices;
        ``fwhm.blue`` / ``fwhm.red`` median FWHM in the bluest and reddest third of the
        wavelength range (Angstrom; MUSE's LSF is ~2.9 A at 4800 A and ~2.4 A at 9300 A).
    """
    from astropy.io import fits

    m = Measurement()
    per_slice, blue, red = {}, [], []
    with fits.open(lsf_path, memmap=True) as h:
        exts = [x for x in h[1:] if x.data is not None and x.data.ndim in (2, 3) and "STAT" not in x.name
                and "DQ" not in x.name]
        # (header, 2-D image) per slice, in slice order
        images = [(x.header, plane) for x in exts for plane in (x.data if x.data.ndim == 3 else [x.data])]
        for k, (header, plane) in enumerate(images, start=1):
            data = np.asarray(plane, float)
            dlam = _axis(header, data.shape[1], 1)
            lam = _axis(header, data.shape[0], 2)
            fw = np.array([profile_fwhm(dlam, row) for row in data])
            good = np.isfinite(fw) & (fw > 0)
            if not good.any():
                continue
            per_slice[k] = float(np.median(fw[good]))
            third = (lam.max() - lam.min()) / 3.0
            blue.extend(fw[good & (lam <= lam.min() + third)])
            red.extend(fw[good & (lam >= lam.max() - third)])
    m.add("n_slices", len(per_slice), "")
    m.add("missing_slices", N_SLICES - len(per_slice), "")
    if per_slice:
        v = np.array(list(per_slice.values()))
        med = float(np.median(v))
        m.add("fwhm.median", med, "Angstrom")
        m.add("fwhm.min", float(v.min()), "Angstrom")
        m.add("fwhm.max", float(v.max()), "Angstrom")
        m.add("fwhm.spread", float(v.max() - v.min()) / med if med else float("nan"), "")
    else:
        m.notes.append("no LSF image with a measurable profile")
    if blue:
        m.add("fwhm.blue", float(np.median(blue)), "Angstrom")
    if red:
        m.add("fwhm.red", float(np.median(red)), "Angstrom")
    m.arrays["fwhm_per_slice"] = per_slice
    return m


# ----------------------------------------------------------------------------- twilight cube
def measure_twilight_cube(cube_path) -> Measurement:
    """Illumination correction of a TWILIGHT_CUBE: how flat the field is after the lamp flat.

    Returns
    -------
    Measurement
        ``illum.rms`` robust relative scatter of the white-light correction over the
        spaxels with data; ``illum.minrel`` / ``illum.maxrel`` its 1st and 99th
        percentiles relative to the median (a dead or vignetted region shows as a low
        ``minrel``); ``color.slope`` relative change of the correction from the blue
        to the red third of the range; ``nan_fraction`` of spaxels without data.
    """
    from astropy.io import fits

    m = Measurement()
    with fits.open(cube_path, memmap=True) as h:
        ext = h["DATA"] if "DATA" in h else next(x for x in h if x.data is not None and x.data.ndim == 3)
        data = np.asarray(ext.data, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        img = np.nanmedian(data, axis=0)
        n = data.shape[0]
        blue = np.nanmedian(data[: n // 3], axis=0)
        red = np.nanmedian(data[-(n // 3):], axis=0)
    finite = np.isfinite(img) & (img != 0)
    m.add("nan_fraction", float(np.mean(~finite)), "")
    if finite.any():
        v = img[finite]
        med = float(np.median(v))
        m.add("illum.median", med, "")
        m.add("illum.rms", robust_std(v) / med if med else float("nan"), "")
        m.add("illum.minrel", float(np.percentile(v, 1)) / med if med else float("nan"), "")
        m.add("illum.maxrel", float(np.percentile(v, 99)) / med if med else float("nan"), "")
        b, r = float(np.nanmedian(blue[finite])), float(np.nanmedian(red[finite]))
        m.add("color.slope", (r - b) / med if med else float("nan"), "")
    else:
        m.notes.append("the twilight cube holds no data")
    m.arrays["image"] = img
    return m


# ----------------------------------------------------------------------------- standard response
def _read_response(path):
    from astropy.table import Table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = Table.read(path, hdu=1)
    return np.asarray(t["lambda"], float), np.asarray(t["response"], float)


def band_means(lam, resp, bands=RESPONSE_BANDS) -> np.ndarray:
    """Median response in each band (NaN where the curve has no point)."""
    out = []
    for lo, hi in bands:
        sel = (lam >= lo) & (lam < hi) & np.isfinite(resp)
        out.append(float(np.median(resp[sel])) if sel.any() else float("nan"))
    return np.array(out)


def measure_std_response(response_path, previous=()) -> Measurement:
    """A STD_RESPONSE against the responses of the previous nights.

    The instrument's throughput changes slowly (mirror dust, re-coating): a response
    far from the previous nights' means a bad standard star observation (clouds, a
    star off the IFUs) or a bad reduction, not the instrument.

    Parameters
    ----------
    response_path : path-like
        The STD_RESPONSE (table: ``lambda`` Angstrom, ``response`` mag).
    previous : sequence of path-like
        STD_RESPONSE tables of earlier nights (any number; without any only the curve's
        own numbers are measured).

    Returns
    -------
    Measurement
        ``response.median`` (mag) and ``response.<band>`` per band of
        :data:`RESPONSE_BANDS` (mag, named by the band's start); ``n_previous`` curves
        compared with; ``delta.<band>`` this curve minus the median of the previous in each
        band (mag; positive: less throughput); ``delta.absmax`` the worst band;
        ``delta.median`` the grey (whole-curve) change (mag).
    """
    m = Measurement()
    lam, resp = _read_response(response_path)
    m.add("response.median", float(np.nanmedian(resp)), "mag")
    mine = band_means(lam, resp)
    for (lo, _hi), v in zip(RESPONSE_BANDS, mine):
        m.add(f"response.{lo:.0f}", v, "mag")
    prev = []
    for p in previous:
        try:
            prev.append(band_means(*_read_response(p)))
        except Exception as exc:  # an unreadable old curve only loses that comparison
            m.notes.append(f"previous response {p} unreadable: {exc}")
    m.add("n_previous", len(prev), "")
    m.arrays["curve"] = (lam, resp)
    if not prev:
        m.notes.append("no response of a previous night to compare with")
        return m
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = np.nanmedian(np.vstack(prev), axis=0)
    delta = mine - ref
    for (lo, _hi), d in zip(RESPONSE_BANDS, delta):
        m.add(f"delta.{lo:.0f}", d, "mag")
    if np.isfinite(delta).any():
        m.add("delta.absmax", float(np.nanmax(np.abs(delta))), "mag")
        m.add("delta.median", float(np.nanmedian(delta)), "mag")
    m.arrays["reference_bands"] = ref
    m.arrays["previous"] = [_read_response(p) for p in previous]
    return m


__all__ = ["RESPONSE_BANDS", "band_means", "measure_lsf", "measure_std_response", "measure_twilight_cube",
           "profile_fwhm"]
