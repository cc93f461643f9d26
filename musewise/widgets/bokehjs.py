"""Make sure BokehJS is in the page before a bokeh widget is displayed.

``jupyter_bokeh`` renders its widgets with the page's global BokehJS, which a
notebook normally gets from ``bokeh.io.output_notebook()``. The viewers call
:func:`load_bokehjs` when they are displayed, with the library inlined (no
CDN: analysis nodes are often offline). Panels that embed a viewer in their
own layout should call it too before displaying themselves.
"""

from __future__ import annotations

__all__ = ["load_bokehjs", "bokeh_plot", "refresh_bokeh_models", "BokehJSMixin"]

_loaded = False  # once per kernel: the load output stays in the notebook


def load_bokehjs(force: bool = False) -> None:
    """Publish the inline BokehJS loader into the current output (once per kernel).

    Parameters
    ----------
    force : bool
        Publish it again (e.g. after the outputs holding it were cleared).
    """
    global _loaded
    if _loaded and not force:
        return
    from bokeh.io import output_notebook
    from bokeh.resources import INLINE

    output_notebook(resources=INLINE, hide_banner=True)
    _loaded = True


def bokeh_plot(model):
    """Wrap a bokeh figure/layout as an ipywidget (a quieter ``jupyter_bokeh.BokehModel``)."""
    return _BokehPlot(model)


def _plot_class():
    from jupyter_bokeh import BokehModel

    class BokehPlot(BokehModel):
        """``BokehModel`` whose ``close`` tolerates an already-detached document.

        jupyter_bokeh 4.1 raises KeyError from ``close`` when the widget is
        garbage-collected after its document dropped the callback (seen at
        interpreter exit); the widget itself is closed before that point.
        """

        def close(self):
            try:
                super().close()
            except KeyError:
                pass

    return BokehPlot


class _LazyPlot:
    _cls = None

    def __call__(self, model):
        if _LazyPlot._cls is None:
            _LazyPlot._cls = _plot_class()
        return _LazyPlot._cls(model)


_BokehPlot = _LazyPlot()


def refresh_bokeh_models(widget) -> None:
    """Re-send the full state of every ``BokehModel`` inside ``widget`` (recursively).

    The browser side of ``jupyter_bokeh`` applies document patches only to a
    view that exists, so changes made between creating a plot and displaying it
    would be lost; refreshing the render bundle just before display avoids that.
    """
    from jupyter_bokeh import BokehModel

    stack = [widget]
    while stack:
        w = stack.pop()
        if isinstance(w, BokehModel):
            w.update_from_model(w._model)
        stack.extend(getattr(w, "children", ()))


class BokehJSMixin:
    """Mixin for widgets holding ``BokehModel`` children: loads BokehJS and sends the
    current plot state when displayed."""

    def _repr_mimebundle_(self, **kwargs):
        load_bokehjs()
        refresh_bokeh_models(self)
        return super()._repr_mimebundle_(**kwargs)
