"""PlanViewer: the dry-run plan of a target as a table, with the reason for each run, and a button to run it.

The table is :func:`musewise.dpu.plan_table.plan_rows` of :func:`musewise.dpu.plan`: one
row per run (step, night, IFU or exposure, the inputs it reads, the planner's status and
reason). *Run plan* executes the runs still to do (:func:`~musewise.dpu.plan_table.execute_plan`)
in a background thread, so the kernel stays free: the progress bar counts the runs that ended
and each row shows its run's state (queued, running, succeeded, failed with its error,
skipped) as it changes. *Re-plan* asks the planner again (after a run, what is left).

Every control's handler is one line calling a public method (:meth:`PlanViewer.refresh`,
:meth:`PlanViewer.run`), which works without a browser; :meth:`PlanViewer.wait` waits for a
background run.
"""

from __future__ import annotations

import threading
import time
from html import escape

import ipywidgets as widgets
from traitlets import Bool, Unicode

from ..exceptions import MusewiseError

__all__ = ["PlanViewer", "plan_table_html"]

#: Colour of each planner status and run state.
STATUS_COLOURS = {"current": "#2e7d32", "missing": "#c62828", "out of date": "#ef6c00"}
STATE_COLOURS = {"queued": "#757575", "running": "#1565c0", "succeeded": "#2e7d32", "failed": "#c62828",
                 "skipped": "#9e9e9e"}

_CSS = """<style>
.mw-plan table {border-collapse: collapse; font-size: 12px}
.mw-plan th {background: #f0f0f0; text-align: left; padding: 2px 6px; border-bottom: 1px solid #bbb}
.mw-plan td {border-bottom: 1px solid #e0e0e0; padding: 3px 6px; vertical-align: top; line-height: 1.35}
.mw-plan td.nowrap {white-space: nowrap}
.mw-plan tr.current td {color: #666}
.mw-plan .badge {color: white; border-radius: 3px; padding: 0 5px; white-space: nowrap}
.mw-plan .error {color: #b71c1c; font-family: monospace; font-size: 11px; white-space: pre-wrap;
                 line-height: 1.3}
.mw-plan .inputs {font-family: monospace; font-size: 11px}
</style>"""


def _badge(text: str, colour: str) -> str:
    return f"<span class='badge' style='background:{colour}'>{escape(text)}</span>"


def _error_text(error: str, limit: int = 300) -> str:
    # The first line says what failed (the recipe's message), the last how it ended (esorex's
    # status); the whole error is the tooltip and in the run's notebook.
    lines = [ln.strip() for ln in error.strip().splitlines() if ln.strip()]
    text = lines[0] if len(lines) < 2 else f"{lines[0]}\n... {lines[-1]}"
    return text if len(text) <= limit else text[:limit] + "..."


def plan_table_html(rows) -> str:
    """The rows of a plan (:class:`~musewise.dpu.plan_table.PlanRow`) as an HTML table."""
    body = []
    for r in rows:
        run = ""
        if r.state:
            run = _badge(r.state, STATE_COLOURS.get(r.state, "#757575"))
            if r.run_id:
                run += f" run {r.run_id}" + (f" ({r.seconds:.0f} s)" if r.seconds else "")
            if r.error:
                run += f"<div class='error' title='{escape(r.error, quote=True)}'>{escape(_error_text(r.error))}</div>"
        product = f"#{r.product_id}" if r.product_id else ""
        body.append(
            f"<tr class='{'current' if not r.needed else 'todo'}' data-step='{escape(r.step)}'>"
            f"<td><b>{escape(r.step)}</b></td><td class='nowrap'>{escape(r.night)}</td>"
            f"<td class='nowrap'>{escape(r.where)}</td>"
            f"<td class='inputs'>{escape(r.inputs)}</td>"
            f"<td>{_badge(r.status, STATUS_COLOURS.get(r.status, '#757575'))} {product}</td>"
            f"<td>{escape(r.reason)}</td><td class='run-state'>{run}</td></tr>")
    return (f"{_CSS}<div class='mw-plan'><table><tr><th>step</th><th>night</th><th>IFU / exposure</th>"
            "<th>inputs</th><th>status</th><th>reason</th><th>run</th></tr>"
            f"{''.join(body)}</table></div>")


