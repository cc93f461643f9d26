"""Source catalogues of a cube (``SOURCE_CATALOG``): the file format, its reader and cross-matching.

A ``SOURCE_CATALOG`` is one FITS file (written by :func:`write_source_catalog`):

* the primary header: the cube's observation keywords (``OBJECT``, ``DATE-OBS``,
  ``MJD-OBS``, ``ESO INS MODE``...), ``ESO PRO CATG = SOURCE_CATALOG`` and the
  detection settings as ``HIERARCH MUSEWISE SOURCES *`` cards;
* ``SOURCES``: a binary table, one row per source, with the columns of
  :data:`COLUMNS` (positions in degrees, wavelengths in Angstrom, fluxes in the
  cube's BUNIT times Angstrom for lines or BUNIT for continuum sources);
* per source, ``SPEC_<id>`` (its aperture spectrum, 1-D, BUNIT, with a ``SPEC_<id>_STAT``
  variance) and ``IMA_<id>`` (its continuum-subtracted narrow-band image around
  the line, BUNIT * Angstrom, or for a continuum source the white-light cut-out,
  BUNIT), each with its WCS.

:func:`read_sources`, :func:`source_spectrum` and :func:`source_image` read it back;
:func:`crossmatch` gives each source its nearest counterpart in an external catalogue
(ECSV, FITS or CSV with ``ra``/``dec`` columns in degrees).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from ..exceptions import InvalidArgumentError, InvalidFrameError, NotFoundError
from .fitsio import ascii_card, open_fits, write_hdus
from .image import Image
from .spectrum import Spectrum

#: Product category (``ESO PRO CATG``) of a source catalogue.
SOURCE_CATALOG = "SOURCE_CATALOG"

#: Kinds of source: found by its emission line (MUSELET) or in the white-light image (photutils).
LINE, CONTINUUM = "line", "continuum"

#: The columns of the ``SOURCES`` table: name -> (numpy type, unit, meaning).
COLUMNS = {
    "id": ("i4", "", "source number, unique in the catalogue (1, 2, ...)"),
    "kind": ("U9", "", "'line' (emission-line detection) or 'continuum' (white-light detection)"),
    "ra": ("f8", "deg", "right ascension (ICRS)"),
    "dec": ("f8", "deg", "declination (ICRS)"),
    "x": ("f4", "pix", "column in the cube, 0-based"),
    "y": ("f4", "pix", "row in the cube, 0-based"),
    "wavelength": ("f8", "Angstrom", "peak of the line (air); NaN for a continuum source"),
    "flux": ("f8", "", "line flux (BUNIT * Angstrom) or white-light flux (BUNIT) in the aperture"),
    "flux_err": ("f8", "", "standard deviation of flux, same unit"),
    "snr": ("f4", "", "flux / flux_err"),
    "spectrum": ("U16", "", "extension holding the source's spectrum"),
    "image": ("U16", "", "extension holding its narrow-band (or white-light) image"),
}


def spectrum_extension(source_id: int) -> str:
    """Name of the extension holding the spectrum of source ``source_id``."""
    return f"SPEC_{int(source_id)}"


def image_extension(source_id: int) -> str:
    """Name of the extension holding the image of source ``source_id``."""
    return f"IMA_{int(source_id)}"


def empty_sources() -> Table:
    """A ``SOURCES`` table with no row and the columns of :data:`COLUMNS`."""
    t = Table()
    for name, (dtype, unit, doc) in COLUMNS.items():
        t[name] = np.zeros(0, dtype=dtype)
        t[name].unit = unit or None
        t[name].description = doc
    return t


def write_source_catalog(path: str | os.PathLike, sources: Table, spectra: dict, images: dict,
                         primary: fits.Header, settings: dict | None = None) -> Path:
    """Write a ``SOURCE_CATALOG`` file (see the module docstring).

    Parameters
    ----------
    path : path-like
        Output file (replaced atomically).
    sources : astropy.table.Table
        One row per source with at least the columns of :data:`COLUMNS` (``spectrum``
        and ``image`` are filled here).
    spectra : dict
        ``{id: Spectrum}``: each source's aperture spectrum (BUNIT).
    images : dict
        ``{id: Image}``: each source's narrow-band or white-light image.
    primary : astropy.io.fits.Header
        The cube's primary header: its observation keywords are kept (so the
        catalogue has the cube's night, mode and target); the category is set.
    settings : dict, optional
        Detection settings, written as ``HIERARCH MUSEWISE SOURCES <KEY>`` cards.

    Returns
    -------
    pathlib.Path
    """
    missing = [c for c in COLUMNS if c not in sources.colnames and c not in ("spectrum", "image")]
    if missing:
        raise InvalidArgumentError(f"source table lacks the column(s) {', '.join(missing)}")
    h0 = primary.copy()
    for key in [k for k in h0 if str(k).startswith(("ESO PRO REC", "ESO QC", "ESO PRO DATANCOM"))]:
        del h0[key]  # the cube's recipe and QC: not this product's
    h0["HIERARCH ESO PRO CATG"] = SOURCE_CATALOG
    h0["HIERARCH MUSEWISE SOURCES N"] = (len(sources), "sources in the SOURCES table")
    for key, value in (settings or {}).items():
        if isinstance(value, (bool, int, float, str)):
            h0[f"HIERARCH MUSEWISE SOURCES {key.upper()}"] = value
    table = Table(sources, copy=True)
    table["spectrum"] = [spectrum_extension(i) if int(i) in spectra else "" for i in table["id"]]
    table["image"] = [image_extension(i) if int(i) in images else "" for i in table["id"]]
    table = table[list(COLUMNS)]
    for name, (_, unit, _) in COLUMNS.items():
        table[name].unit = unit or None
    hdus = [fits.PrimaryHDU(header=h0), fits.BinTableHDU(table, name="SOURCES")]
    for sid in table["id"]:
        sid = int(sid)
        if sid in spectra:
            hdus += _spectrum_hdus(spectra[sid], spectrum_extension(sid))
        if sid in images:
            hdus.append(_image_hdu(images[sid], image_extension(sid)))
    return write_hdus(path, hdus)


def _spectrum_hdus(spec: Spectrum, name: str) -> list:
    wave = np.asarray(spec.wave, dtype=np.float64)
    cards = {"CTYPE1": "AWAV" if spec.air else "WAVE", "CUNIT1": "Angstrom", "CRPIX1": 1.0,
             "CRVAL1": float(wave[0]), "CD1_1": float(wave[1] - wave[0]) if wave.size > 1 else 1.0}
    out = []
    for ext, arr, unit in ((name, spec.data, spec.unit), (f"{name}_STAT", spec.var, f"({spec.unit})**2")):
        if arr is None:
            continue
        h = fits.ImageHDU(np.asarray(arr, dtype=np.float32), name=ext)
        h.header.update(cards)
        h.header["BUNIT"] = unit
        out.append(h)
    return out


def _image_hdu(img: Image, name: str) -> fits.ImageHDU:
    h = fits.ImageHDU(np.asarray(img.data, dtype=np.float32), name=name)
    if img.wcs_header is not None:
        h.header.update(img.wcs_header)
    h.header["BUNIT"] = img.unit
    h.header["LABEL"] = ascii_card(img.label)
    return h


def read_sources(path: str | os.PathLike) -> Table:
    """The ``SOURCES`` table of a source catalogue.

    Returns
    -------
    astropy.table.Table
        The columns of :data:`COLUMNS`; the primary header is in ``meta``.

    Raises
    ------
    NotFoundError
        If the file does not exist.
    InvalidFrameError
        If it is not a source catalogue (no ``SOURCES`` table with those columns).
    """
    with open_fits(path) as hdul:
        if "SOURCES" not in hdul or not isinstance(hdul["SOURCES"], fits.BinTableHDU):
            raise InvalidFrameError(path, "is not a SOURCE_CATALOG: no SOURCES table")
        table = Table.read(hdul["SOURCES"])
        header = hdul[0].header.copy()
    missing = [c for c in COLUMNS if c not in table.colnames]
    if missing:
        raise InvalidFrameError(path, f"SOURCES table lacks the column(s) {', '.join(missing)}")
    for name in ("kind", "spectrum", "image"):
        table[name] = [str(v).strip() for v in table[name]]
    table.meta = {"header": header}
    return table


@contextlib.contextmanager
def _source_extension(path, name: str, what: str, source_id: int):
    """(open HDUList, the HDU ``name``) of a catalogue, or NotFoundError saying which source lacks ``what``."""
    with open_fits(path) as hdul:
        if name not in hdul:
            raise NotFoundError(f"{Path(path).name} has no {what} of source {source_id}")
        yield hdul, hdul[name]


def source_spectrum(path: str | os.PathLike, source_id: int) -> Spectrum:
    """The spectrum of source ``source_id`` of a catalogue (flux BUNIT, variance, air wavelengths).

    Raises
    ------
    NotFoundError
        If the catalogue has no spectrum of that source.
    """
    name = spectrum_extension(source_id)
    with _source_extension(path, name, "spectrum", source_id) as (hdul, h):
        wave = h.header["CRVAL1"] + h.header["CD1_1"] * (np.arange(h.data.size) + 1 - h.header["CRPIX1"])
        var = np.asarray(hdul[f"{name}_STAT"].data, np.float64) if f"{name}_STAT" in hdul else None
        return Spectrum(wave, np.asarray(h.data, np.float64), var, unit=h.header.get("BUNIT", ""),
                        label=f"source {source_id}", air=h.header.get("CTYPE1", "AWAV") != "WAVE",
                        meta={"source": int(source_id), "catalog": Path(path).name})


def source_image(path: str | os.PathLike, source_id: int) -> Image:
    """The narrow-band (line source) or white-light (continuum source) image of ``source_id``.

    Raises
    ------
    NotFoundError
        If the catalogue has no image of that source.
    """
    from .wcs import celestial_header

    with _source_extension(path, image_extension(source_id), "image", source_id) as (_, h):
        return Image(np.asarray(h.data, np.float32), unit=h.header.get("BUNIT", ""),
                     label=h.header.get("LABEL", f"source {source_id}"), wcs_header=celestial_header(h.header),
                     meta={"source": int(source_id)})


def read_external_catalog(path: str | os.PathLike) -> Table:
    """An external catalogue with ``ra`` and ``dec`` columns (degrees), from ECSV, FITS or CSV.

    Column names are matched without regard to case (``RA``, ``Dec``); an ``id`` (or
    ``name``) column, if any, names the matches.

    Raises
    ------
    NotFoundError
        If the file does not exist.
    InvalidFrameError
        If it cannot be read as a table or has no ``ra``/``dec`` columns.
    """
    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"no such file: {path}")
    suffix = path.suffix.lower()
    fmt = {".ecsv": "ascii.ecsv", ".csv": "ascii.csv", ".fits": "fits", ".fit": "fits"}.get(suffix)
    try:
        table = Table.read(path, format=fmt) if fmt else Table.read(path)
    except Exception as exc:  # astropy raises many kinds for a file it cannot parse
        raise InvalidFrameError(path, f"is not a readable catalogue ({exc})") from exc
    lower = {c.lower(): c for c in table.colnames}
    for want in ("ra", "dec"):
        if want not in lower:
            raise InvalidFrameError(path, f"has no {want!r} column (columns: {', '.join(table.colnames)})")
        if lower[want] != want:
            table.rename_column(lower[want], want)
    return table


def crossmatch(sources: Table, external, max_sep: float = 1.0) -> Table:
    """Each source's nearest counterpart in an external catalogue, within ``max_sep`` arcsec.

    Parameters
    ----------
    sources : astropy.table.Table
        A ``SOURCES`` table (:func:`read_sources`) or any table with ``ra``/``dec`` in degrees.
    external : astropy.table.Table or path-like
        The external catalogue (:func:`read_external_catalog` reads a file).
    max_sep : float
        Largest separation of a match, arcsec.

    Returns
    -------
    astropy.table.Table
        ``sources`` with ``match_index`` (row in ``external``, -1 for none), ``match_id``
        (its ``id`` or ``name`` column as text, "" for none) and ``match_sep`` (arcsec,
        NaN for none) added.
    """
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    if max_sep <= 0:
        raise InvalidArgumentError(f"max_sep must be > 0 arcsec, got {max_sep}")
    ext = external if isinstance(external, Table) else read_external_catalog(external)
    out = Table(sources, copy=True)
    n = len(out)
    out["match_index"] = np.full(n, -1, dtype="i8")
    out["match_id"] = np.full(n, "", dtype="U32")
    out["match_sep"] = np.full(n, np.nan)
    out["match_sep"].unit = "arcsec"
    if n == 0 or len(ext) == 0:
        return out
    mine = SkyCoord(np.asarray(out["ra"], float) * u.deg, np.asarray(out["dec"], float) * u.deg)
    theirs = SkyCoord(np.asarray(ext["ra"], float) * u.deg, np.asarray(ext["dec"], float) * u.deg)
    idx, sep, _ = mine.match_to_catalog_sky(theirs)
    sep = sep.to_value(u.arcsec)
    names = next((c for c in ext.colnames if c.lower() in ("id", "name")), None)
    for k in np.flatnonzero(sep <= max_sep):
        out["match_index"][k] = int(idx[k])
        out["match_sep"][k] = float(sep[k])
        out["match_id"][k] = str(ext[names][idx[k]]) if names else str(int(idx[k]))
    return out


__all__ = ["COLUMNS", "CONTINUUM", "LINE", "SOURCE_CATALOG", "crossmatch", "empty_sources", "image_extension",
           "read_external_catalog", "read_sources", "source_image", "source_spectrum", "spectrum_extension",
           "write_source_catalog"]
