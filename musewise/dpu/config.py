"""Settings of the reduction layer (site-wide, so everyone reduces the same way).

They are read from the same traitlets config file as
:class:`~musewise.config.MusewiseConfig` (``c.DpuConfig.<name> = ...``).

Execution clusters
------------------
Runs are Dask tasks, one run (one pipeline call) at a time in each worker process. With
``MusewiseConfig.dask_scheduler`` empty, a ``distributed.LocalCluster`` with
``MusewiseConfig.n_workers`` worker processes (one thread each) is started. A site's running
scheduler is used by address (``tcp://host:8786``; start its workers with ``--nthreads 1``).
On a batch system, dask-jobqueue (``pip install 'musewise[jobqueue]'``) submits the workers
as batch jobs, and the memory-heavy recipes (``heavy_recipes``) get jobs of their own size::

    c.MusewiseConfig.dask_scheduler = "jobqueue:slurm"
    c.DpuConfig.cluster_kwargs = {"queue": "muse", "memory": "8GB", "walltime": "04:00:00"}
    c.DpuConfig.cluster_jobs = 12                  # at most 12 jobs for the light runs
    c.DpuConfig.heavy_cluster_kwargs = {"memory": "64GB", "job_cpu": 8}   # scipost, exp_combine...

Each job is one Dask worker of one thread (``cores`` and ``processes`` 1); ``job_cpu`` is
what the job asks of the batch system, and the OpenMP threads of its pipeline calls. Jobs
are started as runs wait and ended when idle (Dask's adaptive scaling), at most
``cluster_jobs`` light ones and ``heavy_concurrency`` heavy ones.

Workers must see the archive database, the datastore and ``scratch`` at the
same paths as the submitting session.
"""

from __future__ import annotations

import os

from traitlets import Bool, Dict, Float, Int, List, Unicode
from traitlets.config import Configurable

from .hooks import DEFAULT_POST_RUN_HOOKS

#: Parameters musewise gives recipes unless the user says otherwise.
#: muse_scipost models and subtracts the sky (the pipeline's own default, stated so it
#: is recorded on every run): it fits the SKY_LINES with each slice's LSF_PROFILE on the
#: darkest ``skymodel_fraction`` of the field, then subtracts the continuum left over;
#: muse_wavecal writes its fit residuals, which the reduction notebook plots.
#: muse_scipost saves, besides the cube and the sky it subtracted (SKY_SPECTRUM...), each exposure's fully reduced pixel table
#: (PIXTABLE_REDUCED): its ``origin`` column is how a spaxel is traced back to the
#: IFU, slice and calibrations that made it (:mod:`musewise.origin`), and
#: it is the input of muse_exp_combine.
#: The instrument model has no differential atmospheric refraction, so muse_scipost
#: must not correct for it (``lambdaref=-1``): its default correction (7000 A) moves
#: the simulated light by up to 0.42 arcsec at 4750 A and a white-light centroid by
#: 0.12 arcsec (measured, airmass 1.25); a site with real data removes this default.
DEFAULT_PARAMETERS = {
    "muse_scipost": {"skymethod": "model", "save": "cube,skymodel,individual", "lambdaref": -1.0},
    "muse_wavecal": {"residuals": True},
}

#: What the reduction leaves out where disk is short: the reduced pixel tables (9.1 GB a 24-IFU
#: exposure; exp_combine and the spaxel-origin view need them, combine_cubes does not) and the
#: pre-reduced CCD images (4.9 GB an exposure, looked at by their QC only). The 2-exposure
#: 24-IFU demo night archives ~84 GB of products beside its 15.5 GB of raw frames by default,
#: ~51 GB so. Overlaid on the site's defaults.
LEAN_PARAMETERS = {
    "muse_scipost": {"save": "cube,skymodel"},
    "muse_scibasic": {"saveimage": False},
}

