"""The provenance graph of a dataset as HTML: a Graphviz drawing plus a readable list.

The drawing (SVG, inline) links each run to its executed notebook (or to its
run page when it has none) and each dataset to its page. The list below it
names every dataset once, with the run that made it (recipe, status, pipeline
version, user, parameters) and that run's inputs grouped by set-of-frames tag,
each input a link to its own item: a master bias read by fifty runs is described
once. Datasets and runs the user may not see appear as ``#id (not visible to
you)`` without any detail.

:func:`provenance_section` does the database work and the drawing; the web view
calls it off the event loop.
"""

from __future__ import annotations

from html import escape

from ..archive.provenance import DRAW_LIMIT

__all__ = ["provenance_section", "provenance_html", "provenance_svg", "run_link"]

#: Graphs with at most this many datasets show the list unfolded.
OPEN_LIST = 60


def run_link(run, url) -> str | None:
    """Where a run node of the drawing goes: its executed notebook, else its run page."""
    if not run.visible:
        return None
    return url(f"datasets/{run.notebook_id}/notebook.html") if run.notebook_id else url(f"runs/{run.id}")


def provenance_svg(graph, url) -> str:
    """The graph drawn by Graphviz as inline SVG, nodes linked to the web view's pages."""
    return graph.to_svg(run_url=lambda r: run_link(r, url),
                        dataset_url=lambda d: url(f"datasets/{d.id}") if d.visible else None)


def provenance_section(arch, dataset_id: int, url) -> str:
    """Build the provenance of a dataset and render it (drawing, downloads, list) as HTML.

    Parameters
    ----------
    arch : Archive
        As seen by the user of the request.
    dataset_id : int
    url : callable
        Maps a service-relative path (``datasets/3``) to an absolute URL path.
    """
    graph = arch.provenance(dataset_id)
    did = graph.root_id
    n = len(graph.datasets) + len(graph.runs)
    note = ("" if n <= DRAW_LIMIT else
            f'<p class="muted">{n} nodes: the drawing groups datasets of one category and night, and runs of one '
            f"recipe and night; the list below has every dataset and run.</p>")
    trunc = (f'<p class="bad">The history is longer than {graph.max_nodes} nodes: older steps are not shown.</p>'
             if graph.truncated else "")
    downloads = (f'<p class="downloads">W3C PROV: <a href="{escape(url(f"datasets/{did}/provenance.json"))}" '
                 f'download>PROV-JSON</a> <a href="{escape(url(f"datasets/{did}/provenance.provn"))}" '
                 f'download>PROV-N</a> <a href="{escape(url(f"datasets/{did}/provenance.svg"))}">SVG</a></p>')
    return (f'{trunc}<div class="provgraph">{provenance_svg(graph, url)}</div>{note}{downloads}'
            f"{provenance_html(graph, url)}")


def _dataset(d, url, root=False) -> str:
    if not d.visible:
        return f'<span class="hidden">#{d.id} (not visible to you)</span>'
    ifu = f" IFU {d.ifu:02d}" if d.ifu else ""
    bad = ' <span class="bad">INVALID</span>' if d.is_valid is False else ""
    me = ' class="here"' if root else ""
    return (f'<a{me} href="{escape(url(f"datasets/{d.id}"))}">#{d.id} {escape(d.category)}{ifu}</a> '
            f'<span class="muted">{escape(d.night or "")} {escape(d.filename)}</span>{bad}')


def _run(r, url) -> str:
    if not r.visible:
        return f'<span class="hidden">run {r.id} (not visible to you)</span>'
    params = r.parameter_text()
    nb = (f' <a href="{escape(url(f"datasets/{r.notebook_id}/notebook.html"))}">notebook</a>'
          if r.notebook_id else "")
    return (f'&larr; <a href="{escape(url(f"runs/{r.id}"))}">run {r.id}</a> <b>{escape(r.recipe)}</b> '
            f'<span class="status-{escape(r.status)}">{escape(r.status)}</span> '
            f'<span class="muted">{escape(r.pipeline_version or "")} by {escape(r.user or "")}</span>{nb}'
            + (f' <code>{escape(params)}</code>' if params else ""))


def provenance_html(graph, url) -> str:
    """Every dataset of the graph once, with the run that made it and that run's inputs.

    Parameters
    ----------
    graph : musewise.archive.ProvenanceGraph
        From ``Archive.provenance(dataset_id)``.
    url : callable
        Maps a service-relative path to an absolute URL path.
    """
    items, described = [], set()
    for d in graph.datasets.values():
        run = graph.producer(d.id)
        parts = [f'<li id="prov-d{d.id}">{_dataset(d, url, root=d.id == graph.root_id)}']
        if run is not None and run.id in described:
            parts.append(f'<div class="run">&larr; run {run.id} (above)</div>')
        elif run is not None:
            described.add(run.id)
            parts.append(f'<div class="run" id="prov-r{run.id}">{_run(run, url)}</div>')
            rows = []
            for tag, group in graph.inputs_by_tag(run.id).items():
                refs = ", ".join(f'<a href="#prov-d{x.id}">#{x.id}</a>' for _, x in group)
                reasons = sorted({u.reason for u, _ in group if u.reason})
                why = f' <span class="reason">- {escape("; ".join(reasons))}</span>' if reasons else ""
                rows.append(f'<li><span class="tag">{escape(tag)}</span> {refs}{why}</li>')
            if rows:
                parts.append(f'<ul class="inputs">{"".join(rows)}</ul>')
        parts.append("</li>")
        items.append("".join(parts))
    counts = f"{_plural(len(graph.datasets), 'dataset')}, {_plural(len(graph.runs), 'run')}"
    opened = " open" if len(graph.datasets) <= OPEN_LIST else ""
    return (f'<details class="provlist"{opened}><summary>{counts}'
            f'</summary><ul class="tree">{"".join(items)}</ul></details>')


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")
