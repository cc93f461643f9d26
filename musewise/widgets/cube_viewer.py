"""CubeViewer: white-light image, spaxel spectra, planes and narrow bands of a MUSE cube.

Layout: the image (:class:`ImageViewer`) left, the spectrum
(:class:`SpectrumViewer`) right, controls below. State the user changes is
held in traits (``x``, ``y``, ``wavelength``, ``redshift``, ``aperture_radius``,
``image_mode`` ...); every action is a public method that works without a
browser (``select_spaxel``, ``set_wavelength``, ``narrow_band``,
``aperture_spectrum``, ``show_white_light``, ``export_spectrum``,
``export_image``), and each control's handler is one line calling one of them.
Only the image shown (~400 KB for 320 x 320) and the spectrum (~3681 values)
travel to the browser, never the cube.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import ipywidgets as widgets
import numpy as np
from traitlets import Bool, Enum, Float, Instance, Int, TraitError, Unicode, observe, validate

from ..exceptions import InvalidArgumentError, MusewiseError, OutsideCubeError
from ..products.cube import MuseCube
from ..products.image import Image
from ..products.lines import EMISSION_LINES, observed_wavelength
from ..products.spectrum import Spectrum
from .cubeio import open_cube
from .image_viewer import ImageViewer, side_by_side
from .sky import NoWCSError, format_radec, no_positions, pixel_to_sky
from .skyregions import read_regions, region_pixels, write_regions
from .spectrum_viewer import SpectrumViewer

__all__ = ["CubeViewer", "IMAGE_MODES"]

#: What the image panel can show.
IMAGE_MODES = ("white light", "plane", "narrow band")


class CubeViewer(widgets.VBox):
    """Interactive viewer of a MUSE cube for JupyterLab and Voila.

    Click a spaxel (or, with *follow mouse*, hover) to see its spectrum with the
    1-sigma band; set a non-zero aperture radius to get the summed spectrum of
    a disc instead. The wavelength slider (or a click on the spectrum) shows a
    plane; *narrow band* shows the continuum-subtracted image around the chosen
    emission line at the current redshift.

    Parameters
    ----------
    source : str, os.PathLike, int, DatasetRecord, MuseCube or mpdaf.obj.Cube
        The cube: a ``DATACUBE`` FITS file, an archive dataset id or record
        (resolved with ``Archive.path``), or an open cube.
    archive : musewise.archive.Archive, optional
        Archive used to resolve dataset ids (default ``Archive.open()``).
    redshift : float
        Initial redshift of the line markers.
    white_light : path-like or Image, optional
        The pipeline's IMAGE_FOV for this cube (found automatically next to it).
    cache_dir : path-like, optional
        White-light cache folder (default ``<scratch>/cache/white-light``).
    export_dir : path-like
        Folder the export buttons write to.
    background : bool
        In a running kernel, compute a missing white-light image in a worker
        thread and show the middle plane meanwhile, so the viewer appears at once.
    prefetch : bool
        Read the cube once in the background so that later spectra of any spaxel
        come from the page cache (~3 GB of cache for a full cube).

    Examples
    --------
    >>> viewer = CubeViewer("DATACUBE_FINAL.fits", redshift=0.35)  # doctest: +SKIP
    >>> viewer                                                     # doctest: +SKIP
    >>> spec = viewer.select_spaxel(160, 152)                      # doctest: +SKIP
    >>> img = viewer.narrow_band(6759.6, width=8)                  # doctest: +SKIP
    """

    x = Int(0, help="Column of the selected spaxel (0-based).")
    y = Int(0, help="Row of the selected spaxel (0-based).")
    wavelength = Float(0.0, help="Wavelength of the plane shown or last chosen, Angstrom.")
    redshift = Float(0.0, help="Redshift of the emission-line markers and narrow-band line.")
    aperture_radius = Float(0.0, help="Radius of the aperture used on click, spaxels "
                            "(0: single spaxel).")
    band_width = Float(10.0, help="Full width of narrow-band images, Angstrom.")
    line = Unicode(EMISSION_LINES[-1].name, help="Emission line of the narrow-band image.")
    image_mode = Enum(IMAGE_MODES, "white light", help="What the image panel shows.")
    follow_mouse = Bool(False, help="Update the spectrum as the mouse moves over the image.")
    status = Unicode("", help="Last message shown to the user.")
    export_dir = Unicode(".", help="Folder the export buttons write to.")
    cube = Instance(MuseCube, help="The cube shown.")

    def __init__(self, source, *, archive=None, redshift: float = 0.0, white_light=None,
                 cache_dir=None, export_dir: str | os.PathLike = ".", background: bool = True,
                 prefetch: bool = True, **kwargs):
        own = {k: kwargs.pop(k) for k in list(kwargs) if k in CubeViewer.class_own_traits()}
        super().__init__(**kwargs)
        self._syncing = False
        self._hover_on = False
        self._marks = None    # (SkyCoord, labels) marked on the image
        self._regions = []    # regions drawn on the image
        self._record = source if hasattr(source, "id") and hasattr(source, "category") else None
        self.cube = open_cube(source, archive=archive, white_light=white_light, cache_dir=cache_dir)
        self._spectrum: Spectrum | None = None
        self.white_light_future = None  #: asyncio future of a background white-light job
        self.export_dir = str(export_dir)
        nl, ny, nx = self.cube.shape
        wave = self.cube.wave

        self.image_viewer = ImageViewer(width=520, height=420)
        self.spectrum_viewer = SpectrumViewer(redshift=redshift, width=620, height=380)
        widgets.link((self, "redshift"), (self.spectrum_viewer, "redshift"))

        # Controls; each handler is one line calling the public API.
        self._wave = widgets.FloatSlider(value=float(wave[nl // 2]), min=float(wave.min()),
                                         max=float(wave.max()), step=abs(self.cube.step),
                                         description="λ (Å)", continuous_update=False,
                                         readout_format=".2f",
                                         layout=widgets.Layout(width="520px"))
        self._mode = widgets.ToggleButtons(options=IMAGE_MODES, value=self.image_mode,
                                           style={"button_width": "100px"})
        self._line = widgets.Dropdown(options=[line.name for line in EMISSION_LINES],
                                      value=self.line, description="line",
                                      layout=widgets.Layout(width="200px"))
        self._width = widgets.BoundedFloatText(value=self.band_width, min=abs(self.cube.step),
                                               max=500.0, step=1.25, description="width (Å)",
                                               layout=widgets.Layout(width="170px"))
        self._radius = widgets.BoundedFloatText(value=0.0, min=0.0, max=max(nx, ny),
                                                step=0.5, description="aperture r",
                                                layout=widgets.Layout(width="170px"))
        self._follow = widgets.Checkbox(value=False, description="follow mouse", indent=False,
                                        layout=widgets.Layout(width="120px"))
        self._export_spec = widgets.Button(description="Export spectrum", icon="download")
        self._export_img = widgets.Button(description="Export image", icon="download")
        self._regions_path = widgets.Text(value="regions.reg", description="regions",
                                          layout=widgets.Layout(width="230px"))
        self._load_regions = widgets.Button(description="Show regions", icon="upload",
                                            layout=widgets.Layout(width="130px"))
        self._save_regions = widgets.Button(description="Save regions", icon="download",
                                            layout=widgets.Layout(width="130px"))
        self._status = widgets.HTML("")
        self._selection = widgets.HTML("", layout=widgets.Layout(width="420px"))
        self._title = widgets.HTML(self._title_html())
        widgets.link((self._line, "value"), (self, "line"))
        widgets.link((self._width, "value"), (self, "band_width"))
        widgets.link((self._radius, "value"), (self, "aperture_radius"))
        widgets.link((self._follow, "value"), (self, "follow_mouse"))
        widgets.dlink((self, "status"), (self._status, "value"),
                      lambda s: f"<span style='font-size:smaller'>{s}</span>")

        self._wave.observe(lambda c: self._syncing or self.set_wavelength(c.new), "value")
        self._mode.observe(lambda c: self._syncing or self.show_mode(c.new), "value")
        self.image_viewer.on_click(lambda x, y: self.pick(x, y))
        self.spectrum_viewer.on_click(lambda lam: self.set_wavelength(lam))
        self._export_spec.on_click(lambda b: self.export_spectrum())
        self._export_img.on_click(lambda b: self.export_image())
        self._load_regions.on_click(lambda b: self._said(self.show_regions, self._regions_path.value))
        self._save_regions.on_click(lambda b: self._said(self.save_regions, self._regions_path.value))

        self.children = [
            self._title,
            side_by_side(self.image_viewer, self.spectrum_viewer),
            widgets.HBox([self._mode, self._wave]),
            widgets.HBox([self._line, self._width, self._radius, self._follow,
                          self._selection]),
            widgets.HBox([self._export_spec, self._export_img, self._regions_path,
                          self._load_regions, self._save_regions]),
            self._status,
        ]

        # First image: never wait for a full pass over the cube.
        self.wavelength = float(wave[nl // 2])
        loop = _running_loop() if background else None
        if self.cube.white_light_ready or loop is None:
            self.show_white_light()
            if prefetch:
                self.cube.prefetch()
        else:
            self._show(self.cube.plane(index=nl // 2), "white light",
                       title=f"plane {wave[nl // 2]:.2f} Å (white light being computed)")
            self.status = "computing the white-light image (one pass over the cube)..."
            self.white_light_future = loop.run_in_executor(None, self._compute_white, prefetch)
            self.white_light_future.add_done_callback(self._white_done)
        self.select_spaxel(nx // 2, ny // 2)
        for name, value in own.items():  # e.g. aperture_radius=3, line="[OIII] 5007"
            setattr(self, name, value)

    # ------------------------------------------------------------ public API
    @property
    def spectrum(self) -> Spectrum | None:
        """The spectrum shown (spaxel or aperture)."""
        return self._spectrum

    @property
    def image(self) -> Image | None:
        """The image shown (white light, plane or narrow band), full resolution."""
        return self.image_viewer.image

    def select_spaxel(self, x: int, y: int) -> Spectrum:
        """Show the spectrum and variance of one spaxel; returns it.

        Parameters
        ----------
        x, y : int
            Spaxel column and row, 0-based.

        Raises
        ------
        OutsideCubeError
            If the spaxel is outside the cube.
        """
        spec = self.cube.spectrum(x, y)
        with self._quiet():
            self.x, self.y = int(spec.meta["x"]), int(spec.meta["y"])
        self.image_viewer.mark(self.x, self.y)
        return self._show_spectrum(spec)

    def aperture_spectrum(self, x: float, y: float, r: float) -> Spectrum:
        """Show the summed spectrum of the spaxels within ``r`` spaxels of (x, y); returns it.

        Raises
        ------
        OutsideCubeError
            If the centre is outside the cube.
        ValueError
            If ``r`` is negative.
        """
        spec = self.cube.aperture_spectrum(x, y, r)
        with self._quiet():
            self.x, self.y = int(np.rint(x)), int(np.rint(y))
        self.image_viewer.mark(x, y, radius=r)
        return self._show_spectrum(spec)

    def pick(self, x: int, y: int) -> Spectrum:
        """What a click on the image does: spaxel spectrum, or aperture spectrum if
        ``aperture_radius`` > 0."""
        r = self.aperture_radius
        return self.aperture_spectrum(x, y, r) if r > 0 else self.select_spaxel(x, y)

    def set_wavelength(self, wavelength: float) -> Image:
        """Show the plane nearest ``wavelength`` (Angstrom); returns it.

        Raises
        ------
        OutsideCubeError
            If the wavelength is outside the cube.
        """
        img = self.cube.plane(wavelength)
        self._set_wavelength_state(img.meta["wave"])
        return self._show(img, "plane")

    def narrow_band(self, wavelength: float | None = None, width: float | None = None) -> Image:
        """Show a continuum-subtracted narrow-band image; returns it.

        Parameters
        ----------
        wavelength : float, optional
            Band centre, Angstrom. Default: the selected ``line`` at ``redshift``.
        width : float, optional
            Full band width, Angstrom. Default ``band_width``.

        Raises
        ------
        OutsideCubeError
            If the band (e.g. the line at this redshift) is outside the cube.
        """
        if wavelength is None:
            line = next(ln for ln in EMISSION_LINES if ln.name == self.line)
            wavelength = observed_wavelength(line, self.redshift, air=self.cube.air)
        width = self.band_width if width is None else float(width)
        img = self.cube.narrow_band(wavelength, width)
        with self._quiet():
            self.band_width = width
        self._set_wavelength_state(float(wavelength))
        return self._show(img, "narrow band")

    def show_white_light(self) -> Image:
        """Show the white-light image (IMAGE_FOV, cached, or computed once); returns it."""
        img = self.cube.white_light()
        self.status = f"white light from {self.cube.white_light_source}"
        return self._show(img, "white light")

    def show_mode(self, mode: str) -> Image:
        """Show the image of a mode of :data:`IMAGE_MODES` at the current settings."""
        actions = {"white light": self.show_white_light,
                   "plane": lambda: self.set_wavelength(self.wavelength),
                   "narrow band": self.narrow_band}
        if mode not in actions:
            raise InvalidArgumentError(f"unknown image mode {mode!r}; choose one of {IMAGE_MODES}")
        try:
            return actions[mode]()
        except OutsideCubeError as exc:  # e.g. the line is redshifted out of the cube
            self.status = f"<b>{exc}</b>"
            raise

    def sky_position(self, x: float | None = None, y: float | None = None):
        """RA/Dec (``SkyCoord``) of a spaxel, default the selected one.

        Raises
        ------
        NoWCSError
            If the cube has no celestial WCS.
        """
        x = self.x if x is None else x
        y = self.y if y is None else y
        return pixel_to_sky(self.cube.wcs_header, x, y)

    def mark_sky(self, coords, labels=None) -> np.ndarray:
        """Mark sky positions (``SkyCoord``, e.g. a catalogue) on the image; returns their
        spaxel coordinates (n, 2). An empty list removes the marks.

        Raises
        ------
        NoWCSError
            If the cube has no celestial WCS.
        """
        self._marks = None if no_positions(coords) else (coords, labels)
        return self.image_viewer.mark_sky(coords, labels)

    def show_regions(self, regions) -> list:
        """Draw regions (``regions`` sky or pixel regions, or a .reg/.crtf/.fits file) on the
        image; returns them. Point regions become marks. ``[]`` removes them.

        Raises
        ------
        NotFoundError, InvalidFrameError
            For a region file that is missing or cannot be read.
        """
        from regions import PointSkyRegion

        source = regions
        if isinstance(regions, (str, os.PathLike)):
            regions = read_regions(regions)
        regions = list(regions)
        points = [r for r in regions if isinstance(r, PointSkyRegion)]
        shapes = [r for r in regions if not isinstance(r, PointSkyRegion)]
        outlines = [region_pixels(r, self.cube.wcs_header, self.cube.shape[1:]).outline
                    for r in shapes]
        self.image_viewer.show_outlines(outlines)
        if points:
            from astropy.coordinates import SkyCoord

            self.mark_sky(SkyCoord([r.center for r in points]),
                          [r.meta.get("text", "") for r in points])
        self._regions = shapes
        if isinstance(source, (str, os.PathLike)):
            self.status = f"{len(regions)} regions from {source}"
        return regions

    def save_regions(self, path: str | os.PathLike) -> Path:
        """Write the regions and sky marks shown, and the selected spaxel, to a region file
        in sky coordinates (DS9 ``.reg``, CASA ``.crtf`` or FITS, by suffix)."""
        from regions import PointSkyRegion

        out = list(self._regions)
        if self._marks is not None:
            coords, labels = self._marks
            coords = coords.reshape(-1)
            labels = [""] * len(coords) if labels is None else list(np.atleast_1d(labels))
            for c, text in zip(coords, labels):
                out.append(PointSkyRegion(c, meta={"text": str(text)} if text else None))
        sel = PointSkyRegion(self.sky_position(), meta={"text": f"spaxel ({self.x}, {self.y})"})
        path = write_regions(out + [sel], path)
        self.status = f"regions written to {path}"
        return path

    def export_spectrum(self, path: str | os.PathLike | None = None) -> Path:
        """Write the spectrum shown to FITS (default ``<export_dir>/<cube>_spec_x.._y...fits``)."""
        if path is None:
            m = self._spectrum.meta
            r = f"_r{m['radius']:g}" if "radius" in m else ""
            path = Path(self.export_dir) / f"{self._stem}_spec_x{self.x}_y{self.y}{r}.fits"
        out = self._spectrum.to_fits(path)
        self.status = f"spectrum written to {out}"
        return out

    def export_image(self, path: str | os.PathLike | None = None) -> Path:
        """Write the image shown to FITS (default ``<export_dir>/<cube>_<mode>_<lambda>.fits``)."""
        if path is None:
            tag = self.image_mode.replace(" ", "_")
            lam = "" if self.image_mode == "white light" else f"_{self.wavelength:.2f}"
            path = Path(self.export_dir) / f"{self._stem}_{tag}{lam}.fits"
        out = self.image_viewer.export_image(path)
        self.status = f"image written to {out}"
        return out

    def close(self):
        """Close the widgets and release the cube."""
        for w in (self.image_viewer.plot, self.spectrum_viewer.plot):
            w.close()
        super().close()

    # ------------------------------------------------------------- internals
    @property
    def _stem(self) -> str:
        return self.cube.path.stem if self.cube.path else "cube"

    def _title_html(self) -> str:
        nl, ny, nx = self.cube.shape
        rec = ""
        if self._record is not None:
            rec = f" — dataset {self._record.id} ({self._record.category})"
            if getattr(self._record, "is_valid", True) is False:
                rec += " <span style='color:#c00'>marked invalid</span>"
        return (f"<b>{self.cube.name}</b>{rec}: {nx} x {ny} spaxels, {nl} planes "
                f"{self.cube.wave[0]:.2f}-{self.cube.wave[-1]:.2f} Å")

    def _said(self, action, *args):
        """Run a button's action; a failure is told in the status line, not raised."""
        try:
            action(*args)
        except (MusewiseError, OSError, ValueError) as exc:
            self.status = f"<b>{exc}</b>"

    @contextlib.contextmanager
    def _quiet(self):
        """Update traits/controls from code without their observers acting again."""
        old, self._syncing = self._syncing, True
        try:
            yield
        finally:
            self._syncing = old

    def _set_wavelength_state(self, lam: float):
        with self._quiet():
            self.wavelength = lam
            self._wave.value = lam
        self.spectrum_viewer.wavelength_marker = lam

    def _show(self, img: Image, mode: str, title: str | None = None) -> Image:
        with self._quiet():
            self.image_mode = mode
            self._mode.value = mode
        self.image_viewer.show(img, title=title)
        return img

    def _show_spectrum(self, spec: Spectrum) -> Spectrum:
        self._spectrum = spec
        try:
            sky = format_radec(self.sky_position(spec.meta["x"], spec.meta["y"]))
        except NoWCSError:
            sky = ""
        self._selection.value = (f"<span class='musewise-selection'>{spec.label}</span> "
                                 f"<span class='musewise-selection-sky'>{sky}</span>")
        self.spectrum_viewer.show(spec)
        return spec

    def _compute_white(self, prefetch: bool) -> Image:
        img = self.cube.white_light()  # worker thread: no widget is touched here
        if prefetch:
            self.cube.prefetch()
        return img

    def _white_done(self, future):
        # Runs on the kernel's event loop, so widgets are updated from the main thread.
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            self.status = f"<b>white light failed: {exc}</b>"
            return
        if self.image_mode == "white light":
            self.show_white_light()
        else:
            self.status = "white-light image ready"

    @validate("aperture_radius")
    def _valid_radius(self, proposal):
        if proposal.value < 0:
            raise TraitError(f"aperture radius must be >= 0 spaxels, got {proposal.value}")
        return proposal.value

    @validate("redshift")
    def _valid_z(self, proposal):
        if proposal.value <= -1:
            raise TraitError(f"redshift must be > -1, got {proposal.value}")
        return proposal.value

    @observe("follow_mouse")
    def _on_follow(self, change):
        # Mouse-move events are only requested from the browser once wanted.
        if change.new and not self._hover_on:
            self._hover_on = True
            self.image_viewer.on_hover(lambda x, y: self.follow_mouse and self.pick(x, y))

    @observe("x", "y")
    def _on_xy(self, change):
        if not self._syncing:
            self.pick(self.x, self.y)

    @observe("wavelength")
    def _on_wavelength(self, change):
        if not self._syncing:
            self.set_wavelength(change.new)

    @observe("line", "redshift")
    def _on_line(self, change):
        if self.image_mode == "narrow band" and not self._syncing:
            with contextlib.suppress(OutsideCubeError):
                self.narrow_band()


def _running_loop():
    """The kernel's running asyncio loop, or None outside one (scripts, tests)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
