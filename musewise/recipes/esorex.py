"""MUSE pipeline recipes, described by and run through ``esorex``.

Nothing about a pipeline recipe is typed by hand here: its parameters (names,
types, defaults, help, choices), its input tags (raw or calibration, required
or not) and its product categories are read from ``esorex --params RECIPE`` and
``esorex --man-page RECIPE``. The description is generated on first use and
cached as JSON under :func:`cache_dir`, in a folder named by the esorex and
pipeline versions, so an upgraded pipeline is described afresh.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Sequence

from ..exceptions import ParameterError, PipelineNotInstalledError, RecipeError
from .base import (
    InputTag,
    LogCallback,
    Recipe,
    RecipeOutput,
    RecipeParameter,
    RecipeResult,
    describe_product,
    utcnow,
    write_sof,
)

#: What to run to get the pipeline on Debian/Ubuntu.
INSTALL_HINT = "apt-get install -y esorex cpl-plugin-muse"

#: Default time limit of one esorex run (s).
DEFAULT_TIMEOUT = 4 * 3600.0

#: Lines of the log quoted in the message of a failed run.
TAIL_LINES = 12

_CACHE_FORMAT = 1


#: The site's pipeline settings, given by the layer that runs recipes (:func:`configure`).
_SITE: dict = {}


def configure(config=None, *, esorex: str | None = None, recipe_cache: str | None = None) -> None:
    """Tell the pipeline recipes which esorex and which description cache the site uses.

    The reduction layer calls it with the archive's configuration before it chooses or
    runs recipes (:func:`musewise.dpu.run`, the Dask workers, the template notebooks),
    so this module never loads the configuration itself.

    Parameters
    ----------
    config : MusewiseConfig or dict, optional
        Its ``esorex`` and ``recipe_cache`` are used (a dict: the archive settings a
        notebook is given).
    esorex, recipe_cache : str, optional
        Override ``config``'s values.
    """
    get = config.get if isinstance(config, dict) else (lambda k: getattr(config, k, None))
    _SITE.update({"esorex": esorex or (get("esorex") if config is not None else None),
                  "recipe_cache": recipe_cache or (get("recipe_cache") if config is not None else None)})


def esorex_executable(esorex: str | None = None) -> str:
    """Resolve the esorex executable.

    Order: the argument, the site's (``MusewiseConfig.esorex`` given to :func:`configure`),
    then ``esorex`` on ``$PATH``.

    Returns
    -------
    str
        Absolute path of esorex.

    Raises
    ------
    PipelineNotInstalledError
        If it cannot be found; the message names the install command.
    """
    esorex = esorex or _SITE.get("esorex") or "esorex"
    found = shutil.which(esorex)
    if not found:
        raise PipelineNotInstalledError(
            "esorex",
            f"the ESO pipeline executable {esorex!r} was not found; install it with "
            f"`{INSTALL_HINT}` (or set MusewiseConfig.esorex / MUSEWISE_ESOREX)",
        )
    return found


def cache_dir(config=None) -> Path:
    """Folder of cached recipe descriptions: ``MusewiseConfig.recipe_cache``.

    Parameters
    ----------
    config : MusewiseConfig, optional
        Default: the one given to :func:`configure`, else musewise's default
        (``$XDG_CACHE_HOME/musewise/recipes``).
    """
    if config is not None:
        return Path(config.recipe_cache)
    if _SITE.get("recipe_cache"):
        return Path(_SITE["recipe_cache"])
    from ..config import MusewiseConfig

    return Path(MusewiseConfig().recipe_cache)  # the default only: no site file, no environment


def _esorex_output(esorex: str, *args: str, timeout: float = 120.0) -> str:
    # esorex writes esorex.log into its working directory: describe in a scratch
    # folder so the caller's folder is not littered.
    with tempfile.TemporaryDirectory(prefix="musewise-esorex-") as tmp:
        proc = subprocess.run(
            [esorex, *args], capture_output=True, text=True, timeout=timeout, cwd=tmp
        )
    return proc.stdout + proc.stderr


_VERSIONS: dict[tuple[str, str], tuple[str, str]] = {}


def pipeline_versions(esorex: str, probe_recipe: str = "muse_bias") -> tuple[str, str]:
    """The esorex version and the version of the plug-in that provides ``probe_recipe``.

    Asked once per process (one ``esorex --man-page`` call, ~0.1 s).

    Returns
    -------
    (str, str)
        e.g. ``("3.13.6", "2.8.7")``.
    """
    key = (esorex, probe_recipe)
    if key not in _VERSIONS:
        text = _esorex_output(esorex, "--man-page", probe_recipe)
        ev = re.search(r"ESO Recipe Execution Tool, version (\S+)", text)
        pv = re.search(r"^\s*\S+ -- version (\S+)", text, re.M)
        if not pv:
            raise PipelineNotInstalledError(
                probe_recipe,
                f"esorex does not know recipe {probe_recipe!r}; is the plug-in installed? "
                f"(`{INSTALL_HINT}`)\n{_tail(text)}",
            )
        _VERSIONS[key] = (ev.group(1) if ev else "unknown", pv.group(1))
    return _VERSIONS[key]


def forget_versions() -> None:
    """Forget the versions probed in this process (after a pipeline upgrade)."""
    _VERSIONS.clear()


# ---------------------------------------------------------------------------------------
# Parsing esorex output
# ---------------------------------------------------------------------------------------


def parse_params(text: str) -> dict[str, str]:
    """Recipe parameters and their default values as ``esorex --params`` prints them."""
    m = re.search(r"^Recipe Parameters :\s*$", text, re.M)
    if not m:
        return {}
    out = {}
    for line in text[m.end():].splitlines():
        mm = re.match(r"^\s{2}(\S+)\s+:\s?(.*)$", line)
        if mm:
            out[mm.group(1)] = mm.group(2).strip()
    return out


_INT = re.compile(r"^[-+]?\d+$")
_FLOAT = re.compile(r"^[-+]?(\d+\.\d*|\.\d+|\d+(\.\d*)?[eE][-+]?\d+|nan|inf)$", re.I)


def infer_type(value: str) -> type:
    """The CPL type of a value printed by ``esorex --params``.

    esorex prints booleans as TRUE/FALSE, integers as plain digits and doubles
    always with a decimal point or an exponent (``30.0``, ``4e+03``), so the
    printed default tells the type unambiguously.
    """
    if value in ("TRUE", "FALSE"):
        return bool
    if _INT.match(value):
        return int
    if _FLOAT.match(value):
        return float
    return str


def _convert(value: str, typ: type):
    if typ is bool:
        return value.strip().upper() == "TRUE"
    return typ(value)


def _section(text: str, name: str) -> str:
    m = re.search(rf"^{name}\s*$(.*?)(?=^[A-Z][A-Z ]+\s*$|\Z)", text, re.M | re.S)
    return m.group(1) if m else ""


def parse_options(text: str) -> dict[str, dict]:
    """Help, default and choices of each option in the OPTIONS section of a man page."""
    body = _section(text, "OPTIONS")
    opts: dict[str, list[str]] = {}
    current = None
    for line in body.splitlines():
        m = re.match(r"^\s{2}--(\S+)\s*:\s?(.*)$", line)
        if m:
            current = m.group(1)
            opts[current] = [m.group(2).strip()]
        elif current and line.startswith(" " * 10) and line.strip():
            opts[current].append(line.strip())
        else:
            current = None
    out = {}
    for name, parts in opts.items():
        help_ = " ".join(parts)
        default = None
        m = re.search(r"\s*\[([^\[\]]*)\]\s*$", help_)
        if m:
            default = m.group(1)
            help_ = help_[: m.start()]
        choices = None
        m = re.search(r"\s*<([^<>]*)>\s*$", help_)
        if m:
            choices = [c.strip() for c in m.group(1).split("|")]
            help_ = help_[: m.start()]
        out[name] = {"help": help_.strip(), "default": default, "choices": choices}
    return out


def parse_frames(text: str) -> tuple[list[InputTag], list[str]]:
    """Input tags and product categories from the DESCRIPTION tables of a man page."""
    inputs: list[InputTag] = []
    outputs: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r'^\s*(Input|Product) frames for raw frame tag "([^"]+)"', lines[i])
        if not m:
            i += 1
            continue
        what, group = m.groups()
        # Skip to the dashes under the column titles; their spans give the columns.
        while i < len(lines) and not re.match(r"^\s*-{4,}", lines[i]):
            i += 1
        if i >= len(lines):
            break
        spans = [mm.span() for mm in re.finditer(r"-+", lines[i])]
        i += 1
        while i < len(lines) and lines[i].strip():
            row = lines[i]
            i += 1
            tag = row.split()[0]
            if what == "Product":
                if tag not in outputs:
                    outputs.append(tag)
                continue
            desc_start = spans[-1][0]
            mid = row[spans[0][1]:desc_start].split()
            kind = mid[0] if mid else "raw"
            req = len(mid) > 1 and mid[1] == "Y"
            count = mid[2] if len(mid) > 2 else ""
            inputs.append(
                InputTag(tag, kind, req, count, row[desc_start:].strip(), group)
            )
    return inputs, outputs


def parse_description(text: str, name: str) -> str:
    """The recipe's description: the DESCRIPTION prose, else the NAME line."""
    desc = _section(text, "DESCRIPTION")
    prose = re.split(r"^\s*Input frames for", desc, maxsplit=1, flags=re.M)[0]
    prose = " ".join(prose.split())
    if prose:
        return prose
    short = " ".join(_section(text, "NAME").split())
    return short.split(" -- ", 1)[-1] if short else name


