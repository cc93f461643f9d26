"""Where light lands: slices on the CCD, the wavelength solution, and the sky.

Each IFU cuts its sub-field into 48 slices (4 stacks of 12). On the CCD each slice
is a vertical band ~77 px wide with wavelength increasing along +y; slices
1-24 sit on the left half and 25-48 on the right half of the trimmed image, so
that no slice straddles the quadrant boundary at x = 2048.

Coordinates
-----------
CCD: trimmed 0-based pixel indices ``(x, y)``; pixel ``i`` covers ``[i, i+1)`` and
its centre is ``i + 0.5`` for the slice edges, while the wavelength solution is a
function of the row index ``y`` (value at the row centre).

Field ("geometry") frame: spaxels of 0.2 arcsec, the units of the
``GEOMETRY_TABLE`` columns ``x``, ``y``. Each slice is one spaxel high and
:data:`SLICE_WIDTH_SKY` = 75 spaxels long. Stack ``j`` (0-3) is centred at
``x = 150 + (j - 1.5) * 75``; sky slice ``s`` of IFU ``i`` lies on the row
``y = 150 - ((i - 1) * 12 + (s - 1) % 12)``, so IFU 1 is the top strip of the field
(``y`` 139..150) and IFU 24 the bottom one (``y`` -137..-126). The field centre
is therefore :data:`FIELD_CENTRE` = (150, 6.5) spaxels. Along a slice, sky ``x``
runs opposite to CCD ``x`` (as the DRS expects).

The mapping of CCD slice number to sky slice number (:data:`SKY_SLICE`) follows
the instrument's interleaving of the stacks (the DRS ``kMuseGeoSliceSky`` fact).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.ndimage import gaussian_filter1d

from .detector import TRIM_NX, TRIM_NY

#: Slices per IFU.
N_SLICE = 48
#: Width of a slice on the CCD (pixels) and centre-to-centre pitch (pixels).
SLICE_WIDTH_CCD, SLICE_PITCH = 77.0, 84.0
#: Gap between the outer CCD edge and the outermost slice (pixels).
SLICE_MARGIN = 30.0
#: Length of a slice on the sky (spaxels of 0.2 arcsec).
SLICE_WIDTH_SKY = 75.0
#: Spaxel size (arcsec) in the wide-field mode.
SPAXEL = 0.2
#: Centre of the field of view in the geometry frame (spaxels).
FIELD_CENTRE = (150.0, 6.5)
#: Sky slice number of each CCD slice (index = CCD slice - 1).
SKY_SLICE = (9, 8, 1, 10, 7, 2, 11, 6, 3, 12, 5, 4,
             21, 20, 13, 22, 19, 14, 23, 18, 15, 24, 17, 16,
             33, 32, 25, 34, 31, 26, 35, 30, 27, 36, 29, 28,
             45, 44, 37, 46, 43, 38, 47, 42, 39, 48, 41, 40)

#: Wavelength at the centre of row 0 (Angstrom, air), linear dispersion (Angstrom/px)
#: and the quadratic term (Angstrom/px**2) of the wavelength solution.
LAMBDA_ROW0, DISPERSION, DISPERSION_CURVE = 4675.0, 1.25, -1.0e-6
#: Width (sigma, pixels along y) of the instrumental line-spread function.
LSF_SIGMA_PX = 1.1


def _ifu_shift(ifu: int) -> float:
    # Each CCD sits a little differently behind its spectrograph (pixels).
    return 2.0 * ((ifu * 7) % 5 - 2)


def slice_edges(ifu: int) -> tuple[np.ndarray, np.ndarray]:
    """Left and right edge (trimmed x, pixels) of the 48 CCD slices of ``ifu``."""
    k = np.arange(N_SLICE)
    left_half = SLICE_MARGIN + SLICE_PITCH * k[:24]
    right_half = TRIM_NX - SLICE_MARGIN - SLICE_WIDTH_CCD - SLICE_PITCH * (23 - k[:24])
    left = np.concatenate([left_half, right_half]) + _ifu_shift(ifu)
    left = left + 0.4 * np.sin(1.3 * k + ifu)  # slices are not on a perfect grid
    return left, left + SLICE_WIDTH_CCD


def slice_throughput(ifu: int) -> np.ndarray:
    """Relative throughput of each CCD slice (shared by lamp and sky light)."""
    k = np.arange(N_SLICE)
    return 1.0 + 0.05 * np.sin(0.7 * k + 0.3 * ifu)


def lamp_illumination(ifu: int) -> np.ndarray:
    """Extra per-slice factor of the calibration-unit lamp illumination.

    The lamp does not illuminate the slices exactly like the sky does; this
    percent-level difference is what the twilight flats (``muse_twilight``) correct.
    """
    k = np.arange(N_SLICE)
    return 1.0 + 0.02 * np.cos(0.45 * k + 0.2 * ifu)


@lru_cache(maxsize=32)
def column_profile(ifu: int) -> np.ndarray:
    """Fraction of a slice's light falling on each trimmed CCD column.

    Slice boxes blurred by the camera (1 px Gaussian), with the per-slice
    throughput and a 3 % vignetting gradient along each slice. Shape (4096,).
    """
    x = np.arange(TRIM_NX) + 0.5
    prof = np.zeros(TRIM_NX)
    tput = slice_throughput(ifu)
    for k, (lo, hi) in enumerate(zip(*slice_edges(ifu))):
        m = (x > lo) & (x < hi)
        prof[m] = tput[k] * (1.0 - 0.03 * (x[m] - lo) / SLICE_WIDTH_CCD)
    prof = gaussian_filter1d(prof, 1.0)
    prof.setflags(write=False)
    return prof


@lru_cache(maxsize=32)
def column_slices(ifu: int) -> tuple[slice, ...]:
    """Trimmed column range assigned to each CCD slice (gaps split at their middle)."""
    left, right = slice_edges(ifu)
    cuts = np.concatenate([[0], np.round(0.5 * (right[:-1] + left[1:])).astype(int), [TRIM_NX]])
    return tuple(slice(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:]))


def slice_offset(ifu: int) -> np.ndarray:
    """Zero-point shift (pixels along y) of the wavelength solution of each CCD slice."""
    k = np.arange(N_SLICE)
    return 1.5 * np.sin(0.37 * k + 1.1 * ifu)


def wavelength(ifu: int, ccd_slice: int, y) -> np.ndarray:
    """Air wavelength (Angstrom) at trimmed row ``y`` (0-based, float ok) of a slice.

    ``lambda = L0 + D u + C u (u - 4111)`` with ``u = y - offset(slice)``:
    ~4675-9814 Angstrom over the CCD with a few-pixel curvature.
    """
    u = np.asarray(y, dtype=float) - slice_offset(ifu)[ccd_slice - 1]
    return LAMBDA_ROW0 + DISPERSION * u + DISPERSION_CURVE * u * (u - (TRIM_NY - 1))


def row_of_wavelength(ifu: int, ccd_slice: int, lam) -> np.ndarray:
    """Inverse of :func:`wavelength`: trimmed row (0-based, float) of ``lam`` (Angstrom)."""
    a = DISPERSION_CURVE
    b = DISPERSION - DISPERSION_CURVE * (TRIM_NY - 1)
    c = LAMBDA_ROW0 - np.asarray(lam, dtype=float)
    u = 2 * c / (-b - np.sqrt(b * b - 4 * a * c))  # the root near the linear solution
    return u + slice_offset(ifu)[ccd_slice - 1]


@lru_cache(maxsize=32)
def wavelength_map(ifu: int) -> np.ndarray:
    """Wavelength (Angstrom) of every row of every slice, shape (48, 4112), float64."""
    y = np.arange(TRIM_NY)
    lam = np.stack([wavelength(ifu, k, y) for k in range(1, N_SLICE + 1)])
    lam.setflags(write=False)
    return lam


def slice_sky_position(ifu: int, ccd_slice: int) -> tuple[int, float, float]:
    """Sky slice number and geometry-frame centre ``(x, y)`` (spaxels) of a CCD slice."""
    s = SKY_SLICE[ccd_slice - 1]
    stack, row = (s - 1) // 12, (s - 1) % 12
    x = FIELD_CENTRE[0] + (stack - 1.5) * SLICE_WIDTH_SKY
    y = 150.0 - ((ifu - 1) * 12 + row)
    return s, x, y


@lru_cache(maxsize=32)
def column_sky_coordinates(ifu: int) -> tuple[np.ndarray, np.ndarray]:
    """Geometry-frame ``(x, y)`` (spaxels) seen by each trimmed CCD column.

    Columns in the gaps get the coordinates of the slice they are assigned to by
    :func:`column_slices` (their light is ~0 anyway).
    """
    left, right = slice_edges(ifu)
    xs, ys = np.empty(TRIM_NX), np.empty(TRIM_NX)
    xc = np.arange(TRIM_NX) + 0.5
    for k, cols in enumerate(column_slices(ifu)):
        _, x0, y0 = slice_sky_position(ifu, k + 1)
        centre = 0.5 * (left[k] + right[k])
        xs[cols] = x0 + (centre - xc[cols]) / SLICE_WIDTH_CCD * SLICE_WIDTH_SKY
        ys[cols] = y0
    return xs, ys


def field_to_sky_offsets(x, y) -> tuple[np.ndarray, np.ndarray]:
    """Geometry-frame spaxels -> offsets from the field centre (arcsec, instrument axes)."""
    return ((np.asarray(x) - FIELD_CENTRE[0]) * SPAXEL,
            (np.asarray(y) - FIELD_CENTRE[1]) * SPAXEL)


def sky_offsets_to_field(dx, dy) -> tuple[np.ndarray, np.ndarray]:
    """Offsets from the field centre (arcsec) -> geometry-frame spaxels."""
    return (FIELD_CENTRE[0] + np.asarray(dx) / SPAXEL,
            FIELD_CENTRE[1] + np.asarray(dy) / SPAXEL)


def ifu_of_field_y(y: float) -> int:
    """IFU whose strip contains geometry-frame row ``y`` (spaxels); 0 if outside."""
    i = int(np.floor((150.5 - y) / 12.0)) + 1
    return i if 1 <= i <= 24 else 0
