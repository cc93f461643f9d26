"""The provenance tree of a dataset as HTML: nested lists, one dataset per item.

Each item shows the dataset (linked to its page), the set-of-frames tag and
the reason it was chosen as an input, and the run that made it (recipe,
status, pipeline version, parameters). Inputs the user may not see appear as
``#id (not visible to you)`` without any detail.
"""

from __future__ import annotations

from html import escape


def provenance_html(node, url) -> str:
    """Render a :class:`musewise.archive.ProvenanceNode` as nested ``<ul>``.

    Parameters
    ----------
    node : ProvenanceNode
        From ``Archive.provenance(dataset_id)``.
    url : callable
        Maps a service-relative path (``datasets/3``) to an absolute URL path.
    """
    return f'<ul class="tree">{_item(node, url, root=True)}</ul>'


def _item(node, url, root=False) -> str:
    d = node.dataset
    tag = f'<span class="tag">{escape(node.tag)}</span> ' if node.tag else ""
    if d is None:
        head = f'{tag}<span class="hidden">#{node.dataset_id} (not visible to you)</span>'
    else:
        ifu = f" IFU {d.ifu:02d}" if d.ifu else ""
        bad = ' <span class="bad">INVALID</span>' if not d.is_valid else ""
        me = ' class="here"' if root else ""
        head = (f'{tag}<a{me} href="{escape(url(f"datasets/{d.id}"))}">#{d.id} {escape(d.category)}{ifu}</a> '
                f'<span class="muted">{escape(d.night or "")} {escape(d.filename)}</span>{bad}')
    if node.reason:
        head += f' <span class="reason">- {escape(node.reason)}</span>'
    parts = [f"<li>{head}"]
    if node.run is not None:
        r = node.run
        params = ", ".join(f"{k}={v}" for k, v in sorted(r.parameters.items()))
        parts.append(
            f'<div class="run">&larr; <a href="{escape(url(f"runs/{r.id}"))}">run {r.id}</a> '
            f'<b>{escape(r.recipe)}</b> <span class="status-{escape(r.status)}">{escape(r.status)}</span> '
            f'<span class="muted">{escape(r.pipeline_version or "")}</span>'
            + (f' <code>{escape(params)}</code>' if params else "") + "</div>")
    if node.inputs:
        parts.append("<ul>" + "".join(_item(c, url) for c in node.inputs) + "</ul>")
    parts.append("</li>")
    return "".join(parts)
