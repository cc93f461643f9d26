"""QC of the calibration tables that map the CCD: TRACE_TABLE and WAVECAL_RESIDUALS.

Plain functions reading files only, returning a :class:`~musewise.qc.measures.Measurement`.
Positions are CCD pixels (0-based, trimmed image), wavelengths Angstrom.

A TRACE_TABLE of ``muse_flat`` holds, per slice (``SliceNo``), its ``Width`` (pix) and
three polynomials x(y) in 1-based pixels: ``tc0_kk`` the slice centre, ``tc1_kk`` its
left edge, ``tc2_kk`` its right edge. Slices are numbered from left to right on the
CCD, so the right edge of slice k lies left of the left edge of slice k + 1.
"""

from __future__ import annotations

import warnings

import numpy as np

from .measures import N_SLICES, Measurement, robust_std, trace_centres

#: Rows of a trimmed MUSE CCD (4112) when the header does not give them.
CCD_ROWS = 4112


def _table(path):
    from astropy.table import Table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Table.read(path, hdu=1)


def trace_edges(trace_table, y, which: int) -> dict[int, np.ndarray]:
    """x (pixels, 0-based) of each slice's polynomial ``tc<which>_kk`` at rows ``y``.

    ``which`` 0 is the centre, 1 the left edge, 2 the right edge. Slices without a
    finite solution are left out.
    """
    cols = sorted(c for c in trace_table.colnames if c.startswith(f"tc{which}_"))
    y1 = np.asarray(y, dtype=float) + 1.0
    out = {}
    for row in trace_table:
        coeffs = [float(row[c]) for c in cols]
        if cols and np.all(np.isfinite(coeffs)):
            out[int(row["SliceNo"])] = np.polynomial.polynomial.polyval(y1, coeffs) - 1.0
    return out


def measure_trace_table(trace_path, previous=(), n_rows: int = 40) -> Measurement:
    """Slices traced, their widths and edges, and the shift against the IFU's earlier traces.

    Parameters
    ----------
    trace_path : path-like
        The TRACE_TABLE (``muse_flat``).
    previous : sequence of path-like
        TRACE_TABLEs of the same IFU from earlier nights: the slice centres are compared
        with their median (the IFU's image on the CCD moves by less than a tenth of a
        pixel from night to night; a shift of pixels is a moved IFU or a flat of
        another IFU).
    n_rows : int
        CCD rows sampled along each slice (between 5 % and 95 % of the CCD's height).

    Returns
    -------
    Measurement
        ``n_slices`` slices with a finite centre and a positive width (expected 48),
        ``missing_slices``; ``width.median``, ``width.min``, ``width.max`` (pix) and
        ``width.spread`` = (max - min) / median; ``curvature.max`` the largest departure
        of a slice centre from the straight line through its ends (pix);
        ``tilt.max`` the largest change of a centre's x from the bottom to the top
        sampled row (pix); ``edge_errors`` slices whose left edge is not left of their
        centre and the centre left of the right edge at every row; ``overlaps`` pairs
        of neighbouring slices whose edges cross; ``n_previous`` earlier traces compared
        with, ``shift.median`` and ``shift.absmax`` (worst slice) the centre x minus the
        earlier traces' median (pix).
    """
    from astropy.io import fits

    m = Measurement()
    tt = _table(trace_path)
    ny = int(fits.getheader(trace_path, 0).get("ESO DET CHIP NY", CCD_ROWS) or CCD_ROWS)
    rows = np.linspace(0.05 * ny, 0.95 * ny, n_rows)
    widths = np.asarray(tt["Width"], float) if "Width" in tt.colnames else np.full(len(tt), np.nan)
    slices = np.asarray(tt["SliceNo"], int)
    centre, left, right = (trace_edges(tt, rows, k) for k in (0, 1, 2))
    good = [int(s) for s, w in zip(slices, widths) if np.isfinite(w) and w > 0 and int(s) in centre]
    m.add("n_slices", len(good), "")
    m.add("missing_slices", N_SLICES - len(good), "")
    w = np.array([wd for s, wd in zip(slices, widths) if int(s) in good])
    if w.size:
        med = float(np.median(w))
        m.add("width.median", med, "pix")
        m.add("width.min", float(w.min()), "pix")
        m.add("width.max", float(w.max()), "pix")
        m.add("width.spread", float(w.max() - w.min()) / med if med else float("nan"), "")
    curv, tilt = {}, {}
    for s in good:
        x = centre[s]
        line = x[0] + (x[-1] - x[0]) * (rows - rows[0]) / (rows[-1] - rows[0])
        curv[s] = float(np.max(np.abs(x - line)))
        tilt[s] = float(abs(x[-1] - x[0]))
    if curv:
        m.add("curvature.max", max(curv.values()), "pix")
        m.add("tilt.max", max(tilt.values()), "pix")
    edges_ok = [s for s in good if s in left and s in right]
    m.add("edge_errors", sum(not np.all((left[s] < centre[s]) & (centre[s] < right[s])) for s in edges_ok), "")
    ordered = sorted(edges_ok)
    m.add("overlaps", sum(np.any(right[a] >= left[b]) for a, b in zip(ordered, ordered[1:]) if b == a + 1), "")
    prev = []
    for p in previous:
        try:
            prev.append(trace_centres(_table(p), rows))
        except Exception as exc:  # an unreadable old trace only loses that comparison
            m.notes.append(f"previous TRACE_TABLE {p} unreadable: {exc}")
    m.add("n_previous", len(prev), "")
    shifts = {}
    for s in good:
        others = [c[s] for c in prev if s in c]
        if others:
            shifts[s] = float(np.median(centre[s] - np.median(np.vstack(others), axis=0)))
    if shifts:
        v = np.array(list(shifts.values()))
        m.add("shift.median", float(np.median(v)), "pix")
        m.add("shift.absmax", float(np.max(np.abs(v))), "pix")
    elif not prev:
        m.notes.append("no TRACE_TABLE of an earlier night of this IFU to compare with")
    m.arrays.update(rows=rows, centres=centre, left=left, right=right, widths=dict(zip(slices.tolist(), widths)),
                    shifts=shifts, curvature=curv)
    return m


