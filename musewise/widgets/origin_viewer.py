"""SpaxelOriginViewer: click a spaxel, see the IFU, slices and calibrations that made it.

The computation is :func:`musewise.origin.spaxel_origin`; this widget shows the
cube's white-light image, and for the spaxel clicked a table of (exposure, IFU,
CCD slice, sky slice, pixels, fraction) and, per contributing IFU, the calibrations
its runs read with their validity and certified ranges. Each dataset and run
notebook is a link to the archive web view when ``web_url`` is given; the
"run notebook" chooser shows any of those runs' executed notebooks in place.
"""

from __future__ import annotations

from html import escape

import ipywidgets as widgets
from traitlets import Float, Int, Unicode

from ..exceptions import MusewiseError
from ..origin import SpaxelOrigin, spaxel_origin
from ..products import MuseCube
from .cubeio import resolve_source
from .image_viewer import ImageViewer
from .provenance_view import notebook_srcdoc, render_notebook

__all__ = ["ORIGIN_CSS", "SpaxelOriginViewer", "calibrations_html", "contributions_html", "origin_html"]

#: Styles of the origin tables (scoped by the ``mw-origin`` class).
ORIGIN_CSS = """<style>
.mw-origin {font-size: 13px; line-height: 1.4}
.mw-origin table {border-collapse: collapse; margin: .3em 0 .8em 0}
.mw-origin th, .mw-origin td {border: 1px solid #ddd; padding: 2px 6px; text-align: left}
.mw-origin th {background: #f0f3f8}
.mw-origin td.num {text-align: right; font-variant-numeric: tabular-nums}
.mw-origin .bad {background: #fde0dc; color: #b71c1c; font-weight: bold}
.mw-origin .ok {color: #1b5e20}
.mw-origin .muted {color: #777}
.mw-origin .bar {display: inline-block; height: 8px; background: #0072B2; vertical-align: middle}
</style>"""


def _link(text: str, url: str | None) -> str:
    return f'<a href="{escape(url)}" target="_blank">{text}</a>' if url else text


def _links(web_url: str | None):
    base = web_url.rstrip("/") if web_url else None

    def ds(i):
        return _link(f"#{i}", f"{base}/datasets/{i}" if base else None)

    def nb(i):
        if i is None:
            return '<span class="muted">no notebook</span>'
        return _link(f"notebook #{i}", f"{base}/datasets/{i}/notebook.html" if base else None)

    return ds, nb


def contributions_html(origin: SpaxelOrigin, web_url: str | None = None) -> str:
    """The spaxel's position and its (exposure, IFU, slice) table, as HTML (with its styles)."""
    ds, _ = _links(web_url)
    lam = (f" at &lambda; {origin.wave_range[0]:.1f}-{origin.wave_range[1]:.1f} &Aring;"
           if origin.wave_range else "")
    head = (f"<p><b>spaxel ({origin.x}, {origin.y})</b> RA {origin.ra:.6f}&deg; Dec {origin.dec:.6f}&deg;{lam}: "
            f"{origin.npix} pixels from {len(origin.pixtable_ids)} exposure(s); IFU "
            f"{', '.join(f'{i:02d}' for i in origin.ifus) or '-'}</p>")
    rows = []
    for c in origin.contributions:
        bar = f'<span class="bar" style="width:{max(1, round(60 * c.fraction))}px"></span>'
        rows.append(
            f"<tr><td>{ds(c.pixtable_id)} <span class='muted'>{escape(str(c.exposure or ''))}</span></td>"
            f"<td class='num'>{c.ifu:02d}</td><td class='num'>{c.ccd_slice}</td>"
            f"<td class='num'>{c.sky_slice or '?'}</td><td class='num'>{c.npix}</td>"
            f"<td>{bar} {100 * c.fraction:.1f} %</td><td class='num'>{c.ccd_rows[0]}-{c.ccd_rows[1]}</td></tr>")
    table = ("<table class='mw-origin-slices'><tr><th>exposure (pixel table)</th><th>IFU</th><th>CCD slice</th>"
             "<th>sky slice</th><th>pixels</th><th>fraction</th><th>CCD rows</th></tr>"
             + "".join(rows) + "</table>") if rows else "<p class='muted'>no pixel in this spaxel</p>"
    notes = "".join(f"<p class='muted'>{escape(n)}</p>" for n in origin.notes)
    return f"{ORIGIN_CSS}<div class='mw-origin'>{head}{table}{notes}</div>"


