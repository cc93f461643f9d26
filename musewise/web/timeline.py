"""The calibration timeline in the web view, a calibration's certifications, and the reviewers' form.

* ``/calibrations``: for a category, IFU and night chosen in a form, the certified
  ranges of the calibrations the user may see (:func:`musewise.calibration_timeline.build_timeline`)
  drawn as SVG (:func:`timeline_svg`), each bar linking its dataset's page;
* the ``Certifications`` UI module on a dataset's page: its certified ranges, their
  audit trail and, for those who review it, a form per range;
* ``POST datasets/<id>/certify``: that form, checked against the hub login's XSRF
  token and recorded through ``Archive.certify`` (whose refusal is the answer: 403 with
  its message, 400 for a bad range);
* ``GET api/certifications``: the certified ranges of a category as JSON.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from html import escape
from urllib.parse import urlencode

from tornado import web

from ..calibration_timeline import (
    DEFAULT_SPAN_DAYS,
    STATE_STYLE,
    Timeline,
    build_timeline,
    mjd_to_datetime,
    night_mjd,
    parse_mjd,
)
from ..exceptions import QueryError
from ..vocabulary import CALIBRATION_CATEGORIES, N_IFU, STATIC_CATEGORIES
from .base import ArchiveHandler, jsonable, whole_number

__all__ = ["CalibrationsHandler", "CertificationsAPI", "CertificationsModule", "CertifyHandler",
           "split_path", "timeline_svg"]

#: Categories offered in the timeline's form.
TIMELINE_CATEGORIES = sorted(CALIBRATION_CATEGORIES) + sorted(STATIC_CATEGORIES)
#: Longest window the page draws (days).
MAX_SPAN_DAYS = 400.0
#: Tick spacings the time axis chooses from (days).
_STEPS = (1, 2, 5, 7, 10, 14, 30, 60, 91, 182, 365, 730)


def split_path(text: str) -> list[str]:
    """A search path typed as ``a, b, c`` (commas or spaces) as a list of collection names."""
    return [p for p in (x.strip() for x in str(text or "").replace(",", " ").split()) if p]


def _fmt(v) -> str:
    return "open" if v is None else f"{v:.3f}"


def _date(v) -> str:
    return "open" if v is None else f"{mjd_to_datetime(v):%Y-%m-%d %H:%M}"


# ----------------------------------------------------------------- SVG
def timeline_svg(tl: Timeline, url, *, width: int = 1100, lane: int = 22, label_width: int = 170) -> str:
    """An SVG drawing of a :class:`Timeline`: a bar per certified range, linked to its dataset's page.

    Bars are filled with their collection's colour; invalid ones are outlined red and
    cross-hatched, affected ones outlined orange and hatched, the one chosen at the
    marker outlined thick black; a triangle marks an open end (drawn to the edge); the
    marker is a dashed red line. Each bar is ``<a id="bar-<certification id>">`` with a
    ``<title>`` tooltip.

    Parameters
    ----------
    tl : Timeline
    url : callable
        Service-relative path -> absolute URL path.
    width, lane, label_width : int
        Pixels: the drawing's width, a lane's height, the row labels' column.
    """
    top, right, bottom = 34, 16, 8
    n = max(1.0, tl.height)
    height = int(top + n * lane + bottom)
    span = tl.mjd_to - tl.mjd_from
    plot_w = width - label_width - right

    def x(m):
        return label_width + (m - tl.mjd_from) / span * plot_w

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="certified ranges of calibrations">',
           "<defs>"]
    for state, (colour, hatch, _) in STATE_STYLE.items():
        if not hatch:
            continue
        path = {"x": "M0,0 L8,8 M8,0 L0,8", "/": "M0,8 L8,0", "\\": "M0,0 L8,8"}[hatch]
        out.append(f'<pattern id="hatch-{state}" width="8" height="8" patternUnits="userSpaceOnUse">'
                   f'<path d="{path}" stroke="{colour}" stroke-width="1.6"/></pattern>')
    out.append("</defs>")
    # Rows: alternate shading, labels, lane separators.
    for i, r in enumerate(tl.rows):
        y0 = top + r.y0 * lane
        if i % 2:
            out.append(f'<rect x="0" y="{y0:.1f}" width="{width}" height="{r.height * lane:.1f}" fill="#f3f6f9"/>')
        out.append(f'<text x="{label_width - 8}" y="{y0 + r.height * lane / 2 + 4:.1f}" text-anchor="end" '
                   f'font-size="12" class="row-label">{escape(r.label)}</text>')
        out.append(f'<line x1="0" x2="{width}" y1="{y0:.1f}" y2="{y0:.1f}" stroke="#c9d5e1"/>')
    # Time axis: ticks at whole multiples of a step, labelled with MJD and date.
    step = next((s for s in _STEPS if span / s <= 9), _STEPS[-1])
    first = int(tl.mjd_from // step + 1) * step
    t = first
    while t < tl.mjd_to:
        xt = x(t)
        out.append(f'<line x1="{xt:.1f}" x2="{xt:.1f}" y1="{top - 4}" y2="{height - bottom}" stroke="#e1e7ed"/>')
        out.append(f'<text x="{xt:.1f}" y="13" text-anchor="middle" font-size="11" fill="#55606b">{t:g}</text>')
        out.append(f'<text x="{xt:.1f}" y="26" text-anchor="middle" font-size="10" fill="#6b7680">'
                   f'{mjd_to_datetime(t):%Y-%m-%d}</text>')
        t += step
    out.append('<text x="4" y="13" font-size="11" fill="#55606b">MJD</text>'
               '<text x="4" y="26" font-size="10" fill="#6b7680">date (UTC)</text>')
    # Bars.
    h = lane * 0.7
    for b in tl.bars:
        colour, hatch, words = STATE_STYLE[b.state]
        bx, bw, by = x(b.x0), max(2.0, x(b.x1) - x(b.x0)), top + b.y * lane - h / 2
        stroke, sw = ("#000000", 3) if b.chosen else (colour, 2 if b.state != "usable" else 1)
        cls = f"bar state-{b.state}" + (" chosen" if b.chosen else "")
        tip = escape(b.tooltip() + f" - {_date(b.begin_mjd)} to {_date(b.end_mjd)} UTC")
        out.append(f'<a id="bar-{b.certification_id}" class="{cls}" href="{escape(url(f"datasets/{b.dataset_id}"))}"'
                   f' data-dataset="{b.dataset_id}" data-collection="{escape(b.collection)}"'
                   f' data-begin="{_fmt(b.begin_mjd)}" data-end="{_fmt(b.end_mjd)}"><title>{tip}</title>')
        out.append(f'<rect x="{bx:.1f}" y="{by:.1f}" width="{bw:.1f}" height="{h:.1f}" rx="2" fill="{b.colour}" '
                   f'fill-opacity="0.85" stroke="{stroke}" stroke-width="{sw}"/>')
        if hatch:
            out.append(f'<rect x="{bx:.1f}" y="{by:.1f}" width="{bw:.1f}" height="{h:.1f}" '
                       f'fill="url(#hatch-{b.state})"/>')
        if bw > 60:
            label = f"#{b.dataset_id}" + ("" if b.state == "usable" else f" {words.split()[-1]}")
            # A dark halo keeps the label readable on any fill and over the hatching.
            out.append(f'<text x="{bx + 4:.1f}" y="{by + h / 2 + 4:.1f}" font-size="11" fill="#fff" '
                       f'stroke="#1d232a" stroke-width="2.5" paint-order="stroke" font-weight="600" '
                       f'pointer-events="none">{escape(label)}</text>')
        ym = top + b.y * lane
        if b.open_begin:
            out.append(f'<polygon points="{bx:.1f},{ym - 6:.1f} {bx - 7:.1f},{ym:.1f} {bx:.1f},{ym + 6:.1f}" '
                       f'fill="#333"/>')
        if b.open_end:
            xe = bx + bw
            out.append(f'<polygon points="{xe:.1f},{ym - 6:.1f} {xe + 7:.1f},{ym:.1f} {xe:.1f},{ym + 6:.1f}" '
                       f'fill="#333"/>')
        out.append("</a>")
    if tl.marker is not None and tl.mjd_from <= tl.marker <= tl.mjd_to:
        xm = x(tl.marker)
        what = f"night {tl.night}" if tl.night else f"MJD {tl.marker:.3f}"
        out.append(f'<line id="marker" x1="{xm:.1f}" x2="{xm:.1f}" y1="{top - 4}" y2="{height - bottom}" '
                   f'stroke="#c62828" stroke-width="2" stroke-dasharray="6 4"><title>{escape(what)}</title></line>')
    if not tl.bars:
        out.append(f'<text x="{label_width + 10}" y="{top + 15}" font-size="13" fill="#6b7680">'
                   "no certified calibration in this window</text>")
    out.append("</svg>")
    return "".join(out)


# ----------------------------------------------------------------- handlers
def _float_arg(handler, name):
    raw = handler.get_argument(name, "").strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise QueryError(f"{name} must be a number (days), not {raw!r}") from None


def _timeline_args(handler) -> dict:
    # The timeline's form (and the API's query) as build_timeline arguments; bad values are a 400.
    category = handler.get_argument("category", "").strip() or None
    night = handler.get_argument("night", "").strip() or None
    if night:
        try:
            night_mjd(night)
        except ValueError as exc:
            raise QueryError(str(exc)) from None
    span = _float_arg(handler, "span")
    if span is not None and not 0 < span <= MAX_SPAN_DAYS / 2:
        raise QueryError(f"span is the half-width of the window in days, 0 to {MAX_SPAN_DAYS / 2:g}")
    ifu = whole_number(handler, "ifu", 1, N_IFU)
    return {"category": category, "ifu": ifu, "night": night, "mjd": _float_arg(handler, "mjd"),
            "span_days": span or DEFAULT_SPAN_DAYS, "collections": split_path(handler.get_argument("collections", ""))}


def latest_calibration_night(arch, category: str | None = None) -> str:
    """The newest observing night of a calibration (of ``category``) the user may see ("" if none)."""
    for rec in arch.query(kind=["calibration"], category=category, order_by="night", descending=True, limit=20):
        if rec.night:  # NULL nights sort first in descending order on PostgreSQL
            return rec.night
    return ""


class CalibrationsHandler(ArchiveHandler):
    """``/calibrations``: the timeline of certified calibrations for the form's category, IFU and night."""

    @web.authenticated
    def get(self):
        args = _timeline_args(self)
        form = {k: self.get_argument(k, "") for k in ("category", "ifu", "night", "mjd", "span", "collections")}
        if not args["night"] and args["mjd"] is None:
            # Without a night, the latest night a calibration was made for: a bounded, current window.
            args["night"] = form["night"] = latest_calibration_night(self.arch, args["category"]) or None
        tl = build_timeline(self.arch, **{**args, "collections": args["collections"] or None})
        path = self.arch.search_path()
        use_path = self.url("calibrations") + "?" + urlencode(
            {**{k: v for k, v in form.items() if v and k != "collections"}, "collections": ", ".join(path)})
        self.render("calibrations.html", tl=tl, svg=timeline_svg(tl, self.url), form=form,
                    categories=TIMELINE_CATEGORIES, search_path=path, use_path=use_path,
                    state_style=STATE_STYLE, mjd_to_datetime=mjd_to_datetime, fmt=_fmt, date=_date)


