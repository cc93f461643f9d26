"""SpectrumViewer: a 1-D spectrum with its 1-sigma band, sky-line and redshifted line markers."""

from __future__ import annotations

import os
from pathlib import Path

import ipywidgets as widgets
import numpy as np
from bokeh import events
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, CustomJS, Div, LabelSet, Span
from bokeh.plotting import figure
from traitlets import Bool, Float, TraitError, observe, validate

from ..exceptions import NothingSelectedError, UnsupportedTypeError
from .bokehjs import bokeh_plot
from ..products.lines import EMISSION_LINES, SKY_LINES, observed_wavelength, sky_line_wavelength
from ..products.spectrum import Spectrum

__all__ = ["SpectrumViewer", "SPECTRUM_READOUT_JS"]

#: Browser code of the cursor readout: wavelength under the cursor and the flux (and 1 sigma)
#: of the nearest pixel of the spectrum shown.
SPECTRUM_READOUT_JS = r"""
const x = cb_obj.x;
if (x == null) { return; }
const wave = src.data.wave, flux = src.data.flux, lo = src.data.lo, hi = src.data.hi;
let text = `λ ${x.toFixed(2)} Å`;
if (wave.length > 0) {
  let a = 0, b = wave.length - 1;
  while (b - a > 1) { const m = (a + b) >> 1; if (wave[m] < x) { a = m; } else { b = m; } }
  const k = Math.abs(wave[a] - x) <= Math.abs(wave[b] - x) ? a : b;
  const f = flux[k], sig = (hi[k] - lo[k]) / 2;
  text = `λ ${x.toFixed(2)} Å  pixel ${wave[k].toFixed(2)} Å  flux ${Number(f).toPrecision(4)}`;
  if (sig > 0) { text += ` ± ${Number(sig).toPrecision(3)}`; }
}
div.text = text;
"""


def _as_spectrum(source) -> Spectrum:
    if isinstance(source, Spectrum):
        return source
    if isinstance(source, (str, os.PathLike)):
        return Spectrum.read(Path(source))
    if isinstance(source, tuple) and len(source) in (2, 3):
        wave, data = np.asarray(source[0], float), np.asarray(source[1], np.float32)
        var = np.asarray(source[2], np.float32) if len(source) == 3 else None
        return Spectrum(wave, data, var)
    raise UnsupportedTypeError(f"cannot show a spectrum from {type(source).__name__}: give a Spectrum, "
                    "a FITS path or a (wave, flux[, variance]) tuple")


