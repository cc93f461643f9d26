"""Source detection on a cube: emission lines with MUSELET, continuum sources with photutils.

The registered recipe ``muselet`` (step ``sources``) takes a ``DATACUBE_FINAL`` (one
exposure's or a combined cube) and writes a ``SOURCE_CATALOG``
(:mod:`musewise.products.catalog`), archived with its provenance like any product:

* **emission-line sources**: MUSELET (the MUSE Line Emission Tracker of J. Richard,
  ``mpdaf.sdetect.muselet``, mpdaf 3.6). For every wavelength plane it makes a
  continuum-subtracted narrow-band image (5 planes weighted by a line profile, less the
  median of ``delta`` planes on each side), runs SExtractor on it, keeps detections above
  5 sigma away from the edges and the strongest sky lines, and merges those within 3.75
  Angstrom and ``radius`` spaxels into one line (the brightest). The line's wavelength is
  that of the plane where its narrow band peaks (1.25 Angstrom planes).
* **continuum sources**: photutils' image segmentation of the cube's white-light image,
  ``continuum_nsigma`` robust standard deviations above the median, at least
  ``continuum_npixels`` connected spaxels.

Each source's aperture spectrum (``aperture`` spaxels radius) and image (the
continuum-subtracted narrow band of its line, or the white-light cut-out) are written
into the catalogue. A line's flux is the continuum-subtracted aperture spectrum summed
over ``line_width`` Angstrom, with its error from the cube's variance.

SExtractor is Debian's ``source-extractor`` package (``apt-get install
source-extractor``, in the Makefile's ``APT_PACKAGES``); MUSELET calls it ``sex`` or
``sextractor``, which Debian does not install, so the recipe gives it a link of that
name (:func:`sextractor_on_path`).

Time: MUSELET writes and reads ~3700 narrow-band images and runs SExtractor on each;
on a 1-IFU combined cube of the simulated field (3681 x 15 x 320 voxels) see
``docs/catalogues.md`` for the time measured.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from pathlib import Path

import numpy as np

from ..exceptions import InvalidArgumentError, InvalidFrameError, MissingDependencyError
from ..products.catalog import CONTINUUM, LINE, SOURCE_CATALOG, empty_sources, write_source_catalog
from .python import library_log, register_python_recipe

#: Programs SExtractor is installed as: Debian's name first, then the names MUSELET looks for.
SEXTRACTOR_NAMES = ("source-extractor", "sex", "sextractor")

#: Sky-line ranges MUSELET leaves out of its detections (Angstrom): [OI] 5577 and 6300.
SKY_RANGES = "5573.5-5578.8,6297.0-6300.5"


def find_sextractor(program: str = "") -> str:
    """The SExtractor program to run: ``program`` if given, else the first of :data:`SEXTRACTOR_NAMES` on PATH.

    Raises
    ------
    MissingDependencyError
        If none is installed; the message names the Debian package.
    """
    for name in ([program] if program else SEXTRACTOR_NAMES):
        found = shutil.which(name)
        if found:
            return found
    raise MissingDependencyError("MUSELET (step sources)", "SExtractor",
                                 "apt-get install source-extractor (Debian), or give sextractor=<program>")


@contextlib.contextmanager
def sextractor_on_path(program: str, folder: Path):
    """Let MUSELET find ``program`` as ``sex``: a link in ``folder``, first on PATH while inside.

    MUSELET runs ``sex`` or ``sextractor`` and has no option naming the program, and
    Debian installs it only as ``source-extractor``. PATH is restored on leaving.
    """
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "sex"
    link.unlink(missing_ok=True)
    link.symlink_to(program)
    old = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{folder}{os.pathsep}{old}"
    try:
        yield str(link)
    finally:
        os.environ["PATH"] = old


def _sky_ranges(text: str) -> tuple[tuple[float, float], ...]:
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        try:
            lo, hi = (float(v) for v in part.split("-"))
        except ValueError:
            raise InvalidArgumentError(f"sky range {part!r} is not 'low-high' in Angstrom "
                                       "(e.g. '5573.5-5578.8,6297.0-6300.5')") from None
        out.append((min(lo, hi), max(lo, hi)))
    return tuple(out)


def open_cube(path: str | Path):
    """Open ``path`` as a MUSE cube, or say clearly why it is not one.

    Raises
    ------
    InvalidFrameError
        If the file is not a cube with DATA, STAT and a spectral axis.
    """
    from ..products.cube import MuseCube

    cube = MuseCube.open(Path(path), find_image_fov=False)
    if cube.wcs_header is None:
        raise InvalidFrameError(path, "is not a MUSE cube: its DATA extension has no celestial WCS")
    return cube


def muselet_lines(cube_path: str | Path, workdir: str | Path, *, delta: int = 20, clean: float = 0.5,
                  radius: float = 4.0, detect_thresh: float = 2.5, sky_ranges: str = SKY_RANGES,
                  sextractor: str = "", n_cpu: int = 1, log=None):
    """Emission lines found by MUSELET (steps 1-2, then its raw catalogue merged into lines).

    Parameters
    ----------
    cube_path : path
        A ``DATACUBE_FINAL``.
    workdir : path
        Folder for MUSELET's narrow-band images and SExtractor catalogues (~2 files per plane).
    delta : int
        Planes of each side band of the continuum of a narrow band (1.25 Angstrom each).
    clean : float
        Detections where the weight image is below this fraction of its median are dropped.
    radius : float
        Detections within this many spaxels (and 3.75 Angstrom) are one line.
    detect_thresh : float
        SExtractor's ``DETECT_THRESH`` on the narrow bands, standard deviations.
    sky_ranges : str
        Wavelength ranges left out (Angstrom, ``'low-high,low-high'``).
    sextractor : str
        SExtractor program; default :func:`find_sextractor`.
    n_cpu : int
        Processes MUSELET may use.
    log : callable, optional
        Receives MUSELET's log lines.

    Returns
    -------
    astropy.table.Table
        MUSELET's line table: ``RA``, ``DEC`` (deg), ``I_X``, ``I_Y`` (0-based spaxels),
        ``WAVE`` (Angstrom), ``FLUX``, ``FLUX_ERR`` (its narrow-band photometry).
    """
    from astropy import units as u

    from ..optional import require

    require("mpdaf", "MUSELET (step sources)")
    import importlib

    from mpdaf.obj import Cube

    # the module: mpdaf.sdetect's own namespace exports the function of the same name
    ml = importlib.import_module("mpdaf.sdetect.muselet")

    program = find_sextractor(sextractor)
    work = Path(workdir)
    # MUSELET refuses to overwrite its own files: a retried run starts from an empty folder
    shutil.rmtree(work, ignore_errors=True)
    (work / "nb").mkdir(parents=True, exist_ok=True)
    skyclean = _sky_ranges(sky_ranges)
    # MUSELET's progress counters rewrite one stdout line per plane (~3700): a notebook would keep them all.
    # Its INFO lines say how many detections each cut left.
    sink = io.StringIO()
    with library_log(log, "mpdaf.sdetect.muselet", "muselet"):
        with sextractor_on_path(program, work / "bin"), contextlib.redirect_stdout(sink):
            ml.step1(Path(cube_path), None, delta=int(delta), dir_=work, write_nbcube=False, n_cpu=int(n_cpu))
            ml.step2(Path(cube_path), sex_config_nb={"detect_thresh": float(detect_thresh)}, dir_=work,
                     n_cpu=int(n_cpu))
            cube = Cube(str(cube_path))
            pix = float(np.mean(cube.wcs.get_step(unit=u.arcsec)))
            raw = ml.load_raw_catalog(work, cube, skyclean, n_cpu=int(n_cpu))
            kept = ml.clean_raw_catalog(raw, work, float(clean))
            if len(kept) == 0:
                return kept
            return ml.find_lines(kept, cube, float(radius) * pix, n_cpu=int(n_cpu))


def continuum_sources(white, *, nsigma: float = 3.0, npixels: int = 5):
    """Continuum sources of a white-light image by photutils' segmentation.

    Parameters
    ----------
    white : Image
        White-light image (BUNIT), with its celestial WCS; NaN where there are no data.
    nsigma : float
        Threshold above the median, robust standard deviations (from the MAD).
    npixels : int
        Fewest connected spaxels of a source.

    Returns
    -------
    list of dict
        ``x``, ``y`` (centroid, 0-based spaxels), ``flux`` (sum over the segment, BUNIT),
        ``flux_err`` (BUNIT, from the image's variance or the MAD noise).
    """
    from ..optional import require

    require("photutils", "continuum sources (step sources)")
    from photutils.segmentation import SourceCatalog, detect_sources

    data = np.asarray(white.data, dtype=np.float64)
    finite = np.isfinite(data)
    if finite.sum() < npixels:
        return []
    med = float(np.median(data[finite]))
    sigma = float(1.4826 * np.median(np.abs(data[finite] - med)))
    img = np.where(finite, data - med, 0.0)
    if sigma <= 0:
        return []
    import inspect

    # photutils 3 renamed npixels to n_pixels (the old name warns)
    key = "n_pixels" if "n_pixels" in inspect.signature(detect_sources).parameters else "npixels"
    segm = detect_sources(img, nsigma * sigma, mask=~finite, **{key: int(npixels)})
    if segm is None:
        return []
    err = (np.sqrt(np.clip(np.where(finite, white.var, 0.0), 0, None)) if white.var is not None
           else np.full(data.shape, sigma))
    cat = SourceCatalog(img, segm, error=err, mask=~finite)
    out = []
    # photutils 3 renamed the attributes (x_centroid...); 2.x has only the old names
    new = hasattr(cat, "x_centroid")
    names = ("x_centroid", "y_centroid", "segment_flux_err") if new else ("xcentroid", "ycentroid", "segment_fluxerr")
    xs, ys, errs = (np.atleast_1d(getattr(cat, n)) for n in names)
    fluxes = np.atleast_1d(cat.segment_flux)
    return [{"x": float(x), "y": float(y), "flux": float(f), "flux_err": float(e)}
            for x, y, f, e in zip(xs, ys, fluxes, errs)]


def line_flux(spec, wavelength: float, width: float = 6.0, continuum: float = 20.0) -> tuple[float, float]:
    """Continuum-subtracted flux of a line in a spectrum, and its error.

    Parameters
    ----------
    spec : Spectrum
        Flux density (BUNIT) with variance.
    wavelength : float
        Line centre, Angstrom.
    width : float
        Half-width of the window summed, Angstrom.
    continuum : float
        Width of the side bands beyond the window whose median is the continuum, Angstrom.

    Returns
    -------
    flux, flux_err : float
        BUNIT * Angstrom (1e-20 erg/s/cm2 for MUSE); NaN if the window has no data.
    """
    wave, data = np.asarray(spec.wave), np.asarray(spec.data, np.float64)
    step = float(np.median(np.diff(wave))) if wave.size > 1 else 1.0
    d = np.abs(wave - wavelength)
    win = (d <= width) & np.isfinite(data)
    side = (d > width + step) & (d <= width + step + continuum) & np.isfinite(data)
    if not win.any():
        return float("nan"), float("nan")
    cont = float(np.median(data[side])) if side.any() else 0.0
    flux = float(np.sum(data[win] - cont) * step)
    var = np.asarray(spec.var, np.float64)[win] if spec.var is not None else np.zeros(win.sum())
    return flux, float(np.sqrt(np.nansum(var)) * step)


def merge_lines(lines, radius: float = 4.0, merge_width: float = 6.0) -> list[tuple[float, float, float]]:
    """One detection per line: MUSELET's lines of one place within ``merge_width`` of a brighter one dropped.

    MUSELET merges detections only within 3.75 Angstrom, so a line broader than its
    5-plane filter (FWHM > ~4 Angstrom, a Lyman-alpha red wing) is found again in the
    narrow bands a few planes to each side; those are the same line.

    Parameters
    ----------
    lines : astropy.table.Table
        MUSELET's lines (:func:`muselet_lines`).
    radius : float
        Detections closer than this are one place, spaxels.
    merge_width : float
        Detections of one place closer than this in wavelength are one line, Angstrom.

    Returns
    -------
    list of (x, y, wavelength)
        0-based spaxels and Angstrom, brightest first.
    """
    if lines is None or len(lines) == 0:
        return []
    order = np.argsort(-np.nan_to_num(np.asarray(lines["FLUX"], float), nan=-np.inf))
    kept: list[tuple[float, float, float]] = []
    for k in order:
        x, y, w = float(lines["I_X"][k]), float(lines["I_Y"][k]), float(lines["WAVE"][k])
        if not any(np.hypot(x - kx, y - ky) <= radius and abs(w - kw) <= merge_width for kx, ky, kw in kept):
            kept.append((x, y, w))
    return kept


def _cutout(img, x: float, y: float, size: int):
    """A ``size`` x ``size`` (at most) cut-out of an Image around spaxel (x, y), WCS shifted."""
    from ..products.image import Image

    ny, nx = img.data.shape
    half = int(size) // 2
    x0, y0 = max(0, int(round(x)) - half), max(0, int(round(y)) - half)
    x1, y1 = min(nx, int(round(x)) + half + 1), min(ny, int(round(y)) + half + 1)
    wcs = None
    if img.wcs_header is not None:
        wcs = img.wcs_header.copy()
        wcs["CRPIX1"] = wcs.get("CRPIX1", 1.0) - x0
        wcs["CRPIX2"] = wcs.get("CRPIX2", 1.0) - y0
    var = None if img.var is None else img.var[y0:y1, x0:x1]
    return Image(np.asarray(img.data[y0:y1, x0:x1]), var, unit=img.unit, label=img.label, wcs_header=wcs,
                 meta=dict(img.meta, x0=x0, y0=y0))


def make_source_catalog(cube_path: str | Path, out_path: str | Path, workdir: str | Path, *,
                        delta: int = 20, clean: float = 0.5, radius: float = 4.0, detect_thresh: float = 2.5,
                        sky_ranges: str = SKY_RANGES, merge_width: float = 6.0, aperture: float = 3.0,
                        line_width: float = 6.0, continuum_nsigma: float = 3.0, continuum_npixels: int = 5, image_size: int = 21,
                        sextractor: str = "", n_cpu: int = 1, log=None) -> Path:
    """Detect the line and continuum sources of a cube and write its ``SOURCE_CATALOG``.

    Parameters are those of :func:`muselet_lines`, :func:`merge_lines` and
    :func:`continuum_sources`, and:

    aperture : float
        Radius of each source's spectrum, spaxels (0.2 arcsec each in WFM).
    line_width : float
        Half-width of the window of a line's flux and narrow-band image, Angstrom.
    image_size : int
        Side of each source's image, spaxels (cut to the cube).

    Returns
    -------
    Path
        ``out_path``.

    Raises
    ------
    InvalidFrameError
        If ``cube_path`` is not a MUSE cube (nothing is written).
    """
    from astropy.wcs import WCS

    cube = open_cube(cube_path)
    try:
        _, ny, nx = cube.shape
        wcs = WCS(cube.wcs_header, naxis=2)
        lines = muselet_lines(cube_path, workdir, delta=delta, clean=clean, radius=radius,
                              detect_thresh=detect_thresh, sky_ranges=sky_ranges, sextractor=sextractor,
                              n_cpu=n_cpu, log=log)
        white = cube.white_light()
        conts = continuum_sources(white, nsigma=continuum_nsigma, npixels=continuum_npixels)
        rows, spectra, images = [], {}, {}
        found = [(LINE, x, y, w) for x, y, w in merge_lines(lines, radius, merge_width)]
        found += [(CONTINUUM, c["x"], c["y"], float("nan"), c) for c in conts]
        for k, (kind, x, y, wave, *rest) in enumerate(found, start=1):
            if not (0 <= round(x) < nx and 0 <= round(y) < ny):
                continue
            spec = cube.aperture_spectrum(x, y, aperture)
            if kind == LINE:
                flux, err = line_flux(spec, wave, line_width)
                band = cube.narrow_band(wave, 2 * line_width)
                images[k] = _cutout(band, x, y, image_size)
            else:
                flux, err = rest[0]["flux"], rest[0]["flux_err"]
                images[k] = _cutout(white, x, y, image_size)
            ra, dec = (float(v) for v in wcs.pixel_to_world_values(x, y))
            spectra[k] = spec
            rows.append((k, kind, ra % 360.0, dec, x, y, wave, flux, err,
                         flux / err if err and np.isfinite(err) and err > 0 else np.nan))
        table = empty_sources()
        for r in rows:
            table.add_row(r + ("", ""))
        if log:
            log(f"sources: {sum(r[1] == LINE for r in rows)} emission-line and "
                f"{sum(r[1] == CONTINUUM for r in rows)} continuum source(s) in {Path(cube_path).name}")
        settings = {"method": "MUSELET (mpdaf) + photutils segmentation", "delta": int(delta),
                    "clean": float(clean), "radius": float(radius), "detect_thresh": float(detect_thresh),
                    "merge_width": float(merge_width),
                    "aperture": float(aperture), "line_width": float(line_width),
                    "cont_nsigma": float(continuum_nsigma), "cube": Path(cube_path).name[:60]}
        return write_source_catalog(out_path, table, spectra, images, cube.primary_header, settings)
    finally:
        cube.close()


@register_python_recipe("muselet", inputs={"DATACUBE_FINAL": True}, outputs=[SOURCE_CATALOG])
def muselet_recipe(frames: dict, workdir: Path, delta: int = 20, clean: float = 0.5, radius: float = 4.0,
                   detect_thresh: float = 2.5, sky_ranges: str = SKY_RANGES, merge_width: float = 6.0,
                   aperture: float = 3.0,
                   line_width: float = 6.0, continuum_nsigma: float = 3.0, continuum_npixels: int = 5,
                   sextractor: str = "", n_cpu: int = 1, log=None):
    """Catalogue the emission-line (MUSELET) and continuum (photutils) sources of reduced cubes.

    Parameters
    ----------
    frames : dict
        ``{"DATACUBE_FINAL": [paths]}``.
    workdir : Path
        Folder of the catalogues (``<cube>_SOURCES.fits``) and MUSELET's intermediate files.
    delta : int
        Planes (1.25 Angstrom) of each continuum side band of MUSELET's narrow bands.
    clean : float
        MUSELET drops detections where the weight is below this fraction of its median.
    radius : float
        Detections within this many spaxels and 3.75 Angstrom are one line.
    detect_thresh : float
        SExtractor detection threshold on the narrow bands, standard deviations.
    sky_ranges : str
        Wavelength ranges left out of the line search, Angstrom ('low-high,low-high').
    merge_width : float
        Lines of one place closer than this in wavelength are one line (the brightest), Angstrom.
    aperture : float
        Radius of each source's spectrum, spaxels.
    line_width : float
        Half-width of the window of a line's flux and narrow-band image, Angstrom.
    continuum_nsigma : float
        White-light detection threshold, robust standard deviations above the median.
    continuum_npixels : int
        Fewest connected spaxels of a continuum source.
    sextractor : str
        SExtractor program (default: source-extractor, sex or sextractor on PATH).
    n_cpu : int
        Processes MUSELET may use.
    """
    out = []
    for cube in frames["DATACUBE_FINAL"]:
        name = Path(cube).stem
        target = Path(workdir) / f"{name}_SOURCES.fits"
        if log:
            log(f"sources: {cube} -> {target}")
        made = make_source_catalog(cube, target, Path(workdir) / f"muselet_{name}", delta=delta, clean=clean,
                                   radius=radius, detect_thresh=detect_thresh, sky_ranges=sky_ranges,
                                   merge_width=merge_width, aperture=aperture, line_width=line_width,
                                   continuum_nsigma=continuum_nsigma,
                                   continuum_npixels=continuum_npixels, sextractor=sextractor, n_cpu=n_cpu,
                                   log=log)
        # MUSELET's ~2 files per plane are not products: only the catalogue is archived.
        shutil.rmtree(Path(workdir) / f"muselet_{name}", ignore_errors=True)
        out.append((made, SOURCE_CATALOG, None))
    return out


__all__ = ["SEXTRACTOR_NAMES", "SKY_RANGES", "continuum_sources", "find_sextractor", "line_flux",
           "make_source_catalog", "merge_lines", "muselet_lines", "muselet_recipe", "open_cube", "sextractor_on_path"]