def calibrations_html(origin: SpaxelOrigin, web_url: str | None = None) -> str:
    """The calibrations behind each contributing IFU with validity and certified ranges, as HTML."""
    ds, nb = _links(web_url)
    rows = []
    for c in origin.calibrations:
        cls = "ok" if c.usable else "bad"
        cert = "<br>".join(f"{escape(col)} {escape(rng)}" + ("" if ok else " <b>(does not cover the exposure)</b>")
                           for col, rng, ok in c.certified) or '<span class="muted">not certified</span>'
        made = (f"run {c.producer_run_id}: {nb(c.producer_notebook_id)}" if c.producer_run_id
                else '<span class="muted">ingested</span>')
        rows.append(
            f"<tr><td class='num'>{c.ifu:02d}</td><td>{escape(c.tag)}</td>"
            f"<td>{ds(c.dataset_id)} <span class='muted'>{escape(c.filename)}</span></td>"
            f"<td class='{cls}'>{escape(c.validity_text)}</td><td>{escape(c.flag)}</td><td>{cert}</td>"
            f"<td>{escape(c.step)} run {c.run_id}: {nb(c.run_notebook_id)}</td><td>{made}</td></tr>")
    if not rows:
        return ""
    return (f"{ORIGIN_CSS}<div class='mw-origin'><table class='mw-origin-calibrations'><tr><th>IFU</th><th>tag</th>"
            "<th>dataset</th><th>validity</th><th>flag</th><th>certified</th><th>read by</th><th>made by</th></tr>"
            + "".join(rows) + "</table></div>")


def origin_html(origin: SpaxelOrigin, web_url: str | None = None) -> str:
    """The origin of a spaxel as HTML: the slices table, then the calibrations per IFU.

    Parameters
    ----------
    origin : SpaxelOrigin
    web_url : str, optional
        Base URL of the archive web view; datasets and notebooks then link to it.
    """
    return contributions_html(origin, web_url) + calibrations_html(origin, web_url)