def describe_from_esorex(params_text: str, man_text: str, name: str) -> dict:
    """Build a recipe description from ``--params`` and ``--man-page`` output.

    Returns
    -------
    dict
        ``description``, ``parameters`` (name -> RecipeParameter), ``input_tags``,
        ``output_tags``, ``pipeline_version``, ``esorex_version``.
    """
    values = parse_params(params_text)
    options = parse_options(man_text)
    params = {}
    for pname, printed in values.items():
        typ = infer_type(printed)
        opt = options.get(pname, {})
        choices = opt.get("choices")
        if choices is not None:
            try:
                choices = tuple(_convert(c, typ) for c in choices)
            except ValueError:
                choices = tuple(choices)
        params[pname] = RecipeParameter(
            pname, typ, _convert(printed, typ), opt.get("help", ""), choices
        )
    inputs, outputs = parse_frames(man_text)
    ev = re.search(r"ESO Recipe Execution Tool, version (\S+)", man_text)
    pv = re.search(rf"^\s*{re.escape(name)} -- version (\S+)", man_text, re.M)
    prefix = name.split("_", 1)[0]
    return {
        "description": parse_description(man_text, name),
        "parameters": params,
        "input_tags": inputs,
        "output_tags": outputs,
        "pipeline_version": f"{prefix}/{pv.group(1)}" if pv else "unknown",
        "esorex_version": ev.group(1) if ev else "unknown",
    }