#: How far (in nights) a reduction looks for a calibration made by another night, by category,
#: as the MUSE deep fields' reduction system does (musered's ``frames.offsets``: one night for
#: the masters, three for TWILIGHT_CUBE, five for STD_RESPONSE and STD_TELLURIC). The
#: instrument drifts from night to night (flats, wavelength solution); the throughput
#: and the illumination correction hold for a few nights.
DEFAULT_CALIBRATION_WINDOWS = {
    "MASTER_BIAS": 1, "MASTER_DARK": 1, "MASTER_FLAT": 1, "TRACE_TABLE": 1, "WAVECAL_TABLE": 1,
    "LSF_PROFILE": 1, "TWILIGHT_CUBE": 3, "STD_RESPONSE": 5, "STD_TELLURIC": 5,
}


class DpuConfig(Configurable):
    """How the reduction layer selects, runs and records reductions."""

    default_parameters = Dict(
        DEFAULT_PARAMETERS,
        help="Recipe parameters used unless the user gives others, by recipe name "
        "(e.g. {'muse_scipost': {'skymethod': 'simple'}}). They are recorded on every run.",
    ).tag(config=True)

    optional_steps = List(
        Unicode(), [],
        help="Optional steps the planner adds to the cascade towards scipost: any of "
        "'dark'. Bias, flat, wavecal, lsf (for the sky model) and scibasic are always built, "
        "twilight when the night has twilight flats, scibasic_std and standard when it has a "
        "standard star.",
    ).tag(config=True)

    calibration_windows = Dict(
        DEFAULT_CALIBRATION_WINDOWS,
        help="How many nights away from the frame's night a calibration made by a reduction "
        "may be taken, by category (ESO PRO CATG -> nights; 0: the frame's own night only). A "
        "night without its own calibrations takes the nearest night's within this window (the "
        "planner builds it there); each choice says how far it came. Categories not listed use "
        "calibration_window_default. Static (undated) calibrations are never limited.",
    ).tag(config=True)

    calibration_window_default = Int(
        1, help="Window (nights) of a calibration category missing from calibration_windows.",
    ).tag(config=True)

    engine = Unicode(
        "auto",
        help="Where runs execute: 'dask' (the cluster of MusewiseConfig.dask_scheduler, or a "
        "LocalCluster), 'local' (one after the other in this process), or 'auto' (Dask for several "
        "runs, and for a single run once this process has its Dask cluster; local otherwise).",
    ).tag(config=True)

    cluster_kwargs = Dict(
        {},
        help="Keyword arguments of the dask-jobqueue cluster class when MusewiseConfig.dask_scheduler "
        "is 'jobqueue:<system>': queue, memory, walltime, job_cpu (the cores each batch job asks for, "
        "and the OpenMP threads of its pipeline calls; default 1), python, log_directory... Each job "
        "is one worker of one thread: cores and processes are 1.",
    ).tag(config=True)

    heavy_cluster_kwargs = Dict(
        {},
        help="What differs in the batch jobs that run heavy_recipes, e.g. {'memory': '64GB', "
        "'job_cpu': 8}: with any, those runs go to jobs of their own (at most heavy_concurrency), "
        "so that the batch system gives them the memory and cores they need; empty: they share the "
        "jobs of the other runs.",
    ).tag(config=True)

    cluster_jobs = Int(
        1, help="Most batch jobs of a dask-jobqueue cluster for the runs other than heavy_recipes "
        "(started as runs wait, ended when idle).",
    ).tag(config=True)

    local_cluster_dask_config = Dict(
        {"distributed.worker.profile.enabled": False},
        help="Dask settings (dask.config keys) of the LocalCluster musewise starts when "
        "MusewiseConfig.dask_scheduler is empty; its workers take them. The default turns off "
        "the workers' statistical profiler (a stack sample every 10 ms, for a dashboard musewise "
        "does not start): on a machine with a core per worker its CPU comes out of the "
        "pipeline's. A site's scheduler and batch clusters keep their own Dask settings.",
    ).tag(config=True)

    templates_dir = Unicode(
        "",
        help="Folder of the reduction notebook templates (muse_bias.ipynb...). Empty: the "
        "templates/ folder shipped with musewise, else generated on the fly.",
    ).tag(config=True)

    keep_workdirs = Bool(
        False,
        help="Keep each run's working directory under scratch after its products are "
        "archived (they are copies). A failed run's directory is always kept, for "
        "looking into; its notebook and error are in the archive too.",
    ).tag(config=True)

    heavy_recipes = List(
        Unicode(), ["muse_scipost", "muse_exp_combine", "muse_twilight", "muse_standard"],
        help="Recipes whose runs hold all IFUs of one or more exposures in memory (about 12 GB "
             "for 24 IFUs of one exposure). At most heavy_concurrency of them run at once on "
             "the whole cluster, whatever its number of workers.",
    ).tag(config=True)

    heavy_concurrency = Int(
        1, help="How many runs of heavy_recipes may run at the same time across the cluster.",
    ).tag(config=True)

    warm_kernels = Bool(
        True,
        help="Start each notebook run's kernel while the previous run executes, with "
        "kernel_preload already imported (one spare per process that executes notebooks). "
        "Each kernel executes one notebook (but see shared_kernels). False: papermill starts and stops a "
        "kernel within each run (about 2 s more per run here).",
    ).tag(config=True)

    kernel_preload = List(
        Unicode(), ["numpy", "astropy.io.fits", "astropy.table", "matplotlib.pyplot", "musewise.recipes",
                    "musewise.dpu.notebook", "musewise.qc.notebook"],
        help="Modules a spare kernel imports before its run (matplotlib.pyplot also selects the "
        "inline backend, as the notebooks' %%matplotlib inline does). Only what every notebook "
        "imports anyway: a run sees what a fresh kernel would.",
    ).tag(config=True)

    shared_kernels = List(
        Unicode(), ["qc", "reduction"],
        help="Which of musewise's own notebooks may execute in a kernel that earlier ones of the "
        "same process used, its namespace and settings reset between them "
        "(musewise.dpu.kernel_state): 'qc' (the QC notebooks), 'reduction' (the reduction "
        "templates shipped with musewise). A site's own notebooks (DpuConfig.templates_dir, "
        "QCConfig.notebooks_dir) always get fresh kernels. Read where the notebook executes (a "
        "Dask worker reads the site's config file). "
        "A kernel start costs 1.5-2.5 s of CPU, taken from the pipeline runs beside it; the run "
        "records which notebook of its kernel it was (kernel_notebook). ['qc']: a fresh kernel for "
        "every reduction; []: for every notebook.",
    ).tag(config=True)

    kernel_reuse_limit = Int(
        20,
        help="How many notebooks a shared kernel (shared_kernels) executes before it is stopped "
        "and a fresh one takes over. 0 or 1: no kernel is shared.",
    ).tag(config=True)

    warm_kernel_idle = Float(
        300.0, help="A spare kernel not taken by a run for this long is stopped (s; 0: kept until exit).",
    ).tag(config=True)

    recipe_threads = Int(
        0,
        help="OpenMP threads of each pipeline call (esorex's OMP_NUM_THREADS; CPL's own default is "
        "every core, so two runs at once on 2 cores would each start 2 threads and slow each other "
        "down). 0: this host's cores shared by the runs of a batch that can run at once there (at "
        "most MusewiseConfig.n_workers on Dask, heavy_concurrency for heavy_recipes, 1 on the local "
        "engine), at least 1 each. On a remote or batch cluster whose workers have other cores than "
        "this host, set it to the cores of one worker divided by its processes.",
    ).tag(config=True)

    run_timeout = Int(
        4 * 3600, help="Time limit of one reduction notebook (s)."
    ).tag(config=True)

    heartbeat_interval = Float(
        60.0, help="How often a run's process refreshes its lease while the notebook runs (s). "
        "A run whose process is gone is closed as failed when the planner next looks: at once on "
        "the same host (its pid is gone), after run_lease seconds without a heartbeat on another.",
    ).tag(config=True)

    run_lease = Float(
        600.0, help="Age of a run's last heartbeat after which a run of another host (or from before a "
        "reboot) is taken for dead and closed as failed (s); several heartbeat intervals.",
    ).tag(config=True)

    def stale_limits(self) -> dict:
        """Keywords of :meth:`Archive.close_stale_runs`: the lease, and the longest a run may take (s)."""
        return {"lease": max(float(self.run_lease), 2.0 * float(self.heartbeat_interval)),
                # the recipe's limit, the notebook cell's (+600 s) and archiving
                "max_age": float(self.run_timeout) + 3600.0}

    post_run_hooks = List(
        Unicode(), list(DEFAULT_POST_RUN_HOOKS),
        help="Functions called after each batch of runs, once their products are archived, "
             "as 'module.path:function' (see musewise.dpu.hooks). The default runs the QC notebook "
             "of every new product on the engine the runs used; [] turns automatic QC off.",
    ).tag(config=True)

    def batch_job_kwargs(self, heavy: bool = False) -> dict:
        """Keyword arguments of the dask-jobqueue cluster whose jobs run heavy_recipes (``heavy``)
        or the other recipes: ``cluster_kwargs``, overlaid for heavy runs with
        ``heavy_cluster_kwargs``; one worker of one thread per job.

        Raises
        ------
        ConfigurationError
            ``cores`` or ``processes`` other than 1 (two runs would share a job's cores and
            memory unseen by the batch system), or a ``job_cpu`` below 1.
        """
        from ..exceptions import ConfigurationError

        kw = dict(self.cluster_kwargs)
        if heavy:
            kw.update(self.heavy_cluster_kwargs)
        for key in ("cores", "processes"):
            if int(kw.get(key, 1)) != 1:
                raise ConfigurationError(
                    f"DpuConfig {'heavy_cluster_kwargs or ' if heavy else ''}cluster_kwargs {key}={kw[key]!r}: "
                    "each batch job runs one pipeline call at a time (cores and processes 1); give the "
                    "cores a job asks for, and its calls' OpenMP threads, as job_cpu")
        kw["cores"] = kw["processes"] = 1
        kw["job_cpu"] = int(kw.get("job_cpu") or 1)
        if kw["job_cpu"] < 1:
            raise ConfigurationError(f"DpuConfig cluster_kwargs job_cpu={kw['job_cpu']}: at least 1")
        return kw

    def threads_per_run(self, at_once: int, cores: int | None = None) -> int:
        """OpenMP threads of one pipeline call when ``at_once`` runs share this host (``recipe_threads``).

        Parameters
        ----------
        at_once : int
            Runs executing at the same time on the host.
        cores : int, optional
            Cores this process may use (default: its CPU affinity).
        """
        if int(self.recipe_threads) > 0:
            return int(self.recipe_threads)
        cores = int(cores or len(os.sched_getaffinity(0)))
        return max(1, cores // max(1, int(at_once)))

    @classmethod
    def from_config(cls, mwconfig) -> "DpuConfig":
        """The DpuConfig of a :class:`~musewise.config.MusewiseConfig` (same config file)."""
        return cls(config=getattr(mwconfig, "config", None))

    def window_for(self, category: str) -> int:
        """How many nights from the frame's a calibration of ``category`` may come from."""
        return int(self.calibration_windows.get(category, self.calibration_window_default))

    def lean_parameters(self) -> dict:
        """The site's default parameters overlaid with :data:`LEAN_PARAMETERS`."""
        out = {r: dict(v) for r, v in self.default_parameters.items()}
        for recipe, values in LEAN_PARAMETERS.items():
            out[recipe] = {**out.get(recipe, {}), **values}
        return out

    def parameters_for(self, recipe: str, given: dict | None = None) -> dict:
        """Site defaults of ``recipe`` overlaid with ``given``."""
        return {**self.default_parameters.get(recipe, {}), **(given or {})}


__all__ = ["DEFAULT_CALIBRATION_WINDOWS", "DEFAULT_PARAMETERS", "DpuConfig", "LEAN_PARAMETERS"]