class PlanViewer(widgets.VBox):
    """The plan towards a target of one night, and the button that runs it.

    Parameters
    ----------
    archive : musewise.archive.Archive
        The archive as seen by the user whose runs these are.
    target : str
        Step name, e.g. ``scipost``.
    night : str
        Observing night ``YYYY-MM-DD``.
    ifus : list of int, optional
        Default: every IFU of the night's raw frames.
    commit : bool
        Plan (and run) the project's reference reduction instead of a personal trial.
    p, step_params : dict, optional
        Parameters of the target and of other steps, as for :func:`musewise.dpu.make`.
    engine : str, optional
        Execution engine (default ``DpuConfig.engine``).

    Examples
    --------
    >>> viewer = PlanViewer(arch, "scipost", "2026-11-20", ifus=[1])   # doctest: +SKIP
    >>> [(r.step, r.status, r.reason) for r in viewer.rows]            # doctest: +SKIP
    >>> viewer.run(); viewer.wait()                                    # doctest: +SKIP
    """

    running = Bool(False, help="A background run of the plan is going on.")
    status = Unicode("", help="Last message shown to the user.")

    def __init__(self, archive, target: str, night: str, ifus=None, *, commit: bool = False,
                 p: dict | None = None, step_params: dict | None = None, engine: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.archive = archive
        self.target, self.night = target, str(night)
        self.ifus = ifus
        self.commit, self.p, self.step_params, self.engine = bool(commit), p, step_params, engine
        self.plan = None
        self.rows: list = []          #: the :class:`PlanRow` shown
        self.outcomes: list = []      #: :class:`RunOutcome` of the last run
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._title = widgets.HTML("")
        self._table = widgets.HTML("", layout=widgets.Layout(max_height="520px", overflow="auto"))
        self._run = widgets.Button(description="Run plan", icon="play", button_style="primary")
        self._run.on_click(lambda _b: self.run())
        self._replan = widgets.Button(description="Re-plan", icon="refresh")
        self._replan.on_click(lambda _b: self.refresh())
        self._progress = widgets.IntProgress(value=0, min=0, max=1, description="runs",
                                             layout=widgets.Layout(width="360px"))
        self._progress.layout.visibility = "hidden"
        self._status = widgets.HTML("")
        widgets.dlink((self, "status"), (self._status, "value"),
                      lambda s: f"<span style='font-size:smaller'>{escape(s)}</span>")
        self.children = [self._title, widgets.HBox([self._run, self._replan, self._progress]), self._status,
                         self._table]
        self.refresh()

    # ----------------------------------------------------------- public API
    def refresh(self) -> list:
        """Ask the planner again and show its rows (refused while a run is going on).

        Returns
        -------
        list of PlanRow
        """
        from ..dpu import plan
        from ..dpu.plan_table import plan_rows

        if self.running:
            self.status = "a run is going on: re-plan when it has ended"
            return self.rows
        self.plan = plan(self.target, self.night, self.ifus, archive=self.archive, p=self.p,
                         step_params=self.step_params, commit=self.commit)
        self.rows = plan_rows(self.plan, self.archive)
        todo = len(self.plan.todo)
        self._title.value = (f"<h4>Plan for <code>{escape(self.plan.target)}</code> of {escape(self.night)}, "
                             f"IFUs {', '.join(map(str, self.plan.ifus))}: {todo} run(s) to do, "
                             f"{len(self.rows) - todo} current"
                             f"{' (reference reduction)' if self.commit else ''}</h4>")
        self._run.disabled = todo == 0
        self._progress.layout.visibility = "hidden"
        self.status = "nothing to do: every product is current" if todo == 0 else ""
        self._draw()
        return self.rows

    def run(self, background: bool = True):
        """Execute the runs still to do, each row showing its run's state as it changes.

        Parameters
        ----------
        background : bool
            Run in a thread and return at once (the kernel stays responsive); False: return
            when the plan has run.

        Returns
        -------
        threading.Thread or list of RunOutcome or None
            The thread (background), else the outcomes; None (background) or ``[]`` when
            every product is current.
        """
        if self.running:
            self.status = "already running"
            return self._thread
        todo = len(self.plan.todo)
        if not todo:
            self.status = "nothing to do: every product is current"
            return [] if not background else None
        self.running = True
        self._run.disabled = self._replan.disabled = True
        self._progress.max, self._progress.value, self._progress.bar_style = todo, 0, "info"
        self._progress.layout.visibility = "visible"
        self.outcomes = []
        self.status = f"running {todo} run(s)..."
        if not background:
            self._execute()
            return self.outcomes
        self._thread = threading.Thread(target=self._execute, name=f"plan-{self.target}-{self.night}",
                                        daemon=True)
        self._thread.start()
        return self._thread

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a background run to end; True if it has (or none was going on)."""
        t = self._thread
        if t is not None:
            t.join(timeout)
        return not self.running

    # -------------------------------------------------------------- internals
    def _execute(self):
        from ..dpu.plan_table import execute_plan, run_summary

        t0 = time.perf_counter()
        try:
            self.outcomes = execute_plan(self.plan, self.archive, commit=self.commit, p=self.p,
                                         step_params=self.step_params, engine=self.engine, progress=False,
                                         on_update=self._on_update, raise_on_failure=False)
        except (MusewiseError, OSError) as exc:
            # A step could not be prepared (e.g. a calibration is missing): nothing of it ran.
            with self._lock:
                queued = [r for r in self.rows if r.state == "queued"]
                for r in queued:
                    failed = r.step == queued[0].step
                    r.state, r.error = ("failed", str(exc)) if failed else ("skipped", "")
            self._draw()
        finally:
            ok = all(r.state != "failed" for r in self.rows)
            self._progress.bar_style = "success" if ok else "danger"
            self.status = (f"{run_summary(self.rows)} in {time.perf_counter() - t0:.0f} s"
                           + ("" if ok else ": see the failed rows") + "; Re-plan to see what is left")
            self._replan.disabled = False
            self.running = False

    def _on_update(self, key, state, outcome):
        with self._lock:
            row = next((r for r in self.rows if r.key == key), None)
            if row is None:
                return
            row.state = state
            if outcome is not None:
                row.run_id, row.error, row.seconds = outcome.run_id, outcome.error or "", outcome.seconds
                self.outcomes.append(outcome)
            if state in ("succeeded", "failed"):
                self._progress.value = min(self._progress.max, self._progress.value + 1)
            elif state == "skipped":
                self._progress.max = max(1, self._progress.max - 1)
        self._draw()

    def _draw(self):
        self._table.value = plan_table_html(self.rows)