def _tail(text: str, n: int = TAIL_LINES) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return "\n".join(lines[-n:])


# ---------------------------------------------------------------------------------------
# The recipe
# ---------------------------------------------------------------------------------------


class EsorexRecipe(Recipe):
    """A pipeline recipe run by esorex, described by esorex itself.

    Creating one costs nothing; the first use of ``parameters`` (etc.) reads
    the cached description, or generates it (two esorex calls, ~0.1 s).

    Parameters
    ----------
    name : str
        Recipe name as esorex knows it, e.g. ``muse_bias``.
    esorex : str, optional
        The esorex executable (default: see :func:`esorex_executable`).
    cache : path, optional
        Folder of cached descriptions (default: :func:`cache_dir`); ``False``
        disables caching.
    timeout : float, optional
        Default time limit of a run (s).
    """

    def __init__(self, name: str, esorex: str | None = None, cache=None,
                 timeout: float = DEFAULT_TIMEOUT):
        super().__init__(name)
        self._esorex = esorex
        self._cache = cache
        self.timeout = timeout
        self.generation_seconds: float | None = None  #: time the last generation took (s)

    @property
    def esorex(self) -> str:
        """Absolute path of the esorex executable (raises if missing)."""
        return esorex_executable(self._esorex)

    def _probe_recipe(self) -> str:
        return "muse_bias" if self.name.startswith("muse_") else self.name

    def cache_path(self) -> Path | None:
        """The JSON file the description is cached in, for the installed versions."""
        if self._cache is False:
            return None
        ev, pv = pipeline_versions(self.esorex, self._probe_recipe())
        base = Path(self._cache) if self._cache else cache_dir()
        prefix = self.name.split("_", 1)[0]
        return base / f"esorex-{ev}_{prefix}-{pv}" / f"{self.name}.json"

    #: Parameters of musewise's own (a subclass's), beside esorex's: described with them,
    #: never on the esorex command line.
    own_parameters: tuple[RecipeParameter, ...] = ()

    def _with_own(self, info: dict) -> dict:
        if not self.own_parameters:
            return info
        return {**info, "parameters": {**info["parameters"], **{p.name: p for p in self.own_parameters}}}

    def _describe(self) -> dict:
        path = self.cache_path()
        if path is not None and path.exists():
            try:
                data = json.loads(path.read_text())
                if data.get("format") == _CACHE_FORMAT:  # an older format is regenerated below
                    return self._with_own(_from_json(data))
            except (ValueError, KeyError, TypeError, AttributeError):
                pass  # a damaged cache entry is regenerated below
        return self.generate()

    def generate(self) -> dict:
        """Describe the recipe from esorex now and refresh the cache.

        Raises
        ------
        PipelineNotInstalledError
            If esorex or the recipe is missing.
        """
        t0 = time.perf_counter()
        esorex = self.esorex
        params_text = _esorex_output(esorex, "--params", self.name)
        if "Recipe Parameters :" not in params_text:
            raise PipelineNotInstalledError(
                self.name,
                f"esorex does not know this recipe; is its plug-in installed? "
                f"(`{INSTALL_HINT}`)\n{_tail(params_text)}",
            )
        # Hidden parameters (listed by --params) are documented only with --show-hidden.
        man_text = _esorex_output(esorex, "--show-hidden=TRUE", "--man-page", self.name)
        info = describe_from_esorex(params_text, man_text, self.name)
        self.generation_seconds = time.perf_counter() - t0
        path = self.cache_path()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(_to_json(self.name, info), indent=1))
            os.replace(tmp, path)  # atomic: parallel workers never read half a file
        self._description = info = self._with_own(info)  # cached above as esorex describes it
        return info

    # -- running --------------------------------------------------------------------------
    def command(self, sof_path, workdir, params: dict) -> list[str]:
        """The esorex command line for effective ``params`` (all of them, so that
        no ``~/.esorex`` configuration can change what runs)."""
        w = str(Path(workdir).absolute())
        cmd = [self.esorex, f"--log-dir={w}", f"--output-dir={w}", "--log-file=esorex.log",
               self.name]
        own = {p.name for p in self.own_parameters}
        for k, v in params.items():
            if k not in own:
                cmd.append(f"--{k}={_format(v)}")
        cmd.append(str(sof_path))
        return cmd

    def run(
        self,
        sof: Sequence[tuple[str | os.PathLike, str]],
        workdir: str | os.PathLike,
        params: dict | None = None,
        ifu: int | None = None,
        log: LogCallback | None = None,
        timeout: float | None = None,
        inputs: Sequence[int] = (),
        threads: int | None = None,
    ) -> RecipeResult:
        """Run the recipe with esorex in ``workdir``.

        Parameters
        ----------
        sof : list of (path, tag)
            Input frames; written to ``<workdir>/<recipe>.sof``.
        workdir : path
            Output, log and SOF folder (created if needed).
        params : dict, optional
            Recipe parameters; validated before anything runs.
        ifu : int, optional
            IFU (1-24) to reduce: passed as ``--nifu`` to recipes that have it.
        log : callable, optional
            Called with each log line as esorex prints it.
        timeout : float, optional
            Time limit (s); default ``self.timeout``.
        inputs : sequence of int, optional
            Archive IDs of the inputs, quoted in a :class:`RecipeError`.
        threads : int, optional
            OpenMP threads of esorex (``OMP_NUM_THREADS``); default: what this process's
            environment says (CPL's own default: every core). With several runs at once on one
            machine, each should get its share of the cores (``DpuConfig.recipe_threads``).

        Returns
        -------
        RecipeResult

        Raises
        ------
        ParameterError
            Unknown or mistyped parameter, or ``ifu`` contradicting ``nifu``.
        RecipeError
            Bad SOF tags, non-zero exit or timeout. Its ``log_text`` and ``result``
            attributes hold the log and the (failed) result.
        """
        eff = self.effective_params(params)
        if ifu is not None:
            if "nifu" not in self.parameters:
                raise ParameterError(
                    self.name, f"reduces all IFUs together; ifu={ifu} cannot be honoured"
                )
            given = (params or {}).get("nifu")
            if given is not None and int(given) != int(ifu):
                raise ParameterError(
                    self.name, f"ifu={ifu} contradicts parameter nifu={given}"
                )
            eff["nifu"] = int(ifu)
        self.check_inputs(sof, ifu=ifu)
        workdir = Path(workdir).absolute()
        workdir.mkdir(parents=True, exist_ok=True)
        sof_path = write_sof(workdir / f"{self.name}.sof", sof)
        cmd = self.command(sof_path, workdir, eff)
        timeout = self.timeout if timeout is None else timeout

        started = utcnow()
        t_start = time.time()
        lines: list[str] = []
        env = {**os.environ, "OMP_NUM_THREADS": str(int(threads))} if threads else None
        proc = subprocess.Popen(
            cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, errors="replace", bufsize=1, start_new_session=True, env=env,
        )
        timed_out = threading.Event()

        def _kill():
            timed_out.set()
            _killpg(proc)

        timer = threading.Timer(timeout, _kill)
        timer.daemon = True
        timer.start()
        try:
            for line in proc.stdout:
                line = line.rstrip("\n")
                lines.append(line)
                if log is not None:
                    log(line)
            returncode = proc.wait()
        except BaseException:
            _killpg(proc)  # KeyboardInterrupt etc.: leave no orphan esorex behind
            raise
        finally:
            timer.cancel()
            proc.stdout.close()
        ended = utcnow()
        log_text = "\n".join(lines) + ("\n" if lines else "")
        outputs = collect_outputs(workdir, log_text, since=t_start, exclude=[p for p, _ in sof])
        result = RecipeResult(
            recipe=self.name, returncode=returncode, outputs=outputs, log_text=log_text,
            command=cmd, params=eff, pipeline_version=self.pipeline_version,
            started=started, ended=ended, ifu=ifu,
            inputs=[(str(Path(p).absolute()), t) for p, t in sof], workdir=str(workdir),
        )
        fatal = fatal_log_lines(log_text)
        if timed_out.is_set() or returncode != 0 or fatal:
            why = (f"timed out after {timeout:g} s" if timed_out.is_set()
                   else f"esorex exited with status {returncode}" if returncode != 0
                   # exit 0, but a product may be half written: CPL logs a failed write and goes on
                   else f"esorex logged an error it did not stop on: {fatal[0].strip()}")
            err = RecipeError(self.name, f"{why}; last log lines:\n{_tail(log_text)}",
                              ifu=ifu, inputs=inputs)
            err.log_text, err.result = log_text, result
            raise err
        return result


