"""QCPanel: the 24 IFUs of a MUSE product (or of a night's per-IFU products) at a glance.

A 4 x 6 grid of tiles, one per IFU, coloured by quality flag (unchecked grey,
good green, warning orange, bad red) and struck through when the IFU is
invalid; IFUs the product does not hold are disabled. A click on a tile shows
that IFU's quick-look (:class:`ImageViewer`) and its state; a reviewer toggles
*valid*, picks a flag, writes why, and the change goes to the archive with who
and when (``Archive.set_validity``), listed in the audit table below.

Everything is a trait or a public method working without a browser:
``panel.select_ifu(5)``, ``panel.set_validity(False, "bad", "lamp off")``,
``panel.refresh()``; each control's handler is one line calling one of them.
The panel sees exactly what its archive's user sees; a user who may not review
sees the controls disabled and :meth:`QCPanel.set_validity` raises the
archive's ``PermissionDeniedError``.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import ipywidgets as widgets
import numpy as np
from traitlets import Bool, Int, TraitError, Unicode, observe, validate

from ..exceptions import InvalidArgumentError, NotFoundError, NothingSelectedError
from ..products.ifu import chan_extensions, chan_extname
from ..products.image import Image
from ..vocabulary import N_IFU, QualityFlag
from .image_viewer import ImageViewer

__all__ = ["QCPanel", "FLAG_COLOURS", "ifu_quicklook", "fits_summary", "fits_summary_html"]

#: Tile colour of each quality flag.
FLAG_COLOURS = {"unchecked": "#9e9e9e", "good": "#2e7d32", "warning": "#ef6c00", "bad": "#c62828"}
_ABSENT = "#eeeeee"
#: Tiles per row of the grid (4 rows of 6 = the 24 IFUs).
COLUMNS = 6

_CSS = """<style>
.mw-tile button, button.mw-tile {font-weight: bold; color: white}
.mw-invalid, .mw-invalid button {text-decoration: line-through; text-decoration-thickness: 2px}
.mw-selected {box-shadow: 0 0 0 3px #1565c0 !important}
.mw-audit table {border-collapse: collapse; font-size: 12px}
.mw-audit td, .mw-audit th {border-bottom: 1px solid #ddd; padding: 1px 6px; text-align: left}
</style>"""


# ----------------------------------------------------------------- data (no UI)
def fits_summary(path) -> list[dict]:
    """What a FITS file holds, one dict per HDU (name, type, shape or rows and columns).

    Parameters
    ----------
    path : path-like

    Returns
    -------
    list of dict
        ``name``, ``type`` ("image" or "table"), ``shape`` (images), ``rows`` and
        ``columns`` (list of (name, format, unit)) for tables, and ``header`` (a
        few identifying primary-header cards) for the first HDU.
    """
    from astropy.io import fits

    keys = ("ESO PRO CATG", "OBJECT", "DATE-OBS", "ESO INS MODE", "ESO PRO REC1 PIPE ID", "EXPTIME")
    out = []
    with fits.open(path, memmap=True) as hdul:
        for i, h in enumerate(hdul):
            d = {"name": h.name, "type": "table" if isinstance(h, (fits.BinTableHDU, fits.TableHDU)) else "image"}
            if d["type"] == "table":
                d["rows"] = int(h.header.get("NAXIS2", 0))
                d["columns"] = [(c.name, str(c.format), str(c.unit or "")) for c in h.columns]
            else:
                n = int(h.header.get("NAXIS", 0))
                d["shape"] = tuple(int(h.header[f"NAXIS{k}"]) for k in range(n, 0, -1))
            if i == 0:
                d["header"] = {k: h.header[k] for k in keys if k in h.header}
            out.append(d)
    return out


def fits_summary_html(path, max_columns: int = 40) -> str:
    """:func:`fits_summary` as an HTML list (for table products and files with no image)."""
    parts = []
    for d in fits_summary(path):
        cards = ", ".join(f"{escape(k)} = {escape(str(v))}" for k, v in d.get("header", {}).items())
        cards = f"<div style='color:#555'>{cards}</div>" if cards else ""
        if d["type"] == "table":
            cols = d["columns"][:max_columns]
            more = f" ... ({len(d['columns']) - max_columns} more)" if len(d["columns"]) > max_columns else ""
            rows = "".join(f"<tr><td>{escape(n)}</td><td>{escape(f)}</td><td>{escape(u)}</td></tr>"
                           for n, f, u in cols)
            parts.append(f"<li><b>{escape(d['name'])}</b>: table, {d['rows']} rows, {len(d['columns'])} columns"
                         f"{cards}<table><tr><th>column</th><th>format</th><th>unit</th></tr>{rows}</table>{more}</li>")
        else:
            shape = " x ".join(map(str, d["shape"])) or "no data"
            parts.append(f"<li><b>{escape(d['name'])}</b>: image {shape}{cards}</li>")
    return f"<div class='mw-audit'><ul>{''.join(parts)}</ul></div>"


def ifu_quicklook(path, ifu: int | None):
    """The quick-look of one IFU of a file: an :class:`Image`, or None if the file holds none.

    A raw frame gives the CCD of that IFU (extension ``CHANnn``, full resolution:
    the viewer bins it for display); a multi-IFU product its ``CHANnn.DATA``; a
    per-IFU product its ``DATA`` extension (else its first 2-D image).

    Parameters
    ----------
    path : path-like
        The FITS file.
    ifu : int or None
        IFU number (1-24).
    """
    from astropy.io import fits

    with fits.open(path, memmap=True) as hdul:
        names = [h.name for h in hdul]
        two_d = [h.name for h in hdul if h.is_image and h.header.get("NAXIS") == 2]
        chans = list(chan_extensions(names).values())
    tag = chan_extname(ifu) if ifu else None
    if tag and f"{tag}.DATA" in names:
        ext = f"{tag}.DATA"
    elif tag and tag in names:
        ext = tag
    elif chans:
        raise NotFoundError(f"{Path(path).name} holds no IFU {ifu} (extensions {', '.join(chans)})")
    elif "DATA" in two_d:
        ext = "DATA"
    elif two_d:
        ext = two_d[0]
    else:
        return None
    label = f"IFU {ifu:02d} {ext}" if ifu else ext
    if ext == tag:
        # A raw CCD is uint16 stored with BZERO, which astropy cannot memory-map:
        # read just this extension (~36 MB of a ~800 MB frame; HDUs load lazily).
        with fits.open(path, memmap=False) as hdul:
            h = hdul[ext]
            return Image(np.asarray(h.data, dtype=np.float32), None, h.header.get("BUNIT", "adu"), label,
                         None, {"file": Path(path).name, "extension": ext})
    img = Image.read(path, ext=ext)
    return Image(img.data, img.var, img.unit, label, img.wcs_header, {**img.meta, "extension": ext})


# ----------------------------------------------------------------- the widget
class QCPanel(widgets.VBox):
    """Quality review of the 24 IFUs of one product, or of one category's per-IFU products of a night.

    Parameters
    ----------
    archive : musewise.archive.Archive
        The archive as seen by the reviewing user (``Archive.as_user(name)``).
    dataset_id : int, optional
        One product holding one or more IFUs (a raw frame holds 24).
    category, night : str, optional
        Instead of ``dataset_id``: the products of this category (``ESO PRO CATG``,
        e.g. ``MASTER_FLAT``) and night (``YYYY-MM-DD``), one per IFU; where an IFU
        has several, the newest is shown.
    mode : str, optional
        Instrument mode restricting ``category``/``night``.

    Raises
    ------
    NotFoundError
        If the dataset is not visible to the user, or no product matches.

    Examples
    --------
    >>> panel = QCPanel(arch.as_user("alice"), category="MASTER_FLAT", night="2026-11-20")  # doctest: +SKIP
    >>> panel.select_ifu(7)                                                                 # doctest: +SKIP
    >>> panel.set_validity(False, "bad", "lamp off in slice 12")                            # doctest: +SKIP
    """

    selected_ifu = Int(0, help="IFU selected (1-24; 0: none).")
    dataset_id = Int(None, allow_none=True, help="Dataset holding the selected IFU.")
    can_review = Bool(False, help="The user may change the selected IFU's validity and flag.")
    category = Unicode("", help="Category shown (per-IFU mode).")
    night = Unicode("", help="Night shown (per-IFU mode), YYYY-MM-DD.")
    status = Unicode("", help="Last message shown to the user.")

    def __init__(self, archive, dataset_id: int | None = None, *, category: str | None = None,
                 night: str | None = None, mode: str | None = None, collections=None, **kwargs):
        super().__init__(**kwargs)
        if dataset_id is None and not (category and night):
            raise InvalidArgumentError("give a dataset_id, or a category and a night")
        self.archive = archive
        #: Collections the products of a night are found through (None: every product the
        #: user may see; ``archive.search_path(reference=True)``: the reference reduction).
        self.collections = list(collections) if collections is not None else None
        self._root_id = None if dataset_id is None else int(dataset_id)
        self._mode = mode
        self.category, self.night = category or "", night or ""
        self.records: dict[int, object] = {}    #: IFU -> DatasetRecord holding it
        self._reviewable: dict[int, bool] = {}  # dataset id -> may the user review it
        self.quicklook = None  #: what the quick-look shows: an Image, an HTML summary, or None

        self._tiles = {}
        for n in range(1, N_IFU + 1):
            b = widgets.Button(description=f"{n:02d}", layout=widgets.Layout(width="58px", height="34px"))
            b.add_class("mw-tile")
            b.on_click(lambda _b, n=n: self.select_ifu(n))
            self._tiles[n] = b
        self._grid = widgets.GridBox(list(self._tiles.values()), layout=widgets.Layout(
            grid_template_columns=f"repeat({COLUMNS}, 62px)", grid_gap="4px"))
        self._title = widgets.HTML("")
        self._legend = widgets.HTML(" ".join(
            f"<span style='background:{c};color:white;padding:1px 6px;border-radius:3px'>{f}</span>"
            for f, c in FLAG_COLOURS.items()) + " <s>struck through</s>: invalid")
        self._valid = widgets.Checkbox(value=True, description="valid", indent=False,
                                       layout=widgets.Layout(width="80px"))
        self._flag = widgets.Dropdown(options=[f.value for f in QualityFlag], description="flag",
                                      layout=widgets.Layout(width="190px"))
        self._comment = widgets.Text(placeholder="why (required when invalidating)",
                                     layout=widgets.Layout(width="360px"))
        self._apply = widgets.Button(description="Record", icon="check", button_style="primary")
        self._apply.on_click(lambda _b: self._record_from_controls())
        self._state = widgets.HTML("")
        self._status = widgets.HTML("")
        widgets.dlink((self, "status"), (self._status, "value"),
                      lambda s: f"<span style='font-size:smaller'>{escape(s)}</span>")
        self.image_viewer = ImageViewer(width=380, height=380, max_display_pixels=512)
        self.image_viewer.figure.xaxis.axis_label = "x (pixel)"  # a CCD or detector image, not spaxels
        self.image_viewer.figure.yaxis.axis_label = "y (pixel)"
        self._summary = widgets.HTML("", layout=widgets.Layout(max_height="380px", overflow="auto"))
        self._audit = widgets.HTML("", layout=widgets.Layout(max_height="220px", overflow="auto"))
        self._controls = widgets.HBox([self._valid, self._flag, self._comment, self._apply])
        left = widgets.VBox([self._grid, self._legend, self._state, self._controls, self._status],
                            layout=widgets.Layout(width="560px"))
        self._look = widgets.VBox([self.image_viewer, self._summary])
        self.children = [widgets.HTML(_CSS), self._title, widgets.HBox([left, self._look]),
                         widgets.HTML("<b>Audit trail</b>"), self._audit]
        self.refresh()

    # ----------------------------------------------------------- public API
    @property
    def ifus(self) -> list[int]:
        """IFUs present (1-24)."""
        return sorted(self.records)

    def refresh(self) -> None:
        """Read the products, their IFU states, review rights and audit trail again from the archive."""
        arch = self.archive
        if self._root_id is not None:
            rec = arch.get(self._root_id)
            records = {s.ifu: rec for s in rec.ifus}
            self._title.value = (f"<h4>#{rec.id} {escape(rec.category)} {escape(rec.night or '')} "
                                 f"<small>{escape(rec.filename)}</small></h4>")
        else:
            found = arch.query(category=self.category, night=self.night, mode=self._mode, order_by="created",
                               collections=self.collections)
            records = {}
            for rec in found:  # oldest first: a newer product of an IFU replaces an older one
                for s in rec.ifus:
                    records[s.ifu] = rec
            if not records:
                from ..exceptions import NotFoundError

                where = f" in collections {self.collections}" if self.collections else ""
                raise NotFoundError(f"no {self.category} of night {self.night} visible to user "
                                    f"{arch.user_name!r}{where}")
            self._title.value = (f"<h4>{escape(self.category)} of {escape(self.night)}: "
                                 f"{len({r.id for r in records.values()})} products</h4>")
        self.records = records
        self._reviewable = {r.id: arch.can_review(r.id) for r in {r.id: r for r in records.values()}.values()}
        self._draw_tiles()
        self._draw_audit()
        if self.selected_ifu and self.selected_ifu not in records:
            self.selected_ifu = 0
        self._show_state()

    def select_ifu(self, ifu: int):
        """Select an IFU and show its quick-look.

        Parameters
        ----------
        ifu : int
            1-24, one of :attr:`ifus`.

        Returns
        -------
        Image or str or None
            The quick-look image, or an HTML summary for a table product.

        Raises
        ------
        traitlets.TraitError
            If the IFU is not in the product(s).
        """
        if ifu == self.selected_ifu:
            self._load_quicklook()  # a second click reloads (e.g. after a refresh)
        self.selected_ifu = int(ifu)
        return self.quicklook

    def ifu_state(self, ifu: int | None = None):
        """The :class:`IfuState` (valid, flag, comment, who, when) of an IFU (default the selected one)."""
        ifu = ifu or self._require_selection()
        return self.records[ifu].ifu_state(ifu)

    def set_validity(self, is_valid: bool | None = None, flag: QualityFlag | str | None = None,
                     comment: str = ""):
        """Record the selected IFU's validity and/or quality flag in the archive.

        Parameters
        ----------
        is_valid : bool, optional
            New validity (None: unchanged).
        flag : QualityFlag or str, optional
            New flag (None: unchanged).
        comment : str
            Why; required when invalidating.

        Returns
        -------
        IfuState
            The IFU's new state (with who and when).

        Raises
        ------
        PermissionDeniedError
            If the user may not review this product (from ``Archive.set_validity``).
        ValueError
            If no IFU is selected, or an invalidation has no comment.
        """
        ifu = self._require_selection()
        rec = self.records[ifu]
        self.archive.set_validity(rec.id, ifu, is_valid=is_valid, flag=flag, comment=comment)
        self.refresh()
        state = self.ifu_state(ifu)
        self.status = (f"IFU {ifu:02d} of #{rec.id}: {'valid' if state.is_valid else 'INVALID'}, "
                       f"{state.flag} (recorded by {state.updated_by})")
        return state

    def audit(self) -> list[dict]:
        """Validity and flag changes of the product(s) shown, newest first (``Archive.validity_history``)."""
        rows = []
        for did in sorted({r.id for r in self.records.values()}):
            rows += [{**row, "dataset_id": did} for row in self.archive.validity_history(did)]
        return sorted(rows, key=lambda r: (r["at"], r["dataset_id"]), reverse=True)

    # -------------------------------------------------------------- internals
    def _require_selection(self) -> int:
        if not self.selected_ifu:
            raise NothingSelectedError("select an IFU first (panel.select_ifu(n))")
        return self.selected_ifu

    def _record_from_controls(self):
        try:
            self.set_validity(self._valid.value, self._flag.value, self._comment.value)
        except Exception as exc:  # shown to the user; the API raises
            self.status = f"not recorded: {exc}"

    @validate("selected_ifu")
    def _valid_ifu(self, proposal):
        n = proposal.value
        if n and n not in self.records:
            raise TraitError(f"IFU {n} is not in this product (IFUs present: {self.ifus})")
        return n

    @observe("selected_ifu")
    def _on_selected(self, change):
        self._draw_tiles()
        self._load_quicklook()
        self._show_state()

    def _load_quicklook(self):
        ifu = self.selected_ifu
        if not ifu:
            self.quicklook, self.dataset_id = None, None
            return
        rec = self.records[ifu]
        self.dataset_id = rec.id
        path = self.archive.path(rec.id)
        try:
            img = ifu_quicklook(path, ifu) if rec.kind != "notebook" else None
        except Exception as exc:  # an unreadable file must not break the panel
            self.image_viewer.layout.display = "none"
            self.quicklook = self._summary.value = f"<i>cannot read this file: {escape(str(exc))}</i>"
            return
        if img is not None:
            self.quicklook = img
            self.image_viewer.show(img, title=f"IFU {ifu:02d} - #{rec.id} {rec.category} - {img.meta['extension']}")
            self.image_viewer.layout.display = None
            self._summary.value = ""
        else:
            self.image_viewer.layout.display = "none"
            if rec.kind != "notebook" and str(path).endswith((".fits", ".fits.fz", ".fz")):
                self._summary.value = fits_summary_html(path)
            else:
                self._summary.value = f"<i>#{rec.id} holds no image ({escape(rec.kind)})</i>"
            self.quicklook = self._summary.value

    def _show_state(self):
        ifu = self.selected_ifu
        if not ifu:
            self.can_review = False
            self._state.value = "<i>click an IFU</i>"
        else:
            rec, s = self.records[ifu], self.records[ifu].ifu_state(ifu)
            self.can_review = self._reviewable.get(rec.id, False)
            who = f", by {escape(s.updated_by)} at {s.updated:%Y-%m-%d %H:%M} UT" if s.updated_by else ""
            self._state.value = (f"<b>IFU {ifu:02d}</b> of #{rec.id}: "
                                 f"{'valid' if s.is_valid else '<b style=color:#c62828>INVALID</b>'}, "
                                 f"flag <b>{escape(s.flag)}</b>{who}"
                                 + (f"<br><i>{escape(s.comment)}</i>" if s.comment else ""))
            self._valid.value, self._flag.value, self._comment.value = s.is_valid, s.flag, ""
        for w in (self._valid, self._flag, self._comment, self._apply):
            w.disabled = not self.can_review
        if ifu and not self.can_review:
            self._state.value += (f"<br><span style='color:#777'>{escape(self.archive.user_name)} may not "
                                  "change this product's quality (its owner, project reviewers and "
                                  "administrators may)</span>")

    def _draw_tiles(self):
        for n, b in self._tiles.items():
            rec = self.records.get(n)
            for cls in ("mw-invalid", "mw-selected"):
                b.remove_class(cls)
            if rec is None:
                b.disabled, b.style.button_color, b.tooltip = True, _ABSENT, f"IFU {n:02d}: not in this product"
                b.description = f"{n:02d}"
                continue
            s = rec.ifu_state(n)
            b.disabled = False
            b.style.button_color = FLAG_COLOURS.get(s.flag, FLAG_COLOURS["unchecked"])
            b.description = f"{n:02d}" if s.is_valid else f"{n:02d} ✗"
            if not s.is_valid:
                b.add_class("mw-invalid")
            if n == self.selected_ifu:
                b.add_class("mw-selected")
            b.tooltip = (f"IFU {n:02d} (#{rec.id}): {'valid' if s.is_valid else 'INVALID'}, {s.flag}"
                         + (f" - {s.comment}" if s.comment else ""))

    def _draw_audit(self):
        rows = self.audit()[:200]
        if not rows:
            self._audit.value = "<i>no change recorded yet</i>"
            return

        def v(b):
            return "valid" if b else "invalid"

        body = "".join(
            f"<tr><td>{r['at']:%Y-%m-%d %H:%M:%S}</td><td>{escape(r['user'])}</td><td>#{r['dataset_id']}</td>"
            f"<td>{r['ifu']:02d}</td><td>{v(r['valid_before'])} &rarr; {v(r['valid_after'])}</td>"
            f"<td>{escape(r['flag_before'])} &rarr; {escape(r['flag_after'])}</td>"
            f"<td>{escape(r['comment'] or '')}</td></tr>" for r in rows)
        self._audit.value = ("<div class='mw-audit'><table><tr><th>when (UT)</th><th>who</th><th>dataset</th>"
                             "<th>IFU</th><th>validity</th><th>flag</th><th>comment</th></tr>"
                             f"{body}</table></div>")
