"""OUTPUT_WCS: the common grid a field's exposures are resampled onto.

muse_scipost and muse_exp_combine take an ``OUTPUT_WCS`` frame to fix where and how
large the output cube is ("for example a MUSE cube", MUSE DRS manual). Resampling every
exposure of a field onto one such grid is what lets their cubes be combined voxel by
voxel afterwards (:mod:`musewise.recipes.cubecombine`), without the ~25 GB per exposure
muse_exp_combine needs to hold all pixel tables at once.

A :class:`CubeGrid` is the 3D WCS and size of a cube. It comes either from a cube
(:meth:`CubeGrid.from_file`, :func:`write_output_wcs`) or from where a field's exposures
fall on the sky (:func:`grid_covering`): each exposure's pointing (``RA``/``DEC``) and
position angle (``ESO INS DROT POSANG``), and the slices of the IFUs it holds, taken
from the pipeline's ``GEOMETRY_TABLE`` (:func:`ifu_footprints`). The second is what the
reduction's ``field_grid`` step writes (:mod:`musewise.recipes.fieldgrid`), before any
exposure is resampled.

:meth:`CubeGrid.write` writes the file muse_scipost reads: only the grid, on a ``DATA``
cube of int8 zeros (muse_scipost takes the grid from a 3D DATA extension only: a 2D image
of the same WCS is ignored, "fit to data", MUSE DRS 2.8.7; int8 is a quarter of a float32
cube's size: 400 MB for 24 IFUs).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from astropy.io import fits

from ..exceptions import InvalidArgumentError, InvalidFrameError
from .ifu import chan_extensions

__all__ = ["CubeGrid", "GRID_CARDS", "Pointing", "exposure_outlines", "footprint_of", "grid_covering",
           "ifu_footprints", "plot_field_grid", "pointing_of", "sky_of", "write_output_wcs"]

#: WCS keywords copied from the reference cube's DATA header.
GRID_CARDS = ("WCSAXES", "CTYPE1", "CTYPE2", "CTYPE3", "CUNIT1", "CUNIT2", "CUNIT3", "CRPIX1", "CRPIX2",
              "CRPIX3", "CRVAL1", "CRVAL2", "CRVAL3", "CD1_1", "CD1_2", "CD2_1", "CD2_2", "CD3_3", "CD1_3",
              "CD2_3", "CD3_1", "CD3_2", "RADESYS", "EQUINOX", "SPECSYS")

#: Height (spaxels) of a slice on the sky: the GEOMETRY_TABLE gives each slice's centre and
#: width; slices of a stack lie one spaxel apart.
SLICE_HEIGHT = 1.0


class CubeGrid:
    """The grid of a cube: its 3D WCS cards and its size.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The WCS cards (:data:`GRID_CARDS`) of the cube's DATA extension.
    n_planes : int
        Number of wavelength planes.
    shape : (int, int)
        ``(ny, nx)`` spaxels.
    """

    def __init__(self, header: fits.Header, n_planes: int, shape: tuple[int, int]):
        self.header, self.n_planes, self.shape = header, int(n_planes), (int(shape[0]), int(shape[1]))
        self.crval = float(header["CRVAL3"])
        self.cdelt = float(header.get("CD3_3", header.get("CDELT3", 1.25)))
        self.crpix = float(header.get("CRPIX3", 1.0))

    @classmethod
    def from_file(cls, path, last: float | None = None) -> "CubeGrid":
        """The grid of a cube or OUTPUT_WCS file; ``last``: extend its planes up to this wavelength (A)."""
        with fits.open(path, memmap=True) as h:
            dh = h["DATA"].header
            card = fits.Header()
            for key in GRID_CARDS:
                if key in dh:
                    card[key] = (dh[key], dh.comments[key])
            g = cls(card, int(dh["NAXIS3"]), (int(dh["NAXIS2"]), int(dh["NAXIS1"])))
        if last is not None:
            g.n_planes = int(math.floor((last - g.wavelength(0)) / g.cdelt + 1e-6)) + 1
        return g

    def wavelength(self, k) -> np.ndarray:
        """Wavelength of plane(s) ``k`` (0-based), A."""
        return self.crval + self.cdelt * (np.asarray(k, dtype=float) + 1.0 - self.crpix)

    def planes(self, edges: list[float], b: int, n: int) -> tuple[int, int]:
        """Planes ``[k0, k1)`` of band ``b`` of ``n`` between wavelength ``edges`` (A); the first
        and last band take the grid's ends."""
        def first_at(lam):
            return int(min(max(math.ceil((lam - self.wavelength(0)) / self.cdelt - 1e-6), 0), self.n_planes))
        return (0 if b == 0 else first_at(edges[b])), (self.n_planes if b == n - 1 else first_at(edges[b + 1]))

    def write(self, path: str | os.PathLike, planes: tuple[int, int] | None = None,
              primary: dict | None = None) -> Path:
        """Write the grid (or its planes ``[k0, k1)``) as an OUTPUT_WCS file.

        Parameters
        ----------
        path : path
        planes : (int, int), optional
            Only these planes (a wavelength band); default: all.
        primary : dict, optional
            Further primary-header cards (``OBJECT``, ``ESO INS MODE``...), ``key: value``
            or ``key: (value, comment)``.

        Returns
        -------
        Path
        """
        k0, k1 = planes if planes is not None else (0, self.n_planes)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        eh = self.header.copy()
        eh["CRVAL3"] = float(self.wavelength(k0))
        eh["CRPIX3"] = 1.0
        ph = fits.Header()
        ph["INSTRUME"] = "MUSE"
        ph["HIERARCH ESO PRO CATG"] = "OUTPUT_WCS"
        for key, value in (primary or {}).items():
            ph[key if len(key) <= 8 and " " not in key else f"HIERARCH {key}"] = value
        fits.HDUList([fits.PrimaryHDU(header=ph),
                      fits.ImageHDU(np.zeros((k1 - k0, *self.shape), np.int8), eh, name="DATA")]).writeto(
            path, overwrite=True)
        return path


