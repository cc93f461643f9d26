"""HTML pages of the archive's web view."""

from __future__ import annotations

import functools
import math
import platform
import shutil
import subprocess
from urllib.parse import quote, urlencode

from tornado import web

from .. import __version__
from ..archive.queries import ORDERABLE
from ..exceptions import NotFoundError, QueryError
from ..vocabulary import CALIBRATION_CATEGORIES, N_IFU, SCIENCE_CATEGORIES, STATIC_CATEGORIES, FrameType
from .base import MAX_ID, ArchiveHandler, whole_number
from .notebook import notebook_html
from .provenance import provenance_section, provenance_svg
from .quicklook import quicklook_png, source_png
from .sqlpage import TABLES, run_readonly_sql

#: The tables by category: tab name -> (title, dataset kinds shown).
SECTIONS = {
    "raw": ("Raw frames", ["raw"]),
    "calibrations": ("Calibration products", ["calibration", "static"]),
    "science": ("Science products", ["science"]),
    "notebooks": ("Executed notebooks", ["notebook"]),
    "all": ("All datasets", None),
}
#: Filters the tables accept as query arguments (all passed to ``Archive.query``).
FILTERS = ("category", "night", "date_from", "date_to", "ifu", "mode", "object", "project", "owner", "valid",
           "run_id", "collection")
CATEGORIES = sorted({*FrameType.__members__, *CALIBRATION_CATEGORIES, *STATIC_CATEGORIES,
                     *SCIENCE_CATEGORIES, "NOTEBOOK"})
PER_PAGE = 50
MAX_PER_PAGE = 500
#: Pages beyond this are refused (their offset would not fit the database's integers).
MAX_PAGE = 10**9
#: Download block size (bytes).
CHUNK = 1 << 20


def dataset_filters(handler) -> dict:
    """Archive.query filters from a request's arguments (empty ones ignored)."""
    out = {}
    for key in FILTERS:
        raw = handler.get_argument(key, "").strip()
        if not raw:
            continue
        if key == "ifu":
            out[key] = whole_number(handler, key, 1, N_IFU)
        elif key == "run_id":
            out[key] = whole_number(handler, key, 1, MAX_ID)
        elif key == "collection":
            out.update(collection_filter(handler.arch, raw))
        elif key == "valid":
            if raw not in ("yes", "no"):
                raise QueryError("valid must be 'yes' or 'no'")
            out[key] = raw == "yes"
        else:
            out[key] = raw
    return out


def collection_filter(arch, text: str) -> dict:
    """The ``collection`` argument as Archive.query filters: a RUN collection, or a search path.

    One RUN collection name gives ``collection=``; a chain, or several names (``a, b``),
    give ``collections=`` (datasets found through that path).

    Raises
    ------
    QueryError
        An unknown name, or a calibration collection (whose calibrations are certified
        there, not written there: see the timeline).
    """
    from .timeline import split_path

    names = split_path(text)
    known = {}
    for n in names:
        try:
            known[n] = arch.collection(n, members=0).type
        except NotFoundError:
            raise QueryError(f"no collection named {n!r}") from None
        if known[n] == "calibration":
            raise QueryError(f"{n!r} is a calibration collection: datasets are certified there, not written "
                             f"there; see its certified ranges on the calibration timeline (search path {n})")
    if len(names) == 1 and known[names[0]] == "run":
        return {"collection": names[0]}
    return {"collections": names} if names else {}


def paging(handler) -> tuple[str, bool, int, int]:
    """(order_by, descending, page, per_page) from a request's arguments."""
    sort = handler.get_argument("sort", "date_obs")
    if sort not in ORDERABLE:
        raise QueryError(f"cannot sort by {sort!r}; choose one of {', '.join(ORDERABLE)}")
    page = whole_number(handler, "page", 1, MAX_PAGE, 1)
    per_page = min(MAX_PER_PAGE, whole_number(handler, "per_page", 1, MAX_PAGE, PER_PAGE))
    return sort, handler.get_argument("desc", "") == "1", page, per_page


