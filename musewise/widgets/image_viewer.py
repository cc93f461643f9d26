"""ImageViewer: a 2-D product (white light, plane, IMAGE_FOV, master bias/flat) in bokeh.

The colour scale is computed in Python: the image is clipped at two
percentiles, stretched (linear, sqrt, log, asinh) to 0-1 and sent as float32,
so one update of a 320 x 320 image is ~400 KB. Images larger than
``max_display_pixels`` on a side (a 4k x 4k CCD of one IFU) are block-averaged
for display only; clicks still report full-resolution pixel coordinates.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import ipywidgets as widgets
import numpy as np
from bokeh import events
from bokeh.models import ColumnDataSource, LinearColorMapper, Range1d
from bokeh.plotting import figure
from traitlets import Enum, Float, Int, Unicode, observe, validate, TraitError

from .bokehjs import bokeh_plot
from .cubeio import resolve_source
from .products import Image

__all__ = ["ImageViewer", "scale_image", "STRETCHES", "PALETTES"]

#: Colour stretches offered by the viewer.
STRETCHES = ("linear", "sqrt", "log", "asinh")
#: Bokeh palettes offered by the viewer.
PALETTES = ("Greys256", "Viridis256", "Inferno256", "Cividis256")


def scale_image(data: np.ndarray, low: float = 1.0, high: float = 99.5,
                stretch: str = "linear") -> tuple[np.ndarray, float, float]:
    """Clip an image at two percentiles and stretch it to 0-1 for display.

    Parameters
    ----------
    data : numpy.ndarray
        Image (ny, nx), any unit; NaN pixels stay NaN.
    low, high : float
        Percentiles (0-100) mapped to 0 and 1.
    stretch : {"linear", "sqrt", "log", "asinh"}
        Curve applied after clipping.

    Returns
    -------
    scaled : numpy.ndarray
        float32 in [0, 1] (NaN where ``data`` is not finite).
    vmin, vmax : float
        The data values at the two percentiles, in the image unit.
    """
    if stretch not in STRETCHES:
        raise ValueError(f"unknown stretch {stretch!r}; choose one of {STRETCHES}")
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return np.full(data.shape, np.nan, dtype=np.float32), np.nan, np.nan
    vmin, vmax = (float(v) for v in np.percentile(finite, [low, high]))
    if vmax <= vmin:
        vmax = vmin + (abs(vmin) or 1.0) * 1e-6
    v = np.clip((data.astype(np.float32) - vmin) / (vmax - vmin), 0.0, 1.0)
    if stretch == "sqrt":
        v = np.sqrt(v)
    elif stretch == "log":
        v = np.log10(1.0 + 1000.0 * v) / 3.0  # log10(1001) ~ 3
    elif stretch == "asinh":
        v = np.arcsinh(10.0 * v) / np.arcsinh(10.0)
    return v.astype(np.float32), vmin, vmax


def _block_mean(data: np.ndarray, factor: int) -> np.ndarray:
    ny, nx = data.shape
    ny2, nx2 = -(-ny // factor) * factor, -(-nx // factor) * factor
    padded = np.full((ny2, nx2), np.nan, dtype=np.float32)
    padded[:ny, :nx] = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks stay NaN
        return np.nanmean(padded.reshape(ny2 // factor, factor, nx2 // factor, factor),
                          axis=(1, 3)).astype(np.float32)


class ImageViewer(widgets.VBox):
    """Interactive display of a 2-D image with colour-scale controls.

    Display it in JupyterLab or Voila, or embed it in another layout (it is an
    ``ipywidgets.VBox``). Everything the controls do is a trait or a method:
    ``viewer.stretch = "asinh"``, ``viewer.show(image)``,
    ``viewer.export_image(path)``.

    Parameters
    ----------
    source : Image, numpy.ndarray, str, os.PathLike, int or DatasetRecord, optional
        What to show first: an :class:`Image`, a 2-D array, a 2-D FITS product
        (IMAGE_FOV, master bias/flat of one IFU; read with :meth:`Image.read`) or
        an archived one (dataset id or record).
    archive : musewise.archive.Archive, optional
        Archive used to resolve dataset ids (default ``Archive.open()``).
    width, height : int
        Size of the plot, screen pixels.
    **kwargs
        Initial trait values (``stretch``, ``percentile_low``, ...).

    Notes
    -----
    To react to clicks register a callback with :meth:`on_click`; it receives
    full-resolution pixel coordinates (x, y), 0-based.
    """

    percentile_low = Float(1.0, help="Percentile of the data shown as black (0-100).")
    percentile_high = Float(99.5, help="Percentile of the data shown as white (0-100).")
    stretch = Enum(STRETCHES, "asinh", help="Colour stretch.")
    palette = Enum(PALETTES, "Greys256", help="Bokeh colour palette.")
    title = Unicode("", help="Plot title.")
    max_display_pixels = Int(1024, help="Images larger than this on a side are "
                             "block-averaged for display (pixels).")

    def __init__(self, source=None, *, archive=None, width: int = 440, height: int = 440,
                 **kwargs):
        # Own traits are applied once the plot exists (their observers redraw it).
        own = {k: kwargs.pop(k) for k in list(kwargs) if k in ImageViewer.class_own_traits()}
        super().__init__(**kwargs)
        self._archive = archive
        self._image: Image | None = None
        self._factor = 1
        self._click_callbacks = []
        self._hover_callbacks = []
        self._last_hover = None
        self._mapper = LinearColorMapper(palette=self.palette, low=0.0, high=1.0,
                                         nan_color="#4b2a5a")
        self._source = ColumnDataSource({"image": [np.zeros((1, 1), np.float32)],
                                         "x": [-0.5], "y": [-0.5], "dw": [1], "dh": [1]})
        self._markers = ColumnDataSource({"x": [], "y": []})
        self._apertures = ColumnDataSource({"x": [], "y": [], "r": []})
        fig = figure(width=width, height=height, tools="pan,wheel_zoom,box_zoom,reset,tap",
                     active_scroll="wheel_zoom", x_range=Range1d(-0.5, 0.5),
                     y_range=Range1d(-0.5, 0.5), title=self.title, toolbar_location="above")
        fig.image(image="image", x="x", y="y", dw="dw", dh="dh", source=self._source,
                  color_mapper=self._mapper)
        fig.scatter("x", "y", source=self._markers, marker="cross", size=18, line_width=2,
                    color="#ff3b30")
        fig.circle("x", "y", radius="r", source=self._apertures, fill_alpha=0.0,
                   line_color="#ff3b30", line_width=2)
        fig.xaxis.axis_label = "x (spaxel)"
        fig.yaxis.axis_label = "y (spaxel)"
        fig.on_event(events.Tap, self._on_tap)
        self.figure = fig
        self.plot = bokeh_plot(fig)
        self.plot.add_class("musewise-image-plot")
        self._range = widgets.FloatRangeSlider(
            value=(self.percentile_low, self.percentile_high), min=0.0, max=100.0, step=0.1,
            description="cut (%)", continuous_update=False, readout_format=".1f",
            layout=widgets.Layout(width="300px"))
        self._stretch = widgets.Dropdown(options=STRETCHES, value=self.stretch,
                                         description="stretch",
                                         layout=widgets.Layout(width="170px"))
        self._palette = widgets.Dropdown(options=PALETTES, value=self.palette,
                                         description="colours",
                                         layout=widgets.Layout(width="190px"))
        self._levels = widgets.HTML("")
        widgets.link((self._stretch, "value"), (self, "stretch"))
        widgets.link((self._palette, "value"), (self, "palette"))
        self._range.observe(self._on_range, "value")
        self.children = [self.plot, widgets.HBox([self._range, self._stretch]),
                         widgets.HBox([self._palette, self._levels])]
        for name, value in own.items():
            setattr(self, name, value)
        if source is not None:
            self.show(source)

    # ----------------------------------------------------------- public API
    @property
    def image(self) -> Image | None:
        """The image shown (full resolution, in its own unit)."""
        return self._image

    def show(self, source, title: str | None = None) -> Image:
        """Show an image.

        Parameters
        ----------
        source : Image, numpy.ndarray, str, os.PathLike, int or DatasetRecord
            The image, a 2-D array, a 2-D FITS file, or an archived 2-D product
            (dataset id or record, resolved with ``Archive.path``).
        title : str, optional
            Plot title; default the image label.

        Returns
        -------
        Image
            What is shown.
        """
        if isinstance(source, (int, np.integer)) or hasattr(source, "category"):
            source = resolve_source(source, self._archive)  # an archived 2-D product
        if isinstance(source, (str, os.PathLike)):
            source = Image.read(Path(source))
        elif isinstance(source, np.ndarray):
            if source.ndim != 2:
                raise ValueError(f"ImageViewer shows 2-D arrays, got shape {source.shape}")
            source = Image(source.astype(np.float32))
        previous = self._image.shape if self._image is not None else None
        self._image = source
        ny, nx = source.shape
        self._factor = max(1, -(-max(ny, nx) // self.max_display_pixels))
        if source.shape != previous:  # keep the user's zoom while stepping through planes
            self.figure.x_range.update(start=-0.5, end=nx - 0.5)
            self.figure.y_range.update(start=-0.5, end=ny - 0.5)
        self.title = title if title is not None else source.label
        self._redraw()
        return source

    def display_array(self) -> np.ndarray:
        """The 0-1 scaled array sent to the browser (block-averaged if large)."""
        return self._source.data["image"][0]

    @property
    def levels(self) -> tuple[float, float]:
        """Data values (image unit) shown as black and white."""
        return self._vmin, self._vmax

    def mark(self, x: float | None, y: float | None, radius: float | None = None) -> None:
        """Draw a cross at a pixel and, with ``radius`` (pixels) > 0, an aperture circle.

        ``x=None`` removes the marks.
        """
        if x is None:
            self._markers.data = {"x": [], "y": []}
            self._apertures.data = {"x": [], "y": [], "r": []}
            return
        self._markers.data = {"x": [float(x)], "y": [float(y)]}
        self._apertures.data = ({"x": [float(x)], "y": [float(y)], "r": [float(radius)]}
                                if radius else {"x": [], "y": [], "r": []})

    def on_click(self, callback) -> None:
        """Call ``callback(x, y)`` (integer pixels) when the user clicks the image."""
        self._click_callbacks.append(callback)

    def on_hover(self, callback) -> None:
        """Call ``callback(x, y)`` (integer pixels) when the mouse enters another pixel.

        Mouse-move events are only requested from the browser once a callback exists.
        """
        if not self._hover_callbacks:
            self.figure.on_event(events.MouseMove, self._on_move)
        self._hover_callbacks.append(callback)

    def export_image(self, path: str | os.PathLike, overwrite: bool = True) -> Path:
        """Write the image shown (full resolution, data and variance) to FITS."""
        if self._image is None:
            raise ValueError("no image shown yet")
        return self._image.to_fits(path, overwrite=overwrite)

    # -------------------------------------------------------------- internals
    def _pixel(self, x, y):
        if self._image is None or x is None or y is None:
            return None
        ny, nx = self._image.shape
        xi, yi = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
        return (xi, yi) if 0 <= xi < nx and 0 <= yi < ny else None

    def _on_tap(self, event):
        pix = self._pixel(event.x, event.y)
        if pix is not None:
            for cb in self._click_callbacks:
                cb(*pix)

    def _on_move(self, event):
        pix = self._pixel(event.x, event.y)
        if pix is not None and pix != self._last_hover:
            self._last_hover = pix
            for cb in self._hover_callbacks:
                cb(*pix)

    def _redraw(self):
        if self._image is None:
            return
        data = self._image.data
        if self._factor > 1:
            data = _block_mean(data, self._factor)
        scaled, self._vmin, self._vmax = scale_image(data, self.percentile_low,
                                                     self.percentile_high, self.stretch)
        ny, nx = self._image.shape
        dh, dw = scaled.shape[0] * self._factor, scaled.shape[1] * self._factor
        self._source.data = {"image": [scaled], "x": [-0.5], "y": [-0.5], "dw": [dw],
                             "dh": [dh]}
        unit = f" {self._image.unit}" if self._image.unit else ""
        binned = f" (shown binned {self._factor}x{self._factor})" if self._factor > 1 else ""
        self._levels.value = (f"<span style='font-size:smaller'>black {self._vmin:.4g}, "
                              f"white {self._vmax:.4g}{unit}{binned}</span>")

    @validate("percentile_low", "percentile_high")
    def _valid_percentile(self, proposal):
        if not 0.0 <= proposal.value <= 100.0:
            raise TraitError(f"percentiles lie in 0-100, got {proposal.value}")
        return proposal.value

    def _on_range(self, change):
        self.percentile_low, self.percentile_high = change.new

    @observe("percentile_low", "percentile_high", "stretch")
    def _on_scale(self, change):
        self._range.value = (self.percentile_low, self.percentile_high)
        self._redraw()

    @observe("palette")
    def _on_palette(self, change):
        self._mapper.palette = change.new

    @observe("title")
    def _on_title(self, change):
        self.figure.title.text = change.new

