"""CompareViewer: two cubes of one field side by side, a linked spaxel and the difference spectrum.

The computation is :func:`~musewise.widgets.compare.compare_spectra`; this
widget shows the two white-light images, marks the same sky position in both,
draws both spectra on one plot and their difference (with its 1-sigma band)
below.
"""

from __future__ import annotations

from html import escape

import ipywidgets as widgets
from traitlets import Float, Instance, TraitError, Unicode, validate

from ..exceptions import OutsideCubeError
from ..products.cube import MuseCube
from .compare import Comparison, compare_spectra, linked_spaxel
from .cubeio import open_cube
from .image_viewer import ImageViewer, side_by_side
from .spectrum_viewer import SpectrumViewer

__all__ = ["CompareViewer"]


class CompareViewer(widgets.VBox):
    """Compare two cubes of one field: click a spaxel in either image.

    Parameters
    ----------
    a, b : str, os.PathLike, int, DatasetRecord or MuseCube
        The two cubes (e.g. two reductions, or before and after sky cleaning).
    labels : tuple of str
        Names of the two cubes in titles.
    archive : musewise.archive.Archive, optional
        Archive used to resolve dataset ids.
    cache_dir : path-like, optional
        White-light cache folder.
    aperture_radius : float
        Radius (spaxels of cube A) of the apertures compared; 0 for single spaxels.
    prefetch : bool
        Read both cubes once in the background so that later spectra come from the
        page cache.
    """

    aperture_radius = Float(0.0, help="Aperture radius, spaxels of cube A (0: one spaxel).")
    status = Unicode("", help="Last message shown to the user (plain text: shown escaped).")
    cube_a = Instance(MuseCube, help="First cube.")
    cube_b = Instance(MuseCube, help="Second cube.")

    def __init__(self, a, b, *, labels=("A", "B"), archive=None, cache_dir=None,
                 aperture_radius: float = 0.0, prefetch: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.cube_a = open_cube(a, archive=archive, cache_dir=cache_dir)
        self.cube_b = open_cube(b, archive=archive, cache_dir=cache_dir)
        if prefetch:
            for cube in (self.cube_a, self.cube_b):
                cube.prefetch()
        self.labels = tuple(labels)
        self.aperture_radius = aperture_radius
        self._comparison: Comparison | None = None
        self.image_a = ImageViewer(width=400, height=300)
        self.image_b = ImageViewer(width=400, height=300)
        self.image_a.show(self.cube_a.white_light(), title=f"{labels[0]}: white light")
        self.image_b.show(self.cube_b.white_light(), title=f"{labels[1]}: white light")
        self.spectrum_viewer = SpectrumViewer(width=820, height=300)
        self.difference_viewer = SpectrumViewer(width=820, height=240)
        self.image_a.on_click(lambda x, y: self.select_spaxel(x, y))
        self.image_b.on_click(lambda x, y: self.select_spaxel_b(x, y))
        self._radius = widgets.BoundedFloatText(value=aperture_radius, min=0.0, max=50.0, step=0.5,
                                                description="aperture r",
                                                layout=widgets.Layout(width="170px"))
        widgets.link((self._radius, "value"), (self, "aperture_radius"))
        self._selection = widgets.HTML("")
        self._status = widgets.HTML("")
        widgets.dlink((self, "status"), (self._status, "value"),
                      lambda s: f"<span style='font-size:smaller'>{escape(s)}</span>")
        self.children = [
            widgets.HTML(f"<b>{escape(labels[0])}</b> {escape(self.cube_a.name)} &nbsp; vs &nbsp; "
                         f"<b>{escape(labels[1])}</b> {escape(self.cube_b.name)}"),
            side_by_side(self.image_a, self.image_b),
            widgets.HBox([self._radius, self._selection, self._status]),
            self.spectrum_viewer,
            self.difference_viewer,
        ]
        _, ny, nx = self.cube_a.shape
        try:
            self.select_spaxel(nx // 2, ny // 2)
        except OutsideCubeError as exc:  # the centre of A is off B: wait for a click
            self.status = str(exc)

    # ------------------------------------------------------------ public API
    @property
    def comparison(self) -> Comparison | None:
        """The comparison shown (both spectra, the difference, the two spaxels)."""
        return self._comparison

    def select_spaxel(self, x: float, y: float) -> Comparison:
        """Compare spaxel (x, y) of cube A with the same sky position in cube B; returns it.

        Raises
        ------
        OutsideCubeError
            If the spaxel is outside A or its sky position outside B.
        """
        try:
            c = compare_spectra(self.cube_a, self.cube_b, x, y, radius=self.aperture_radius)
        except OutsideCubeError as exc:
            self.status = str(exc)
            raise
        self._comparison = c
        r = self.aperture_radius or None
        self.image_a.mark(*c.xy_a, radius=r)
        self.image_b.mark(*c.xy_b, radius=r)
        la, lb = self.labels
        self.spectrum_viewer.show(c.a, title=f"{la} {c.a.label} (blue), {lb} {c.b.label} (orange)")
        self.spectrum_viewer.overlay([c.b])
        self.difference_viewer.show(c.difference, title=f"{la} - {lb}")
        self._selection.value = (f"<span class='musewise-selection'>{escape(la)} spaxel {c.xy_a} ↔ "
                                 f"{escape(lb)} spaxel {c.xy_b}</span>")
        self.status = ""
        return c

    def select_spaxel_b(self, x: float, y: float) -> Comparison:
        """Compare starting from spaxel (x, y) of cube B (the linked spaxel of A is used)."""
        xa, ya = linked_spaxel(self.cube_b, self.cube_a, x, y)
        return self.select_spaxel(xa, ya)

    def close(self):
        """Close the widgets."""
        for v in (self.image_a, self.image_b, self.spectrum_viewer, self.difference_viewer):
            v.plot.close()
        super().close()

    @validate("aperture_radius")
    def _valid_radius(self, proposal):
        if proposal.value < 0:
            raise TraitError(f"aperture radius must be >= 0 spaxels, got {proposal.value}")
        return proposal.value