@functools.lru_cache(maxsize=1)
def _pipeline_versions() -> dict[str, str]:
    out = {"esorex": "not installed", "cpl-plugin-muse": "not installed"}
    if shutil.which("esorex"):
        try:
            text = subprocess.run(["esorex", "--version"], capture_output=True, text=True, timeout=20).stdout
            line = next((ln for ln in text.splitlines() if "version" in ln.lower()), "")
            out["esorex"] = line.strip(" *").split("version")[-1].strip(" *") or "unknown"
        except (OSError, subprocess.SubprocessError):
            out["esorex"] = "unknown"
    try:
        v = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "cpl-plugin-muse"], capture_output=True,
                           text=True, timeout=20)
        if v.returncode == 0 and v.stdout.strip():
            out["cpl-plugin-muse"] = v.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def component_versions(arch) -> list[tuple[str, str]]:
    """Versions of the parts that make products: musewise, pipeline, Python stack, database."""
    from importlib.metadata import PackageNotFoundError, version

    rows = [("musewise", __version__), ("Python", platform.python_version())]
    rows += list(_pipeline_versions().items())
    for pkg in ("numpy", "astropy", "sqlalchemy", "jupyterhub", "tornado", "matplotlib", "nbconvert"):
        try:
            rows.append((pkg, version(pkg)))
        except PackageNotFoundError:
            rows.append((pkg, "not installed"))
    engine = arch.engine
    with engine.connect() as conn:
        info = engine.dialect.server_version_info or ()
        if engine.dialect.name == "sqlite":
            import sqlite3

            db = f"SQLite {sqlite3.sqlite_version}"
        else:
            db = f"{engine.dialect.name} {'.'.join(map(str, info))}"
        conn.rollback()
    rows.append(("database", db))
    return rows


class HomeHandler(ArchiveHandler):
    """Start page: counts per section, links, and how to use the API."""

    @web.authenticated
    def get(self):
        counts = {key: self.arch.count(kind=kinds) if kinds else self.arch.count()
                  for key, (_, kinds) in SECTIONS.items()}
        self.render("home.html", sections=SECTIONS, counts=counts, runs=self.arch.runs(limit=10))


class VersionsHandler(ArchiveHandler):
    @web.authenticated
    async def get(self):
        rows = await self.blocking(component_versions, self.arch)
        self.render("versions.html", rows=rows)


class TableHandler(ArchiveHandler):
    """One section's table with server-side filtering, sorting and paging."""

    @web.authenticated
    def get(self, section="all"):
        if section not in SECTIONS:
            raise web.HTTPError(404, f"no section {section!r}")
        title, kinds = SECTIONS[section]
        filters = dataset_filters(self)
        if kinds:
            filters["kind"] = kinds
        sort, desc, page, per_page = paging(self)
        total = self.arch.count(**filters)
        records = self.arch.query(order_by=sort, descending=desc, limit=per_page,
                                  offset=(page - 1) * per_page, **filters)
        args = {k: self.get_argument(k, "") for k in FILTERS if self.get_argument(k, "")}

        def link(**change):
            merged = {**args, "sort": sort, "desc": "1" if desc else "", "page": page, "per_page": per_page,
                      **change}
            return self.url(f"datasets/{section}") + "?" + urlencode({k: v for k, v in merged.items() if v})

        self.render("table.html", section=section, title=title, sections=SECTIONS, records=records,
                    total=total, page=page, pages=max(1, math.ceil(total / per_page)), sort=sort, desc=desc,
                    args=args, link=link, categories=CATEGORIES, orderable=ORDERABLE,
                    collections=[c for c in self.arch.list_collections()
                                 if c.type != "calibration" and "/run/" not in c.name])


class DatasetHandler(ArchiveHandler):
    """A product page: metadata, headers, quick look, per-IFU flags, provenance, notebook."""

    @web.authenticated
    async def get(self, dataset_id):
        rec = self.arch.get(int(dataset_id))
        # The graph walk and the drawing take the longest: off the event loop, so other requests go on.
        tree = await self.blocking(provenance_section, self.arch, rec.id, self.url)
        run = notebook_id = None
        if rec.run_id:
            try:
                run = self.arch.get_run(rec.run_id)
                if run.notebook_id:
                    notebook_id = self.arch.get(run.notebook_id).id  # shown only if visible
            except NotFoundError:
                pass
        if rec.kind == "notebook":
            notebook_id = rec.id
        self.render("dataset.html", rec=rec, tree=tree, run=run, notebook_id=notebook_id,
                    qc=self.arch.qc(rec.id), history=self.arch.validity_history(rec.id),
                    has_image=rec.kind != "notebook", sources=self.arch.sources(dataset_id=rec.id))


class ProvenanceHandler(ArchiveHandler):
    """A dataset's provenance to download: W3C PROV-JSON, PROV-N, or the drawing as SVG."""

    #: URL suffix -> (content type, rendering of a ProvenanceGraph given the handler's url function).
    FORMATS = {
        "json": ("application/json", lambda g, url: g.to_prov_json(indent=1)),
        "provn": ("text/provenance-notation; charset=UTF-8", lambda g, url: g.to_provn()),
        "svg": ("image/svg+xml", provenance_svg),
    }

    @web.authenticated
    async def get(self, dataset_id, fmt):
        ctype, render = self.FORMATS[fmt]

        def build():
            return render(self.arch.provenance(int(dataset_id)), self.url)

        body = await self.blocking(build)
        self.set_header("Content-Type", ctype)
        if fmt != "svg":
            self.set_header("Content-Disposition", f'attachment; filename="provenance-{int(dataset_id)}.{fmt}"')
        self.finish(body)