def write_output_wcs(cube_path: str | os.PathLike, out_path: str | os.PathLike, *,
                     mode: str | None = None) -> Path:
    """Write the grid of a cube as an ``OUTPUT_WCS`` frame.

    Parameters
    ----------
    cube_path : path
        A MUSE cube (``DATA`` extension with a 3D WCS), e.g. a field's combined cube.
    out_path : path
        The OUTPUT_WCS file: a primary header (``ESO PRO CATG = OUTPUT_WCS``, ``OBJECT``,
        ``ESO INS MODE``) and a ``DATA`` cube of the cube's size (int8 zeros) whose header
        has the cube's WCS. It carries no ``MJD-OBS`` or recipe, so :meth:`Archive.ingest`
        archives it as a static calibration, certified for the range given.
    mode : str, optional
        ``ESO INS MODE`` (default: the cube's).

    Returns
    -------
    Path
        ``out_path``.
    """
    p0 = fits.getheader(cube_path, 0)
    return CubeGrid.from_file(cube_path).write(out_path, primary={
        "OBJECT": str(p0.get("OBJECT", "")), "ESO INS MODE": mode or str(p0.get("ESO INS MODE", "")),
        "MUSEWISE GRID FROM": (Path(cube_path).name[:40], "cube whose grid this is"),
        "ORIGIN": "musewise.products.outputwcs"})


@dataclass(frozen=True)
class Pointing:
    """Where one exposure looked.

    Attributes
    ----------
    ra, dec : float
        Telescope pointing (degrees): the header's ``RA`` / ``DEC``, the centre of the field.
    posang : float
        Position angle (degrees, North through East) of the instrument's +y axis
        (``ESO INS DROT POSANG``).
    ifus : tuple of int
        The IFUs the exposure holds.
    """

    ra: float
    dec: float
    posang: float
    ifus: tuple[int, ...]


def pointing_of(path) -> tuple[Pointing, fits.Header]:
    """The pointing of a raw science frame, and its primary header (only headers are read).

    Raises
    ------
    InvalidFrameError
        The frame lacks ``RA``/``DEC`` or holds no IFU.
    """
    with fits.open(path, memmap=True) as h:
        p0 = h[0].header.copy()
        ifus = tuple(sorted(chan_extensions(x.name for x in h)))
    missing = [k for k in ("RA", "DEC") if p0.get(k) is None]
    if missing:
        raise InvalidFrameError(f"{Path(path).name}: no {missing[0]} in its primary header (the pointing)")
    if not ifus:
        raise InvalidFrameError(f"{Path(path).name}: holds no CHANnn extension (no IFU)")
    return Pointing(float(p0["RA"]), float(p0["DEC"]), float(p0.get("ESO INS DROT POSANG", 0.0)), ifus), p0