def wavecal_residuals(residuals_path) -> dict:
    """Per-slice numbers of a WAVECAL_RESIDUALS table (``muse_wavecal --residuals``).

    Returns
    -------
    dict
        ``rms`` slice -> RMS of the final iteration's residuals (Angstrom); ``nlines``
        slice -> lines kept by it; ``rejected`` slice -> fraction of the first
        iteration's lines the last one dropped; ``final_lambda``, ``final_residual``
        the final iterations' lines of all slices (Angstrom); ``sampled`` every 50th row
        as (lambda, residual, slice) for plots.
    """
    rt = _table(residuals_path)
    sl = np.asarray(rt["slice"], dtype=int)
    it = np.asarray(rt["iteration"], dtype=int)
    res = np.asarray(rt["residual"], dtype=float)
    lam = np.asarray(rt["lambda"], dtype=float)
    rms, nlines, rejected, final = {}, {}, {}, np.zeros(len(rt), bool)
    for s in np.unique(sl):
        sel = sl == s
        last = sel & (it == it[sel].max())
        first = sel & (it == it[sel].min())
        final |= last
        rms[int(s)] = float(np.sqrt(np.mean(res[last] ** 2)))
        nlines[int(s)] = int(np.unique(lam[last]).size)
        n0 = np.unique(lam[first]).size
        rejected[int(s)] = 1.0 - nlines[int(s)] / n0 if n0 else 0.0
    return {"rms": rms, "nlines": nlines, "rejected": rejected, "final_lambda": lam[final],
            "final_residual": res[final], "sampled": (lam[::50], res[::50], sl[::50])}


def measure_wavecal_residuals(residuals_path, n_bins: int = 10) -> Measurement:
    """Fit residuals of ``muse_wavecal`` (WAVECAL_RESIDUALS) per slice and along the wavelength.

    Parameters
    ----------
    residuals_path : path-like
        The WAVECAL_RESIDUALS table (``slice``, ``iteration``, ``lambda``, ``residual``
        in Angstrom; one row per arc line and fit iteration).
    n_bins : int
        Wavelength bins in which the median residual is taken: a systematic trend with
        wavelength means a polynomial of too low an order or a line misidentified.

    Returns
    -------
    Measurement
        ``n_slices`` slices with residuals (expected 48), ``missing_slices``;
        ``rms.max``, ``rms.median`` RMS of the final iteration over slices (Angstrom);
        ``lines.min``, ``lines.median`` lines kept per slice; ``rejected.max`` the largest
        fraction of a slice's lines of the first iteration rejected by the last;
        ``trend.absmax`` the largest |median residual| in a wavelength bin over all
        slices (Angstrom).
    """
    m = Measurement()
    per = wavecal_residuals(residuals_path)
    rms, nlines, rejected = per["rms"], per["nlines"], per["rejected"]
    m.add("n_slices", len(rms), "")
    m.add("missing_slices", N_SLICES - len(rms), "")
    if rms:
        v = np.array(list(rms.values()))
        m.add("rms.max", float(v.max()), "Angstrom")
        m.add("rms.median", float(np.median(v)), "Angstrom")
        n = np.array(list(nlines.values()))
        m.add("lines.min", int(n.min()), "")
        m.add("lines.median", float(np.median(n)), "")
        m.add("rejected.max", max(rejected.values()), "")
    lam, res = per["final_lambda"], per["final_residual"]
    trend = []
    if lam.size:
        edges = np.linspace(lam.min(), lam.max() + 1e-6, n_bins + 1)
        idx = np.digitize(lam, edges) - 1
        centres = 0.5 * (edges[1:] + edges[:-1])
        trend = [(float(c), float(np.median(res[idx == k]))) for k, c in enumerate(centres) if np.any(idx == k)]
        m.add("trend.absmax", max(abs(t) for _c, t in trend), "Angstrom")
        m.add("residual.robust_std", robust_std(res), "Angstrom")
    else:
        m.notes.append("the residual table holds no line")
    m.arrays.update(rms=rms, nlines=nlines, trend=trend, residuals=(lam[::20], res[::20]))
    return m


__all__ = ["measure_trace_table", "measure_wavecal_residuals", "trace_edges", "wavecal_residuals"]
