"""Quality-control measurements of MUSE products (plain functions; the QC notebooks call them).

Every ``measure_*`` function reads files only (no archive) and returns a
:class:`Measurement`: a flat dict of named numbers, their units, and the arrays
the notebooks plot. Names are ``<what>[.<where>]``, e.g. ``ron.q2`` is the read
noise of quadrant 2. Units: detector levels in adu, noise in adu and e-,
dark current in count/pix/h (MUSE master darks are scaled to one hour), wavelengths
and wavelength residuals in Angstrom, cube fluxes in the cube's BUNIT, angles in arcsec.

CCD geometry is read from the ``ESO DET OUTn`` keywords (output position, size,
prescan and overscan), so the same code measures full-size frames and small
test frames.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from ..products.cube import white_light
from ..products.ifu import chan_extensions, chan_extname
from ..products.lines import QC_SKY_LINES
from ..products.wcs import pixel_scale_arcsec, spectral_axis

#: Number of slices of one MUSE IFU.
N_SLICES = 48


@dataclass
class Measurement:
    """QC numbers of one product.

    Attributes
    ----------
    values : dict of str to float
        The numbers (NaN when not measurable).
    units : dict of str to str
        Unit of each number (``""``: dimensionless).
    arrays : dict
        Extra arrays for plots (not stored in the archive).
    notes : list of str
        What could not be measured and why.
    """

    values: dict[str, float] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    arrays: dict = field(default_factory=dict, repr=False)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, value, unit: str = "") -> None:
        self.values[name] = float(value) if value is not None else float("nan")
        self.units[name] = unit

    def table(self) -> list[tuple[str, float, str]]:
        """(name, value, unit) rows, sorted by name."""
        return [(k, self.values[k], self.units.get(k, "")) for k in sorted(self.values)]


# ----------------------------------------------------------------------------- helpers
def robust_std(a) -> float:
    """Standard deviation from the median absolute deviation (1.4826 MAD), ignoring NaN."""
    a = np.asarray(a, dtype=float)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return float("nan")
    return float(1.4826 * np.median(np.abs(a - np.median(a))))


def clipped_std(a, nsigma: float = 5.0, iterations: int = 3) -> float:
    """Standard deviation after clipping outliers beyond ``nsigma`` (cosmics, hot pixels).

    Unlike :func:`robust_std` it is not quantised on integer data (raw frames in adu).
    """
    a = np.asarray(a)
    # float32 data (CCD frames) keeps its type: its medians take half the time of float64
    # copies, and the sums of the std are taken in float64 either way
    a = a.astype(np.float32 if a.dtype == np.float32 else np.float64, copy=False).ravel()
    a = a[np.isfinite(a)]
    if a.size < 2:
        return float("nan")
    for _ in range(iterations):
        mid, sd = np.median(a), a.std(dtype=np.float64)
        keep = np.abs(a - mid) <= nsigma * sd
        if keep.all():
            break
        a = a[keep]
    return float(a.std(dtype=np.float64))


@dataclass(frozen=True)
class Quadrant:
    """Data region of one CCD output (0-based, end-exclusive pixel ranges) and its gain (e-/adu)."""

    number: int
    x0: int
    x1: int
    y0: int
    y1: int
    gain: float

    def cut(self, image: np.ndarray) -> np.ndarray:
        return image[self.y0:self.y1, self.x0:self.x1]


def quadrants(header, shape: tuple[int, int], trimmed: bool) -> list[Quadrant]:
    """CCD output regions from the ``ESO DET OUTn`` keywords.

    Parameters
    ----------
    header : astropy.io.fits.Header
        Header holding ``ESO DET OUTn X/Y/NX/NY/PRSCX/PRSCY/GAIN`` (raw: the CHANnn
        extension; products: the primary header).
    shape : (ny, nx)
        Image shape (pixels).
    trimmed : bool
        True for products (pre- and overscans removed), False for raw frames.

    Returns
    -------
    list of Quadrant
        One per output; if the keywords are missing, the four image quarters (gain 1).
    """
    ny, nx = shape
    out = []
    n = int(header.get("ESO DET OUTPUTS", 0) or 0)
    for i in range(1, n + 1):
        k = f"ESO DET OUT{i} "
        if header.get(k + "NX") is None:
            break
        qnx, qny = int(header[k + "NX"]), int(header[k + "NY"])
        px = 0 if trimmed else int(header.get(k + "PRSCX", 0))
        py = 0 if trimmed else int(header.get(k + "PRSCY", 0))
        # Outputs at the left/bottom edge read from pixel 1; the others from the far edge.
        x0 = px if int(header.get(k + "X", 1)) == 1 else nx - px - qnx
        y0 = py if int(header.get(k + "Y", 1)) == 1 else ny - py - qny
        out.append(Quadrant(i, x0, x0 + qnx, y0, y0 + qny, float(header.get(k + "GAIN", 1.0))))
    if len(out) != n or not out:
        hx, hy = nx // 2, ny // 2
        out = [Quadrant(1, 0, hx, 0, hy, 1.0), Quadrant(2, hx, nx, 0, hy, 1.0),
               Quadrant(3, hx, nx, hy, ny, 1.0), Quadrant(4, 0, hx, hy, ny, 1.0)]
    return out


def _read_product(path, ext="DATA"):
    from astropy.io import fits

    with fits.open(path, memmap=True) as h:
        primary = h[0].header.copy()
        data = np.asarray(h[ext].data, dtype=np.float32)
        dq = np.asarray(h["DQ"].data) if "DQ" in h else None
    return primary, data, dq


def _read_raw(path, ifu: int | None):
    from astropy.io import fits

    # Raw frames are int16 with BZERO 32768: read memory-mapped unscaled and add the zero
    # point in float32 (astropy's own scaling goes through float64: 3x slower).
    with fits.open(path, memmap=True, do_not_scale_image_data=True) as h:
        chans = chan_extensions(x.name for x in h)
        name = chan_extname(ifu) if ifu else chans[min(chans)]
        ext = h[name]
        header = ext.header.copy()
        data = np.asarray(ext.data, dtype=np.float32)
        scale, zero = float(header.get("BSCALE", 1.0)), float(header.get("BZERO", 0.0))
        if scale != 1.0:
            data *= np.float32(scale)
        if zero:
            data += np.float32(zero)
        for k in ("BSCALE", "BZERO"):
            header.remove(k, ignore_missing=True)
        return header, data


# ----------------------------------------------------------------------------- master bias
def measure_master_bias(master_path, raw_paths=(), ifu: int | None = None) -> Measurement:
    """Level and read noise per quadrant of a MASTER_BIAS, against its raw bias frames.

    Parameters
    ----------
    master_path : path-like
        The MASTER_BIAS (primary + DATA/DQ/STAT, overscan-subtracted, adu).
    raw_paths : sequence of path-like
        The raw BIAS frames it was combined from (at least two give the read noise).
    ifu : int, optional
        IFU whose ``CHANnn`` extension to read from the raw frames.

    Returns
    -------
    Measurement
        ``level.qN`` median of the master in quadrant N (adu; ~0 after overscan
        subtraction); ``noise.qN`` its robust noise (adu); ``raw_level.qN`` median raw
        level (adu) and ``raw_level_spread.qN`` its scatter between the raw frames (adu);
        ``ron.qN`` read noise from the difference of two raw frames (e-) and
        ``ron_adu.qN`` (adu); ``noise_ratio.qN`` master noise over the noise expected
        from averaging the raw frames (RON/sqrt(n)); ``ron.max`` and ``level.absmax``
        summarise the quadrants; ``bad_fraction`` the fraction of DQ-flagged pixels;
        ``hot_columns`` columns standing out of their quadrant (:func:`hot_columns`) and
        ``column.absmax`` the largest column deviation (adu).
    """
    m = Measurement()
    primary, data, dq = _read_product(master_path)
    quads = quadrants(primary, data.shape, trimmed=True)
    raws = []
    for p in raw_paths:
        try:
            raws.append(_read_raw(p, ifu))
        except Exception as exc:  # an unreadable raw frame only loses the raw comparison
            m.notes.append(f"raw frame {p} unreadable: {exc}")
    n_raw = len(raws)
    m.add("n_raw", n_raw)
    levels, rons = [], []
    for q in quads:
        # every other pixel of either axis: 1 M pixels give level and noise to 0.1 % of the
        # read noise, at a quarter of the cost (the medians are most of this QC's time)
        cut = q.cut(data)[::2, ::2]
        level = float(np.nanmedian(cut))
        noise = clipped_std(cut)
        m.add(f"level.q{q.number}", level, "adu")
        m.add(f"noise.q{q.number}", noise, "adu")
        levels.append(level)
        if n_raw:
            rq = quadrants(raws[0][0], raws[0][1].shape, trimmed=False)[q.number - 1]
            # a raw level is in whole adu: every fourth pixel of either axis (256 k) finds it
            med = [float(np.median(rq.cut(img)[::4, ::4])) for _h, img in raws]
            m.add(f"raw_level.q{q.number}", float(np.mean(med)), "adu")
            m.add(f"raw_level_spread.q{q.number}", float(np.std(med)) if n_raw > 1 else 0.0, "adu")
        if n_raw >= 2:
            diff = rq.cut(raws[0][1])[::2, ::2] - rq.cut(raws[1][1])[::2, ::2]
            ron_adu = clipped_std(diff) / np.sqrt(2)
            m.add(f"ron_adu.q{q.number}", ron_adu, "adu")
            m.add(f"ron.q{q.number}", ron_adu * rq.gain, "e-")
            m.add(f"noise_ratio.q{q.number}", noise / (ron_adu / np.sqrt(n_raw)), "")
            rons.append(ron_adu * rq.gain)
    m.add("level.absmax", max(abs(v) for v in levels), "adu")
    if rons:
        m.add("ron.max", max(rons), "e-")
        m.add("noise_ratio.max", max(m.values[f"noise_ratio.q{q.number}"] for q in quads), "")
        m.add("raw_level_spread.max", max(m.values[f"raw_level_spread.q{q.number}"] for q in quads), "adu")
    else:
        m.notes.append("fewer than two raw frames: read noise not measured")
    if dq is not None:
        m.add("bad_fraction", float(np.count_nonzero(dq)) / dq.size, "")
    hot, worst = hot_columns(data, quads)
    m.add("hot_columns", len(hot), "")
    m.add("column.absmax", worst, "adu")
    m.arrays["hot_columns"] = hot
    m.arrays["image"] = data[:: max(1, data.shape[0] // 512), :: max(1, data.shape[1] // 512)]
    m.arrays["quadrants"] = quads
    return m


def hot_columns(data: np.ndarray, quads, nsigma: float = 10.0, min_adu: float = 3.0) -> tuple[list[int], float]:
    """Columns of a master bias standing out of their quadrant (charge-trap or glitch columns).

    A column's level is its median over every other row of its quadrant (~1000 rows:
    the column levels of a clean master scatter by ~0.04 adu, far below ``min_adu``,
    at half the cost of every row); it stands out when it
    differs from the quadrant's median column level by more than ``nsigma`` robust
    standard deviations of the column levels and by more than ``min_adu`` (so the
    tiny scatter of a clean master, ~0.03 adu, does not turn fixed-pattern noise
    into "hot" columns).

    Returns
    -------
    (list of int, float)
        0-based x of each such column, and the largest |deviation| of any column (adu).
    """
    hot, worst = [], 0.0
    for q in quads:
        cut = q.cut(data)[::2]
        # np.nanmedian along an axis goes column by column; np.median is vectorised
        cols = np.median(cut, axis=0) if np.isfinite(cut).all() else np.nanmedian(cut, axis=0)
        dev = cols - np.nanmedian(cols)
        limit = max(nsigma * robust_std(cols), min_adu)
        hot.extend(int(q.x0 + i) for i in np.nonzero(np.abs(dev) > limit)[0])
        if np.isfinite(dev).any():
            worst = max(worst, float(np.nanmax(np.abs(dev))))
    return sorted(set(hot)), worst  # a column crosses two quadrants: counted once


# ----------------------------------------------------------------------------- master dark
def measure_master_dark(master_path, hot_sigma: float = 10.0) -> Measurement:
    """Dark current per quadrant of a MASTER_DARK.

    Parameters
    ----------
    master_path : path-like
        The MASTER_DARK (MUSE scales it to one hour: DATA in count/pix/h).
    hot_sigma : float
        A pixel is hot when above the median by this many robust standard deviations.

    Returns
    -------
    Measurement
        ``dark.qN`` median dark current (count/pix/h) and ``dark_e.qN`` (e-/pix/h);
        ``dark.median`` over the detector; ``dark.max`` worst quadrant;
        ``hot_fraction`` of hot pixels; ``bad_fraction`` of DQ-flagged pixels.
    """
    m = Measurement()
    primary, data, dq = _read_product(master_path)
    quads = quadrants(primary, data.shape, trimmed=True)
    per_q = []
    for q in quads:
        v = float(np.nanmedian(q.cut(data)))
        m.add(f"dark.q{q.number}", v, "count/pix/h")
        m.add(f"dark_e.q{q.number}", v * q.gain, "e-/pix/h")
        per_q.append(v)
    med = float(np.nanmedian(data))
    sig = robust_std(data[::4, ::4])
    m.add("dark.median", med, "count/pix/h")
    m.add("dark.max", max(per_q), "count/pix/h")
    m.add("hot_fraction", float(np.count_nonzero(data > med + hot_sigma * sig)) / data.size, "")
    if dq is not None:
        m.add("bad_fraction", float(np.count_nonzero(dq)) / dq.size, "")
    m.arrays["image"] = data[:: max(1, data.shape[0] // 512), :: max(1, data.shape[1] // 512)]
    return m


# ----------------------------------------------------------------------------- master flat
def trace_centres(trace_table, y) -> dict[int, np.ndarray]:
    """Centre x (pixels, 0-based) of each slice at rows ``y`` from a TRACE_TABLE.

    The ``tc0_kk`` columns are the polynomial coefficients of the slice centre
    x(y) in 1-based pixels; rows without a finite solution are skipped.
    """
    cols = sorted(c for c in trace_table.colnames if c.startswith("tc0_"))
    y1 = np.asarray(y, dtype=float) + 1.0
    out = {}
    for row in trace_table:
        coeffs = [float(row[c]) for c in cols]
        if not np.all(np.isfinite(coeffs)):
            continue
        out[int(row["SliceNo"])] = np.polynomial.polynomial.polyval(y1, coeffs) - 1.0
    return out


def measure_master_flat(master_path, trace_path=None, n_rows: int = 64) -> Measurement:
    """Slice trace count and uniformity of a MASTER_FLAT.

    Parameters
    ----------
    master_path : path-like
        The MASTER_FLAT (normalised, dimensionless).
    trace_path : path-like, optional
        The TRACE_TABLE made with it; without it only the global level is measured.
    n_rows : int
        Rows sampled along each slice for the uniformity.

    Returns
    -------
    Measurement
        ``n_slices`` slices traced (expected 48); ``missing_slices`` = 48 - n_slices;
        ``width.min`` / ``width.max`` slice widths (pix); ``slice_level.qN``-free:
        ``slice_level.rms`` relative scatter (robust std / median) of the median
        flat level of the slices; ``slice_level.minrel`` faintest slice relative to
        the median; ``level.median`` median of illuminated pixels; ``bad_fraction``;
        ``lamp.median`` the lamp level before normalisation (adu: ``ESO QC FLAT MASTER
        MEDIAN`` of ``muse_flat``, the median of the combined flat over the CCD) and
        ``lamp.input_min`` the faintest input flat's (``ESO QC FLAT INPUTi MEDIAN``),
        ``lamp.rate`` the master's level per second of exposure (adu/s). The
        normalised master of a lamp at a few per cent looks like a good one: only
        these levels show the missing light.
    """
    from astropy.table import Table

    m = Measurement()
    primary, data, dq = _read_product(master_path)
    lit = data[np.isfinite(data) & (data > 0.2 * np.nanpercentile(data, 95))]
    m.add("level.median", float(np.median(lit)) if lit.size else float("nan"), "")
    lamp = primary.get("ESO QC FLAT MASTER MEDIAN")
    if lamp is not None:
        m.add("lamp.median", float(lamp), "adu")
        exptime = primary.get("EXPTIME")
        if exptime is not None and float(exptime) > 0:
            m.add("lamp.rate", float(lamp) / float(exptime), "adu/s")
        inputs = [float(v) for k, v in primary.items() if k.startswith("ESO QC FLAT INPUT") and k.endswith(" MEDIAN")]
        if inputs:
            m.add("lamp.input_min", min(inputs), "adu")
    else:
        m.notes.append("no ESO QC FLAT MASTER MEDIAN in the header: lamp level not measured")
    if dq is not None:
        m.add("bad_fraction", float(np.count_nonzero(dq)) / dq.size, "")
    m.arrays["image"] = data[:: max(1, data.shape[0] // 512), :: max(1, data.shape[1] // 512)]
    if trace_path is None:
        m.notes.append("no TRACE_TABLE: slice count and uniformity not measured")
        return m
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tt = Table.read(trace_path, hdu=1)
    widths = np.asarray(tt["Width"], dtype=float) if "Width" in tt.colnames else np.full(len(tt), np.nan)
    good = np.isfinite(widths) & (widths > 0)
    m.add("n_slices", int(np.count_nonzero(good)), "")
    m.add("missing_slices", N_SLICES - int(np.count_nonzero(good)), "")
    if good.any():
        m.add("width.min", float(np.min(widths[good])), "pix")
        m.add("width.max", float(np.max(widths[good])), "pix")
    ny, nx = data.shape
    rows = np.linspace(0.1 * ny, 0.9 * ny, n_rows).astype(int)
    centres = trace_centres(tt, rows)
    levels = {}
    for s, xs in centres.items():
        xi = np.round(xs).astype(int)
        ok = (xi >= 0) & (xi < nx)
        if ok.sum() < 3:
            continue
        levels[s] = float(np.nanmedian(data[rows[ok], xi[ok]]))
    if levels:
        v = np.array(list(levels.values()))
        med = float(np.median(v))
        m.add("slice_level.rms", robust_std(v) / med if med else float("nan"), "")
        m.add("slice_level.minrel", float(np.min(v)) / med if med else float("nan"), "")
    m.arrays["slice_levels"] = levels
    m.arrays["trace_rows"] = rows
    m.arrays["trace_centres"] = centres
    return m


# ----------------------------------------------------------------------------- wavelength calibration
def wavelength_at(table, rows=(500, 1500, 2500, 3500), centres=None) -> dict[int, np.ndarray]:
    """Wavelength (Angstrom) along the centre of each slice at CCD ``rows`` from a WAVECAL_TABLE.

    The ``wlcXY`` columns are the coefficients of the slice's solution
    lambda(x, y) = sum wlcXY x^X y^Y, with x and y the CCD column and row (pixels,
    counted from 1 here as FITS does; a pixel more or less moves every solution alike,
    which comparisons cancel). x is not measured from the slice: a solution must be
    evaluated where its slice is (at x = 0 two good nights' solutions differ by up to
    12 A in the slices far from column 1). Slices without a finite solution are skipped.

    Parameters
    ----------
    table : astropy.table.Table
    rows : sequence of int
        CCD rows (0-based).
    centres : dict, optional
        Slice -> centre column (0-based) at each of ``rows``, from the TRACE_TABLE
        (:func:`trace_centres`). Without it, the solution is evaluated at x = 0: exact
        only for a solution without x terms, and :func:`measure_wavecal` uses it only then.
    """
    y = np.asarray(rows, dtype=float) + 1.0
    terms = [(c, int(c[3]), int(c[4])) for c in table.colnames
             if c.startswith("wlc") and len(c) == 5 and c[3:].isdigit()]
    out = {}
    for row in table:
        s = int(row["SliceNo"])
        coeffs = [(float(row[c]), i, j) for c, i, j in terms]
        if not coeffs or not np.all(np.isfinite([c for c, _, _ in coeffs])):
            continue
        if centres is not None and s not in centres:
            continue
        x = np.asarray(centres[s], dtype=float) + 1.0 if centres is not None else np.zeros_like(y)
        out[s] = sum(c * x ** i * y ** j for c, i, j in coeffs)
    return out


def _has_x_terms(table) -> bool:
    # Whether a WAVECAL_TABLE's solutions depend on the CCD column at all.
    return any(np.any(np.nan_to_num(np.asarray(table[c], dtype=float)) != 0) for c in table.colnames
               if c.startswith("wlc") and len(c) == 5 and c[3] != "0")


def measure_wavecal(table_path, residuals_path=None, previous=(), trace_path=None) -> Measurement:
    """Residuals per slice and lines used of a wavelength calibration.

    Parameters
    ----------
    table_path : path-like
        The WAVECAL_TABLE (one polynomial solution per slice).
    residuals_path : path-like, optional
        The WAVECAL_RESIDUALS table (``muse_wavecal --residuals``); without it the
        numbers come from the ``ESO QC WAVECAL SLICEn`` header keywords.
    previous : sequence of path-like
        WAVECAL_TABLEs of the same IFU from earlier nights: the solution is compared
        with theirs (a shifted arc, a moved grating, give a solution that fits its own
        lines well but is off in wavelength).
    trace_path : path-like, optional
        The TRACE_TABLE the solution was made with: this and the previous solutions are
        compared along its slice centres. Without it they are compared only if they do
        not depend on the CCD column (a solution of ``muse_wavecal`` does: evaluated
        away from its slice, two good solutions differ by several Angstrom).

    Returns
    -------
    Measurement
        ``n_solutions`` slices with a solution (expected 48); ``rms.max`` /
        ``rms.median`` residual RMS of the final fit iteration over slices
        (Angstrom); ``lines.min`` / ``lines.median`` arc lines used per slice;
        ``n_previous`` earlier solutions compared with, ``shift.median`` and
        ``shift.absmax`` (worst slice) the wavelength at the slice centres minus the
        earlier solutions' median (Angstrom, median over four CCD rows, along the slice
        centres of ``trace_path``).
    """
    from astropy.io import fits
    from astropy.table import Table

    m = Measurement()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wt = Table.read(table_path, hdu=1)
        header = fits.getheader(table_path, 0)
    ok = np.ones(len(wt), bool)
    for c in wt.colnames:
        if c.startswith("wlc"):
            ok &= np.isfinite(np.asarray(wt[c], dtype=float))
    m.add("n_solutions", int(ok.sum()), "")
    rms, nlines = {}, {}
    if residuals_path is not None:
        from .measures_ccd import wavecal_residuals

        per = wavecal_residuals(residuals_path)
        rms, nlines = per["rms"], per["nlines"]
        m.arrays["residuals"] = per["sampled"]
    else:
        for s in range(1, N_SLICES + 1):
            k = f"ESO QC WAVECAL SLICE{s} "
            if header.get(k + "FIT RMS") is not None:
                rms[s] = float(header[k + "FIT RMS"])
            if header.get(k + "FIT NLINES") is not None:
                nlines[s] = int(header[k + "FIT NLINES"])
        m.notes.append("no WAVECAL_RESIDUALS: per-slice numbers from the QC header keywords")
    if rms:
        v = np.array(list(rms.values()))
        m.add("rms.max", float(v.max()), "Angstrom")
        m.add("rms.median", float(np.median(v)), "Angstrom")
    if nlines:
        v = np.array(list(nlines.values()))
        m.add("lines.min", int(v.min()), "")
        m.add("lines.median", float(np.median(v)), "")
    m.arrays["rms"] = rms
    m.arrays["nlines"] = nlines
    rows = (500, 1500, 2500, 3500)
    centres = None
    if trace_path is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            centres = trace_centres(Table.read(trace_path, hdu=1), rows)
    old_tables = []
    for p in previous:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                old_tables.append(Table.read(p, hdu=1))
        except Exception as exc:  # an unreadable old solution only loses that comparison
            m.notes.append(f"previous WAVECAL_TABLE {p} unreadable: {exc}")
    if centres is None and any(_has_x_terms(t) for t in [wt] + old_tables):
        m.notes.append("no TRACE_TABLE: the solutions depend on the CCD column, so they are not "
                       "compared with the previous nights' (shift not measured)")
        old_tables = []
    mine = wavelength_at(wt, rows, centres)
    refs = [wavelength_at(t, rows, centres) for t in old_tables]
    m.add("n_previous", len(refs), "")
    shifts = {}
    for s, lam in mine.items():
        others = [r[s] for r in refs if s in r]
        if others:
            shifts[s] = float(np.median(lam - np.median(np.vstack(others), axis=0)))
    if shifts:
        v = np.array(list(shifts.values()))
        m.add("shift.median", float(np.median(v)), "Angstrom")
        m.add("shift.absmax", float(np.max(np.abs(v))), "Angstrom")
    elif refs:
        m.notes.append("no slice solved in both this and the previous solutions")
    m.arrays["shifts"] = shifts
    return m


# ----------------------------------------------------------------------------- data cube
def fit_psf_fwhm(image: np.ndarray, n_sources: int = 3, box: int = 7) -> list[dict]:
    """FWHM of the brightest compact sources of an image by 2-D Gaussian fits.

    Parameters
    ----------
    image : 2-D array
    n_sources : int
        Sources to fit (the brightest local maxima above 10 robust sigma).
    box : int
        Half-size of the fitting box (pixels).

    Returns
    -------
    list of dict
        ``x``, ``y`` (pixels), ``fwhm`` (pixels), ``peak`` per source fitted.
    """
    from scipy import ndimage, optimize

    img = np.nan_to_num(np.asarray(image, float), nan=np.nanmedian(image))
    bkg, sig = float(np.median(img)), robust_std(img)
    peaks = (img == ndimage.maximum_filter(img, size=2 * box + 1)) & (img > bkg + 10 * max(sig, 1e-12))
    ys, xs = np.nonzero(peaks)
    order = np.argsort(img[ys, xs])[::-1]
    out = []
    yy, xx = np.mgrid[: 2 * box + 1, : 2 * box + 1]

    def model(p, yy, xx):
        amp, y0, x0, s, b = p
        return amp * np.exp(-((yy - y0) ** 2 + (xx - x0) ** 2) / (2 * s * s)) + b

    for k in order[: n_sources * 3]:
        y, x = int(ys[k]), int(xs[k])
        if y < box or x < box or y + box >= img.shape[0] or x + box >= img.shape[1]:
            continue
        stamp = img[y - box:y + box + 1, x - box:x + box + 1]
        p0 = [stamp.max() - bkg, box, box, 1.5, bkg]
        try:
            p, _ = optimize.leastsq(lambda p: (model(p, yy, xx) - stamp).ravel(), p0)
        except Exception:
            continue
        s = abs(p[3])
        if not (0.3 < s < box):
            continue
        out.append({"x": x - box + p[2], "y": y - box + p[1], "fwhm": 2.3548 * s, "peak": p[0]})
        if len(out) >= n_sources:
            break
    return out


def sky_line_residuals(data, stat, wave, lines=QC_SKY_LINES, half_width: float = 4.0,
                       gap: float = 3.0, side: float = 10.0) -> dict[float, dict]:
    """Residual flux at sky lines after sky subtraction.

    For each line inside the cube's range, the flux summed over ``line +- half_width``
    minus the continuum interpolated from side bands (``gap`` to ``gap+side``
    Angstrom beyond the window) is taken per spaxel; its spatial median is the
    residual (flux unit x Angstrom) and the median over spaxels of
    residual / sqrt(sum of STAT) its significance.

    Returns
    -------
    dict of float to dict
        Per line (Angstrom): ``residual``, ``snr``, ``map`` (2-D residual map).
    """
    out = {}
    dl = float(np.median(np.diff(wave))) if len(wave) > 1 else 1.0
    for line in lines:
        win = np.nonzero(np.abs(wave - line) <= half_width)[0]
        lo = np.nonzero((wave >= line - half_width - gap - side) & (wave < line - half_width - gap))[0]
        hi = np.nonzero((wave > line + half_width + gap) & (wave <= line + half_width + gap + side))[0]
        if win.size < 2 or lo.size < 1 or hi.size < 1:
            continue
        w = np.asarray(data[win[0]:win[-1] + 1], float)
        cont = 0.5 * (np.nanmedian(np.asarray(data[lo[0]:lo[-1] + 1], float), axis=0)
                      + np.nanmedian(np.asarray(data[hi[0]:hi[-1] + 1], float), axis=0))
        resid = np.nansum(w - cont[None], axis=0) * dl
        valid = np.isfinite(w).any(axis=0)
        resid = np.where(valid, resid, np.nan)
        entry = {"residual": float(np.nanmedian(resid)), "map": resid}
        if stat is not None:
            var = np.nansum(np.asarray(stat[win[0]:win[-1] + 1], float), axis=0) * dl * dl
            with np.errstate(invalid="ignore", divide="ignore"):
                entry["snr"] = float(np.nanmedian(np.abs(resid) / np.sqrt(var)))
        else:
            entry["snr"] = float("nan")
        out[float(line)] = entry
    return out


def measure_datacube(cube_path, n_sources: int = 3, offset_list=None, star_catalogue=None) -> Measurement:
    """Sky residuals, white-light image and PSF FWHM of a DATACUBE_FINAL (one exposure or combined).

    Parameters
    ----------
    cube_path : path-like
        The cube (primary + DATA (+ STAT) extension; spectral WCS on axis 3).
    n_sources : int
        Point sources to fit for the PSF.
    offset_list : path-like, optional
        The OFFSET_LIST the exposures of a combined cube were aligned with
        (``muse_exp_align``): its offsets are measured too.
    star_catalogue : path-like, optional
        A catalogue of the field's stars with their fluxes (:mod:`musewise.qc.starflux`):
        the brightest one inside the cube is measured against it.

    Returns
    -------
    Measurement
        ``sky.<line>`` median residual at each sky line in range (BUNIT x Angstrom)
        and ``sky_snr.<line>`` its significance; ``sky_snr.max`` worst line;
        ``white.median`` white-light level (BUNIT); ``nan_fraction`` of spaxels
        without data; ``fwhm.median`` PSF FWHM of point sources (arcsec: the
        catalogued star's Moffat fit when a catalogue is given and the star measured,
        else ``fwhm.blind``, the median of Gaussian fits of the brightest peaks) and
        ``n_psf`` sources fitted; ``pixscale`` (arcsec); ``seeing`` the DIMM seeing of the
        header (``ESO TEL AMBI FWHM START/END``, arcsec) and ``fwhm_seeing_ratio`` the
        PSF over it (a defocus or a misaligned combination makes the cube's PSF wider
        than the seeing); with an OFFSET_LIST, ``n_offsets``, ``offset.max`` the largest
        offset of an exposure and ``offset.rms`` (arcsec); with a star catalogue,
        ``star.flux_ratio`` the brightest catalogued star's flux in the cube over its
        catalogue flux (5000-9000 A), ``star.dmag`` = -2.5 log10 of it and
        ``star.dmag_abs`` its absolute value (mag), ``star.offset`` (arcsec from its
        catalogue position) and ``star.fwhm`` (arcsec).
    """
    from astropy.io import fits

    m = Measurement()
    with fits.open(cube_path, memmap=True) as h:
        ext = h["DATA"] if "DATA" in h else h[0]
        header = ext.header.copy()
        primary = h[0].header
        data = ext.data
        stat = h["STAT"].data if "STAT" in h else None
        wave, _air = spectral_axis(header, data.shape[0], axis=3, path=cube_path)
        bunit = str(header.get("BUNIT", "")).strip()
        wl = white_light(data)
        skies = sky_line_residuals(data, stat, wave)
        seeing = [primary.get(f"ESO TEL AMBI FWHM {k}") for k in ("START", "END")]
    scale = pixel_scale_arcsec(header)
    m.add("pixscale", scale, "arcsec")
    m.add("white.median", float(np.nanmedian(wl)), bunit)
    m.add("nan_fraction", float(np.mean(~np.isfinite(wl))), "")
    m.add("wave.min", float(wave.min()), "Angstrom")
    m.add("wave.max", float(wave.max()), "Angstrom")
    # The residual is summed over wavelength: flux density x Angstrom = flux.
    flux_unit = bunit[: -len("/Angstrom")] if bunit.endswith("/Angstrom") else f"{bunit}*Angstrom"
    snrs = []
    for line, e in skies.items():
        key = f"{line:.0f}"
        m.add(f"sky.{key}", e["residual"], flux_unit)
        m.add(f"sky_snr.{key}", e["snr"], "")
        if np.isfinite(e["snr"]):
            snrs.append(e["snr"])
    if snrs:
        m.add("sky_snr.max", max(snrs), "")
    else:
        m.notes.append("no sky line inside the cube's wavelength range")
    if star_catalogue is not None:
        from .starflux import measure_star_flux

        star = measure_star_flux(cube_path, star_catalogue)
        if "note" in star:
            m.notes.append(star["note"])
        else:
            m.add("star.flux_ratio", star["ratio"], "")
            m.add("star.dmag", star["dmag"], "mag")
            m.add("star.dmag_abs", abs(star["dmag"]), "mag")
            m.add("star.offset", star["offset"], "arcsec")
            m.add("star.fwhm", star["fwhm"], "arcsec")
            m.notes.append(f"known star {star['name']} at RA {star['ra']:.5f} Dec {star['dec']:.5f}: "
                           f"{star['ratio']:.3f} x its catalogue flux")
        m.arrays["star"] = star
    psf = fit_psf_fwhm(wl, n_sources=n_sources)
    if psf:
        m.add("fwhm.blind", float(np.median([p["fwhm"] for p in psf])) * scale, "arcsec")
    if star_catalogue is not None and "fwhm" in star:
        # A source the catalogue says is a star: the brightest peaks of the white light
        # may be galaxies (in a 2-IFU demo cube the blind fit found only the galaxy,
        # 1.76" in 0.62" seeing).
        m.add("n_psf", 1, "")
        m.add("fwhm.median", star["fwhm"], "arcsec")
        m.notes.append("PSF FWHM of the catalogued star (fwhm.blind: Gaussian fits of the brightest peaks)")
    elif psf:
        m.add("n_psf", len(psf), "")
        m.add("fwhm.median", m.values["fwhm.blind"], "arcsec")
    else:
        m.add("n_psf", 0, "")
        m.notes.append("no point source bright enough for a PSF fit")
    seeing = [float(v) for v in seeing if v is not None and float(v) > 0]  # DIMM writes -1 when it has none
    if seeing:
        m.add("seeing", float(np.mean(seeing)), "arcsec")
        if "fwhm.median" in m.values:
            m.add("fwhm_seeing_ratio", m.values["fwhm.median"] / m.values["seeing"], "")
    else:
        m.notes.append("no DIMM seeing in the header: PSF not compared with the seeing")
    if offset_list is not None:
        offsets = exposure_offsets(offset_list)
        m.add("n_offsets", len(offsets), "")
        if len(offsets):
            r = np.hypot(offsets[:, 0], offsets[:, 1])
            m.add("offset.max", float(r.max()), "arcsec")
            m.add("offset.rms", float(np.sqrt(np.mean(r ** 2))), "arcsec")
        m.arrays["offsets"] = offsets
    m.arrays.update(white=wl, sky=skies, psf=psf, wave=wave)
    return m


def exposure_offsets(offset_list) -> np.ndarray:
    """(RA cos Dec, Dec) offsets of each exposure of an OFFSET_LIST, in arcsec (n x 2).

    ``muse_exp_align`` writes ``RA_OFFSET`` and ``DEC_OFFSET`` in degrees; the RA offset
    is taken as written on the sky (the pipeline applies it as a coordinate shift at
    the field's declination, which ``DEC`` of the table's primary header gives).
    """
    from astropy.io import fits
    from astropy.table import Table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = Table.read(offset_list, hdu=1)
        dec = fits.getheader(offset_list, 0).get("DEC")
    if not len(t):
        return np.zeros((0, 2))
    cosd = np.cos(np.radians(float(dec))) if dec is not None else 1.0
    ra = np.asarray(t["RA_OFFSET"], float) * 3600.0 * cosd
    de = np.asarray(t["DEC_OFFSET"], float) * 3600.0
    ok = np.isfinite(ra) & np.isfinite(de)
    return np.column_stack([ra[ok], de[ok]])


__all__ = ["Measurement", "Quadrant", "exposure_offsets", "fit_psf_fwhm", "hot_columns", "measure_datacube",
           "measure_master_bias", "measure_master_dark", "measure_master_flat", "measure_wavecal", "wavelength_at",
           "quadrants", "robust_std", "clipped_std", "sky_line_residuals", "trace_centres"]