class CertifyHandler(ArchiveHandler):
    """``POST datasets/<id>/certify``: a reviewer changes a certified range (form fields
    ``collection``, ``begin``, ``end``, ``comment``, ``_xsrf``)."""

    @web.authenticated
    def post(self, dataset_id):
        # The hub login's XSRF check (a no-op for API-token requests, which a page cannot forge).
        self.check_xsrf_cookie()
        collection = self.get_argument("collection", "").strip()
        if not collection:
            raise QueryError("say which calibration collection (collection=...)")
        rec = self.arch.certify(int(dataset_id), collection, parse_mjd(self.get_argument("begin", "")),
                                parse_mjd(self.get_argument("end", "")), self.get_argument("comment", "").strip())
        self.redirect(self.url(f"datasets/{rec.dataset_id}") + "?" + urlencode({"certified": rec.collection})
                      + "#certifications")


class CertificationsAPI(ArchiveHandler):
    """``GET api/certifications?category=MASTER_BIAS[&ifu=&collection=&mjd_from=&mjd_to=]``."""

    is_api = True

    @web.authenticated
    def get(self):
        ifu = whole_number(self, "ifu", 1, N_IFU)
        certs = self.arch.certifications(category=self.get_argument("category", "").strip() or None,
                                         collection=self.get_argument("collection", "").strip() or None, ifu=ifu,
                                         mjd_from=_float_arg(self, "mjd_from"), mjd_to=_float_arg(self, "mjd_to"))
        records = self.arch.get_many({c.dataset_id for c in certs})
        out = []
        for c in certs:
            r = records.get(c.dataset_id)
            out.append({**jsonable(asdict(c)), "dataset_url": self.url(f"datasets/{c.dataset_id}"),
                        "is_valid": r.is_valid if r else None, "flag": r.flag if r else None,
                        "affected_by": r.affected_by if r else None,
                        "usable": (r.usable_for(ifu) if r else None)})
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"certifications": out}))


class CertificationsModule(web.UIModule):
    """``{% module Certifications(rec) %}``: a calibration's certified ranges, their history and the reviewers' form."""

    def render(self, rec):
        from ..archive.calibrations import certification_history

        handler = self.handler
        arch = handler.arch
        certs = arch.certifications(dataset_id=rec.id)
        history = certification_history(arch, rec.id)
        if not certs and not history and rec.kind not in ("calibration", "static"):
            return ""
        can_review = arch.can_review(rec.id)
        night = rec.night or (f"{mjd_to_datetime(rec.mjd_obs - 0.5):%Y-%m-%d}" if rec.mjd_obs is not None else "")
        link = handler.url("calibrations") + "?" + urlencode(
            {k: v for k, v in (("category", rec.category), ("ifu", rec.ifu or ""), ("night", night)) if v})
        return self.render_string("certifications.html", rec=rec, certs=certs, history=history,
                                  can_review=can_review, timeline_url=link, fmt=_fmt, date=_date,
                                  just=handler.get_argument("certified", ""))
