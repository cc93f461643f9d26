"""QC of the field's images and alignment: IMAGE_FOV, PREVIEW_FOV, OFFSET_LIST, SOURCE_LIST, DATACUBE_ZAP.

* ``fov`` (IMAGE_FOV of ``muse_scipost`` / ``muse_exp_combine``, PREVIEW_FOV of
  ``muse_exp_align``): sources found, background level and noise, and, when the cube
  it was made with is given, its agreement with that cube's white light.
* ``align`` (OFFSET_LIST, SOURCE_LIST of ``muse_exp_align``): the offsets found against
  the exposures' header pointings, the flux scales, the sources each exposure gave.
* ``zap`` (DATACUBE_ZAP): a cube measured as any cube (:func:`~musewise.qc.measures.measure_datacube`)
  and its sky-line residuals against those of the cube ZAP cleaned.
* ``grid`` (OUTPUT_WCS of ``field_grid``): its spaxel size, orientation and extent, the
  fraction of it the exposures cover and how close they come to its edges.
* ``sources`` (SOURCE_CATALOG of step ``sources``): how many line and continuum sources,
  their S/N, and the fraction of line sources at a strong sky line (residuals taken for lines).

Units: angles in arcsec, image levels in the image's BUNIT.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..products.cube import white_light
from .measures import Measurement, fit_psf_fwhm, measure_datacube, robust_std, sky_line_residuals


def _image(path):
    from astropy.io import fits

    with fits.open(path, memmap=True) as h:
        ext = h["DATA"] if "DATA" in h else next(x for x in h if x.data is not None and x.data.ndim == 2)
        return np.asarray(ext.data, np.float32), ext.header.copy(), str(h[0].header.get("HIERARCH ESO PRO CATG", ""))


def count_sources(img, nsigma: float = 10.0, box: int = 3) -> int:
    """Local maxima of an image more than ``nsigma`` robust sigmas above its median (compact sources)."""
    from scipy import ndimage

    finite = np.isfinite(img)
    if not finite.any():
        return 0
    bkg, sig = float(np.median(img[finite])), robust_std(img[finite])
    filled = np.where(finite, img, bkg)
    peaks = (filled == ndimage.maximum_filter(filled, size=2 * box + 1)) & (filled > bkg + nsigma * max(sig, 1e-30))
    return int(np.count_nonzero(peaks))


def measure_fov(path, cube=None) -> Measurement:
    """Sources, background and agreement with its cube of an IMAGE_FOV (or PREVIEW_FOV).

    Parameters
    ----------
    path : path-like
        The image (first IMAGE_FOV extension, usually the ``white`` filter).
    cube : path-like, optional
        The DATACUBE_FINAL the image was made from (same run).

    Returns
    -------
    Measurement
        ``n_sources`` peaks above 10 robust sigma; ``background`` median and ``noise``
        robust scatter (BUNIT); ``nan_fraction`` of pixels without data;
        ``fwhm.median`` of the brightest compact sources (arcsec, when the image has
        a celestial WCS); with ``cube``: ``cube_corr`` the correlation of the image
        with the cube's white light over the pixels both have (1: the same scene) and
        ``cube_ratio`` the median ratio of the two (an image of the white filter is
        the cube's mean over it: close to 1; other filters a colour).
    """
    from ..products.wcs import pixel_scale_arcsec

    m = Measurement()
    img, header, catg = _image(path)
    unit = str(header.get("BUNIT", "")).strip()
    finite = np.isfinite(img)
    m.add("nan_fraction", float(np.mean(~finite)), "")
    if not finite.any():
        m.notes.append("the image holds no data")
        return m
    m.add("background", float(np.median(img[finite])), unit)
    m.add("noise", robust_std(img[finite]), unit)
    m.add("n_sources", count_sources(img), "")
    psf = fit_psf_fwhm(img)
    try:
        scale = pixel_scale_arcsec(header)
    except Exception:  # no celestial WCS (a preview): the PSF stays in pixels
        scale = None
    if psf and scale:
        m.add("fwhm.median", float(np.median([p["fwhm"] for p in psf])) * scale, "arcsec")
    m.arrays.update(image=img, psf=psf, category=catg)
    if cube is not None:
        from astropy.io import fits

        with fits.open(cube, memmap=True) as h:
            wl = white_light(h["DATA"].data if "DATA" in h else h[0].data)
        if wl.shape != img.shape:
            m.notes.append(f"the image ({img.shape}) is not on its cube's grid ({wl.shape}): not compared")
        else:
            both = finite & np.isfinite(wl)
            if both.sum() > 10:
                a, b = img[both].astype(float), wl[both].astype(float)
                m.add("cube_corr", float(np.corrcoef(a, b)[0, 1]), "")
                with np.errstate(divide="ignore", invalid="ignore"):
                    r = a / b
                bright = b > np.percentile(b, 75)  # where the ratio is not noise over noise
                m.add("cube_ratio", float(np.nanmedian(r[bright])), "")
            m.arrays["white"] = wl
    return m


def measure_alignment(path, images=()) -> Measurement:
    """Offsets of an OFFSET_LIST against the exposures' pointings, or the sources of a SOURCE_LIST.

    Parameters
    ----------
    path : path-like
        OFFSET_LIST or SOURCE_LIST of ``muse_exp_align``.
    images : sequence of path-like
        The IMAGE_FOVs the run aligned (their headers hold the telescope's pointing and
        dithers): each exposure is looked up in the list.

    Returns
    -------
    Measurement
        OFFSET_LIST: ``n_exposures`` listed, ``n_missing`` of ``images`` not in the list;
        ``offset.max`` and ``offset.rms`` the corrections found (arcsec: with exact
        header pointings ~0, whatever the dithers); ``dither.max`` the largest
        header dither from the first exposure (arcsec) and ``offset_dither_ratio``
        = offset.max / dither.max (near 1: the alignment undid the dithers, so
        the headers or the match are wrong); ``flux_scale.devmax`` the largest |FLUX_SCALE - 1|.
        SOURCE_LIST: ``n_sources`` rows, ``n_exposures`` exposures they came from,
        ``sources.min`` the fewest sources of one exposure.
    """
    from astropy.io import fits
    from astropy.table import Table

    from ..products.offsets import offsets_against_headers, read_offset_list

    m = Measurement()
    catg = str(fits.getheader(path, 0).get("HIERARCH ESO PRO CATG", "")).strip()
    m.arrays["category"] = catg
    if catg == "SOURCE_LIST":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = Table.read(path, hdu=1)
        m.add("n_sources", len(t), "")
        key = next((c for c in t.colnames if c.upper() in ("EXPOSURE", "EXP", "IMAGE", "FILENAME")), None)
        if key is not None and len(t):
            counts = np.unique(np.asarray(t[key]).astype(str), return_counts=True)[1]
            m.add("n_exposures", len(counts), "")
            m.add("sources.min", int(counts.min()), "")
        return m
    tab = read_offset_list(path)
    m.add("n_exposures", len(tab), "")
    r = np.hypot(np.asarray(tab["dra_arcsec"], float), np.asarray(tab["ddec_arcsec"], float))
    if r.size:
        m.add("offset.max", float(np.nanmax(r)), "arcsec")
        m.add("offset.rms", float(np.sqrt(np.nanmean(r ** 2))), "arcsec")
    if "FLUX_SCALE" in tab.colnames:
        fs = np.asarray(tab["FLUX_SCALE"], float)
        if np.isfinite(fs).any():
            m.add("flux_scale.devmax", float(np.nanmax(np.abs(fs - 1.0))), "")
    m.arrays["offsets"] = tab
    if images:
        side = offsets_against_headers(path, list(images))
        m.add("n_missing", int(np.count_nonzero(~np.isfinite(np.asarray(side["shift"], float)))), "")
        d = np.column_stack([np.asarray(side["offs_dra"], float), np.asarray(side["offs_ddec"], float)])
        dither = float(np.max(np.hypot(*(d - d[0]).T))) if len(d) else 0.0
        m.add("dither.max", dither, "arcsec")
        if dither > 0 and "offset.max" in m.values:
            m.add("offset_dither_ratio", m.values["offset.max"] / dither, "")
        m.arrays["against_headers"] = side
    else:
        m.notes.append("no IMAGE_FOV of the aligned exposures: offsets not compared with the pointings")
    return m


def measure_zap(path, before=None, star_catalogue=None) -> Measurement:
    """A DATACUBE_ZAP measured as a cube, and its sky residuals against the cube before ZAP.

    Parameters
    ----------
    path : path-like
        The cube ZAP cleaned.
    before : path-like, optional
        The DATACUBE_FINAL it was made from (the zap run's input).
    star_catalogue : path-like, optional
        As :func:`~musewise.qc.measures.measure_datacube`.

    Returns
    -------
    Measurement
        Every number of :func:`~musewise.qc.measures.measure_datacube`, plus with
        ``before``: ``before.sky_snr.<line>`` the residual's significance before ZAP,
        ``gain.<line>`` = before / after (above 1: ZAP removed residual sky) and
        ``gain.min`` the worst line; ``flux_ratio`` the median white light after over before
        (ZAP removes sky, not the sources' light: 1).
    """
    from astropy.io import fits

    from ..products.wcs import spectral_axis

    m = measure_datacube(path, star_catalogue=star_catalogue)
    if before is None:
        m.notes.append("no cube before ZAP: the cleaning is not compared")
        return m
    with fits.open(before, memmap=True) as h:
        ext = h["DATA"] if "DATA" in h else h[0]
        wave, _air = spectral_axis(ext.header, ext.data.shape[0], axis=3, path=before)
        skies = sky_line_residuals(ext.data, h["STAT"].data if "STAT" in h else None, wave)
        wl_before = white_light(ext.data)
    gains = []
    for line, e in skies.items():
        key = f"{line:.0f}"
        m.add(f"before.sky_snr.{key}", e["snr"], "")
        after = m.values.get(f"sky_snr.{key}")
        if after is not None and np.isfinite(after) and after > 0 and np.isfinite(e["snr"]):
            m.add(f"gain.{key}", e["snr"] / after, "")
            gains.append(e["snr"] / after)
    if gains:
        m.add("gain.min", min(gains), "")
    wl = m.arrays["white"]
    both = np.isfinite(wl) & np.isfinite(wl_before) & (wl_before != 0)
    if both.any():
        m.add("flux_ratio", float(np.median(wl[both]) / np.median(wl_before[both])), "")
    m.arrays["sky_before"] = skies
    return m


__all__ = ["count_sources", "measure_alignment", "measure_fov", "measure_grid", "measure_sources", "measure_zap"]


def measure_grid(path, raws=(), geometry=None) -> Measurement:
    """A field's grid (OUTPUT_WCS) against the exposures it must hold.

    Parameters
    ----------
    path : path-like
        The OUTPUT_WCS.
    raws : sequence of path-like
        The raw science frames the grid was made for (headers only are read).
    geometry : path-like, optional
        The GEOMETRY_TABLE that places their slices.

    Returns
    -------
    Measurement
        ``spaxel`` (arcsec), ``rotation`` (degrees of the x axis from East-West), ``size.x``,
        ``size.y`` (arcsec), ``n_planes``; with ``raws`` and ``geometry``: ``n_exposures``,
        ``coverage`` (fraction of the grid's spaxels inside at least one exposure's IFUs: a
        mis-pointed exposure stretches the grid into mostly empty space) and
        ``margin.min`` (arcsec from the exposures' outermost slices to the grid's edge;
        below 0 some data fall off the grid).
    """
    from astropy.io import fits
    from matplotlib.path import Path as Outline

    from ..products.outputwcs import exposure_outlines

    m = Measurement()
    h = fits.getheader(path, "DATA")
    nx, ny, nl = int(h["NAXIS1"]), int(h["NAXIS2"]), int(h["NAXIS3"])
    cd = np.array([[float(h.get("CD1_1", 0.0)), float(h.get("CD1_2", 0.0))],
                   [float(h.get("CD2_1", 0.0)), float(h.get("CD2_2", 0.0))]]) * 3600.0
    spaxel = float(np.sqrt(abs(np.linalg.det(cd))))
    m.add("spaxel", spaxel, "arcsec")
    m.add("rotation", float(np.degrees(np.arctan2(cd[1, 0], -cd[0, 0]))), "deg")
    m.add("size.x", nx * spaxel, "arcsec")
    m.add("size.y", ny * spaxel, "arcsec")
    m.add("n_planes", nl, "")
    m.arrays.update(grid=str(path), raws=[str(r) for r in raws], geometry=str(geometry) if geometry else None)
    if not raws or geometry is None:
        m.notes.append("no raw frames or GEOMETRY_TABLE given: coverage and margins not measured")
        return m
    outlines = exposure_outlines(path, raws, geometry)
    m.add("n_exposures", len({o["label"] for o in outlines}), "")
    yy, xx = np.mgrid[0:ny, 0:nx]
    centres = np.column_stack([xx.ravel(), yy.ravel()])
    covered = np.zeros(centres.shape[0], bool)
    for o in outlines:
        covered |= Outline(np.column_stack([o["x"], o["y"]])).contains_points(centres)
    m.add("coverage", float(covered.mean()), "")
    xs = np.concatenate([o["x"] for o in outlines])
    ys = np.concatenate([o["y"] for o in outlines])
    # distance of the outermost slice corner to the grid's outer edge (-0.5 and n - 0.5 in pixels)
    inside = min(xs.min() + 0.5, nx - 0.5 - xs.max(), ys.min() + 0.5, ny - 0.5 - ys.max())
    m.add("margin.min", float(inside) * spaxel, "arcsec")
    return m


def measure_sources(path, sky_lines=None, near: float = 3.0) -> Measurement:
    """A source catalogue (SOURCE_CATALOG): its sources, and how many of its lines may be sky residuals.

    Parameters
    ----------
    path : path-like
        The catalogue (:mod:`musewise.products.catalog`).
    sky_lines : sequence of float, optional
        Sky lines (air, Angstrom); default :data:`musewise.products.lines.SKY_LINES`.
    near : float
        A line source within this many Angstrom of a sky line counts as at the sky line.

    Returns
    -------
    Measurement
        ``n_line``, ``n_continuum``, ``snr.median`` (of the line sources), ``sky_fraction``
        (of the line sources at a sky line: a catalogue of sky residuals has most of them there).
    """
    from ..products.catalog import read_sources
    from ..products.lines import SKY_LINES

    table = read_sources(path)
    lines = table[table["kind"] == "line"]
    m = Measurement()
    m.add("n_line", len(lines), "")
    m.add("n_continuum", len(table) - len(lines), "")
    snr = np.asarray(lines["snr"], float)
    m.add("snr.median", float(np.nanmedian(snr)) if np.isfinite(snr).any() else float("nan"), "")
    sky = np.asarray(sorted(sky_lines if sky_lines is not None else [s.wavelength for s in SKY_LINES]), float)
    wave = np.asarray(lines["wavelength"], float)
    at_sky = (np.min(np.abs(wave[:, None] - sky[None, :]), axis=1) <= near) if wave.size and sky.size else []
    m.add("sky_fraction", float(np.mean(at_sky)) if len(lines) else float("nan"), "")
    m.arrays.update(wavelength=wave, snr=snr, sky=sky)
    if not len(lines):
        m.notes.append("no emission-line source: sky_fraction and snr.median not measured")
    return m

