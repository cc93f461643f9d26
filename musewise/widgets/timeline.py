"""CalibrationTimeline: which calibration is certified when, per IFU, and a reviewer's control to change it.

The bokeh plot shows :func:`musewise.calibration_timeline.build_timeline`: one row per
IFU (per category and IFU when no category is chosen), a bar per certified range coloured
by CALIBRATION collection, invalid and affected calibrations hatched, open ranges drawn
to the edge with a triangle, and the chosen night as a dashed line. A tap on a bar (or
:meth:`CalibrationTimeline.select`) selects a certification; a reviewer types a new
begin and end (an MJD, a night ``YYYY-MM-DD``, or blank for an open end) and why, and
:meth:`CalibrationTimeline.change_range` records it through ``Archive.certify`` (audited).
Anyone else sees the controls disabled, and the archive refuses them with its message.

Every control's handler is one line calling a public method, which works without a browser.
"""

from __future__ import annotations

from html import escape

import ipywidgets as widgets
from traitlets import Bool, Float, Int, TraitError, Unicode, observe, validate

from ..calibration_timeline import (
    DEFAULT_SPAN_DAYS,
    STATE_STYLE,
    build_timeline,
    mjd_to_datetime,
    night_mjd,
    parse_mjd,
    timeline_figure,
    update_timeline_figure,
)
from ..exceptions import MusewiseError, NotFoundError, NothingSelectedError
from .bokehjs import bokeh_plot

__all__ = ["CalibrationTimeline"]


_CSS = """<style>
.mw-audit table {border-collapse: collapse; font-size: 12px}
.mw-audit td, .mw-audit th {border-bottom: 1px solid #ddd; padding: 1px 6px; text-align: left}
</style>"""


def _fmt(v) -> str:
    return "" if v is None else f"{v:.3f}"


def _range(pair) -> str:
    return f"[{_fmt(pair[0]) or 'open'}, {_fmt(pair[1]) or 'open'})"


