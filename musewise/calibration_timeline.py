"""The calibration timeline: which calibration is certified for which time, per IFU.

A calibration serves a frame only where it is certified: a range ``[begin_mjd,
end_mjd)`` (MJD, days; an open end is None) in a CALIBRATION collection
(:mod:`musewise.archive.calibrations`). :func:`build_timeline` lays those ranges out
as plain data - one row per (category, IFU), one lane per collection (and per
overlap within it), one bar per certification, open ends drawn to the window's edge,
each bar carrying its dataset's state (usable, invalid, affected by an invalid input,
its IFU invalid) - so that every view draws the same picture:
:func:`timeline_figure` makes a bokeh figure of it (the ``CalibrationTimeline``
widget), the web view an SVG (:mod:`musewise.web.timeline`).

Reads go through the public :class:`~musewise.archive.Archive` API only, so a user
sees exactly the certifications of the calibrations they may see. Nothing here imports
ipywidgets; bokeh is imported by :func:`timeline_figure` alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from .archive.records import range_covers, range_text
from .exceptions import MusewiseError, NotFoundError, ParameterError
from .vocabulary import CollectionType

__all__ = ["COLLECTION_PALETTE", "STATE_STYLE", "Timeline", "TimelineBar", "TimelineRow", "build_timeline",
           "calibration_collections", "mjd_to_datetime", "night_mjd", "parse_mjd", "timeline_figure",
           "update_timeline_figure"]

#: MJD 0 (days): 1858-11-17 00:00 UTC.
MJD_EPOCH = datetime(1858, 11, 17)
#: Colours given to collections in order of appearance (colour-blind safe, Okabe-Ito / Tol).
COLLECTION_PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
                      "#332288", "#117733", "#882255", "#44AA99", "#999933")
#: How each dataset state is marked: (outline colour, hatch pattern, words for a tooltip).
STATE_STYLE = {
    "usable": ("#333333", "", "usable"),
    "invalid": ("#c62828", "x", "marked INVALID"),
    "ifu-invalid": ("#c62828", "/", "this IFU marked invalid"),
    "affected": ("#ef6c00", "\\", "affected by an invalid input"),
}
#: Half-width of the default window around the marked night (days).
DEFAULT_SPAN_DAYS = 30.0


# ----------------------------------------------------------------- time
def mjd_to_datetime(mjd: float) -> datetime:
    """UTC date and time (naive) of an MJD (days)."""
    return MJD_EPOCH + timedelta(days=float(mjd))


def _mjd_of(dt: datetime) -> float:
    return (dt - MJD_EPOCH) / timedelta(days=1)


def night_mjd(night: str) -> float:
    """MJD (days) of the middle of observing night ``night`` (``YYYY-MM-DD``, local evening date).

    A night runs noon to noon (:data:`musewise.ingest.NIGHT_SHIFT`), so its middle is
    00:00 UTC after the evening: night 2026-11-20 gives MJD 61365.0.

    Raises
    ------
    ParameterError
        If ``night`` is not a date ``YYYY-MM-DD``.
    """
    try:
        d = date.fromisoformat(str(night).strip())
    except ValueError:
        raise ParameterError("timeline", f"a night is a date YYYY-MM-DD, not {night!r}") from None
    return _mjd_of(datetime(d.year, d.month, d.day)) + 1.0


def parse_mjd(text) -> float | None:
    """A time typed by a person, as MJD (days): a number, a night ``YYYY-MM-DD``, or blank (None: open).

    A night stands for its start, noon UTC of that date (the boundary between nights), so
    the range "night A to night B" is ``[parse_mjd(A), parse_mjd(B))`` and holds nights A to B-1.

    Raises
    ------
    ParameterError
        If the text is neither.
    """
    if text is None:
        return None
    if isinstance(text, (int, float)):
        return float(text)
    t = str(text).strip()
    if not t or t.lower() == "open":
        return None
    try:
        return float(t)
    except ValueError:
        pass
    try:
        return night_mjd(t) - 0.5
    except ParameterError:
        raise ParameterError("timeline", f"give a time as an MJD (e.g. 61365.0), a night YYYY-MM-DD, or leave "
                                         f"it blank for an open end; not {text!r}") from None


# ----------------------------------------------------------------- data
@dataclass(frozen=True)
class TimelineBar:
    """One certified range of one calibration, as drawn.

    Attributes
    ----------
    certification_id, dataset_id : int
    collection, category : str
    ifu : int or None
        None: the calibration serves every IFU.
    begin_mjd, end_mjd : float or None
        The certified range (MJD, days); None: open at that end.
    x0, x1 : float
        The range as drawn (MJD, days): open ends and ends outside the window are at the window's edge.
    row : int
        Index into :attr:`Timeline.rows`.
    y : float
        Centre of the bar (row units, the first row's top at 0, growing downwards).
    colour : str
        Its collection's colour.
    state : str
        A key of :data:`STATE_STYLE`: ``usable``, ``invalid``, ``ifu-invalid`` or ``affected``.
    note : str
        Details of its state: flag and comment, which IFU is invalid, or which input made it affected.
    certified_by, comment : str
        Who set the range last, and why.
    chosen : bool
        The calibration a reduction of this row's IFU at the marker would use
        (through :attr:`Timeline.search_path`).
    """

    certification_id: int
    dataset_id: int
    collection: str
    category: str
    ifu: int | None
    mode: str | None
    begin_mjd: float | None
    end_mjd: float | None
    x0: float
    x1: float
    row: int
    y: float
    colour: str
    state: str
    note: str
    certified_by: str
    comment: str
    chosen: bool = False

    @property
    def open_begin(self) -> bool:
        return self.begin_mjd is None

    @property
    def open_end(self) -> bool:
        return self.end_mjd is None

    @property
    def range_text(self) -> str:
        """``[61358.100, open)`` (MJD, days)."""
        return range_text(self.begin_mjd, self.end_mjd)

    def covers(self, mjd: float) -> bool:
        """True if the certified range holds ``mjd`` (days)."""
        return range_covers(self.begin_mjd, self.end_mjd, mjd)

    def tooltip(self) -> str:
        """One line a person reads on hovering the bar."""
        ifu = "all IFUs" if self.ifu is None else f"IFU {self.ifu:02d}"
        state = STATE_STYLE[self.state][2] if self.state != "usable" else ""
        said = ": ".join(p for p in (state, self.note) if p)
        return (f"#{self.dataset_id} {self.category} {ifu} in {self.collection}: {self.range_text}"
                f"{' - ' + said if said else ''}"
                f"{' (certified by ' + self.certified_by + ')' if self.certified_by else ''}"
                f"{' - chosen at the marker' if self.chosen else ''}")


@dataclass(frozen=True)
class TimelineRow:
    """One row of the timeline: a category and IFU, split into lanes.

    Attributes
    ----------
    category : str
    ifu : int or None
        None: calibrations serving every IFU.
    label : str
    y0 : float
        Top of the row (row units).
    lanes : tuple of str
        Label of each lane, top to bottom (a collection; ``name (2)`` where its ranges overlap).
    """

    category: str
    ifu: int | None
    label: str
    y0: float
    lanes: tuple[str, ...]

    @property
    def height(self) -> float:
        return float(len(self.lanes))


@dataclass(frozen=True)
class Timeline:
    """Certified ranges of calibrations around a time, laid out for drawing.

    Attributes
    ----------
    category : str or None
        The category shown (None: every category).
    ifu : int or None
        The IFU shown (None: every IFU).
    marker : float or None
        MJD (days) marked by a vertical line (the chosen night).
    night : str or None
        The night the marker stands for.
    mjd_from, mjd_to : float
        The window drawn (MJD, days).
    rows : tuple of TimelineRow
    bars : tuple of TimelineBar
    colours : dict
        Collection name -> colour, in legend order.
    search_path : tuple of str
        The search path whose choice at the marker is flagged ``chosen``.
    """

    category: str | None
    ifu: int | None
    marker: float | None
    night: str | None
    mjd_from: float
    mjd_to: float
    rows: tuple[TimelineRow, ...]
    bars: tuple[TimelineBar, ...]
    colours: dict = field(default_factory=dict)
    search_path: tuple[str, ...] = ()

    @property
    def height(self) -> float:
        """Total height (row units)."""
        return sum(r.height for r in self.rows)

    def bar(self, certification_id: int) -> TimelineBar:
        """The bar of a certification.

        Raises
        ------
        NotFoundError
            If it is not on this timeline (a LookupError).
        """
        for b in self.bars:
            if b.certification_id == int(certification_id):
                return b
        raise NotFoundError(f"certification {certification_id} is not on this timeline")

    def covering(self, mjd: float | None = None) -> list[TimelineBar]:
        """Bars whose certified range holds ``mjd`` (default: the marker)."""
        t = self.marker if mjd is None else mjd
        return [] if t is None else [b for b in self.bars if b.covers(t)]


def calibration_collections(archive, names=None) -> list[str]:
    """The CALIBRATION collections a search path reads, in search order (chains stand for their members).

    Parameters
    ----------
    archive : Archive
    names : list of str, optional
        The search path (default: ``archive.search_path()``).
    """
    ids = {c.id: c.name for c in archive.list_collections(CollectionType.CALIBRATION)}
    with archive.session() as s:
        path = archive.resolve_path(s, None if names is None else list(names))
        return [ids[i] for i in path.calibration_ids if i in ids]


def _lanes(bars_of_row: list, order: dict) -> list[tuple[str, list]]:
    # Greedy interval packing per collection: a bar goes to the first lane of its collection
    # where it overlaps no other, so overlapping ranges stay readable.
    out = []
    by_coll: dict[str, list] = {}
    for b in bars_of_row:
        by_coll.setdefault(b["collection"], []).append(b)
    for coll in sorted(by_coll, key=lambda c: (order.get(c, len(order)), c)):
        lanes: list[list] = []
        for b in sorted(by_coll[coll], key=lambda b: (b["x0"], b["x1"])):
            for lane in lanes:
                if lane[-1]["x1"] <= b["x0"]:
                    lane.append(b)
                    break
            else:
                lanes.append([b])
        for k, lane in enumerate(lanes):
            out.append((coll if k == 0 else f"{coll} ({k + 1})", lane))
    return out


def _state(rec, ifu: int | None) -> tuple[str, str]:
    # (key of STATE_STYLE, the details a person needs: flag and comment, or what made it unusable)
    if rec is None:
        return "usable", ""
    words = f"{rec.flag}{': ' + rec.comment if rec.comment else ''}"
    if not rec.is_valid:
        return "invalid", words
    if rec.affected_by is not None:
        return "affected", f"input #{rec.affected_by} is invalid"
    states = {s.ifu: s for s in rec.ifus}
    if ifu is not None and ifu in states and not states[ifu].is_valid:
        s = states[ifu]
        return "ifu-invalid", f"IFU {ifu:02d}: {s.flag}{': ' + s.comment if s.comment else ''}"
    bad = [s.ifu for s in rec.ifus if not s.is_valid]
    if ifu is None and bad:
        return "ifu-invalid", f"IFU {', '.join(f'{i:02d}' for i in bad)}"
    return "usable", "" if rec.flag == "unchecked" else words


def build_timeline(archive, category: str | None = None, *, ifu: int | None = None, night: str | None = None,
                   mjd: float | None = None, span_days: float = DEFAULT_SPAN_DAYS, mjd_from: float | None = None,
                   mjd_to: float | None = None, collections=None, limit: int = 5000) -> Timeline:
    """The certified ranges of calibrations around a night, one row per (category, IFU).

    Parameters
    ----------
    archive : Archive
        Read as its user: only the calibrations they may see are shown.
    category : str, optional
        ``ESO PRO CATG`` of the calibrations, e.g. ``MASTER_BIAS`` (default: every category).
    ifu : int, optional
        One IFU (1-24); calibrations serving every IFU are shown with it. Default: every IFU.
    night : str, optional
        Observing night ``YYYY-MM-DD`` to mark (:func:`night_mjd`).
    mjd : float, optional
        Instead of ``night``: the MJD to mark (days).
    span_days : float
        Half-width of the window around the marker (days), unless ``mjd_from``/``mjd_to`` say.
    mjd_from, mjd_to : float, optional
        The window (MJD, days). Without a marker or window: the span of the finite ends found.
    collections : list of str, optional
        A search path (chains stand for their members): show only its CALIBRATION
        collections, in its order, and flag the calibration it would choose at the marker
        for each IFU. Default: every calibration collection, the user's search path first.
    limit : int
        Most certifications read.

    Returns
    -------
    Timeline

    Raises
    ------
    ParameterError
        A bad night, or a window that ends before it begins.
    """
    marker = night_mjd(night) if night else (None if mjd is None else float(mjd))
    if marker is not None:
        lo = marker - span_days if mjd_from is None else float(mjd_from)
        hi = marker + span_days if mjd_to is None else float(mjd_to)
    else:
        lo, hi = mjd_from, mjd_to
    if lo is not None and hi is not None and hi <= lo:
        raise ParameterError("timeline", f"the window must end after it begins ({lo} >= {hi})")
    path = tuple(collections) if collections else ()
    shown = calibration_collections(archive, path) if path else None
    order_names = shown if shown is not None else calibration_collections(archive)
    certs = archive.certifications(category=category, ifu=ifu, mjd_from=lo, mjd_to=hi, limit=limit)
    if shown is not None:
        certs = [c for c in certs if c.collection in shown]
    if lo is None or hi is None:
        ends = [v for c in certs for v in (c.begin_mjd, c.end_mjd) if v is not None]
        if not ends:
            ends = [61000.0, 61000.0 + 2 * span_days]
        lo = min(ends) - 1.0 if lo is None else lo
        hi = max(ends) + 1.0 if hi is None else hi
        if hi <= lo:
            hi = lo + 1.0
    order = {name: i for i, name in enumerate(order_names)}
    legend = sorted({c.collection for c in certs}, key=lambda n: (order.get(n, len(order)), n))
    colours = {name: COLLECTION_PALETTE[i % len(COLLECTION_PALETTE)] for i, name in enumerate(legend)}
    records = archive.get_many({c.dataset_id for c in certs})

    rows_of: dict[tuple, list] = {}
    for c in certs:
        x0 = lo if c.begin_mjd is None else max(lo, c.begin_mjd)
        x1 = hi if c.end_mjd is None else min(hi, c.end_mjd)
        rows_of.setdefault((c.category, c.ifu), []).append(
            {"cert": c, "collection": c.collection, "x0": x0, "x1": max(x1, x0)})
    keys = sorted(rows_of, key=lambda k: (k[0], -1 if k[1] is None else k[1]))
    one_category = category is not None or len({k[0] for k in keys}) == 1

    chosen: set[int] = set()
    if marker is not None and path:
        for cat, row_ifu in keys:
            if row_ifu is None:
                continue
            try:
                pick = archive.best_calibration(cat, ifu=row_ifu, mjd=marker, collections=list(path))
            except MusewiseError:  # nothing eligible (CalibrationNotFoundError) or not allowed: no pick
                continue
            chosen.add(pick.record.id)

    rows, bars, y = [], [], 0.0
    for r, key in enumerate(keys):
        cat, row_ifu = key
        lanes = _lanes(rows_of[key], order)
        where = "all IFUs" if row_ifu is None else f"IFU {row_ifu:02d}"
        label = where if one_category else f"{cat} {where}"
        rows.append(TimelineRow(cat, row_ifu, label, y, tuple(name for name, _ in lanes)))
        for k, (_, lane) in enumerate(lanes):
            for b in lane:
                c = b["cert"]
                state, note = _state(records.get(c.dataset_id), row_ifu if row_ifu is not None else ifu)
                bars.append(TimelineBar(
                    certification_id=c.id, dataset_id=c.dataset_id, collection=c.collection, category=c.category,
                    ifu=c.ifu, mode=c.mode, begin_mjd=c.begin_mjd, end_mjd=c.end_mjd, x0=b["x0"], x1=b["x1"],
                    row=r, y=y + k + 0.5, colour=colours[c.collection], state=state, note=note,
                    certified_by=c.certified_by or "", comment=c.comment,
                    chosen=c.dataset_id in chosen and row_ifu is not None and c.covers(marker)))
        y += len(lanes)
    return Timeline(category, ifu, marker, night, float(lo), float(hi), tuple(rows), tuple(bars), colours, path)


# ----------------------------------------------------------------- bokeh
def timeline_figure(timeline: Timeline, *, width: int = 900, lane_height: int = 22):
    """A bokeh figure of a :class:`Timeline`: bars coloured by collection, states hatched, the marker a line.

    Invalid calibrations are outlined red and cross-hatched, affected ones outlined
    orange and hatched; a triangle at a bar's end says the range is open there; the
    calibration chosen at the marker is outlined thick black. The bars' data source
    holds one row per bar in :attr:`Timeline.bars` order (``certification_id``,
    ``dataset_id``...), so a tap selects a certification by index.

    Parameters
    ----------
    timeline : Timeline
    width : int
        Screen pixels.
    lane_height : int
        Screen pixels per lane.

    Returns
    -------
    bokeh.plotting.figure
        ``figure.select_one({"name": "bars"})`` is the bars' renderer (its ``data_source``
        the bars), ``{"name": "open_ends"}`` the triangles, ``{"name": "marker"}`` the
        marker's Span. :func:`update_timeline_figure` redraws it for another timeline.
    """
    from bokeh.models import ColumnDataSource, FixedTicker, HoverTool, Range1d, Span, TapTool
    from bokeh.plotting import figure

    fig = figure(width=width, height=100, x_range=Range1d(0, 1), y_range=Range1d(1, 0),
                 tools="xpan,xwheel_zoom,reset,tap", active_scroll="xwheel_zoom", toolbar_location="above")
    source = ColumnDataSource({k: [] for k in _BAR_COLUMNS}, name="bar_data")
    bars = fig.hbar(y="y", left="left", right="right", height=0.7, source=source, fill_color="colour",
                    fill_alpha=0.8, line_color="line", line_width="width", hatch_pattern="hatch",
                    hatch_color="line", hatch_alpha=0.9, name="bars",
                    selection_line_color="#000000", selection_line_width=3, nonselection_fill_alpha=0.35)
    ends = ColumnDataSource({"x": [], "y": [], "side": [], "angle": []}, name="open_end_data")
    fig.scatter(x="x", y="y", marker="triangle", angle="angle", size=12, fill_color="#ffffff",
                line_color="#1d232a", line_width=1.5, source=ends, name="open_ends")
    fig.add_tools(HoverTool(renderers=[bars], tooltips=[("", "@tip"), ("dates", "@dates")]))
    fig.select_one(TapTool).renderers = [bars]
    fig.add_layout(Span(location=0, dimension="height", line_color="#c62828", line_width=2, line_dash="dashed",
                        name="marker", visible=False))
    fig.yaxis.ticker = FixedTicker(ticks=[])
    fig.ygrid.ticker = FixedTicker(ticks=[])
    fig.xaxis.axis_label = "MJD (days)"
    fig.tags = [{"lane_height": int(lane_height)}]
    update_timeline_figure(fig, timeline)
    return fig


_BAR_COLUMNS = ("certification_id", "dataset_id", "collection", "left", "right", "y", "colour", "line", "hatch",
                "width", "range", "state", "tip", "dates")


def update_timeline_figure(fig, timeline: Timeline) -> None:
    """Redraw a figure made by :func:`timeline_figure` for ``timeline`` (in place: a shown plot follows)."""
    tl = timeline
    n = max(1.0, tl.height)
    data = {k: [] for k in _BAR_COLUMNS}
    ends = {"x": [], "y": [], "side": [], "angle": []}
    for b in tl.bars:
        line, hatch, words = STATE_STYLE[b.state]
        for key, value in (("certification_id", b.certification_id), ("dataset_id", b.dataset_id),
                           ("collection", b.collection), ("left", b.x0), ("right", b.x1), ("y", b.y),
                           ("colour", b.colour), ("line", "#000000" if b.chosen else line), ("hatch", hatch),
                           ("width", 3.0 if b.chosen else (2.0 if b.state != "usable" else 1.0)),
                           ("range", b.range_text), ("state", words + (f": {b.note}" if b.note else "")),
                           ("tip", b.tooltip()), ("dates", _dates(b))):
            data[key].append(value)
        # Just inside the bar's end, so the plot's frame does not clip it.
        inset = 0.008 * (tl.mjd_to - tl.mjd_from)
        # A triangle pointing up, turned to point out of the bar (bokeh has no left/right triangle).
        for is_open, x, side, angle in ((b.open_begin, b.x0 + inset, "begin", math.pi / 2),
                                        (b.open_end, b.x1 - inset, "end", -math.pi / 2)):
            if is_open:
                ends["x"].append(x)
                ends["y"].append(b.y)
                ends["side"].append(side)
                ends["angle"].append(angle)
    renderer = fig.select_one({"name": "bars"})
    renderer.data_source.selected.indices = []
    renderer.data_source.data = data
    fig.select_one({"name": "open_ends"}).data_source.data = ends
    span = fig.select_one({"name": "marker"})
    span.visible = tl.marker is not None
    span.location = tl.marker if tl.marker is not None else tl.mjd_from
    fig.x_range.start, fig.x_range.end = tl.mjd_from, tl.mjd_to
    fig.y_range.start, fig.y_range.end = n, 0
    lane_height = (fig.tags[0] if fig.tags else {}).get("lane_height", 22)
    fig.height = int(70 + lane_height * n)
    middles = [r.y0 + r.height / 2 for r in tl.rows]
    fig.yaxis.ticker.ticks = middles
    fig.yaxis.major_label_overrides = {m: r.label for m, r in zip(middles, tl.rows)}
    fig.ygrid.ticker.ticks = [r.y0 for r in tl.rows] + [n]
    fig.title.text = _title(tl)


def _title(tl: Timeline) -> str:
    what = tl.category or "all calibrations"
    ifu = "" if tl.ifu is None else f", IFU {tl.ifu:02d}"
    at = ""
    if tl.marker is not None:
        at = f" - marker: night {tl.night}" if tl.night else f" - marker: MJD {tl.marker:.3f}"
    span = f"{mjd_to_datetime(tl.mjd_from):%Y-%m-%d} to {mjd_to_datetime(tl.mjd_to):%Y-%m-%d}"
    return f"{what}{ifu}, {span}{at}"


def _dates(b: TimelineBar) -> str:
    def f(v):
        return "open" if v is None else f"{mjd_to_datetime(v):%Y-%m-%d %H:%M}"
    return f"{f(b.begin_mjd)} to {f(b.end_mjd)} UTC"
