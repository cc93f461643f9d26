"""musewise.dpu: reduce MUSE data the same way for everyone, with the full history of each reduction.

Public API::

    >>> from musewise import dpu
    >>> dpu.run('bias', date='2026-11-20', ifu=1)                  # one step   # doctest: +SKIP
    >>> dpu.plan('scipost', date='2026-11-20', ifus=[1])           # what is missing or out of date  # doctest: +SKIP
    >>> dpu.make('scipost', date='2026-11-20', dry_run=False)      # build it in dependency order  # doctest: +SKIP
    >>> print(dpu.provenance_tree(cube_id))                        # doctest: +SKIP

* :func:`run` - one step of a night, every IFU in parallel on Dask; each run executes
  the recipe's template notebook (``templates/``) with papermill and archives its
  products, executed notebook, parameters, command and inputs (with the reason each
  calibration was chosen);
* :func:`plan` / :func:`make` - target processing: the ordered runs needed for a
  target, reusing every product that is still current;
* :func:`demo_cascade` - the whole chain to a cube for a night (used by ``make demo``);
* :func:`provenance_tree` - the provenance of a product as text.

Settings: :class:`DpuConfig` (site default parameters, optional steps, engine, and the
post-run hooks called after each batch of runs - QC of the new products by default,
see :mod:`musewise.dpu.hooks`).
"""

from ..exceptions import ReductionFailed
from .api import prepare, run, validate_parameters
from .config import DpuConfig
from .planner import Plan, PlannedRun, demo_cascade, demo_target, make, plan, provenance_tree
from .runner import RunOutcome
from .selection import RunInput, RunSpec
from .steps import STEPS, Step, get_step

__all__ = ["DpuConfig", "Plan", "PlannedRun", "ReductionFailed", "RunInput", "RunOutcome", "RunSpec",
           "STEPS", "Step", "demo_cascade", "demo_target", "get_step", "make", "plan", "prepare", "provenance_tree",
           "run", "validate_parameters"]
