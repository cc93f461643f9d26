"""Provenance trees and executed notebooks as HTML for the archive widgets.

* :func:`provenance_html` - a :class:`musewise.archive.ProvenanceNode` as a
  collapsible tree (nested ``<details>``, no JavaScript): each dataset with the
  set-of-frames tag and the reason it was chosen, the run that made it (recipe,
  status, pipeline version, parameters); invalid inputs are highlighted.
* :func:`notebook_srcdoc` - an executed notebook rendered by nbconvert, wrapped in
  an ``<iframe srcdoc=...>`` so its styles and outputs stay out of the page.

Both are plain functions (no widget), usable in scripts and tests.
"""

from __future__ import annotations

from html import escape

__all__ = ["provenance_html", "render_notebook", "notebook_srcdoc", "TREE_CSS"]

#: Styles of the tree (scoped by the ``mw-prov`` class).
TREE_CSS = """<style>
.mw-prov {font-size: 13px; line-height: 1.45}
.mw-prov details {margin-left: 1.2em; border-left: 1px dotted #999; padding-left: 0.5em}
.mw-prov > details {margin-left: 0; border-left: none}
.mw-prov summary {cursor: pointer}
.mw-prov .tag {background: #e3eaf5; border-radius: 3px; padding: 0 3px; font-family: monospace}
.mw-prov .run {color: #444; margin-left: 1.2em}
.mw-prov .reason {color: #666; font-style: italic}
.mw-prov .muted {color: #777}
.mw-prov .invalid {background: #fde0dc; color: #b71c1c; font-weight: bold}
.mw-prov .hidden {color: #999}
.mw-prov code {font-size: 12px}
</style>"""


def _head(node) -> str:
    d = node.dataset
    tag = f'<span class="tag">{escape(node.tag)}</span> ' if node.tag else ""
    if d is None:
        return f'{tag}<span class="hidden">#{node.dataset_id} (not visible to you)</span>'
    ifu = f" IFU {d.ifu:02d}" if d.ifu else ""
    text = (f'<b>#{d.id}</b> {escape(d.category)}{ifu} <span class="muted">{escape(d.night or "")} '
            f'{escape(d.filename)}</span>')
    if not d.is_valid:
        bad = [s for s in d.ifus if not s.is_valid]
        why = "; ".join(f"IFU {s.ifu:02d}: {s.comment}" for s in bad if s.comment)
        text = (f'<span class="invalid" title="{escape(why)}">{text} INVALID'
                f'{" (" + escape(why) + ")" if why else ""}</span>')
    reason = f' <span class="reason">- {escape(node.reason)}</span>' if node.reason else ""
    return tag + text + reason


def _run_line(run) -> str:
    params = ", ".join(f"{k}={v}" for k, v in sorted(run.parameters.items()))
    return (f'<div class="run">&larr; run {run.id} <b>{escape(run.recipe)}</b> '
            f'[{escape(run.status)}, {escape(run.pipeline_version or "n/a")}] by {escape(run.user)}'
            + (f" <code>{escape(params)}</code>" if params else "") + "</div>")


def _node(node, open_depth: int, depth: int) -> str:
    if node.run is None and not node.inputs:
        return f"<div style='margin-left:1.2em'>{_head(node)}</div>"
    opened = " open" if depth < open_depth else ""
    body = _run_line(node.run) if node.run is not None else ""
    body += "".join(_node(c, open_depth, depth + 1) for c in node.inputs)
    return f"<details{opened}><summary>{_head(node)}</summary>{body}</details>"


def provenance_html(node, open_depth: int = 2) -> str:
    """Render a provenance tree as nested, collapsible HTML.

    Parameters
    ----------
    node : musewise.archive.ProvenanceNode
        From ``Archive.provenance(dataset_id)`` (already restricted to what the user sees).
    open_depth : int
        Levels shown unfolded; deeper inputs start folded.

    Returns
    -------
    str
        HTML with its own ``<style>``.
    """
    return f'{TREE_CSS}<div class="mw-prov">{_node(node, open_depth, 0)}</div>'


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