def ifu_footprints(geometry_path: str | os.PathLike, spaxel: float = 0.2) -> dict[int, np.ndarray]:
    """The corners of every slice of each IFU in the instrument frame, from a GEOMETRY_TABLE.

    Parameters
    ----------
    geometry_path : path
        The pipeline's ``GEOMETRY_TABLE`` (columns ``SubField`` = IFU, ``x``, ``y`` and
        ``width``, in spaxels).
    spaxel : float
        Spaxel size (arcsec).

    Returns
    -------
    dict
        ``{ifu: array (n, 2)}``: ``(x, y)`` offsets (arcsec) from the field centre, +x West and
        +y North at position angle 0. The field centre is the middle of the extent of all the
        table's slices (the pipeline centres the whole field on the pointing).
    """
    t = fits.getdata(geometry_path, 1)
    ifu = np.asarray(t["SubField"], int)
    x, y, w = (np.asarray(t[c], float) for c in ("x", "y", "width"))
    x0, x1 = x - w / 2, x + w / 2
    y0, y1 = y - SLICE_HEIGHT / 2, y + SLICE_HEIGHT / 2
    xc, yc = 0.5 * (x0.min() + x1.max()), 0.5 * (y0.min() + y1.max())
    out = {}
    for i in np.unique(ifu):
        m = ifu == i
        corners = np.concatenate([np.stack([xs, ys], axis=1) for xs in (x0[m], x1[m]) for ys in (y0[m], y1[m])])
        out[int(i)] = (corners - (xc, yc)) * spaxel
    return out


def footprint_of(pointing: Pointing, footprints: dict[int, np.ndarray]) -> np.ndarray:
    """The slice corners (instrument frame, arcsec, shape (n, 2)) of the IFUs an exposure holds.

    Raises
    ------
    InvalidArgumentError
        The exposure holds an IFU the footprints do not know.
    """
    missing = [i for i in pointing.ifus if i not in footprints]
    if missing:
        raise InvalidArgumentError(f"the GEOMETRY_TABLE has no IFU {missing[0]} (an exposure holds it)")
    return np.concatenate([footprints[i] for i in pointing.ifus])


