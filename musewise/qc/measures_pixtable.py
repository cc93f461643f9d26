"""QC of pixel tables: PIXTABLE_OBJECT, PIXTABLE_STD (``muse_scibasic``) and PIXTABLE_REDUCED (``muse_scipost``).

A pixel table holds every CCD pixel of an exposure as a row (position, wavelength,
data, DQ, variance, origin). One IFU's table is ~400 MB, 24 IFUs' ~10 GB, so it is
read memory-mapped, one column at a time and in chunks
(:class:`musewise.origin.PixelTable`); the flux level is the median of a regular
sample of rows, never of a float64 copy of the whole column.
"""

from __future__ import annotations

import numpy as np

from .measures import N_SLICES, Measurement

#: Rows sampled for the flux level (a regular stride over the table).
FLUX_SAMPLE = 1_000_000


def measure_pixtable(path, chunk_rows: int = 4_000_000) -> Measurement:
    """Flagged pixels, slices with data, wavelength range and flux level of a pixel table.

    Parameters
    ----------
    path : path-like
        A PIXTABLE_OBJECT, PIXTABLE_STD or PIXTABLE_REDUCED.
    chunk_rows : int
        Rows read at once per column (4 M float32 rows: 16 MB).

    Returns
    -------
    Measurement
        ``n_rows`` pixels; ``dq_fraction`` of pixels with a non-zero DQ (bad columns,
        cosmic rays, pixels outside the slices' trace); ``n_ifus`` IFUs and
        ``n_slices`` (IFU, slice) pairs with good data, ``missing_slices`` = 48 x
        n_ifus - n_slices; ``lambda.low`` / ``lambda.high`` the wavelength limits of
        the table (Angstrom: ``ESO DRS MUSE PIXTABLE LIMITS LAMBDA LOW/HIGH``, else
        the column's range); ``flux.median`` and ``flux.p90`` of the good pixels (the
        table's data unit, e.g. count for scibasic, 10**(-20)*erg/s/cm**2/Angstrom after
        flux calibration); ``flux.negative_fraction`` of good pixels below zero.
    """
    from ..origin import PixelTable, slices_in

    m = Measurement()
    with PixelTable(path) as pt:
        n = pt.nrows
        m.add("n_rows", n, "")
        flagged, seen = 0, set()
        step = max(1, n // FLUX_SAMPLE)
        sample, lam_lo, lam_hi = [], np.inf, -np.inf
        has_dq, has_lambda = pt.has_column("dq"), pt.has_column("lambda")
        for start, stop in pt.chunks(chunk_rows):
            dq = np.asarray(pt.column("dq", start, stop)) if has_dq else np.zeros(stop - start, np.int32)
            good = dq == 0
            flagged += int(np.count_nonzero(~good))
            seen |= slices_in(pt.column("origin", start, stop)[good])
            if has_lambda:
                lam = pt.column("lambda", start, stop)
                if lam.size:
                    lam_lo, lam_hi = min(lam_lo, float(lam.min())), max(lam_hi, float(lam.max()))
            first = (-start) % step
            rows = np.arange(first, stop - start, step)
            data = np.asarray(pt.column("data", start, stop)[rows], np.float32)
            sample.append(data[good[rows] & np.isfinite(data)])
        unit = pt.unit("data")
        low = pt.keyword("LIMITS LAMBDA LOW", lam_lo if np.isfinite(lam_lo) else None)
        high = pt.keyword("LIMITS LAMBDA HIGH", lam_hi if np.isfinite(lam_hi) else None)
    m.add("dq_fraction", flagged / n if n else float("nan"), "")
    ifus = {i for i, _s in seen}
    m.add("n_ifus", len(ifus), "")
    m.add("n_slices", len(seen), "")
    m.add("missing_slices", N_SLICES * len(ifus) - len(seen), "")
    m.add("lambda.low", low, "Angstrom")
    m.add("lambda.high", high, "Angstrom")
    flux = np.concatenate(sample) if sample else np.zeros(0, np.float32)
    if flux.size:
        m.add("flux.median", float(np.median(flux)), unit)
        m.add("flux.p90", float(np.percentile(flux, 90)), unit)
        m.add("flux.negative_fraction", float(np.mean(flux < 0)), "")
    else:
        m.notes.append("no good pixel in the table")
    per_ifu = {i: sorted(s for j, s in seen if j == i) for i in sorted(ifus)}
    m.arrays.update(slices=per_ifu, flux_sample=flux[:: max(1, flux.size // 20000)])
    return m


__all__ = ["measure_pixtable"]
