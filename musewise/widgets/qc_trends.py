"""QCTrends: a QC parameter over the nights, per IFU, with its thresholds; a click opens the product to flag it.

The plot shows :func:`musewise.qc.trends.qc_trend`: one point per product IFU (x the night,
the IFUs of a night side by side; y the value), a colour per IFU, the ``warning`` band of
the parameter's limits shaded orange and the ``bad`` region red, outliers outlined in the
colour of their verdict, the IFUs flagged ``warning`` drawn as triangles and ``bad`` as squares,
invalid IFUs faded. A tap on a point (or :meth:`QCTrends.open_product`)
opens that product in a :class:`~musewise.widgets.qc_panel.QCPanel` below with the IFU
selected, where a reviewer sets its flag; the trend then shows the new flag.

Every control's handler is one line calling a public method, which works without a browser.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from html import escape

import ipywidgets as widgets
from traitlets import Int, Unicode, observe

from ..qc.trends import Trend, qc_trend, trend_parameters
from .bokehjs import bokeh_plot

__all__ = ["IFU_COLOURS", "QCTrends", "trend_figure", "update_trend_figure"]


def _ifu_colours() -> dict:
    from bokeh.palettes import Category20, Category20b

    colours = list(Category20[20]) + [Category20b[20][i] for i in (0, 4, 8, 12)]
    return {i + 1: c for i, c in enumerate(colours)}


#: Colour of each IFU (1-24); products of all IFUs (cubes) are black.
IFU_COLOURS = _ifu_colours()
_ALL_IFUS = "#212121"
_VERDICT_LINE = {"warning": "#ef6c00", "bad": "#c62828"}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: Hours between the points of two neighbouring IFUs of one night (24 IFUs span 18 h of the day).
_IFU_STEP_H = 0.75
_COLUMNS = ("x", "y", "dataset_id", "ifu", "ifu_label", "night", "colour", "line", "width", "alpha", "flag",
            "marker", "verdict", "valid", "value_text")
#: Marker of each quality flag in the archive (what QC or a reviewer set).
FLAG_MARKERS = {"unchecked": "circle", "good": "circle", "warning": "triangle", "bad": "square"}


def _night_ms(night: str, ifu) -> float:
    # Noon UTC of the night's date, the IFUs of a night spread around it.
    t = datetime.strptime(night, "%Y-%m-%d").replace(tzinfo=timezone.utc) + timedelta(hours=12)
    if ifu is not None:
        t += timedelta(hours=(ifu - 12.5) * _IFU_STEP_H)
    return (t - _EPOCH).total_seconds() * 1000.0


def trend_figure(trend: Trend, *, width: int = 900, height: int = 380):
    """A bokeh figure of a :class:`Trend` (see the module docstring).

    Returns
    -------
    bokeh.plotting.figure
        ``figure.select_one({"name": "points"})`` is the points' renderer: its source has one
        row per point of :attr:`Trend.points`, in order (``dataset_id``, ``ifu``...), so a tap
        selects a point by index. :func:`update_trend_figure` redraws it for another trend.
    """
    from bokeh.models import BoxAnnotation, ColumnDataSource, HoverTool, Range1d, Span, TapTool
    from bokeh.plotting import figure

    fig = figure(width=width, height=height, x_axis_type="datetime", x_range=Range1d(0, 1), y_range=Range1d(0, 1),
                 tools="pan,wheel_zoom,box_zoom,reset,tap", toolbar_location="above")
    for name, colour in (("warn_low", "#ef6c00"), ("warn_high", "#ef6c00"), ("bad_low", "#c62828"),
                         ("bad_high", "#c62828")):
        fig.add_layout(BoxAnnotation(fill_color=colour, fill_alpha=0.13, line_alpha=0, name=name, visible=False))
    for name, colour in (("low", "#ef6c00"), ("high", "#ef6c00"), ("bad_low_line", "#c62828"),
                         ("bad_high_line", "#c62828")):
        fig.add_layout(Span(location=0, dimension="width", line_color=colour, line_dash="dashed", line_width=1.5,
                            name=name, visible=False))
    source = ColumnDataSource({k: [] for k in _COLUMNS}, name="point_data")
    points = fig.scatter(x="x", y="y", source=source, size=10, marker="marker", fill_color="colour",
                         line_color="line", line_width="width", fill_alpha="alpha", line_alpha=0.9, name="points",
                         selection_line_color="#000000", selection_line_width=3, nonselection_fill_alpha=0.3)
    fig.add_tools(HoverTool(renderers=[points], tooltips=[
        ("", "#@dataset_id @ifu_label, @night"), ("value", "@value_text"), ("flag", "@flag (@valid)"),
        ("limits", "@verdict")]))
    fig.select_one(TapTool).renderers = [points]
    fig.xaxis.axis_label = "night"
    update_trend_figure(fig, trend)
    return fig


def update_trend_figure(fig, trend: Trend) -> None:
    """Redraw a figure made by :func:`trend_figure` for ``trend`` (in place: a shown plot follows)."""
    data = {k: [] for k in _COLUMNS}
    for p in trend.points:
        colour = _ALL_IFUS if p.ifu is None else IFU_COLOURS.get(p.ifu, _ALL_IFUS)
        for key, value in (("x", _night_ms(p.night, p.ifu) if p.night else float("nan")),
                           ("y", float("nan") if p.value is None else p.value), ("dataset_id", p.dataset_id),
                           ("ifu", 0 if p.ifu is None else p.ifu),
                           ("ifu_label", "all IFUs" if p.ifu is None else f"IFU {p.ifu:02d}"),
                           ("night", p.night), ("colour", colour), ("line", _VERDICT_LINE.get(p.verdict, colour)),
                           ("width", 2.5 if p.outlier else 1.0), ("alpha", 0.85 if p.is_valid else 0.25),
                           ("flag", p.flag), ("marker", FLAG_MARKERS.get(p.flag, "circle")),
                           ("verdict", p.verdict), ("valid", "valid" if p.is_valid else "INVALID"),
                           ("value_text", "not measured" if p.value is None else f"{p.value:.4g} {p.unit}")):
            data[key].append(value)
    renderer = fig.select_one({"name": "points"})
    renderer.data_source.selected.indices = []
    renderer.data_source.data = data
    nights = trend.nights
    if nights:
        x0, x1 = _night_ms(nights[0], None), _night_ms(nights[-1], None)
    else:
        x0 = x1 = (datetime.now(timezone.utc) - _EPOCH).total_seconds() * 1000.0
    day = 86_400_000.0
    fig.x_range.start, fig.x_range.end = x0 - 0.75 * day, x1 + 0.75 * day
    lim = trend.limits
    values = [p.value for p in trend.points if p.value is not None]
    marks = [v for v in ((lim.low, lim.high, lim.bad_low, lim.bad_high) if lim else ()) if v is not None]
    lo, hi = min(values + marks, default=0.0), max(values + marks, default=1.0)
    pad = 0.08 * (hi - lo) if hi > lo else max(abs(hi) * 0.1, 1.0)
    fig.y_range.start, fig.y_range.end = lo - pad, hi + pad
    # The shaded regions: warning between the two limits, bad beyond the bad limit.
    for name, bottom, top in (("warn_high", lim and lim.high, lim and lim.bad_high),
                              ("bad_high", lim and lim.bad_high, None),
                              ("warn_low", lim and lim.bad_low, lim and lim.low),
                              ("bad_low", None, lim and lim.bad_low)):
        box = fig.select_one({"name": name})
        edge = bottom if bottom is not None else top
        box.visible = lim is not None and edge is not None
        box.bottom, box.top = bottom, top
    for name, where in (("low", lim and lim.low), ("high", lim and lim.high), ("bad_low_line", lim and lim.bad_low),
                        ("bad_high_line", lim and lim.bad_high)):
        span = fig.select_one({"name": name})
        span.visible = where is not None and lim is not None
        span.location = where if where is not None else 0.0
    fig.yaxis.axis_label = trend.parameter + (f" ({trend.unit})" if trend.unit else "")
    n_out = sum(p.outlier for p in trend.points)
    fig.title.text = (f"{trend.parameter}: {len(trend.points)} values over {len(nights)} night(s)"
                      + (f", {n_out} beyond the limits" if n_out else "")
                      + ("" if lim else " (no limits set for this parameter)"))


class QCTrends(widgets.VBox):
    """A QC parameter over the nights, per IFU, with its thresholds, and the QC panel of a tapped point.

    Parameters
    ----------
    archive : musewise.archive.Archive
        The archive as seen by the user (``Archive.as_user(name)``): the points are the products
        they may see; the QC panel lets them flag those they review.
    parameter : str, optional
        Stored QC name (``bias.ron.max``); default the first with limits.
    category : str, optional
        Only products of this category (``MASTER_BIAS``); also narrows the parameter list.
    date_from, date_to : str, optional
        Nights ``YYYY-MM-DD``, inclusive.
    width : int
        Plot width, screen pixels.

    Examples
    --------
    >>> trends = QCTrends(arch.as_user("alice"), "bias.ron.max")       # doctest: +SKIP
    >>> [p for p in trends.trend.points if p.outlier]                  # doctest: +SKIP
    >>> panel = trends.open_product(1234, ifu=7)                               # doctest: +SKIP
    >>> panel.set_validity(False, "bad", "read noise jumped")          # doctest: +SKIP
    """

    parameter = Unicode("", help="The QC parameter shown (stored name, e.g. bias.ron.max).")
    dataset_id = Int(None, allow_none=True, help="The product opened in the QC panel.")
    status = Unicode("", help="Last message shown to the user.")

    def __init__(self, archive, parameter: str | None = None, *, category: str | None = None,
                 date_from: str | None = None, date_to: str | None = None, width: int = 900, **kwargs):
        super().__init__(**kwargs)
        self.archive = archive
        self.category, self.date_from, self.date_to = category, date_from, date_to
        self._ready = False
        names = trend_parameters(archive, category=category)
        self._select = widgets.Dropdown(options=names, description="parameter",
                                        layout=widgets.Layout(width="420px"))
        self.parameter = parameter or (names[0] if names else "")
        if self.parameter and self.parameter not in names:
            self._select.options = [*names, self.parameter]
        self._select.value = self.parameter or None
        self._select.observe(lambda ch: setattr(self, "parameter", ch["new"] or ""), "value")
        self.trend = self._read()
        self.figure = trend_figure(self.trend, width=width)
        self.figure.select_one({"name": "points"}).data_source.selected.on_change(
            "indices", lambda _attr, _old, new: self._on_tap(new))
        self.plot = bokeh_plot(self.figure)
        self._legend = widgets.HTML("")
        self._status = widgets.HTML("")
        widgets.dlink((self, "status"), (self._status, "value"),
                      lambda s: f"<span style='font-size:smaller'>{escape(s)}</span>")
        self.panel = None  #: the QCPanel of the opened product
        self._panel_box = widgets.VBox([widgets.HTML("<i>tap a point to open its product in the QC panel</i>")])
        self.children = [self._select, self.plot, self._legend, self._status, self._panel_box]
        self._ready = True
        self._draw_legend()

    # ----------------------------------------------------------- public API
    def refresh(self) -> Trend:
        """Read the values and the products' flags again and redraw."""
        self.trend = self._read()
        update_trend_figure(self.figure, self.trend)
        self._draw_legend()
        return self.trend

    def open_product(self, dataset_id: int, ifu: int | None = None):
        """Open a product in the QC panel below, with ``ifu`` selected.

        Returns
        -------
        QCPanel

        Raises
        ------
        NotFoundError
            If the user may not see it.
        """
        from .qc_panel import QCPanel

        if self.panel is not None and self.dataset_id == int(dataset_id) and \
                (not ifu or self.panel.selected_ifu == ifu):
            return self.panel  # already open: keep what the reviewer is typing (a tap can arrive twice)
        panel = QCPanel(self.archive, int(dataset_id))
        if ifu and ifu in panel.ifus:
            panel.select_ifu(int(ifu))
        # A flag recorded in the panel shows on the trend.
        panel.observe(lambda ch: self.refresh() if ch["new"].startswith("IFU ") else None, "status")
        if self.panel is not None:
            self.panel.close()
        self.panel = panel
        self._panel_box.children = [panel]
        self.dataset_id = int(dataset_id)
        self.status = f"opened #{dataset_id}" + (f" IFU {ifu:02d}" if ifu else "") + " in the QC panel"
        return panel

    # -------------------------------------------------------------- internals
    def _read(self) -> Trend:
        return qc_trend(self.archive, self.parameter, category=self.category, date_from=self.date_from,
                        date_to=self.date_to) if self.parameter else Trend("", "", None)

    def _on_tap(self, indices):
        data = self.figure.select_one({"name": "points"}).data_source.data
        if indices and indices[0] < len(data["dataset_id"]):
            i = indices[0]
            self.open_product(data["dataset_id"][i], data["ifu"][i] or None)

    @observe("parameter")
    def _on_parameter(self, change):
        if self._ready:
            if change["new"] and change["new"] not in self._select.options:
                self._select.options = [*self._select.options, change["new"]]
            self._select.value = change["new"] or None
            self.refresh()

    def _draw_legend(self):
        ifus = self.trend.ifus
        self._legend.value = " ".join(
            f"<span style='background:{_ALL_IFUS if i is None else IFU_COLOURS[i]};color:white;padding:0 5px;"
            f"border-radius:3px;font-size:11px'>{'all' if i is None else f'{i:02d}'}</span>" for i in ifus) + (
            " &nbsp; <span style='background:#ef6c0033;padding:0 5px'>warning band</span>"
            " <span style='background:#c6282833;padding:0 5px'>bad</span>"
            " &nbsp; outlined: beyond a limit; &#9650; flagged warning, &#9632; flagged bad; faded: invalid IFU"
            if ifus else "<i>no values</i>")