class CalibrationTimeline(widgets.VBox):
    """Certified ranges of calibrations around a night, with the reviewer's range editor.

    Parameters
    ----------
    archive : musewise.archive.Archive
        The archive as seen by the user (``Archive.as_user(name)``): they see the
        certifications of the calibrations they may see, and may change those they review.
    category : str, optional
        ``ESO PRO CATG``, e.g. ``MASTER_BIAS`` (default: every calibration category).
    ifu : int, optional
        One IFU (1-24); default every IFU.
    night : str, optional
        Observing night ``YYYY-MM-DD`` marked by the line, at the window's centre.
    collections : list of str, optional
        A search path: show only its CALIBRATION collections and outline what it would
        choose at the night (default: every calibration collection).
    span_days : float
        Half-width of the window around the night (days).
    width : int
        Plot width, screen pixels.

    Examples
    --------
    >>> tl = CalibrationTimeline(arch.as_user("alice"), category="MASTER_BIAS", night="2026-11-20")  # doctest: +SKIP
    >>> tl.select(tl.timeline.covering()[0].certification_id)                                       # doctest: +SKIP
    >>> tl.change_range(61360.0, 61369.5, "bias drifts after the 29th")                              # doctest: +SKIP
    """

    category = Unicode(None, allow_none=True, help="Category shown (None: every calibration category).")
    ifu = Int(None, allow_none=True, help="IFU shown (1-24; None: every IFU).")
    night = Unicode(None, allow_none=True, help="Night marked, YYYY-MM-DD (None: no marker).")
    span_days = Float(DEFAULT_SPAN_DAYS, help="Half-width of the window around the night (days).")
    certification_id = Int(None, allow_none=True, help="The selected certification.")
    can_review = Bool(False, help="The user may change the selected calibration's certified range.")
    status = Unicode("", help="Last message shown to the user.")

    def __init__(self, archive, category: str | None = None, *, ifu: int | None = None, night: str | None = None,
                 collections=None, span_days: float = DEFAULT_SPAN_DAYS, width: int = 900, **kwargs):
        super().__init__(**kwargs)
        self.archive = archive
        self.collections = list(collections) if collections else None
        self._ready = False
        self.category, self.ifu, self.night, self.span_days = category, ifu, night, float(span_days)
        self.timeline = build_timeline(archive, category, ifu=ifu, night=night, span_days=span_days,
                                       collections=self.collections)
        self.figure = timeline_figure(self.timeline, width=width)
        self.figure.select_one({"name": "bars"}).data_source.selected.on_change(
            "indices", lambda _attr, _old, new: self._on_tap(new))
        self.plot = bokeh_plot(self.figure)
        self._legend = widgets.HTML("")
        self._picker = widgets.Dropdown(description="range", layout=widgets.Layout(width="560px"))
        self._picker.observe(lambda ch: self._pick_from_dropdown(ch["new"]), "value")
        self._state = widgets.HTML("")
        self._begin = widgets.Text(description="begin", placeholder="MJD, YYYY-MM-DD or blank (open)",
                                   layout=widgets.Layout(width="270px"))
        self._end = widgets.Text(description="end", placeholder="MJD, YYYY-MM-DD or blank (open)",
                                 layout=widgets.Layout(width="270px"))
        self._comment = widgets.Text(placeholder="why (recorded with the change)", layout=widgets.Layout(width="330px"))
        self._apply = widgets.Button(description="Change range", icon="check", button_style="primary")
        self._apply.on_click(lambda _b: self._change_from_controls())
        self._status = widgets.HTML("")
        widgets.dlink((self, "status"), (self._status, "value"),
                      lambda s: f"<span style='font-size:smaller'>{escape(s)}</span>")
        self._history = widgets.HTML("", layout=widgets.Layout(max_height="200px", overflow="auto"))
        self.children = [widgets.HTML(_CSS), self.plot, self._legend, self._picker, self._state,
                         widgets.HBox([self._begin, self._end, self._comment, self._apply]), self._status,
                         self._history]
        self._ready = True
        self._redraw()

    # ----------------------------------------------------------- public API
    def refresh(self) -> None:
        """Read the certifications again from the archive and redraw (the selection is kept if still shown)."""
        self.timeline = build_timeline(self.archive, self.category, ifu=self.ifu, night=self.night,
                                       span_days=self.span_days, collections=self.collections)
        update_timeline_figure(self.figure, self.timeline)
        self._redraw()

    def select(self, certification_id: int | None):
        """Select a certification (None: none) and show its calibration's state and history.

        Returns
        -------
        TimelineBar or None

        Raises
        ------
        traitlets.TraitError
            If it is not on the timeline.
        """
        self.certification_id = None if certification_id is None else int(certification_id)
        return self.selected

    @property
    def selected(self):
        """The selected :class:`~musewise.calibration_timeline.TimelineBar`, or None."""
        return None if self.certification_id is None else self.timeline.bar(self.certification_id)

    def change_range(self, begin_mjd, end_mjd, comment: str = ""):
        """Change the selected certification's range through ``Archive.certify`` (audited).

        Parameters
        ----------
        begin_mjd, end_mjd : float, str or None
            New range (MJD, days; a night ``YYYY-MM-DD`` stands for noon UTC of that date,
            its start); None or blank: open at that end. Both open: the category's default
            range (``Archive.certify``).
        comment : str
            Why.

        Returns
        -------
        CertificationRecord
            The new certification.

        Raises
        ------
        PermissionDeniedError
            Unless the user reviews the calibration and may change the collection (the archive's message).
        ParameterError
            A range that ends before it begins, or is too long, or text that is no time.
        ValueError
            If nothing is selected.
        """
        bar = self.selected
        if bar is None:
            raise NothingSelectedError("select a certified range first (timeline.select(certification_id))")
        rec = self.archive.certify(bar.dataset_id, bar.collection, parse_mjd(begin_mjd), parse_mjd(end_mjd),
                                   comment)
        self.refresh()
        self.certification_id = rec.id
        self.status = (f"recorded: #{rec.dataset_id} in {rec.collection} now certified "
                       f"{_range((rec.begin_mjd, rec.end_mjd))} by {rec.certified_by}")
        return rec

    # -------------------------------------------------------------- internals
    def _change_from_controls(self):
        try:
            self.change_range(self._begin.value, self._end.value, self._comment.value)
        except (MusewiseError, ValueError, PermissionError) as exc:  # shown to the user; the API raises
            self.status = f"not recorded: {exc}"

    def _on_tap(self, indices):
        ids = self.figure.select_one({"name": "bars"}).data_source.data["certification_id"]
        if indices and indices[0] < len(ids):
            self.select(ids[indices[0]])

    def _pick_from_dropdown(self, value):
        if value != self.certification_id:
            self.select(value)

    @validate("night")
    def _valid_night(self, proposal):
        if proposal.value:
            night_mjd(proposal.value)  # raises ParameterError on a bad date
        return proposal.value or None

    @validate("certification_id")
    def _valid_selection(self, proposal):
        cid = proposal.value
        if cid is not None:
            try:
                self.timeline.bar(cid)
            except NotFoundError as exc:
                raise TraitError(str(exc)) from None
        return cid

    @observe("category", "ifu", "night", "span_days")
    def _on_view_change(self, change):
        if self._ready:
            self.refresh()

    @observe("certification_id")
    def _on_selected(self, change):
        if self._ready:
            self._show_selected()

    def _redraw(self):
        tl = self.timeline
        self._legend.value = " ".join(
            f"<span style='background:{c};color:white;padding:1px 6px;border-radius:3px'>{escape(n)}</span>"
            for n, c in tl.colours.items()) + (
            " &nbsp; <span style='outline:2px solid #c62828'>&#9638; invalid</span>"
            " <span style='outline:2px solid #ef6c00'>&#9636; affected</span> &#9654; open end"
            + (" &nbsp; <b>thick outline</b>: chosen at the night" if tl.search_path else ""))
        options = [("(none)", None)] + [
            (f"#{b.dataset_id} {b.category} {'all IFUs' if b.ifu is None else f'IFU {b.ifu:02d}'} - "
             f"{b.collection} {b.range_text}", b.certification_id) for b in tl.bars]
        keep = self.certification_id if any(b.certification_id == self.certification_id for b in tl.bars) else None
        self._picker.options = options
        self._picker.value = keep
        if keep != self.certification_id:
            self.certification_id = keep
        self._show_selected()

    def _show_selected(self):
        bar = self.selected
        self._picker.value = self.certification_id
        # The plot shows the same selection (after a redraw, or a choice in the dropdown).
        source = self.figure.select_one({"name": "bars"}).data_source
        want = [source.data["certification_id"].index(bar.certification_id)] if bar is not None else []
        if list(source.selected.indices) != want:
            source.selected.indices = want
        if bar is None:
            self.can_review = False
            self._state.value = "<i>tap a bar, or choose a range above</i>"
            self._history.value = ""
            self._begin.value = self._end.value = ""
        else:
            self.can_review = self.archive.can_review(bar.dataset_id)
            when = " - ".join("open" if v is None else f"{mjd_to_datetime(v):%Y-%m-%d %H:%M}"
                              for v in (bar.begin_mjd, bar.end_mjd))
            self._state.value = (f"<b>#{bar.dataset_id}</b> {escape(bar.category)} in <b>{escape(bar.collection)}</b>"
                                 f": {escape(bar.range_text)} ({when} UTC)"
                                 + (f", <b style='color:#c62828'>{escape(STATE_STYLE[bar.state][2])}</b>"
                                    if bar.state != "usable" else "")
                                 + (f" ({escape(bar.note)})" if bar.note else "")
                                 + (f"<br><i>{escape(bar.comment)}</i> ({escape(bar.certified_by)})"
                                    if bar.comment else ""))
            if not self.can_review:
                self._state.value += (f"<br><span style='color:#777'>{escape(self.archive.user_name)} may not "
                                      "change this range (the calibration's owner, its project's reviewers and "
                                      "managers, and administrators may)</span>")
            self._begin.value, self._end.value = _fmt(bar.begin_mjd), _fmt(bar.end_mjd)
            self._history.value = self._history_html(bar.dataset_id)
        for w in (self._begin, self._end, self._comment, self._apply):
            w.disabled = not self.can_review

    def _history_html(self, dataset_id: int) -> str:
        from ..archive.calibrations import certification_history

        rows = certification_history(self.archive, dataset_id)[::-1][:100]
        body = "".join(
            f"<tr><td>{r['at']:%Y-%m-%d %H:%M}</td><td>{escape(r['user'] or '')}</td>"
            f"<td>{escape(r['collection'])}</td><td>{escape(r['action'])}</td>"
            f"<td>{_range(r['before']) if r['action'] != 'certify' else ''} &rarr; "
            f"{_range(r['after']) if r['action'] != 'decertify' else 'withdrawn'}</td>"
            f"<td>{escape(r['comment'] or '')}</td></tr>" for r in rows)
        return ("<div class='mw-audit'><table><tr><th>when (UT)</th><th>who</th><th>collection</th><th>action</th>"
                f"<th>range</th><th>why</th></tr>{body}</table></div>")
