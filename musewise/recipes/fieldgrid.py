"""The grid of a field, from where its exposures looked (a non-pipeline step, ``field_grid``).

Every exposure of a field must be resampled onto one grid before their cubes can be
combined voxel by voxel (:mod:`musewise.recipes.cubecombine`), and muse_exp_combine
takes the same grid for its cube. This recipe writes that grid, an ``OUTPUT_WCS``, from
the raw science frames of the field (all its nights) before any exposure is resampled:

* each frame's pointing (``RA``, ``DEC``), position angle (``ESO INS DROT POSANG``) and the
  IFUs it holds (its ``CHANnn`` extensions);
* where those IFUs' slices lie in the field, from the pipeline's ``GEOMETRY_TABLE``;
* a North-up TAN grid of ``spaxel`` arcsec about the mean pointing, covering every slice
  of every exposure plus ``margin`` arcsec, on the wavelength axis ``lambda_min`` to
  ``lambda_max`` in steps of ``dlambda`` (the MUSE nominal range at 1.25 A).

The grid depends only on the frames' headers: rebuilding a flat or a pixel table never
changes it; a new exposure of the field, or a frame marked invalid, does.
"""

from __future__ import annotations

from pathlib import Path

from ..exceptions import InvalidArgumentError
from ..products.outputwcs import grid_covering, ifu_footprints, pointing_of
from .python import register_python_recipe

__all__ = ["field_grid"]


@register_python_recipe("field_grid", inputs={"OBJECT": True, "GEOMETRY_TABLE": True}, outputs=["OUTPUT_WCS"],
                        calibrations=["GEOMETRY_TABLE"])
def field_grid(frames: dict, workdir: Path, spaxel: float = 0.2, margin: float = 1.0,
               lambda_min: float = 4750.0, lambda_max: float = 9350.0, dlambda: float = 1.25, log=None):
    """Write the OUTPUT_WCS covering every exposure of a field (see the module docstring).

    Parameters
    ----------
    frames : dict
        ``{"OBJECT": [raw frames of the field], "GEOMETRY_TABLE": [path]}``.
    workdir : Path
        Folder of the grid (``OUTPUT_WCS.fits``).
    spaxel : float
        Spaxel size of the grid (arcsec).
    margin : float
        Added on each side of the exposures' slices (arcsec).
    lambda_min : float
        First wavelength of the grid (A).
    lambda_max : float
        Last wavelength of the grid (A).
    dlambda : float
        Wavelength step (A).
    """
    say = log or (lambda _line: None)
    if spaxel <= 0 or dlambda <= 0 or lambda_max <= lambda_min or margin < 0:
        raise InvalidArgumentError(f"field_grid: spaxel ({spaxel}) and dlambda ({dlambda}) must be positive, "
                                   f"margin ({margin}) not negative and lambda_max ({lambda_max}) above "
                                   f"lambda_min ({lambda_min})")
    raws = sorted(frames["OBJECT"], key=str)
    found = [pointing_of(p) for p in raws]
    objects = sorted({str(h.get("OBJECT", "")) for _, h in found})
    if len(objects) > 1:
        raise InvalidArgumentError(f"field_grid: the frames are of {len(objects)} fields ({', '.join(objects)}); "
                                   f"a grid is made for one")
    footprints = ifu_footprints(frames["GEOMETRY_TABLE"][0], spaxel=spaxel)
    pointings = [pt for pt, _ in found]
    grid = grid_covering(pointings, footprints, spaxel=spaxel, margin=margin,
                         wavelengths=(lambda_min, lambda_max, dlambda))
    first = min((h for _, h in found), key=lambda h: float(h.get("MJD-OBS", 0.0)))
    for raw, (pt, h) in zip(raws, found):
        say(f"field_grid: {Path(raw).name} {h.get('DATE-OBS', '')}: RA {pt.ra:.6f} Dec {pt.dec:.6f} "
            f"PA {pt.posang:g} deg, IFUs {','.join(map(str, pt.ifus))}")
    ny, nx = grid.shape
    say(f"field_grid: {len(raws)} exposure(s) of {objects[0]!r} -> {nx} x {ny} spaxels of {spaxel:g} arcsec "
        f"({nx * spaxel:.1f} x {ny * spaxel:.1f} arcsec) x {grid.n_planes} planes "
        f"{lambda_min:g}-{grid.wavelength(grid.n_planes - 1):g} A")
    target = Path(workdir) / "OUTPUT_WCS.fits"
    primary = {"OBJECT": objects[0], "MJD-OBS": float(first.get("MJD-OBS", 0.0)),
               "DATE-OBS": str(first.get("DATE-OBS", "")), "ESO INS MODE": str(first.get("ESO INS MODE", "")),
               "MUSEWISE GRID NEXP": (len(raws), "exposures the grid covers"),
               "ORIGIN": "musewise.recipes.fieldgrid"}
    grid.write(target, primary=primary)
    say(f"Created product {target.name} (OUTPUT_WCS)")
    return [(target, "OUTPUT_WCS")]
