"""ImageViewer: a 2-D product (white light, plane, IMAGE_FOV, master bias/flat) in bokeh.

Pixels are drawn square whatever the image shape (a 302 x 24 spaxel cube of
one IFU is a wide strip, not a stretched square): the plot is sized to the
image within ``width`` x ``height`` and the shorter side's range is padded
(:func:`~musewise.widgets.sky.square_frame`). With a celestial WCS the
readout under the plot gives the RA/Dec of the spaxel under the cursor
(computed in the browser, no kernel round trip), arrows in the corner show
north and east, and marks and regions can be given in sky coordinates.

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
from bokeh.layouts import column
from bokeh.models import (Arrow, BoxZoomTool, ColumnDataSource, CustomJS, Div, LabelSet,
                          LinearColorMapper, NormalHead, PolyDrawTool, Range1d, TapTool)
from bokeh.plotting import figure
from traitlets import Enum, Float, Int, Unicode, observe, validate, TraitError

from ..exceptions import InvalidArgumentError, NothingSelectedError
from .bokehjs import bokeh_plot
from .cubeio import resolve_source
from ..products.image import Image
from .sky import (NoWCSError, no_positions, north_east, sky_to_pixel, square_frame,
                  tan_parameters)

__all__ = ["ImageViewer", "scale_image", "side_by_side", "STRETCHES", "PALETTES", "READOUT_JS"]

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
        raise InvalidArgumentError(f"unknown stretch {stretch!r}; choose one of {STRETCHES}")
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


#: Browser code of the cursor readout: spaxel under the cursor and, for a TAN WCS, its RA/Dec
#: (the gnomonic inverse; ``tests/test_widgets_geometry.py`` checks it against astropy).
READOUT_JS = r"""
function musewiseReadout(x, y, geo) {
  if (x == null || y == null) return "";
  const xi = Math.floor(x + 0.5), yi = Math.floor(y + 0.5);
  if (xi < 0 || yi < 0 || xi >= geo.nx || yi >= geo.ny) return "outside the image";
  let text = `spaxel (${xi}, ${yi})`;
  const w = geo.wcs;
  if (w) {
    const D2R = Math.PI / 180;
    const dx = xi + 1 - w.crpix[0], dy = yi + 1 - w.crpix[1];
    const px = (w.cd[0] * dx + w.cd[1] * dy) * D2R, py = (w.cd[2] * dx + w.cd[3] * dy) * D2R;
    const a0 = w.crval[0] * D2R, d0 = w.crval[1] * D2R;
    const rho = Math.hypot(px, py), c = Math.atan(rho);
    let ra = a0, dec = d0;
    if (rho > 0) {
      dec = Math.asin(Math.cos(c) * Math.sin(d0) + py * Math.sin(c) * Math.cos(d0) / rho);
      ra = a0 + Math.atan2(px * Math.sin(c),
                           rho * Math.cos(d0) * Math.cos(c) - py * Math.sin(d0) * Math.sin(c));
    }
    ra = ((ra / D2R) % 360 + 360) % 360;
    dec = dec / D2R;
    const sexa = (v, perUnit, digits, sign) => {
      const scale = Math.pow(10, digits);
      let n = Math.round(Math.abs(v) * perUnit * 3600 * scale);
      const s = (n % (60 * scale)) / scale; n = Math.floor(n / (60 * scale));
      const m = n % 60, d = Math.floor(n / 60);
      const pad = (q, k) => String(q).padStart(k, "0");
      const ss = s.toFixed(digits).padStart(3 + digits, "0");
      return `${sign ? (v < 0 ? "-" : "+") : ""}${pad(d, 2)}:${pad(m, 2)}:${ss}`;
    };
    text += `  RA ${sexa(ra, 1 / 15, 3, false)} Dec ${sexa(dec, 1, 2, true)}`;
  }
  if (geo.wave) text += `  λ ${geo.wave}`;
  return text;
}
"""


def side_by_side(*children) -> widgets.HBox:
    """Viewers side by side when the page is wide enough, else one below the other (e.g. in a
    JupyterLab column next to the file browser), never squeezed and clipped."""
    return widgets.HBox(list(children), layout=widgets.Layout(flex_flow="row wrap",
                                                              align_items="flex-start"))


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
        Largest size of the plotting area, screen pixels; the image is fitted
        inside it with square pixels.
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

    def __init__(self, source=None, *, archive=None, width: int = 560, height: int = 440,
                 **kwargs):
        # Own traits are applied once the plot exists (their observers redraw it).
        own = {k: kwargs.pop(k) for k in list(kwargs) if k in ImageViewer.class_own_traits()}
        super().__init__(**kwargs)
        self.layout.flex = "0 0 auto"  # keep the plot's size inside boxes: never squeezed
        self._archive = archive
        self._image: Image | None = None
        self._factor = 1
        self._click_callbacks = []
        self._hover_callbacks = []
        self._last_hover = None
        self._drawn = None  # polygons drawn in the browser (enable_polygon_drawing)
        self._draw_callbacks = []
        self._mapper = LinearColorMapper(palette=self.palette, low=0.0, high=1.0,
                                         nan_color="#4b2a5a")
        self._source = ColumnDataSource({"image": [np.zeros((1, 1), np.float32)],
                                         "x": [-0.5], "y": [-0.5], "dw": [1], "dh": [1]})
        self._markers = ColumnDataSource({"x": [], "y": []})
        self._apertures = ColumnDataSource({"x": [], "y": [], "r": []})
        self._max_size = (int(width), int(height))
        self._geometry = square_frame(1, 1, *self._max_size)
        fig = figure(frame_width=self._geometry.frame_width,
                     frame_height=self._geometry.frame_height,
                     tools="pan,wheel_zoom,reset,tap", active_scroll="wheel_zoom",
                     x_range=Range1d(-0.5, 0.5), y_range=Range1d(-0.5, 0.5), title=self.title,
                     toolbar_location="above", match_aspect=True)
        fig.add_tools(BoxZoomTool(match_aspect=True))  # a zoom box keeps pixels square
        self._tap_tool = fig.select_one(TapTool)
        fig.image(image="image", x="x", y="y", dw="dw", dh="dh", source=self._source,
                  color_mapper=self._mapper)
        self._regions = ColumnDataSource({"xs": [], "ys": [], "label": []})
        fig.multi_line("xs", "ys", source=self._regions, line_color="#00c8ff", line_width=2)
        self._sky_marks = ColumnDataSource({"x": [], "y": [], "label": []})
        fig.scatter("x", "y", source=self._sky_marks, marker="circle_x", size=14, line_width=2,
                    fill_alpha=0.0, color="#ffd60a")
        fig.add_layout(LabelSet(x="x", y="y", text="label", source=self._sky_marks,
                                text_color="#ffd60a", text_font_size="9pt", x_offset=8,
                                y_offset=4))
        fig.scatter("x", "y", source=self._markers, marker="cross", size=18, line_width=2,
                    color="#ff3b30")
        fig.circle("x", "y", radius="r", source=self._apertures, fill_alpha=0.0,
                   line_color="#ff3b30", line_width=2)
        # North and east arrows, in screen pixels from the frame's lower right corner.
        self._compass = ColumnDataSource({"x0": [], "y0": [], "x1": [], "y1": [], "tx": [],
                                          "ty": [], "text": []})
        fig.add_layout(Arrow(x_start="x0", y_start="y0", x_end="x1", y_end="y1",
                             start_units="screen", end_units="screen", source=self._compass,
                             line_color="#39ff14", line_width=2,
                             end=NormalHead(size=7, fill_color="#39ff14", line_color="#39ff14")))
        fig.add_layout(LabelSet(x="tx", y="ty", text="text", source=self._compass,
                                x_units="screen", y_units="screen", text_color="#39ff14",
                                text_font_size="10pt", text_align="center",
                                text_baseline="middle"))
        fig.xaxis.axis_label = "x (spaxel)"
        fig.yaxis.axis_label = "y (spaxel)"
        fig.on_event(events.Tap, self._on_tap)
        self.readout = Div(text="", css_classes=["musewise-readout"], width=560,
                           styles={"font-family": "monospace", "font-size": "12px"})
        self._readout_js = CustomJS(args={"div": self.readout, "geo": {"nx": 1, "ny": 1,
                                                                     "wcs": None, "wave": ""}},
                                    code=READOUT_JS + "div.text = musewiseReadout(cb_obj.x, "
                                    "cb_obj.y, geo);")
        fig.js_on_event(events.MouseMove, self._readout_js)
        self.figure = fig
        self.plot = bokeh_plot(column(fig, self.readout))
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
                raise InvalidArgumentError(f"ImageViewer shows 2-D arrays, got shape {source.shape}")
            source = Image(source.astype(np.float32))
        previous = self._image.shape if self._image is not None else None
        self._image = source
        ny, nx = source.shape
        self._factor = max(1, -(-max(ny, nx) // self.max_display_pixels))
        if source.shape != previous:  # keep the user's zoom while stepping through planes
            geo = square_frame(nx, ny, *self._max_size)
            self._geometry = geo
            self.figure.frame_width, self.figure.frame_height = geo.frame_width, geo.frame_height
            for rng, (lo, hi) in ((self.figure.x_range, geo.x_range),
                                  (self.figure.y_range, geo.y_range)):
                rng.update(start=lo, end=hi, reset_start=lo, reset_end=hi)
        self.title = title if title is not None else source.label
        self._update_sky(source)
        self._redraw()
        return source

    @property
    def geometry(self):
        """The :class:`~musewise.widgets.sky.FrameGeometry` of the image shown (square pixels)."""
        return self._geometry

    @property
    def wcs_header(self):
        """Celestial WCS keywords of the image shown, or None."""
        return self._image.wcs_header if self._image is not None else None

    def compass(self) -> dict[str, tuple[float, float]] | None:
        """Directions drawn for north and east (unit vectors, screen x right / y up), or None
        without a celestial WCS."""
        data = self._compass.data
        if not data["text"]:
            return None
        out = {}
        for t, x0, y0, x1, y1 in zip(data["text"], data["x0"], data["y0"], data["x1"], data["y1"]):
            n = float(np.hypot(x1 - x0, y1 - y0))
            out[t] = ((x1 - x0) / n, (y1 - y0) / n)
        return out

    def mark_sky(self, coords, labels=None) -> np.ndarray:
        """Draw marks at sky positions (``SkyCoord``, scalar or array); returns their pixels (n, 2).

        ``labels`` (one string per position) are written next to the marks.
        An empty list removes the marks.

        Raises
        ------
        NoWCSError
            If the image shown has no celestial WCS.
        """
        if no_positions(coords):
            self._sky_marks.data = {"x": [], "y": [], "label": []}
            return np.zeros((0, 2))
        x, y = sky_to_pixel(self.wcs_header, coords)
        x, y = np.atleast_1d(x), np.atleast_1d(y)
        labels = [""] * x.size if labels is None else [str(v) for v in np.atleast_1d(labels)]
        self._sky_marks.data = {"x": x.tolist(), "y": y.tolist(), "label": labels}
        return np.column_stack([x, y])

    def show_outlines(self, outlines, labels=None) -> None:
        """Draw closed outlines given as pixel vertex arrays (each (n, 2), 0-based); [] clears."""
        xs, ys = [], []
        for verts in outlines:
            v = np.asarray(verts, float)
            v = np.vstack([v, v[:1]])  # closed
            xs.append(v[:, 0].tolist())
            ys.append(v[:, 1].tolist())
        labels = [""] * len(xs) if labels is None else list(labels)
        self._regions.data = {"xs": xs, "ys": ys, "label": labels}

    def enable_polygon_drawing(self, callback) -> PolyDrawTool:
        """Let the user draw polygons on the image; call ``callback(vertices)`` as one changes.

        With the toolbar's polygon tool active, a double click starts a polygon,
        clicks add vertices and a double click ends it (bokeh's ``PolyDrawTool``);
        ``vertices`` is an (n, 2) array of 0-based pixels (x, y) of the last polygon,
        passed once it has at least three vertices.

        Returns
        -------
        bokeh.models.PolyDrawTool
            The tool (activated by :meth:`set_drawing_active`).
        """
        if self._drawn is None:
            self._drawn = ColumnDataSource({"xs": [], "ys": []})
            patches = self.figure.patches("xs", "ys", source=self._drawn, fill_alpha=0.15,
                                          fill_color="#00c8ff", line_color="#00c8ff",
                                          line_width=2)
            self._poly_tool = PolyDrawTool(renderers=[patches], description="Draw a polygon")
            self.figure.add_tools(self._poly_tool)
            self._drawn.on_change("data", lambda attr, old, new: self._on_drawn())
        self._draw_callbacks.append(callback)
        return self._poly_tool

    def set_drawing_active(self, active: bool) -> None:
        """Make the polygon tool (if enabled) active, or inactive (taps are then clicks only)."""
        if self._drawn is not None:
            # PolyDrawTool takes taps, drags and moves: it is the toolbar's "multi" tool
            self.figure.toolbar.active_multi = self._poly_tool if active else None

    def clear_drawing(self) -> None:
        """Remove the polygons drawn by the user."""
        if self._drawn is not None:
            self._drawn.data = {"xs": [], "ys": []}

    def _on_drawn(self):
        xs, ys = self._drawn.data["xs"], self._drawn.data["ys"]
        if not xs or len(xs[-1]) < 3:
            return
        verts = np.column_stack([np.asarray(xs[-1], float), np.asarray(ys[-1], float)])
        for cb in self._draw_callbacks:
            cb(verts)

    def set_readout_wavelength(self, text: str) -> None:
        """Text appended to the cursor readout, e.g. the wavelength of the plane shown."""
        geo = dict(self._readout_js.args["geo"])
        geo["wave"] = text
        self._readout_js.args = {**self._readout_js.args, "geo": geo}

    def _update_sky(self, image: Image) -> None:
        ny, nx = image.shape
        wave = image.meta.get("wave")
        geo = {"nx": nx, "ny": ny, "wcs": tan_parameters(image.wcs_header),
               "wave": f"{wave:.2f} Å" if isinstance(wave, float) else ""}
        self._readout_js.args = {**self._readout_js.args, "geo": geo}
        try:
            north, east = north_east(image.wcs_header, (nx - 1) / 2.0, (ny - 1) / 2.0)
        except NoWCSError:
            self._compass.data = {k: [] for k in self._compass.data}
            return
        w = self._geometry.frame_width
        x0, y0, length = w - 42.0, 42.0, 26.0
        ends = [(x0 + length * v[0], y0 + length * v[1]) for v in (north, east)]
        self._compass.data = {
            "x0": [x0, x0], "y0": [y0, y0], "x1": [e[0] for e in ends], "y1": [e[1] for e in ends],
            "tx": [x0 + (length + 10) * v[0] for v in (north, east)],
            "ty": [y0 + (length + 10) * v[1] for v in (north, east)], "text": ["N", "E"]}

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
            raise NothingSelectedError("no image shown yet")
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