def sky_of(pointing: Pointing, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RA, Dec (degrees) of instrument-frame offsets ``xy`` (arcsec, shape (n, 2)) of an exposure.

    The instrument's +y axis points to the position angle, +x (West at PA 0) 90 degrees
    clockwise of it; the offsets are from the pointing, in the tangent plane.
    """
    from astropy.wcs import WCS

    c, s = math.cos(math.radians(pointing.posang)), math.sin(math.radians(pointing.posang))
    exp = WCS(naxis=2)
    exp.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    exp.wcs.crval = [pointing.ra, pointing.dec]
    exp.wcs.crpix = [0.0, 0.0]
    # intermediate world coordinates are (East, North), in degrees
    exp.wcs.cd = np.array([[-c, s], [s, c]]) / 3600.0
    xy = np.asarray(xy, float)
    return exp.all_pix2world(xy[:, 0], xy[:, 1], 1)  # origin 1: pixel value = offset from CRPIX 0


def grid_covering(pointings: Sequence[Pointing], footprints: dict[int, np.ndarray], *, spaxel: float = 0.2,
                  margin: float = 1.0, wavelengths: tuple[float, float, float] = (4750.0, 9350.0, 1.25)) -> CubeGrid:
    """The North-up grid covering every exposure of a field.

    Parameters
    ----------
    pointings : sequence of Pointing
        The exposures.
    footprints : dict
        :func:`ifu_footprints`: each IFU's slice corners in the instrument frame (arcsec).
    spaxel : float
        Spaxel size of the grid (arcsec).
    margin : float
        Added on each side of what the exposures cover (arcsec): the astrometric solution
        and the atmospheric refraction move the data by a fraction of an arcsec.
    wavelengths : (float, float, float)
        First and last wavelength and step (A) of the spectral axis (air wavelengths).

    Returns
    -------
    CubeGrid
        TAN projection about the mean pointing, RA decreasing along x.

    Raises
    ------
    InvalidArgumentError
        No pointing, or an exposure holding an IFU the footprints do not know.
    """
    from astropy.wcs import WCS

    if not pointings:
        raise InvalidArgumentError("no exposure to make a grid for")
    ra = np.radians([p.ra for p in pointings])
    ra0 = math.degrees(math.atan2(np.sin(ra).mean(), np.cos(ra).mean())) % 360.0
    dec0 = float(np.mean([p.dec for p in pointings]))
    scale = spaxel / 3600.0
    grid = WCS(naxis=2)
    grid.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    grid.wcs.crval = [ra0, dec0]
    grid.wcs.crpix = [0.0, 0.0]
    grid.wcs.cd = [[-scale, 0.0], [0.0, scale]]
    px, py = [], []
    for p in pointings:
        gx, gy = grid.all_world2pix(*sky_of(p, footprint_of(p, footprints)), 1)  # spaxels from the tangent point
        px.append(gx)
        py.append(gy)
    px, py = np.concatenate(px), np.concatenate(py)
    m = margin / spaxel
    x0, y0 = math.floor(px.min() - m), math.floor(py.min() - m)
    nx, ny = math.ceil(px.max() + m) - x0 + 1, math.ceil(py.max() + m) - y0 + 1
    lam0, lam1, dlam = (float(v) for v in wavelengths)
    n_planes = int(math.floor((lam1 - lam0) / dlam + 1e-6)) + 1
    h = fits.Header()
    h["WCSAXES"] = 3
    h["CTYPE1"], h["CTYPE2"], h["CTYPE3"] = "RA---TAN", "DEC--TAN", "AWAV"
    h["CUNIT1"], h["CUNIT2"], h["CUNIT3"] = "deg", "deg", "Angstrom"
    # pixel k (0-based) of the box is FITS pixel k + 1; the tangent point was at pixel 0
    h["CRPIX1"], h["CRPIX2"], h["CRPIX3"] = float(1 - x0), float(1 - y0), 1.0
    h["CRVAL1"], h["CRVAL2"], h["CRVAL3"] = ra0, dec0, lam0
    h["CD1_1"], h["CD1_2"], h["CD2_1"], h["CD2_2"] = -scale, 0.0, 0.0, scale
    h["CD3_3"] = dlam
    h["CD1_3"] = h["CD2_3"] = h["CD3_1"] = h["CD3_2"] = 0.0
    h["RADESYS"], h["EQUINOX"] = "FK5", 2000.0
    return CubeGrid(h, n_planes, (ny, nx))


def exposure_outlines(grid_path, raws, geometry_path) -> list[dict]:
    """Where each raw exposure's IFUs fall on a grid: one outline per IFU, in grid spaxels.

    Parameters
    ----------
    grid_path : path
        An OUTPUT_WCS (or any cube).
    raws : sequence of path
        Raw science frames (only their headers are read).
    geometry_path : path
        The ``GEOMETRY_TABLE`` the slices are placed with.

    Returns
    -------
    list of dict
        ``{"label", "ifu", "x", "y"}``: the closed outline (5 corners) of the IFU's slices,
        0-based pixel coordinates of the grid; ``label`` names the exposure (its
        ``DATE-OBS`` and position angle).
    """
    from astropy.wcs import WCS

    header = fits.getheader(grid_path, "DATA")
    wcs = WCS(header).celestial
    spaxel = abs(float(header["CD2_2"])) * 3600.0
    footprints = ifu_footprints(geometry_path, spaxel=spaxel)
    out = []
    for raw in raws:
        pointing, h0 = pointing_of(raw)
        label = f"{str(h0.get('DATE-OBS', Path(raw).name))[:19]} PA {pointing.posang:g}"
        for ifu in pointing.ifus:
            xy = footprint_of(Pointing(pointing.ra, pointing.dec, pointing.posang, (ifu,)), footprints)
            lo, hi = xy.min(axis=0), xy.max(axis=0)
            box = np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]], [lo[0], lo[1]]])
            px, py = wcs.all_world2pix(*sky_of(pointing, box), 0)
            out.append({"label": label, "ifu": ifu, "x": np.asarray(px), "y": np.asarray(py)})
    return out


def plot_field_grid(grid_path, raws, geometry_path):
    """A grid (OUTPUT_WCS) with the outline of every exposure's IFUs on it (matplotlib figure).

    Every outline must lie inside the grid, the margin around them empty. Axes in spaxels
    of the grid, North up, East left; true proportions.
    """
    import matplotlib.pyplot as plt

    header = fits.getheader(grid_path, "DATA")
    nx, ny = int(header["NAXIS1"]), int(header["NAXIS2"])
    spaxel = abs(float(header["CD2_2"])) * 3600.0
    outlines = exposure_outlines(grid_path, raws, geometry_path)
    labels = list(dict.fromkeys(o["label"] for o in outlines))
    fig, ax = plt.subplots(figsize=(10, min(7 * ny / nx, 8) + 1.6))
    ax.add_patch(plt.Rectangle((-0.5, -0.5), nx, ny, fill=False, lw=2, color="k", label="grid"))
    named = set()  # one legend entry per exposure, on its first IFU
    for o in outlines:
        label = o["label"] if o["label"] not in named else None
        named.add(o["label"])
        ax.plot(o["x"], o["y"], color=f"C{labels.index(o['label']) % 10}", lw=1, label=label)
    ax.set_xlim(-0.05 * nx - 1, 1.05 * nx)
    ax.set_ylim(-0.05 * ny - 1, 1.05 * ny)
    ax.set_aspect("equal")
    ax.set_xlabel("x (spaxels; East left)")
    ax.set_ylabel("y (spaxels; North up)")
    ax.set_title(f"field grid {nx} x {ny} spaxels ({nx * spaxel:.1f}\" x {ny * spaxel:.1f}\"), "
                 f"{len(labels)} exposure(s)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.tight_layout()
    return fig
