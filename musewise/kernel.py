"""The Jupyter kernel that executes musewise notebooks, and how papermill starts it.

One kernel name for the whole installation, :attr:`MusewiseConfig.kernel_name
<musewise.config.MusewiseConfig.kernel_name>` (default ``musewise``): reduction
notebooks (:mod:`musewise.dpu`), QC notebooks (:mod:`musewise.qc`) and the
hub's users' servers all run it. ``make setup`` registers its kernelspec in the
virtualenv (``python -m musewise.kernel``), under
``<sys.prefix>/share/jupyter/kernels/<name>``, where Jupyter and papermill look.
"""

from __future__ import annotations

import sys
from pathlib import Path


def musewise_notebook(cells, id_prefix: str):
    """A notebook of ``cells`` on the musewise kernel, with stable cell ids ``<id_prefix>-NN``.

    Stable ids make a regenerated template identical to the committed one.
    """
    from nbformat.v4 import new_notebook

    from .config import MusewiseConfig

    for i, cell in enumerate(cells):
        cell["id"] = f"{id_prefix}-{i:02d}"
    nb = new_notebook(cells=cells)
    kernel = MusewiseConfig.class_traits()["kernel_name"].default_value
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": f"{kernel} (Python 3)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def kernelspec_dir(name: str, prefix: str | None = None) -> Path:
    """Where the kernelspec ``name`` of this environment lives (``<prefix>/share/jupyter/kernels/<name>``)."""
    return Path(prefix or sys.prefix) / "share" / "jupyter" / "kernels" / name


def ensure_kernelspec(name: str, prefix: str | None = None) -> Path:
    """Register kernel ``name`` (this Python, with musewise) in this environment if missing.

    Parameters
    ----------
    name : str
        Kernel name, normally ``MusewiseConfig.kernel_name``.
    prefix : str, optional
        Environment prefix (default ``sys.prefix``, the virtualenv).

    Returns
    -------
    Path
        The kernelspec folder.
    """
    target = kernelspec_dir(name, prefix)
    if not (target / "kernel.json").exists():
        from ipykernel.kernelspec import install

        install(kernel_name=name, display_name=f"{name} (Python 3)", prefix=prefix or sys.prefix)
    return target


#: How the kernel's inline backend writes a figure (IPython's default plus the PNG compression).
FIGURE_KWARGS = '{"bbox_inches": "tight", "pil_kwargs": {"compress_level": 3}}'


def papermill_options(kernel_name: str) -> dict:
    """Keyword arguments of ``papermill.execute_notebook`` for a musewise notebook run.

    The kernel talks to papermill over CurveZMQ-encrypted sockets when pyzmq supports
    it (so it does not warn about plain-text TCP), and its own log is silenced: the
    cells' output and errors go to the executed notebook, which is archived, while the
    kernel's log only held the shutdown's "KeyboardInterrupt caught in kernel" (papermill
    interrupts every kernel before asking it to stop) flooding the user's terminal. Cell
    output is not echoed either (``log_output``) and papermill shows no progress bar of
    its own: callers show one per batch of runs.

    Figures are embedded as PNG compressed at zlib level 3 rather than matplotlib's 6:
    a 512-pixel CCD image's quick-look is then written in 0.09 s instead of 0.13 s, and
    is smaller (the noise of a master bias compresses no better at 6).

    Parameters
    ----------
    kernel_name : str
        ``MusewiseConfig.kernel_name``.
    """
    import zmq
    from traitlets.config import Config

    config = Config()
    if zmq.has("curve"):
        config.KernelManager.transport_encryption = "auto"  # if the kernelspec declares support
    return dict(kernel_name=kernel_name, progress_bar=False, log_output=False, config=config,
                extra_arguments=["--IPKernelApp.log_level=CRITICAL",
                                 f"--InlineBackend.print_figure_kwargs={FIGURE_KWARGS}"])


def main(argv=None) -> int:
    """``python -m musewise.kernel``: register the configured kernel in this environment."""
    from .config import MusewiseConfig

    name = MusewiseConfig.load().kernel_name
    print(f"kernel {name!r}: {ensure_kernelspec(name)}")
    return 0


__all__ = ["ensure_kernelspec", "kernelspec_dir", "papermill_options"]

if __name__ == "__main__":
    sys.exit(main())