#: Logged errors that leave a product unusable even when esorex exits with status 0:
#: the disk or the filesystem failed under a write (the product may be truncated).
FATAL_LOG = re.compile(r"No space left on device|Disk quota exceeded|Input/output error|Read-only file system"
                       r"|error writing|could not (?:save|write)|Unable to (?:save|write)", re.I)


def fatal_log_lines(log_text: str) -> list[str]:
    """``[ ERROR ]`` lines of an esorex log that mean a product could not be written (:data:`FATAL_LOG`)."""
    return [ln for ln in log_text.splitlines() if "ERROR" in ln and FATAL_LOG.search(ln)]


def _format(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _killpg(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


_CREATED = re.compile(r"Created product (\S+\.fits)\s*$")


def collect_outputs(workdir: Path, log_text: str = "", since: float | None = None,
                    exclude=()) -> list[RecipeOutput]:
    """The FITS products of a run, with category and IFU read from their headers.

    The files esorex reports as ``Created product`` are taken; if the log names
    none (a crash part-way), FITS files in ``workdir`` modified since ``since``
    (s since the epoch) are.
    """
    workdir = Path(workdir)
    paths = []
    for line in log_text.splitlines():
        m = _CREATED.search(line)
        if m:
            p = Path(m.group(1))
            p = p if p.is_absolute() else workdir / p
            if p not in paths and p.exists():
                paths.append(p)
    if not paths:
        skip = {Path(p).absolute() for p in exclude}
        paths = sorted(
            p for p in workdir.glob("*.fits")
            if p.absolute() not in skip and (since is None or p.stat().st_mtime >= since - 1)
        )
    return [describe_product(p) for p in paths]


def _to_json(name: str, info: dict) -> dict:
    return {
        "format": _CACHE_FORMAT,
        "name": name,
        "description": info["description"],
        "pipeline_version": info["pipeline_version"],
        "esorex_version": info.get("esorex_version", ""),
        "parameters": [p.to_dict() for p in info["parameters"].values()],
        "input_tags": [dataclasses.asdict(t) for t in info["input_tags"]],
        "output_tags": list(info["output_tags"]),
    }


def _from_json(d: dict) -> dict:
    return {
        "description": d["description"],
        "pipeline_version": d["pipeline_version"],
        "esorex_version": d.get("esorex_version", ""),
        "parameters": {p["name"]: RecipeParameter.from_dict(p) for p in d["parameters"]},
        "input_tags": [InputTag(**t) for t in d["input_tags"]],
        "output_tags": list(d["output_tags"]),
    }


def list_esorex_recipes(esorex: str | None = None) -> list[str]:
    """Names of all recipes esorex can run (``esorex --recipes``)."""
    text = _esorex_output(esorex_executable(esorex), "--recipes")
    return re.findall(r"^\s{2}(\w+)\s*:", text, re.M)
