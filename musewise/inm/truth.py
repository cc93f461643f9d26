"""What the instrument model put on the sky, written down: the stars of a field with their fluxes.

QC of a cube compares the flux of a known star with its catalogue (``musewise.qc.starflux``).
For real data the catalogue comes from photometry of the field; for simulated data it is
the truth of the instrument model: the stars of the scene, where
:meth:`~musewise.inm.scene.Scene.sky_positions` puts them for the field centre, and their
flux density above the atmosphere (:meth:`~musewise.inm.scene.Star.flux`), sampled on a
wavelength grid.

The catalogue is an ECSV table (``STAR_CATALOG.ecsv``, beside the raw frames; not a FITS
file, so ingesting the raw folder leaves it alone):

========  ===========================================  ============================
column    meaning                                       unit
========  ===========================================  ============================
name      the star's label                              -
ra, dec   true position (ICRS)                          deg
flux      flux density on the ``wave`` grid of the      erg s-1 cm-2 Angstrom-1
          table's ``meta['wave']`` (a vector per star)
========  ===========================================  ============================
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .scene import Scene, Star

#: Wavelengths (Angstrom) the catalogue samples the stars' flux density at: MUSE's range.
CATALOGUE_WAVE = np.arange(4600.0, 9401.0, 5.0)
#: File name of the catalogue beside a simulated night's raw frames.
CATALOGUE_NAME = "STAR_CATALOG.ecsv"


def star_catalogue(scene: Scene, ra: float, dec: float, wave=CATALOGUE_WAVE):
    """The stars of ``scene`` at field centre ``ra``, ``dec`` (degrees) as a catalogue.

    Parameters
    ----------
    scene : Scene
        The field (its stars' ``dx``, ``dy`` are offsets from the centre, arcsec).
    ra, dec : float
        Field centre (degrees).
    wave : array, optional
        Wavelength grid (Angstrom) of the flux densities.

    Returns
    -------
    astropy.table.Table
        ``name``, ``ra``, ``dec`` (deg), ``flux`` (erg s-1 cm-2 Angstrom-1 on
        ``meta['wave']``), brightest at 5500 Angstrom first.
    """
    from astropy.table import Table

    wave = np.asarray(wave, dtype=float)
    rows = [(f"star{k}({s.dx:+.1f},{s.dy:+.1f})", r, d, s.flux(wave))
            for k, (s, r, d) in enumerate(scene.sky_positions(ra, dec)) if isinstance(s, Star)]
    rows.sort(key=lambda row: -float(np.interp(5500.0, wave, row[3])))
    t = Table(rows=rows, names=("name", "ra", "dec", "flux")) if rows else \
        Table(names=("name", "ra", "dec", "flux"), dtype=(str, float, float, (float, (wave.size,))))
    t["ra"].unit = t["dec"].unit = "deg"
    t["flux"].unit = "erg / (Angstrom s cm2)"
    t.meta["wave"] = [float(w) for w in wave]
    t.meta["wave_unit"] = "Angstrom"
    t.meta["field"] = scene.name
    t.meta["comment"] = "flux density above the atmosphere, as the musewise instrument model simulated it"
    return t


def write_star_catalogue(path: str | os.PathLike, scene: Scene, ra: float, dec: float) -> Path:
    """Write :func:`star_catalogue` to ``path`` (ECSV); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    star_catalogue(scene, ra, dec).write(path, format="ascii.ecsv", overwrite=True)
    return path


__all__ = ["CATALOGUE_NAME", "CATALOGUE_WAVE", "star_catalogue", "write_star_catalogue"]
