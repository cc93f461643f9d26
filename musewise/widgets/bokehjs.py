"""Bokeh plots as ipywidgets whose every view brings what it needs (BokehJS, current state).

``jupyter_bokeh.BokehModel`` renders with a BokehJS that some earlier output
must have put into the page (``bokeh.io.output_notebook()``), and with the
plot state the widget had when it was created. In JupyterLab both break: a
page reload, a second browser tab or a re-run cell leave a page without
BokehJS ("Cannot read properties of undefined (reading 'require')"), and a
view built after the plot changed shows the old plot.

:class:`BokehPlot` is an ``anywidget`` whose view (``bokeh_plot.js``) asks its
kernel, over the widget's comm,

1. for BokehJS when the page has no BokehJS of the kernel's version (once per
   page: views of one page share the load; it is inlined, no CDN, since
   analysis nodes are often offline), then
2. for the plot's *current* document,

and then applies the kernel's document patches and sends back the browser's
events (taps, mouse moves, zoom) as ``jupyter_bokeh`` does. Nothing has to be
published before a viewer is displayed, and nothing big is stored in the
notebook file.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import anywidget
import bokeh
from bokeh.core.json_encoder import serialize_json
from bokeh.core.serialization import Deserializer, Serialized
from bokeh.document import Document
from bokeh.embed.elements import div_for_render_item
from bokeh.embed.util import standalone_docs_json_and_render_items
from bokeh.models import ColumnDataSource, LayoutDOM
from bokeh.protocol import Protocol
from traitlets import Unicode

from ..exceptions import UnsupportedTypeError

__all__ = ["BokehPlot", "bokeh_plot", "bokehjs_sources"]

#: BokehJS parts the viewers use (MathJax, 1.8 MB, is left out: no LaTeX labels).
BOKEHJS_COMPONENTS = ("bokeh", "bokeh-gl", "bokeh-widgets", "bokeh-tables")


@functools.lru_cache(maxsize=1)
def bokehjs_sources() -> tuple[str, ...]:
    """The inline BokehJS scripts of the installed bokeh, in load order (~2.1 MB of text)."""
    from bokeh.resources import Resources

    return tuple(Resources(mode="inline", components=list(BOKEHJS_COMPONENTS)).js_raw)


def bokeh_plot(model: LayoutDOM) -> "BokehPlot":
    """Wrap a bokeh figure or layout as an ipywidget (a :class:`BokehPlot`)."""
    return BokehPlot(model)


class BokehPlot(anywidget.AnyWidget):
    """A bokeh figure/layout as a widget that renders in any page at any time.

    Parameters
    ----------
    model : bokeh.models.LayoutDOM
        The figure or layout. Changes made to it in Python reach every live
        view; events in the browser (tap, mouse move, range changes) reach
        Python callbacks registered on the figure (``fig.on_event``).

    Notes
    -----
    The browser side is ``bokeh_plot.js``; the messages are:

    * view -> kernel ``{"event": "musewise-request", "what": "bokehjs" | "state", "token"}``,
      answered with ``{"msg": "musewise-reply", "token", "sources" | "bundle"}``;
    * kernel -> views ``{"msg": "patch", ...}`` fragments of a bokeh ``PATCH-DOC`` message;
    * view -> kernel ``{"event": "jsevent", ...}`` a serialized bokeh document event.
    """

    _esm = (Path(__file__).with_name("bokeh_plot.js")).read_text()
    bokeh_version = Unicode(bokeh.__version__, help="Version of the kernel's bokeh: the "
                            "BokehJS a view needs.").tag(sync=True)

    def __init__(self, model: LayoutDOM, **kwargs: Any) -> None:
        if not isinstance(model, LayoutDOM):
            raise UnsupportedTypeError(f"BokehPlot shows a bokeh figure or layout, got {type(model).__name__}")
        super().__init__(**kwargs)
        if model.document is None:
            Document().add_root(model)
        self._model = model
        model.document.on_change_dispatch_to(self)
        self.on_msg(self._on_view_msg)

    @property
    def model(self) -> LayoutDOM:
        """The bokeh figure or layout shown."""
        return self._model

    @property
    def _document(self) -> Document | None:
        return self._model.document

    def render_bundle(self) -> dict:
        """The plot's current document as a view renders it (docs_json, render_items, div)."""
        docs_json, [item] = standalone_docs_json_and_render_items([self._model],
                                                                  suppress_callback_warning=True)
        return {"docs_json": docs_json, "render_items": [item.to_json()],
                "div": div_for_render_item(item)}

    def close(self) -> None:
        """Close the widget and stop forwarding the document's changes."""
        super().close()
        if self._document is not None:
            try:
                self._document.remove_on_change(self)
            except KeyError:  # already detached (e.g. closed twice, or at interpreter exit)
                pass

    # ----------------------------------------------------------- kernel -> views
    def _document_patched(self, event) -> None:
        if event.setter is self:  # came from a view: it has it already
            return
        msg = Protocol().create("PATCH-DOC", [event])
        self.send({"msg": "patch", "payload": msg.header_json})
        self.send({"msg": "patch", "payload": msg.metadata_json})
        self.send({"msg": "patch", "payload": msg.content_json})
        for buffer in msg.buffers:
            self.send({"msg": "patch", "payload": json.dumps(buffer.ref)})
            self.send({"msg": "patch"}, [buffer.to_bytes()])

    # ----------------------------------------------------------- views -> kernel
    def _on_view_msg(self, _widget, content: dict, _buffers) -> None:
        kind = content.get("event", "")
        if kind == "musewise-request":
            self._answer(content.get("what"), content.get("token"))
        elif kind == "jsevent":
            self._apply_js_event(dict(content))

    def _answer(self, what: str, token: str) -> None:
        if what == "bokehjs":
            self.send({"msg": "musewise-reply", "token": token, "sources": list(bokehjs_sources())})
        elif what == "state":
            self.send({"msg": "musewise-reply", "token": token,
                       "bundle": serialize_json(self.render_bundle())})

    def _apply_js_event(self, content: dict) -> None:
        # The logic of jupyter_bokeh.BokehModel._sync_model (BSD-3, Bokeh contributors).
        del content["event"]
        document = self._document
        deserializer = Deserializer(list(document.models), setter=self)
        event = deserializer.deserialize(Serialized(content=content, buffers=[]))
        kind = event["kind"]
        if kind == "ModelChanged":
            model, attr = event["model"], event["attr"]
            descriptor = model.lookup(attr)
            new = descriptor.property.prepare_value(model, descriptor.name, event["new"])
            old = descriptor._get(model)
            # _set runs the Python callbacks itself (once); setter=self keeps the change from
            # being sent back to the view it came from.
            descriptor._set(model, old, new, setter=self)
        elif kind == "ColumnsStreamed" and isinstance(event["model"], ColumnDataSource):
            event["model"]._stream(event["data"], event["rollover"], setter=self)
        elif kind == "ColumnsPatched" and isinstance(event["model"], ColumnDataSource):
            event["model"].patch(event["patches"], setter=self)
        elif kind == "MessageSent" and event["msg_type"] == "bokeh_event":
            document.callbacks.trigger_event(event["msg_data"])