class SpaxelOriginViewer(widgets.VBox):
    """Click a spaxel of an archived cube to see which IFU and slices and which calibrations made it.

    Parameters
    ----------
    cube : int or DatasetRecord
        An archived DATACUBE_FINAL whose run kept its pixel tables (PIXTABLE_REDUCED).
    archive : musewise.archive.Archive, optional
        Default ``Archive.open()``.
    web_url : str, optional
        Base URL of the archive web view, for links to datasets and notebooks.
    cache_dir : path-like, optional
        White-light cache folder.
    x, y : int, optional
        Spaxel shown first (default the centre).
    wave_range : (float, float), optional
        Trace only the pixels of this wavelength range (Angstrom), e.g. around a line
        next to a sky line; the two boxes under the table change it (0 - 0: all).
    """

    x = Int(0, help="Column of the selected spaxel (0-based).")
    y = Int(0, help="Row of the selected spaxel (0-based).")
    status = Unicode("", help="Last message shown to the user.")
    wave_min = Float(0.0, help="Lower end of the wavelength range traced (Angstrom); 0 with wave_max 0: all.")
    wave_max = Float(0.0, help="Upper end of the wavelength range traced (Angstrom); 0: all wavelengths.")

    def __init__(self, cube, *, archive=None, web_url: str | None = None, cache_dir=None,
                 x: int | None = None, y: int | None = None, wave_range=None, **kwargs):
        super().__init__(**kwargs)
        if wave_range is not None:
            self.wave_min, self.wave_max = sorted(float(v) for v in wave_range)
        if archive is None:
            from ..archive import Archive

            archive = Archive.open()
        self.archive = archive
        self.cube_id = int(getattr(cube, "id", cube))
        self.web_url = web_url
        self.cube = MuseCube.open(resolve_source(self.cube_id, archive, in_place=True), cache_dir=cache_dir)
        self._origin: SpaxelOrigin | None = None
        self._notebook_cache: dict[int, str] = {}
        self.image_viewer = ImageViewer(width=420, height=420)
        self.image_viewer.show(self.cube.white_light(), title=f"cube #{self.cube_id}: white light")
        self.image_viewer.on_click(lambda px, py: self.select_spaxel(px, py))
        self._table = widgets.HTML("")
        self._calibrations = widgets.HTML("")
        self._status = widgets.HTML("")
        widgets.dlink((self, "status"), (self._status, "value"),
                      lambda s: f"<span class='musewise-origin-status' style='font-size:smaller'>{escape(s)}</span>")
        self._run_choice = widgets.Dropdown(description="run notebook", options=[], value=None,
                                            layout=widgets.Layout(width="420px"))
        self._run_choice.observe(lambda c: c.new is None or self.show_notebook(c.new), "value")
        self._notebook = widgets.HTML("")
        self._wave = [widgets.BoundedFloatText(value=v, min=0.0, max=1e5, step=1.0, description=d,
                                               layout=widgets.Layout(width="190px"))
                      for v, d in ((self.wave_min, "λ from (Å)"), (self.wave_max, "to"))]
        widgets.link((self._wave[0], "value"), (self, "wave_min"))
        widgets.link((self._wave[1], "value"), (self, "wave_max"))
        self._trace = widgets.Button(description="trace", icon="search", layout=widgets.Layout(width="90px"))
        self._trace.on_click(lambda _b: self.select_spaxel(self.x, self.y))
        self.children = [
            widgets.HTML(f"<b>Where a spaxel came from</b> &nbsp; {escape(self.cube.name)}"),
            widgets.HBox([self.image_viewer, widgets.VBox([self._table, widgets.HBox(self._wave + [self._trace]),
                                                           self._run_choice, self._status],
                                                          layout=widgets.Layout(padding="0 0 0 12px"))]),
            self._calibrations,
            self._notebook,
        ]
        _, ny, nx = self.cube.shape
        self.select_spaxel(nx // 2 if x is None else x, ny // 2 if y is None else y)

    @property
    def wave_range(self) -> tuple[float, float] | None:
        """The wavelength range traced (Angstrom), None for all wavelengths."""
        if self.wave_max > 0 and self.wave_max > self.wave_min:
            return (self.wave_min, self.wave_max)
        return None

    @property
    def origin(self) -> SpaxelOrigin | None:
        """What the table shows."""
        return self._origin

    def select_spaxel(self, x: int, y: int) -> SpaxelOrigin | None:
        """Trace spaxel (x, y) (0-based) to its IFUs, slices and calibrations and show it.

        Errors (outside the cube, no pixel table archived) are shown in ``status`` and
        leave the previous table; the result is returned (None on error).
        """
        try:
            origin = spaxel_origin(self.archive, self.cube_id, x, y, wave_range=self.wave_range)
        except MusewiseError as exc:
            self.status = str(exc)
            return None
        self._origin = origin
        self.x, self.y = origin.x, origin.y
        self.image_viewer.mark(origin.x, origin.y)
        self._table.value = contributions_html(origin, self.web_url)
        self._calibrations.value = calibrations_html(origin, self.web_url)
        runs = {}
        for c in origin.calibrations:
            if c.run_notebook_id:
                runs[c.run_notebook_id] = f"{c.step} run {c.run_id} (IFU {c.ifu:02d})"
            if c.producer_notebook_id:
                runs[c.producer_notebook_id] = f"run that made {c.tag} #{c.dataset_id}"
        self._run_choice.options = [(label, nb) for nb, label in runs.items()]
        self._run_choice.value = None
        self.status = ""
        return origin

    def show_notebook(self, notebook_id: int) -> str:
        """Show an executed run notebook (what choosing it in the chooser does); returns its HTML."""
        html = self._notebook_cache.get(notebook_id)
        if html is None:
            html = self._notebook_cache[notebook_id] = render_notebook(self.archive.path(int(notebook_id)))
        self._notebook.value = f"<b>notebook #{int(notebook_id)}</b>" + notebook_srcdoc(html)
        return html

    def close(self):
        self.image_viewer.plot.close()
        super().close()
