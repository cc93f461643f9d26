"""Provenance graphs and executed notebooks as HTML for the archive widgets.

* :func:`provenance_html` - a :class:`musewise.archive.ProvenanceGraph` drawn by
  Graphviz (SVG: datasets as ellipses, runs as boxes, invalid inputs red; each
  run node links to its executed notebook when ``run_link`` says where), above a
  readable list naming every dataset once with the run that made it (recipe,
  status, pipeline version, user, parameters) and that run's inputs by tag and
  reason; invalid inputs are highlighted.
* :func:`notebook_srcdoc` - an executed notebook rendered by nbconvert, wrapped in
  an ``<iframe srcdoc=...>`` so its styles and outputs stay out of the page.

Both are plain functions (no widget), usable in scripts and tests.
"""

from __future__ import annotations

from html import escape

__all__ = ["provenance_html", "render_notebook", "notebook_srcdoc", "TREE_CSS"]

#: Styles of the provenance view (scoped by the ``mw-prov`` class).
TREE_CSS = """<style>
.mw-prov {font-size: 13px; line-height: 1.45}
.mw-prov .graph {overflow: auto; max-height: 560px; border: 1px solid #ddd; background: #fff}
.mw-prov .graph svg {max-width: 100%; height: auto}
.mw-prov ul {list-style: none; padding-left: 0; margin: .2em 0}
.mw-prov ul ul {padding-left: 1.2em}
.mw-prov summary {cursor: pointer}
.mw-prov .tag {background: #e3eaf5; border-radius: 3px; padding: 0 3px; font-family: monospace}
.mw-prov .run {color: #444; margin-left: 1.2em}
.mw-prov .reason {color: #666; font-style: italic}
.mw-prov .muted {color: #777}
.mw-prov .invalid {background: #fde0dc; color: #b71c1c; font-weight: bold}
.mw-prov .hidden {color: #999}
.mw-prov code {font-size: 12px}
</style>"""


def _head(d, notes) -> str:
    if not d.visible:
        return f'<span class="hidden">#{d.id} (not visible to you)</span>'
    ifu = f" IFU {d.ifu:02d}" if d.ifu else ""
    text = (f'<b>#{d.id}</b> {escape(d.category)}{ifu} <span class="muted">{escape(d.night or "")} '
            f'{escape(d.filename)}</span>')
    if d.is_valid is False:
        why = notes.get(d.id, "")
        text = (f'<span class="invalid" title="{escape(why)}">{text} INVALID'
                f'{" (" + escape(why) + ")" if why else ""}</span>')
    return text


def _run_line(run) -> str:
    if not run.visible:
        return f'<div class="run hidden">&larr; run {run.id} (not visible to you)</div>'
    params = run.parameter_text()
    nb = f", notebook #{run.notebook_id}" if run.notebook_id else ""
    return (f'<div class="run">&larr; run {run.id} <b>{escape(run.recipe)}</b> '
            f'[{escape(run.status)}, {escape(run.pipeline_version or "n/a")}] by {escape(run.user or "")}{nb}'
            + (f" <code>{escape(params)}</code>" if params else "") + "</div>")


def provenance_html(graph, run_link=None, *, notes: dict[int, str] | None = None, open_list: int = 40) -> str:
    """Render a provenance graph: the Graphviz drawing, then each dataset once.

    Parameters
    ----------
    graph : musewise.archive.ProvenanceGraph
        From ``Archive.provenance(dataset_id)`` (already restricted to what the user sees).
    run_link : callable, optional
        URL a run node of the drawing links to (e.g. its notebook's page in the
        archive web view); None: no links.
    notes : dict of int to str, optional
        Why datasets are invalid (dataset id -> comment), shown beside them.
    open_list : int
        The list starts unfolded when the graph has at most this many datasets.

    Returns
    -------
    str
        HTML with its own ``<style>``.
    """
    notes = notes or {}
    items, described = [], set()
    for d in graph.datasets.values():
        run = graph.producer(d.id)
        body = ""
        if run is not None and run.id in described:
            body = f'<div class="run">&larr; run {run.id} (above)</div>'
        elif run is not None:
            described.add(run.id)
            rows = []
            for tag, group in graph.inputs_by_tag(run.id).items():
                reasons = sorted({u.reason for u, _ in group if u.reason})
                refs = ", ".join(("<span class=\"invalid\">" if x.is_valid is False else "<span>") + f"#{x.id}</span>"
                                 for _, x in group)
                why = f' <span class="reason">- {escape("; ".join(reasons))}</span>' if reasons else ""
                rows.append(f'<li><span class="tag">{escape(tag)}</span> {refs}{why}</li>')
            body = _run_line(run) + (f"<ul>{''.join(rows)}</ul>" if rows else "")
        items.append(f"<li>{_head(d, notes)}{body}</li>")
    trunc = (f"<p class='invalid'>history longer than {graph.max_nodes} nodes: older steps are not shown</p>"
             if graph.truncated else "")
    svg = graph.to_svg(run_url=run_link)
    counts = f"{_plural(len(graph.datasets), 'dataset')}, {_plural(len(graph.runs), 'run')}"
    opened = " open" if len(graph.datasets) <= open_list else ""
    return (f'{TREE_CSS}<div class="mw-prov">{trunc}<div class="graph">{svg}</div>'
            f"<details{opened}><summary>{counts}</summary>"
            f'<ul>{"".join(items)}</ul></details></div>')



def render_notebook(path) -> str:
    """Render an executed ``.ipynb`` file (with its outputs) as one HTML document (nbconvert)."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(path), as_version=4)
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    return body


def notebook_srcdoc(html: str, height: int = 600) -> str:
    """Wrap a stand-alone HTML document in an ``<iframe srcdoc>`` for an ``ipywidgets.HTML``.

    The iframe is sandboxed without scripts: the archive shows what a run printed,
    it does not run code from it.
    """
    return (f'<iframe sandbox="" style="width:100%;height:{int(height)}px;border:1px solid #ccc" '
            f'srcdoc="{escape(html, quote=True)}"></iframe>')


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")
