"""Quality control of MUSE products: QC notebooks, thresholds, and the distributed review.

Public API
----------
:func:`run_qc`, :func:`run_qc_batch`, :func:`run_qc_many`, :func:`after_product`, :func:`after_run`, :class:`QCResult`
    Measure a product in its papermill notebook (``qc_notebooks/qc_<type>.ipynb``),
    archive the run and notebook, store the numbers, flag what crosses a limit;
    several products in parallel on Dask, by the executor reductions use;
    :func:`after_run` is the reduction layer's post-run hook (``DpuConfig.post_run_hooks``).
:class:`QCThresholds`, :class:`QCConfig`
    The site's limits and QC settings (traitlets, ``c.QCThresholds.* = ...``).
:func:`queue`, :func:`claim`, :func:`unclaim`, :func:`review`, :func:`mark_affected`,
:func:`review_history`, :func:`review_state`
    The review workflow (see :mod:`musewise.qc.review`).
:mod:`musewise.qc.measures`, :mod:`musewise.qc.measures_calib`
    The measuring functions (masters, wavelength solutions, cubes; LSF, twilight
    cube, standard response).
"""

from .review import (
    AffectedProduct,
    AlreadyClaimedError,
    Claim,
    QueueItem,
    ReviewOutcome,
    ReviewStatus,
    claim,
    current_claim,
    mark_affected,
    queue,
    review,
    review_history,
    review_state,
    unclaim,
)
from ..exceptions import QCError, QCNotApplicableError
from .runner import QCResult, after_product, after_run, qc_of, qc_type_of, run_qc, run_qc_batch, run_qc_many
from .thresholds import QC_TYPES, QCConfig, QCThresholds, Verdict

__all__ = ["AffectedProduct", "AlreadyClaimedError", "Claim", "QCConfig", "QCError", "QCNotApplicableError",
           "QCResult", "QCThresholds", "QC_TYPES", "QueueItem", "ReviewOutcome", "ReviewStatus", "Verdict",
           "after_product", "after_run", "claim", "current_claim", "mark_affected", "qc_type_of", "queue", "review",
           "qc_of", "review_history", "review_state", "run_qc", "run_qc_batch", "run_qc_many", "unclaim"]
