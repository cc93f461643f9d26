"""RegionViewer: the spectrum of a region drawn on a cube's image (circle or polygon), with variance.

The computation is :func:`~musewise.widgets.skyregions.region_spectrum`; this
widget draws the region, shows the summed spectrum with its 1-sigma band, and
reads and writes region files (DS9 ``.reg``, CASA ``.crtf``) in sky coordinates.
"""

from __future__ import annotations

import os
from pathlib import Path

import ipywidgets as widgets
import numpy as np
from astropy import units as u
from traitlets import Enum, Float, Instance, TraitError, Unicode, observe, validate

from ..exceptions import MusewiseError, NothingSelectedError
from ..products.cube import MuseCube
from ..products.spectrum import Spectrum
from .cubeio import open_cube
from .image_viewer import ImageViewer, side_by_side
from .sky import NoWCSError, celestial_wcs, pixel_to_sky
from .skyregions import describe_region, read_regions, region_pixels, region_spectrum, write_regions
from .spectrum_viewer import SpectrumViewer

__all__ = ["RegionViewer", "REGION_SHAPES"]

#: How a click draws a region.
REGION_SHAPES = ("circle", "polygon")


class RegionViewer(widgets.VBox):
    """Draw a circle or a polygon on a cube's white-light image and see its summed spectrum.

    *circle*: click the centre; the radius is ``radius_arcsec``. *polygon*: pick the
    polygon tool in the image's toolbar (if it is not highlighted already), double-click
    to start, click to add vertices, double-click to end; the spectrum follows each
    vertex. Clicks do not draw circles in this mode. Regions can also be
    given in code (:meth:`set_region`, sky or pixel regions of ``regions``) or read
    from a file (:meth:`load_regions`); :meth:`save_region` writes the region
    shown, in sky coordinates.

    Parameters
    ----------
    source : str, os.PathLike, int, DatasetRecord or MuseCube
        The cube (file, archive dataset id or record, open cube).
    region : regions.SkyRegion or regions.PixelRegion, optional
        Region shown first.
    archive : musewise.archive.Archive, optional
        Archive used to resolve dataset ids.
    cache_dir : path-like, optional
        White-light cache folder.
    radius_arcsec : float
        Radius of clicked circles, arcsec (spaxels if the cube has no WCS).
    prefetch : bool
        Read the cube once in the background, so that later regions come from the
        page cache (a region costs ~0.1-0.4 s warm, ~0.4-2 s cold on a full cube).
    """

    shape = Enum(REGION_SHAPES, "circle", help="What a click on the image draws.")
    radius_arcsec = Float(1.0, help="Radius of a clicked circle, arcsec.")
    status = Unicode("", help="Last message shown to the user.")
    cube = Instance(MuseCube, help="The cube.")

    def __init__(self, source, region=None, *, archive=None, cache_dir=None,
                 radius_arcsec: float = 1.0, prefetch: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.cube = open_cube(source, archive=archive, cache_dir=cache_dir)
        if prefetch:
            self.cube.prefetch()
        self._region = None
        self._spectrum: Spectrum | None = None
        self.radius_arcsec = radius_arcsec
        self.image_viewer = ImageViewer(width=480, height=400)
        self.image_viewer.show(self.cube.white_light(), title="white light: click or draw a region")
        self.spectrum_viewer = SpectrumViewer(width=600, height=340)
        self.image_viewer.on_click(lambda x, y: self.shape == "circle" and self.click(x, y))
        self.image_viewer.enable_polygon_drawing(lambda verts: self.polygon(verts))
        self._shape = widgets.ToggleButtons(options=REGION_SHAPES, value=self.shape,
                                            style={"button_width": "90px"})
        self._radius = widgets.BoundedFloatText(value=self.radius_arcsec, min=0.01, max=60.0,
                                                step=0.1, description='radius (")',
                                                layout=widgets.Layout(width="170px"))
        self._path = widgets.Text(value="region.reg", description="file",
                                  layout=widgets.Layout(width="260px"))
        self._load = widgets.Button(description="Load regions", icon="upload")
        self._save = widgets.Button(description="Save region", icon="download")
        self._what = widgets.HTML("", layout=widgets.Layout(width="420px"))
        self._status = widgets.HTML("")
        widgets.link((self._shape, "value"), (self, "shape"))
        widgets.link((self._radius, "value"), (self, "radius_arcsec"))
        widgets.dlink((self, "status"), (self._status, "value"),
                      lambda s: f"<span style='font-size:smaller'>{s}</span>")
        self._load.on_click(lambda b: self._try(lambda: self.load_regions(self._path.value)))
        self._save.on_click(lambda b: self._try(lambda: self.save_region(self._path.value)))
        self.children = [
            widgets.HTML(f"<b>{self.cube.name}</b>: spectrum of a region"),
            side_by_side(self.image_viewer, self.spectrum_viewer),
            widgets.HBox([self._shape, self._radius, self._what]),
            widgets.HBox([self._path, self._load, self._save, self._status]),
        ]
        if region is not None:
            self.set_region(region)

    # ------------------------------------------------------------ public API
    @property
    def region(self):
        """The region shown (as given: sky or pixel), or None."""
        return self._region

    @property
    def spectrum(self) -> Spectrum | None:
        """The region's summed spectrum (with variance), or None."""
        return self._spectrum

    def set_region(self, region) -> Spectrum:
        """Show a region (``regions`` sky or pixel region) and its summed spectrum; returns it.

        Raises
        ------
        OutsideCubeError
            If the region selects no spaxel of the cube.
        NoWCSError
            A sky region on a cube without celestial WCS.
        """
        pix = region_pixels(region, self.cube.wcs_header, self.cube.shape[1:])
        spec = region_spectrum(self.cube, region)
        self._region, self._spectrum = region, spec
        self.image_viewer.show_outlines([pix.outline])
        self.spectrum_viewer.show(spec)
        self._what.value = (f"<span class='musewise-region'>{describe_region(region)}: "
                            f"{spec.meta['npix']} spaxels</span>")
        return spec

    def click(self, x: float, y: float) -> Spectrum:
        """What a click does in *circle* mode: a circle of ``radius_arcsec`` around (x, y)."""
        from regions import CirclePixelRegion, CircleSkyRegion, PixCoord

        try:
            centre = pixel_to_sky(self.cube.wcs_header, x, y)
            region = CircleSkyRegion(centre, self.radius_arcsec * u.arcsec)
        except NoWCSError:  # no sky geometry: the radius is taken in spaxels
            region = CirclePixelRegion(PixCoord(x, y), self.radius_arcsec)
        return self.set_region(region)

    def polygon(self, vertices) -> Spectrum:
        """A polygon of pixel vertices ((n, 2), 0-based), kept in sky coordinates if possible."""
        from regions import PixCoord, PolygonPixelRegion, PolygonSkyRegion

        v = np.asarray(vertices, float)
        try:
            region = PolygonSkyRegion(pixel_to_sky(self.cube.wcs_header, v[:, 0], v[:, 1]))
        except NoWCSError:
            region = PolygonPixelRegion(PixCoord(x=v[:, 0], y=v[:, 1]))
        return self.set_region(region)

    def load_regions(self, path: str | os.PathLike) -> Spectrum:
        """Show the first region of a region file (.reg, .crtf, .fits); returns its spectrum."""
        regions = read_regions(path)
        spec = self.set_region(regions[0])
        more = f" (first of {len(regions)})" if len(regions) > 1 else ""
        self.status = f"region read from {path}{more}"
        return spec

    def save_region(self, path: str | os.PathLike) -> Path:
        """Write the region shown to a region file, in sky coordinates when the cube has a WCS."""
        if self._region is None:
            raise NothingSelectedError("no region shown yet")
        region = self._region
        if hasattr(region, "to_sky"):  # a pixel region
            try:
                region = region.to_sky(celestial_wcs(self.cube.wcs_header))
            except NoWCSError:
                pass
        out = write_regions([region], path)
        self.status = f"region written to {out}"
        return out

    def close(self):
        """Close the widgets."""
        for w in (self.image_viewer.plot, self.spectrum_viewer.plot):
            w.close()
        super().close()

    # ------------------------------------------------------------- internals
    def _try(self, action):
        try:
            action()
        except (MusewiseError, OSError, ValueError) as exc:  # said to the user, not raised
            self.status = f"<b>{exc}</b>"

    @validate("radius_arcsec")
    def _valid_radius(self, proposal):
        if proposal.value <= 0:
            raise TraitError(f"radius must be > 0 arcsec, got {proposal.value}")
        return proposal.value

    @observe("shape")
    def _on_shape(self, change):
        self.image_viewer.set_drawing_active(change.new == "polygon")