class QuicklookHandler(ArchiveHandler):
    @web.authenticated
    async def get(self, dataset_id):
        ifu = whole_number(self, "ifu", 1, N_IFU)
        png = await self.blocking(quicklook_png, self.arch, int(dataset_id), self.settings["cache_dir"] / "quicklook",
                                  ifu)
        self.set_header("Content-Type", "image/png")
        self.set_header("Cache-Control", "private, max-age=86400")
        self.finish(png)


class SourceHandler(ArchiveHandler):
    """One source of a source catalogue as PNG: its spectrum with the line marked, or its image."""

    @web.authenticated
    async def get(self, dataset_id, source_id, what):
        png = await self.blocking(source_png, self.arch, int(dataset_id), int(source_id), what,
                                  self.settings["cache_dir"] / "sources")
        self.set_header("Content-Type", "image/png")
        self.set_header("Cache-Control", "private, max-age=86400")
        self.finish(png)


class NotebookHandler(ArchiveHandler):
    """An archived notebook as HTML, in a sandbox (its outputs may hold scripts)."""

    @web.authenticated
    async def get(self, dataset_id):
        html = await self.blocking(notebook_html, self.arch, int(dataset_id), self.settings["cache_dir"] / "notebooks")
        # A sandboxed page has an origin of its own: scripts in outputs cannot reach the user's session.
        self.set_header("Content-Security-Policy", "sandbox allow-scripts allow-popups")
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(html)


class DownloadHandler(ArchiveHandler):
    """Stream a dataset's file to the user (who must be allowed to see it)."""

    @web.authenticated
    async def get(self, dataset_id):
        await stream_file(self, int(dataset_id))


def content_disposition(filename: str, fallback: str) -> str:
    """A ``Content-Disposition: attachment`` value naming ``filename`` whatever its characters.

    HTTP header values are Latin-1: the name itself goes in ``filename*`` as UTF-8,
    percent-encoded (RFC 6266, RFC 5987), and an ASCII approximation in ``filename`` for
    clients that do not read ``filename*``. ``fallback`` names a file whose name has no
    printable character at all.
    """
    name = "".join(ch for ch in filename if ch.isprintable()) or fallback
    ascii_name = "".join(ch if " " <= ch <= "~" and ch not in '"\\' else "_" for ch in name)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


async def stream_file(handler, dataset_id: int) -> None:
    rec = handler.arch.get(dataset_id)
    handler.set_header("Content-Type", "application/x-ipynb+json" if rec.kind == "notebook" else "application/fits")
    handler.set_header("Content-Length", str(rec.size))
    handler.set_header("Content-Disposition", content_disposition(rec.filename, f"dataset-{rec.id}"))
    handler.set_header("X-Checksum-SHA256", rec.sha256)
    with handler.arch.datastore.open(rec.storage_path) as f:
        while True:
            block = f.read(CHUNK)
            if not block:
                break
            handler.write(block)
            await handler.flush()
    handler.finish()


class RunHandler(ArchiveHandler):
    @web.authenticated
    def get(self, run_id):
        run = self.arch.get_run(int(run_id))
        outputs = []
        for i in run.output_ids:
            try:
                outputs.append(self.arch.get(i))
            except NotFoundError:
                pass
        inputs = []
        for inp in run.inputs:
            try:
                inputs.append((inp, self.arch.get(inp.dataset_id)))
            except NotFoundError:
                inputs.append((inp, None))
        self.render("run.html", run=run, inputs=inputs, outputs=outputs)


class SQLPageHandler(ArchiveHandler):
    """Read-only SQL over what the user may see (see :mod:`musewise.web.sqlpage`)."""

    EXAMPLE = ("SELECT category, night, count(*) AS n\nFROM datasets\nGROUP BY category, night\n"
               "ORDER BY night, category")

    @web.authenticated
    async def get(self):
        sql = self.get_argument("q", "")
        columns, rows, error = [], [], ""
        if sql.strip():
            try:
                columns, rows = await self.blocking(run_readonly_sql, self.arch, sql, self.settings["sql_limit"])
            except QueryError as exc:
                error = str(exc)
                self.set_status(400)
        self.render("sql.html", sql=sql or self.EXAMPLE, ran=bool(sql.strip()), columns=columns, rows=rows,
                    error=error, limit=self.settings["sql_limit"], tables=TABLES)
