"""What a kernel that serves several of musewise's own notebooks restores between them.

Runs *inside* the Jupyter kernel (the pool sends ``snapshot()`` after a kernel's warm-up
and ``restore()`` after each notebook; :mod:`musewise.dpu.kernelpool`). Only musewise's
own notebooks share kernels (``DpuConfig.shared_kernels``, ``NotebookJob.kernel_kind``):
the QC notebooks and the shipped reduction templates, which take all their inputs as
parameters and write their outcome to a side file. A notebook from a site's own templates
folder always gets a kernel of its own. A test reduces the same master bias in a fresh and
in a shared kernel and finds the same pixels (``tests/test_qc_hook.py``).

Between two notebooks the kernel gets back what the warm-up left:

* the user namespace, the input/output history and the execution counter (the next
  executed notebook numbers its cells from 1);
* open matplotlib figures (closed), ``matplotlib.rcParams``;
* warning filters, numpy's floating-point error handling, ``sys.path``, the process
  environment and the working directory.

What stays is what made the second notebook cheap: imported modules and their caches.
"""

from __future__ import annotations

import os
import sys
import warnings

_SAVED: dict = {}


def snapshot() -> None:
    """Record the kernel's state after its warm-up (called once, before the first notebook)."""
    import numpy as np

    _SAVED.clear()
    _SAVED.update(filters=list(warnings.filters), errstate=np.geterr(), path=list(sys.path),
                  environ=dict(os.environ), cwd=os.getcwd())
    if "matplotlib" in sys.modules:
        import matplotlib

        _SAVED["rc"] = dict(matplotlib.rcParams)


def restore() -> None:
    """Put the kernel back as :func:`snapshot` found it (see the module docstring).

    Raises
    ------
    musewise.exceptions.RunStateError
        No snapshot was taken in this kernel: it cannot be handed to another notebook.
    """
    import gc

    import numpy as np

    from ..exceptions import RunStateError

    if not _SAVED:
        raise RunStateError("this kernel has no snapshot of its warm state: it serves one notebook only")
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")
    if "rc" in _SAVED:
        import matplotlib

        with warnings.catch_warnings():  # deprecated rc keys warn when set back
            warnings.simplefilter("ignore")
            matplotlib.rcParams.update(_SAVED["rc"])
    warnings.filters[:] = _SAVED["filters"]
    np.seterr(**_SAVED["errstate"])
    sys.path[:] = _SAVED["path"]
    os.environ.clear()
    os.environ.update(_SAVED["environ"])
    os.chdir(_SAVED["cwd"])
    from IPython import get_ipython

    # new_session: history and execution counter start again, as in a fresh kernel
    get_ipython().reset(new_session=True)
    gc.collect()


__all__ = ["restore", "snapshot"]