class SpectrumViewer(widgets.VBox):
    """Interactive 1-D spectrum: flux, 1-sigma band from the variance, line markers.

    Zoom along wavelength with the mouse wheel, pan by dragging, box-zoom and
    reset from the toolbar. Emission lines (Ly-alpha, [OII], H-beta, [OIII],
    H-alpha) are drawn at ``redshift``; strong night-sky lines ([OI], Na D, OH)
    are drawn dashed. It is an ``ipywidgets.VBox``, so it can be embedded in
    other layouts.

    Parameters
    ----------
    source : Spectrum, str, os.PathLike or tuple, optional
        A :class:`Spectrum`, a FITS file written by :meth:`Spectrum.to_fits`, or
        ``(wave [Angstrom], flux[, variance])``.
    redshift : float
        Initial redshift of the emission-line markers.
    width, height : int
        Plot size, screen pixels.

    Notes
    -----
    Register ``callback(wavelength)`` with :meth:`on_click` to react to clicks
    on the plot (wavelength in Angstrom).
    """

    redshift = Float(0.0, help="Redshift z of the emission-line markers.")
    show_emission_lines = Bool(True, help="Draw redshifted emission lines.")
    show_sky_lines = Bool(True, help="Draw strong night-sky lines.")
    show_variance = Bool(True, help="Draw the 1-sigma band sqrt(variance).")
    wavelength_marker = Float(None, allow_none=True,
                              help="Wavelength (Angstrom) marked by a vertical line, or None.")

    def __init__(self, source=None, *, redshift: float = 0.0, width: int = 620,
                 height: int = 360, **kwargs):
        own = {k: kwargs.pop(k) for k in list(kwargs) if k in SpectrumViewer.class_own_traits()}
        super().__init__(**kwargs)
        self.layout.flex = "0 0 auto"  # keep the plot's size inside boxes: never squeezed
        self._spectrum: Spectrum | None = None
        self._click_callbacks = []
        self._src = ColumnDataSource({"wave": [], "flux": [], "lo": [], "hi": []})
        fig = figure(width=width, height=height,
                     tools="xpan,xwheel_zoom,box_zoom,reset,tap,crosshair",
                     active_scroll="xwheel_zoom", active_drag="xpan", toolbar_location="above")
        self._band = fig.varea(x="wave", y1="lo", y2="hi", source=self._src,
                               fill_color="#1f77b4", fill_alpha=0.25)
        fig.line(x="wave", y="flux", source=self._src, line_color="#1f3a93", line_width=1)
        fig.xaxis.axis_label = "wavelength (Å)"
        fig.yaxis.axis_label = "flux"
        self._sky_spans = [Span(location=line.wavelength, dimension="height",
                                line_color="#888888", line_dash="dashed", line_width=1)
                           for line in SKY_LINES]
        self._line_spans = [Span(location=line.wavelength, dimension="height",
                                 line_color="#d62728", line_width=1, line_alpha=0.8)
                            for line in EMISSION_LINES]
        self._cursor = Span(location=0.0, dimension="height", line_color="#2ca02c",
                            line_width=2, visible=False)
        for span in self._sky_spans + self._line_spans + [self._cursor]:
            fig.add_layout(span)
        self._labels = ColumnDataSource({"x": [], "y": [], "text": []})
        fig.add_layout(LabelSet(x="x", y="y", text="text", source=self._labels, y_units="screen",
                                text_color="#d62728", text_font_size="10pt", x_offset=2))
        self._sky_labels = ColumnDataSource({"x": [], "y": [], "text": []})
        fig.add_layout(LabelSet(x="x", y="y", text="text", source=self._sky_labels,
                                y_units="screen", text_color="#888888", text_font_size="8pt",
                                x_offset=2))
        self._overlays = ColumnDataSource({"xs": [], "ys": [], "color": [], "label": []})
        fig.multi_line("xs", "ys", source=self._overlays, line_color="color", line_width=1,
                       line_alpha=0.9)
        fig.on_event(events.Tap, self._on_tap)
        self.readout = Div(text="", css_classes=["musewise-spectrum-readout"], width=width,
                           styles={"font-family": "monospace", "font-size": "12px"})
        fig.js_on_event(events.MouseMove, CustomJS(args={"div": self.readout, "src": self._src},
                                                   code=SPECTRUM_READOUT_JS))
        self.figure = fig
        self.plot = bokeh_plot(column(fig, self.readout))
        self.plot.add_class("musewise-spectrum-plot")
        self._z = widgets.BoundedFloatText(value=redshift, min=-0.01, max=10.0, step=0.0001,
                                           description="redshift z",
                                           layout=widgets.Layout(width="190px"))
        self._sky = widgets.Checkbox(value=True, description="sky lines", indent=False,
                                     layout=widgets.Layout(width="100px"))
        self._var = widgets.Checkbox(value=True, description="1σ band", indent=False,
                                     layout=widgets.Layout(width="100px"))
        widgets.link((self._z, "value"), (self, "redshift"))
        widgets.link((self._sky, "value"), (self, "show_sky_lines"))
        widgets.link((self._var, "value"), (self, "show_variance"))
        self.children = [self.plot, widgets.HBox([self._z, self._sky, self._var])]
        self.redshift = redshift
        for name, value in own.items():
            setattr(self, name, value)
        self._update_lines()
        if source is not None:
            self.show(source)

    # ----------------------------------------------------------- public API
    @property
    def spectrum(self) -> Spectrum | None:
        """The spectrum shown."""
        return self._spectrum

    def show(self, source, title: str | None = None) -> Spectrum:
        """Show a spectrum (replacing the previous one); returns it as a :class:`Spectrum`."""
        spec = _as_spectrum(source)
        self._spectrum = spec
        sigma = spec.sigma
        flux = np.asarray(spec.data, dtype=np.float32)
        if sigma is None:
            lo = hi = flux
        else:
            lo, hi = flux - sigma, flux + sigma
        self._src.data = {"wave": np.asarray(spec.wave, dtype=np.float64), "flux": flux,
                          "lo": lo.astype(np.float32), "hi": hi.astype(np.float32)}
        self.figure.title.text = title if title is not None else spec.label
        self.figure.yaxis.axis_label = f"flux ({spec.unit})" if spec.unit else "flux"
        self._update_lines()
        return spec

    def overlay(self, spectra=(), colors=("#ff7f0e", "#2ca02c", "#9467bd")) -> None:
        """Draw other spectra over the one shown (e.g. the same spaxel of another cube);
        ``()`` removes them. Each is a :class:`Spectrum` (its label names it)."""
        spectra = list(spectra)
        self._overlays.data = {
            "xs": [np.asarray(sp.wave, float) for sp in spectra],
            "ys": [np.asarray(sp.data, np.float32) for sp in spectra],
            "color": [colors[k % len(colors)] for k in range(len(spectra))],
            "label": [sp.label for sp in spectra]}

    def line_positions(self) -> dict[str, float]:
        """Observed wavelengths (Angstrom) of the emission-line markers inside the spectrum."""
        return {line.name: span.location for line, span in zip(EMISSION_LINES, self._line_spans)
                if span.visible}

    def on_click(self, callback) -> None:
        """Call ``callback(wavelength)`` (Angstrom) when the user clicks the plot."""
        self._click_callbacks.append(callback)

    def export_spectrum(self, path: str | os.PathLike, overwrite: bool = True) -> Path:
        """Write the spectrum shown (flux and variance) to FITS; returns the path."""
        if self._spectrum is None:
            raise NothingSelectedError("no spectrum shown yet")
        return self._spectrum.to_fits(path, overwrite=overwrite)

    # -------------------------------------------------------------- internals
    def _range(self):
        if self._spectrum is None or len(self._spectrum.wave) == 0:
            return 4600.0, 9400.0  # the MUSE range until a spectrum is shown
        return float(np.min(self._spectrum.wave)), float(np.max(self._spectrum.wave))

    def _update_lines(self):
        lo, hi = self._range()
        air = self._spectrum.air if self._spectrum is not None else True
        lx, ltext = [], []
        for line, span in zip(EMISSION_LINES, self._line_spans):
            lam = observed_wavelength(line, self.redshift, air=air)
            span.location = lam
            span.visible = bool(self.show_emission_lines and lo <= lam <= hi)
            if span.visible and line.label:
                lx.append(lam)
                ltext.append(line.label)
        # y in screen pixels above the frame bottom; staggered so close lines stay legible
        top = self.figure.height - 105
        self._labels.data = {"x": lx, "y": [top - 16 * (i % 2) for i in range(len(lx))],
                             "text": ltext}
        sx, stext = [], []
        for line, span in zip(SKY_LINES, self._sky_spans):
            lam = sky_line_wavelength(line, air=air)
            span.location = lam
            span.visible = bool(self.show_sky_lines and lo <= lam <= hi)
            if span.visible and line.label:
                sx.append(lam)
                stext.append(line.label)
        self._sky_labels.data = {"x": sx, "y": [45] * len(sx), "text": stext}

    def _on_tap(self, event):
        if event.x is not None:
            for cb in self._click_callbacks:
                cb(float(event.x))

    @validate("redshift")
    def _valid_z(self, proposal):
        if proposal.value <= -1.0:
            raise TraitError(f"redshift must be > -1, got {proposal.value}")
        return proposal.value

    @observe("redshift", "show_emission_lines", "show_sky_lines")
    def _on_lines(self, change):
        self._update_lines()

    @observe("show_variance")
    def _on_variance(self, change):
        self._band.visible = change.new

    @observe("wavelength_marker")
    def _on_marker(self, change):
        self._cursor.visible = change.new is not None
        if change.new is not None:
            self._cursor.location = float(change.new)
