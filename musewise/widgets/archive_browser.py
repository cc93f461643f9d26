"""ArchiveBrowser: search the archive, page through the products, open one in the right viewer.

Filters (category, night range, IFU, validity, project, object) are traits;
the list is paged on the database side (``Archive.query(limit, offset,
order_by)`` and ``Archive.count``), shown in a bokeh ``DataTable`` whose row
selection opens the product:

* ``DATACUBE_*`` (a 3-D ``DATA``) -> :class:`CubeViewer`;
* 2-D images, masters, raw frames -> :class:`ImageViewer` of one IFU (``CHANnn``);
* 1-D spectra -> :class:`SpectrumViewer`;
* tables -> a summary of their extensions and columns;
* notebooks -> the executed notebook.

Beside it: the provenance graph of the product drawn by Graphviz (each dataset
and run once; recipe, parameters, inputs and why each was chosen, invalid inputs
highlighted), a button showing the executed notebook of the run that made it,
and a chooser showing the notebook of any run of the graph. Everything is a
public method (``search``, ``open``, ``show_provenance``, ``show_notebook``,
``show_run_notebook``, ``next_page``) and the browser sees exactly what its
archive's user sees.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import ipywidgets as widgets
from bokeh.models import ColumnDataSource, DataTable, HTMLTemplateFormatter, TableColumn
from sqlalchemy import select
from traitlets import Bool, Enum, Int, TraitError, Unicode, validate

from ..archive.queries import ORDERABLE
from ..exceptions import NotFoundError, UnsupportedTypeError
from ..products.ifu import ifu_of_extname
from .bokehjs import bokeh_plot
from .provenance_view import notebook_srcdoc, provenance_html, render_notebook
from .qc_panel import fits_summary_html, ifu_quicklook

__all__ = ["ArchiveBrowser", "viewer_kind", "FILTERS"]

#: Filters :meth:`ArchiveBrowser.search` accepts (trait names).
FILTERS = ("category", "date_from", "date_to", "ifu", "valid", "project", "object", "kind")
_COLUMNS = [("id", "id", 50), ("category", "category", 150), ("night", "night", 90), ("ifus", "IFU", 70),
            ("object", "object", 130), ("exptime", "exptime (s)", 75), ("validity", "valid", 90),
            ("owner", "owner", 70), ("project", "project", 90), ("privilege", "visible to", 90),
            ("filename", "file", 220)]


def viewer_kind(path) -> str:
    """Which viewer shows a file: ``cube``, ``image``, ``raw``, ``spectrum``, ``table`` or ``notebook``.

    Decided from the file's content (the ``DATA`` extension's dimensions, ``CHANnn``
    extensions, tables), so a product of an unknown category still opens.
    """
    from astropy.io import fits

    if str(path).endswith(".ipynb"):
        return "notebook"
    with fits.open(path, memmap=True) as hdul:
        names = [h.name for h in hdul]
        ndims = {h.name: int(h.header.get("NAXIS", 0)) for h in hdul if h.is_image}
    if any(ifu_of_extname(n) for n in names):  # CHANnn (raw) or CHANnn.DATA (multi-IFU)
        return "raw"
    first = ndims.get("DATA") or next((n for n in ndims.values() if n > 0), 0)
    return {3: "cube", 2: "image", 1: "spectrum"}.get(first, "table")


def _viewer_label(rec, ifu) -> str:
    """Plot title suffix: the IFU shown, if any."""
    return f"IFU {ifu:02d}" if ifu else (rec.object or "")


def _ifus_text(rec) -> str:
    if rec.ifu:
        return f"{rec.ifu:02d}"
    n = len(rec.ifus)
    return f"{n} IFUs" if n else ""


def _validity_text(rec) -> str:
    bad = [s.ifu for s in rec.ifus if not s.is_valid]
    if not bad:
        return "yes"
    return "no" if len(bad) == len(rec.ifus) else "no (IFU " + ",".join(f"{i:02d}" for i in bad[:6]) + ")"


class ArchiveBrowser(widgets.VBox):
    """Search and open archived MUSE products in JupyterLab or Voila.

    Parameters
    ----------
    archive : musewise.archive.Archive
        The archive as seen by one user (``Archive.as_user(name)``); nothing else is shown.
    page_size : int
        Rows per page.
    web_url : str, optional
        URL prefix of the archive web view (``/services/archive/`` under the hub):
        run nodes of the provenance drawing then link to their notebook's page there.
    **filters
        Initial filters (see :meth:`search`).

    Examples
    --------
    >>> browser = ArchiveBrowser(arch, category="MASTER_BIAS")   # doctest: +SKIP
    >>> rows = browser.search(date_from="2026-11-01", ifu=3)      # doctest: +SKIP
    >>> viewer = browser.open(rows[0].id)                         # doctest: +SKIP
    """

    category = Unicode("", help="Product category (ESO PRO CATG or raw frame type); '' any.")
    kind = Unicode("", help="Dataset kind (raw, calibration, science, ...); '' any.")
    date_from = Unicode("", help="First night, YYYY-MM-DD; '' open.")
    date_to = Unicode("", help="Last night, YYYY-MM-DD; '' open.")
    ifu = Int(0, help="Only datasets holding this IFU (1-24); 0 any.")
    valid = Enum(("any", "valid", "invalid"), "any", help="Validity (of the chosen IFU, or of all IFUs).")
    project = Unicode("", help="Owning project; '' any.")
    object = Unicode("", help="Text the OBJECT name contains (case-insensitive); '' any.")
    order_by = Enum(ORDERABLE, "date_obs", help="Sort column.")
    descending = Bool(True, help="Newest (largest) first.")
    page = Int(0, help="Page shown (0-based).")
    page_size = Int(20, help="Rows per page.")
    total = Int(0, help="Rows matching the filters.")
    selected_id = Int(None, allow_none=True, help="Dataset opened.")
    status = Unicode("", help="Last message shown to the user.")

    def __init__(self, archive, *, page_size: int = 20, web_url: str | None = None, **filters):
        super().__init__()
        self.archive = archive
        self.page_size = page_size
        self.web_url = web_url
        self.rows: list = []          #: DatasetRecords of the page shown
        self.viewer = None            #: the widget showing the opened product
        self.provenance = None        #: ProvenanceGraph of the opened product
        self._filling = False
        self._notebook_cache: dict[str, str] = {}

        text = dict(layout=widgets.Layout(width="210px"))
        self._controls = {
            "category": widgets.Combobox(description="category", options=_known_categories(),
                                         ensure_option=False, **text),
            "date_from": widgets.Text(description="night ≥", placeholder="YYYY-MM-DD", **text),
            "date_to": widgets.Text(description="night ≤", placeholder="YYYY-MM-DD", **text),
            "ifu": widgets.BoundedIntText(description="IFU (0 any)", min=0, max=24, **text),
            "valid": widgets.Dropdown(description="valid", options=["any", "valid", "invalid"], **text),
            "project": widgets.Text(description="project", **text),
            "object": widgets.Text(description="object", placeholder="contains", **text),
            "order_by": widgets.Dropdown(description="sort by", options=list(ORDERABLE), **text),
        }
        for name, w in self._controls.items():
            widgets.link((self, name), (w, "value"))  # the trait is the state: it sets the control
        self._search = widgets.Button(description="Search", icon="search", button_style="primary")
        self._search.on_click(lambda _b: self.search())
        self._prev = widgets.Button(description="◀ previous", layout=widgets.Layout(width="110px"))
        self._next = widgets.Button(description="next ▶", layout=widgets.Layout(width="110px"))
        self._prev.on_click(lambda _b: self.previous_page())
        self._next.on_click(lambda _b: self.next_page())
        self._pager = widgets.HTML("")

        self._source = ColumnDataSource({k: [] for k, _, _ in _COLUMNS})
        valid_fmt = HTMLTemplateFormatter(template='<span style="color:<%= value == "yes" ? "#2e7d32" : '
                                                   '"#c62828" %>"><%= value %></span>')
        cols = [TableColumn(field=k, title=t, width=w, sortable=False,
                            **({"formatter": valid_fmt} if k == "validity" else {})) for k, t, w in _COLUMNS]
        self.table = DataTable(source=self._source, columns=cols, width=1180, height=25 * (min(self.page_size, 30) + 1) + 12,
                               index_position=None, selectable=True, sortable=False,
                               autosize_mode="none")
        self._source.selected.on_change("indices", self._on_row)
        self._table = bokeh_plot(self.table)

        self._title = widgets.HTML("")
        self._viewer_box = widgets.Box(layout=widgets.Layout(min_height="40px"))
        self._ifu_choice = widgets.Dropdown(description="IFU", layout=widgets.Layout(width="150px",
                                                                                    display="none"))
        self._ifu_choice.observe(lambda c: self._filling or self._show_ifu(c.new), "value")
        self._provenance = widgets.HTML("")
        self._notebook_button = widgets.Button(description="Show run notebook", icon="book", disabled=True)
        self._notebook_button.on_click(lambda _b: self.show_notebook())
        self._run_choice = widgets.Dropdown(description="run notebook", options=[], value=None,
                                            style={"description_width": "initial"},
                                            layout=widgets.Layout(width="400px"))
        self._run_choice.observe(lambda c: self._filling or c.new is None or self.show_run_notebook(c.new), "value")
        self._notebook = widgets.HTML("")
        self._status = widgets.HTML("")
        widgets.dlink((self, "status"), (self._status, "value"),
                      lambda s: f"<span style='font-size:smaller'>{escape(s)}</span>")
        c = list(self._controls.values())
        self.children = [
            widgets.HBox(c[:4]), widgets.HBox(c[4:] + [self._search]),
            self._table, widgets.HBox([self._prev, self._next, self._pager, self._status]),
            self._title, widgets.HBox([self._ifu_choice, self._notebook_button, self._run_choice]),
            widgets.HBox([self._viewer_box, widgets.VBox([widgets.HTML("<b>Provenance</b>"), self._provenance],
                                                         layout=widgets.Layout(width="420px"))]),
            self._notebook,
        ]
        self.search(**filters)

    # ----------------------------------------------------------- public API
    def search(self, **filters) -> list:
        """Set filters (unnamed ones keep their value), go to the first page, list it.

        Parameters
        ----------
        category, kind, project : str
            Exact matches ('' or None: any).
        date_from, date_to : str
            Night range ``YYYY-MM-DD``, inclusive.
        ifu : int
            Datasets holding this IFU (0 or None: any); with ``valid``, that IFU's validity.
        valid : {"any", "valid", "invalid"} or bool or None
        object : str
            Text the OBJECT name contains, case-insensitive.
        order_by : str
            One of ``musewise.archive.queries.ORDERABLE``.
        descending : bool

        Returns
        -------
        list of DatasetRecord
            The rows of the first page.
        """
        unknown = set(filters) - set(FILTERS) - {"order_by", "descending", "page_size"}
        if unknown:
            raise UnsupportedTypeError(f"unknown filter(s) {sorted(unknown)}; "
                                       f"use {FILTERS + ('order_by', 'descending')}")
        if isinstance(filters.get("valid"), bool):
            filters["valid"] = "valid" if filters["valid"] else "invalid"
        with self.hold_trait_notifications():
            for name, value in filters.items():
                default = self.trait_defaults(name)
                setattr(self, name, default if value is None else value)
        self.page = 0
        return self._load_page()

    def next_page(self) -> list:
        """Show the next page (stays on the last one); returns its rows."""
        if (self.page + 1) * self.page_size < self.total:
            self.page += 1
        return self._load_page()

    def previous_page(self) -> list:
        """Show the previous page (stays on the first one); returns its rows."""
        self.page = max(0, self.page - 1)
        return self._load_page()

    def query_filters(self) -> dict:
        """The filters as keyword arguments of ``Archive.query`` / ``Archive.count``."""
        f = {}
        for name in ("category", "kind", "project", "date_from", "date_to"):
            if getattr(self, name).strip():
                f[name] = getattr(self, name).strip()
        if self.ifu:
            f["ifu"] = self.ifu
        if self.valid != "any":
            f["valid"] = self.valid == "valid"
        if self.object.strip():
            f["object"] = self._objects_containing(self.object.strip(), f)
        return f

    def open(self, dataset_id: int | None = None):
        """Open a product in the viewer that fits it, and show its provenance.

        Parameters
        ----------
        dataset_id : int
            The product. Without it this is ipywidgets' own ``Widget.open`` (it
            opens the widget's connection to the browser), which ipywidgets calls.

        Returns
        -------
        ipywidgets.Widget
            The viewer (CubeViewer, ImageViewer, SpectrumViewer) or an HTML summary.

        Raises
        ------
        NotFoundError
            If the dataset does not exist or the user may not see it.
        """
        if dataset_id is None:
            return super().open()
        rec = self.archive.get(dataset_id)
        path = self.archive.path(rec.id)
        kind = viewer_kind(path)
        self.selected_id, self._record = rec.id, rec
        self._title.value = (f"<h4>#{rec.id} {escape(rec.category)} {escape(rec.night or '')} "
                             f"<small>{escape(rec.filename)} ({kind})</small></h4>")
        self._notebook.value = ""
        self._filling = True
        try:
            self._ifu_choice.options = [s.ifu for s in rec.ifus] if kind == "raw" else []
            self._ifu_choice.layout.display = None if kind == "raw" else "none"
            if kind == "raw":
                self._ifu_choice.value = self.ifu if self.ifu in self._ifu_choice.options else rec.ifus[0].ifu
        finally:
            self._filling = False
        self.viewer = self._make_viewer(kind, rec, path)
        self._viewer_box.children = [self.viewer]
        self.show_provenance(rec.id)
        run = self._run_of(rec)
        self._notebook_button.disabled = run is None or run.notebook_id is None
        self.status = f"opened #{rec.id}"
        return self.viewer

    def show_provenance(self, dataset_id: int):
        """Show the provenance graph of a dataset; returns the :class:`ProvenanceGraph`.

        The runs of the graph that have an executed notebook fill the "run notebook"
        chooser; with ``web_url`` their nodes in the drawing link to the notebook page.
        """
        graph = self.archive.provenance(dataset_id)
        notes = {}
        for d in [d for d in graph.datasets.values() if d.is_valid is False][:50]:
            rec = self.archive.get(d.id)  # why it is invalid: the few flagged inputs only
            notes[d.id] = "; ".join(f"IFU {s.ifu:02d}: {s.comment}" for s in rec.ifus if not s.is_valid and s.comment)
        self.provenance = graph
        self._provenance.value = provenance_html(graph, self._run_link if self.web_url else None, notes=notes)
        self._filling = True
        try:
            self._run_choice.options = [(_run_choice_label(graph, r), r.id) for r in graph.runs.values()
                                        if r.visible and r.notebook_id]
            self._run_choice.value = None
        finally:
            self._filling = False
        return graph

    @property
    def provenance_html(self) -> str:
        """HTML of the provenance graph shown."""
        return self._provenance.value

    def _run_link(self, run) -> str | None:
        if not run.notebook_id:
            return self.web_url.rstrip("/") + f"/runs/{run.id}"
        return self.web_url.rstrip("/") + f"/datasets/{run.notebook_id}/notebook.html"

    def show_run_notebook(self, run_id: int) -> str:
        """Show the executed notebook of a run (what choosing it in the provenance's chooser does).

        Returns
        -------
        str
            The notebook rendered as HTML (nbconvert).

        Raises
        ------
        NotFoundError
            If the run is not visible to the user or has no notebook.
        """
        return self._show_run_notebook(self.archive.get_run(int(run_id)))

    def show_notebook(self, dataset_id: int | None = None) -> str:
        """Show the executed notebook of the run that made a product (default the opened one).

        Returns
        -------
        str
            The notebook rendered as HTML (nbconvert).

        Raises
        ------
        NotFoundError
            If the product was not made by a run visible to the user, or the run has no notebook.
        """
        rec = self.archive.get(self.selected_id if dataset_id is None else dataset_id)
        run = self._run_of(rec)
        if run is None or run.notebook_id is None:
            raise NotFoundError(f"dataset {rec.id} has no run notebook visible to user {self.archive.user_name!r}")
        return self._show_run_notebook(run)

    def _show_run_notebook(self, run) -> str:
        if run.notebook_id is None:
            raise NotFoundError(f"run {run.id} has no notebook")
        nb = self.archive.get(run.notebook_id)
        html = self._notebook_cache.get(nb.sha256)
        if html is None:  # stored files never change: the sha256 identifies the rendering
            html = self._notebook_cache[nb.sha256] = render_notebook(self.archive.path(nb.id))
        self._notebook.value = (f"<b>Run {run.id} ({escape(run.recipe)}) notebook #{nb.id}</b>"
                                + notebook_srcdoc(html))
        return html

    # -------------------------------------------------------------- internals
    def _run_of(self, rec):
        if rec.run_id is None:
            return None
        try:
            return self.archive.get_run(rec.run_id)
        except NotFoundError:  # the run is more private than its product
            return None

    def _objects_containing(self, text: str, filters: dict) -> list[str]:
        # Archive.query matches OBJECT exactly; find the visible names containing the
        # text, then page over them on the database side with object=[...].
        arch = self.archive
        with arch.session() as s:
            sub = arch.select_datasets(s, **filters).subquery()
            q = select(sub.c.object).distinct().where(sub.c.object.ilike(f"%{text}%"))
            return sorted(o for o in s.scalars(q) if o)

    def _load_page(self) -> list:
        f = self.query_filters()
        self.total = self.archive.count(**f)
        if self.page * self.page_size >= self.total > 0:
            self.page = (self.total - 1) // self.page_size
        self.rows = self.archive.query(order_by=self.order_by, descending=self.descending, limit=self.page_size,
                                       offset=self.page * self.page_size, **f)
        data = {k: [] for k, _, _ in _COLUMNS}
        for r in self.rows:
            for k, v in (("id", r.id), ("category", r.category), ("night", r.night or ""),
                         ("ifus", _ifus_text(r)), ("object", r.object or ""),
                         ("exptime", "" if r.exptime is None else f"{r.exptime:g}"),
                         ("validity", _validity_text(r)), ("owner", r.owner), ("project", r.project or ""),
                         ("privilege", r.privilege.name.lower()), ("filename", r.filename)):
                data[k].append(v)
        self._filling = True
        try:
            self._source.selected.indices = []
            self._source.data = data
            # BokehJS redraws a DataTable when its view's row indices change, so a new page of
            # the same length would not show; any change of the table model forces a redraw.
            self.table.tags = [self.table.tags[0] + 1 if self.table.tags else 1]
        finally:
            self._filling = False
        first = self.page * self.page_size
        self._pager.value = (f"rows {first + 1}-{first + len(self.rows)} of {self.total}" if self.rows
                             else "no product matches")
        self._prev.disabled = self.page == 0
        self._next.disabled = first + len(self.rows) >= self.total
        return self.rows

    def _on_row(self, attr, old, new):
        if self._filling or not new:
            return
        self.open(self.rows[new[0]].id)

    def _make_viewer(self, kind, rec, path):
        from .cube_viewer import CubeViewer
        from .image_viewer import ImageViewer
        from .spectrum_viewer import SpectrumViewer

        if kind == "cube":
            cache = Path(self.archive.config.scratch) / "cache" / "white-light"
            return CubeViewer(path, cache_dir=cache, export_dir=Path(self.archive.config.scratch) / "exports",
                              prefetch=False)
        if kind == "spectrum":
            return SpectrumViewer(path)
        if kind in ("image", "raw"):
            ifu = self._ifu_choice.value if kind == "raw" else rec.ifu
            viewer = ImageViewer(max_display_pixels=512)
            viewer.show(ifu_quicklook(path, ifu), title=f"#{rec.id} {rec.category} {_viewer_label(rec, ifu)}")
            return viewer
        if kind == "notebook":
            return widgets.HTML(notebook_srcdoc(render_notebook(path)), layout=widgets.Layout(width="740px"))
        return widgets.HTML(fits_summary_html(path), layout=widgets.Layout(width="740px"))

    def _show_ifu(self, ifu):
        if self.selected_id is None or ifu is None:
            return
        img = ifu_quicklook(self.archive.path(self.selected_id), ifu)
        self.viewer.show(img, title=f"#{self.selected_id} {self._record.category} {_viewer_label(self._record, ifu)}")

    @validate("page_size")
    def _valid_page_size(self, proposal):
        if not 1 <= proposal.value <= 1000:
            raise TraitError(f"page_size lies in 1-1000, got {proposal.value}")
        return proposal.value


def _run_choice_label(graph, run) -> str:
    """``run 7 muse_bias 2026-11-20 IFU 03``: the IFU from what the run made."""
    ifus = {d.ifu for d in graph.outputs(run.id)}
    ifu = ifus.pop() if len(ifus) == 1 else None
    return f"run {run.id} {run.recipe} {run.night or ''}" + (f" IFU {ifu:02d}" if ifu else "")


def _known_categories() -> list[str]:
    from ..vocabulary import CALIBRATION_CATEGORIES, SCIENCE_CATEGORIES, STATIC_CATEGORIES, FrameType

    return ([f.value for f in FrameType] + list(CALIBRATION_CATEGORIES) + list(SCIENCE_CATEGORIES)
            + list(STATIC_CATEGORIES) + ["NOTEBOOK"])
