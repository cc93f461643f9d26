"""QC trends in the web view: one QC parameter per IFU over the nights, with its limits.

``GET trends[?parameter=&category=&date_from=&date_to=]`` draws
:func:`musewise.qc.trends.qc_trend` with the QC widget's own figure
(:func:`musewise.widgets.qc_trends.trend_figure`: a colour per IFU, the warning band
orange, the bad region red, outliers outlined), lists the nights and the outliers, and a
click on a point opens that product's review grid at its IFU
(:class:`musewise.web.review.ReviewHandler`), where a reviewer flags it. BokehJS comes
from the service itself (``bokehjs/``), not a CDN.
"""

from __future__ import annotations

import re

from tornado import web

from ..exceptions import QueryError
from .base import ArchiveHandler

__all__ = ["TrendsHandler"]

_NIGHT = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _night_arg(handler, name: str) -> str | None:
    raw = handler.get_argument(name, "").strip()
    if raw and not _NIGHT.match(raw):
        raise QueryError(f"{name} must be a night YYYY-MM-DD, not {raw[:20]!r}")
    return raw or None


class TrendsHandler(ArchiveHandler):
    """``trends``: one QC parameter per IFU over the nights, with its limits; a click opens the product."""

    @web.authenticated
    def get(self):
        from bokeh.embed import components
        from bokeh.models import OpenURL, TapTool

        from ..qc.trends import qc_trend, trend_parameters
        from ..widgets.qc_trends import trend_figure

        arch = self.arch
        category = self.get_argument("category", "").strip() or None
        date_from, date_to = _night_arg(self, "date_from"), _night_arg(self, "date_to")
        names = trend_parameters(arch, category=category)
        parameter = self.get_argument("parameter", "").strip() or (names[0] if names else "")
        script = div = ""
        trend = None
        if parameter:
            trend = qc_trend(arch, parameter, category=category, date_from=date_from, date_to=date_to)
            fig = trend_figure(trend, width=1100, height=420)
            # A click opens the point's product at its IFU, where a reviewer flags it.
            fig.select_one(TapTool).callback = OpenURL(url=self.url("datasets/@dataset_id/review?ifu=@ifu")
                                                       + "#editor", same_tab=True)
            script, div = components(fig)
        per_night = {}
        for p in trend.points if trend else ():
            per_night.setdefault(p.night, []).append(p)
        self.render("trends.html", names=names, parameter=parameter, trend=trend, script=script, div=div,
                    per_night=per_night, form={"category": category or "", "date_from": date_from or "",
                                               "date_to": date_to or ""})
