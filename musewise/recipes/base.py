"""The recipe plug-in interface: parameters, input tags, results, and the base class.

A *recipe* turns a set of frames (a SOF: ``(path, tag)`` pairs) into products.
Concrete recipes are :class:`~musewise.recipes.esorex.EsorexRecipe` (the ESO
MUSE pipeline run through ``esorex``) and
:class:`~musewise.recipes.python.PythonRecipe` (plain Python functions).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import difflib
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ..exceptions import InvalidArgumentError, ParameterError, RecipeError
from ..products.ifu import ifu_of_extname, ifu_of_product

#: Python types a recipe parameter may have (the CPL types bool, int, double, string).
PARAMETER_TYPES = {"bool": bool, "int": int, "float": float, "str": str}

#: Parameters of the MUSE recipes that only choose which products are written, as their
#: manuals say (``muse_scipost --save``: a comma-separated list; the others: true/false). A
#: run that saved at least what is asked now made the same products (:meth:`Recipe.changed_parameters`).
#: Per recipe: ``resample`` selects a product in muse_scibasic but the resampling method in muse_scipost.
OUTPUT_CHOICES = {
    "muse_scipost": ("save",),
    "muse_exp_combine": ("save",),
    "muse_scibasic": ("saveimage", "resample"),
    "muse_wavecal": ("saveimages", "residuals"),
    "muse_lsf": ("save_subtracted",),
    "muse_ampl": ("savemaster", "savetable"),
}

#: A callback that receives log lines (without trailing newline) as they are written.
LogCallback = Callable[[str], Any]


def _saved_covers(used, wanted) -> bool:
    # an output choice: a comma-separated list of products, or whether one is saved
    if isinstance(used, str) or isinstance(wanted, str):
        return saved_products(wanted) <= saved_products(used)
    return bool(used) or not bool(wanted)


def saved_products(value) -> set[str]:
    """The products a comma-separated ``save`` list names (muse_scipost, muse_exp_combine), lower case."""
    return {t.strip().lower() for t in str(value or "").split(",") if t.strip()}


@dataclasses.dataclass(frozen=True)
class RecipeParameter:
    """One parameter of a recipe, as the recipe itself declares it.

    Parameters
    ----------
    name : str
        Parameter name without dashes or recipe prefix, e.g. ``crsigma``.
    type : type
        One of ``bool``, ``int``, ``float``, ``str``.
    default : bool, int, float or str
        The value used when the caller gives none.
    help : str
        The recipe's own description of the parameter.
    choices : tuple or None
        Allowed values for an enumeration parameter, else None.
    """

    name: str
    type: type
    default: Any
    help: str = ""
    choices: tuple | None = None

    def coerce(self, value: Any, recipe: str = "?") -> Any:
        """Return ``value`` converted to this parameter's type.

        Accepts the value itself, or its spelling as a string (as typed in a form
        or a config file: ``"true"``, ``"3"``, ``"2.5"``). A list or tuple given for
        a string parameter is joined with commas (the esorex convention, e.g.
        ``pixfrac=0.8,0.8``).

        Raises
        ------
        ParameterError
            If the value cannot be read as this type, or is not one of ``choices``.
        """
        value = _coerce(self, value, recipe)
        if self.choices is not None and value not in self.choices:
            raise ParameterError(
                recipe,
                f"parameter {self.name!r} must be one of {list(self.choices)}, got {value!r}",
            )
        return value

    def to_dict(self) -> dict:
        """JSON-able form (type as its name)."""
        d = dataclasses.asdict(self)
        d["type"] = self.type.__name__
        d["choices"] = list(self.choices) if self.choices is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RecipeParameter":
        """Inverse of :meth:`to_dict`."""
        choices = d.get("choices")
        return cls(
            name=d["name"],
            type=PARAMETER_TYPES[d["type"]],
            default=d["default"],
            help=d.get("help", ""),
            choices=tuple(choices) if choices is not None else None,
        )


def _coerce(p: RecipeParameter, value: Any, recipe: str) -> Any:
    def bad(why=""):
        return ParameterError(
            recipe,
            f"parameter {p.name!r} expects {p.type.__name__}, got {value!r} "
            f"({type(value).__name__}){why}",
        )

    if p.type is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise bad()
    if p.type is int:
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise bad() from None
        raise bad()
    if p.type is float:
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                raise bad() from None
        raise bad()
    # str
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise bad()
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)) and all(
        isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value
    ):
        return ",".join(str(v) for v in value)
    raise bad()


@dataclasses.dataclass(frozen=True)
class InputTag:
    """One frame tag a recipe accepts in its SOF.

    Parameters
    ----------
    tag : str
        The SOF tag, e.g. ``BIAS`` or ``MASTER_BIAS``.
    kind : str
        ``"raw"`` for frames being reduced, ``"calib"`` for calibrations.
    required : bool
        Whether the recipe refuses to run without it (within its group).
    count : str
        Number of frames as the manual states it (``">=3"``, ``"1"``, ``""`` = any).
    description : str
        The manual's description of the frame.
    group : str
        The raw tag whose input set this entry belongs to (a recipe may accept
        several alternative sets, e.g. muse_scibasic for ``OBJECT`` or ``REDUCED``).
    """

    tag: str
    kind: str
    required: bool
    count: str = ""
    description: str = ""
    group: str = ""

    @property
    def is_calibration(self) -> bool:
        """True for a calibration input, False for a raw one."""
        return self.kind == "calib"


@dataclasses.dataclass
class RecipeOutput:
    """One product file written by a recipe run.

    Parameters
    ----------
    path : str
        Absolute path of the file.
    category : str
        Its ``ESO PRO CATG`` (e.g. ``MASTER_BIAS``), or ``""`` if it has none.
    ifu : int or None
        The IFU (1-24) the product belongs to, None for merged or IFU-less products.
    """

    path: str
    category: str
    ifu: int | None = None


@dataclasses.dataclass
class RecipeResult:
    """What one recipe run did: enough to record provenance.

    Parameters
    ----------
    recipe : str
        Recipe name.
    returncode : int
        Exit status (0 = success).
    outputs : list of RecipeOutput
        Products collected from the working directory.
    log_text : str
        The complete log of the run.
    command : list of str
        The command line (for Python recipes, the call as a readable list).
    params : dict
        Effective parameters, defaults included.
    pipeline_version : str
        Version of the code that ran (``muse/2.8.7 esorex/3.13.6``, ``musewise/0.1.0``).
    started, ended : datetime
        Wall-clock start and end (UTC).
    ifu : int or None
        The IFU reduced, if the run was for one IFU.
    inputs : list of [path, tag]
        The SOF given.
    workdir : str
        Working directory of the run.
    calls : list of dict
        For a run made of several pipeline calls (a banded muse_scipost: one per band), each
        call in order: ``command``, ``sof`` (its [path, tag] frames) and, for a band after
        the first, ``wcs_planes`` ([k0, k1): the planes of the run's grid its OUTPUT_WCS
        held). Empty when the run is the one call ``command``.
    """

    recipe: str
    returncode: int
    outputs: list[RecipeOutput]
    log_text: str
    command: list[str]
    params: dict
    pipeline_version: str
    started: _dt.datetime
    ended: _dt.datetime
    ifu: int | None = None
    inputs: list = dataclasses.field(default_factory=list)
    workdir: str = ""
    calls: list = dataclasses.field(default_factory=list)

    @property
    def duration(self) -> float:
        """Run time in seconds."""
        return (self.ended - self.started).total_seconds()

    def outputs_of(self, category: str) -> list[RecipeOutput]:
        """The outputs of one ``ESO PRO CATG``."""
        return [o for o in self.outputs if o.category == category]

    def to_dict(self) -> dict:
        """JSON-able form (times as ISO 8601 strings)."""
        d = dataclasses.asdict(self)
        d["started"] = self.started.isoformat()
        d["ended"] = self.ended.isoformat()
        d["inputs"] = [[str(p), t] for p, t in self.inputs]
        return d

    def to_json(self, **kw) -> str:
        """Serialise for a provenance record."""
        return json.dumps(self.to_dict(), **kw)

    @classmethod
    def from_dict(cls, d: dict) -> "RecipeResult":
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d["outputs"] = [RecipeOutput(**o) for o in d["outputs"]]
        d["started"] = _dt.datetime.fromisoformat(d["started"])
        d["ended"] = _dt.datetime.fromisoformat(d["ended"])
        d["inputs"] = [tuple(x) for x in d.get("inputs", [])]
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> "RecipeResult":
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))


def write_sof(path: str | os.PathLike, frames: Iterable[tuple[str | os.PathLike, str]]) -> Path:
    """Write a set-of-frames file: one ``<absolute path> <TAG>`` line per frame.

    Parameters
    ----------
    path : path
        The ``.sof`` file to write.
    frames : iterable of (path, tag)
        The frames and their tags.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    InvalidArgumentError
        If a path contains whitespace (esorex splits SOF lines on blanks) or a
        tag is empty.
    """
    lines = []
    for p, tag in frames:
        ap = str(Path(p).absolute())
        if any(c.isspace() for c in ap):
            raise InvalidArgumentError(f"SOF paths may not contain whitespace: {ap!r}")
        if not tag or any(c.isspace() for c in tag):
            raise InvalidArgumentError(f"bad SOF tag {tag!r} for {ap}")
        lines.append(f"{ap} {tag}\n")
    path = Path(path)
    path.write_text("".join(lines))
    return path


def describe_product(path: str | os.PathLike) -> RecipeOutput:
    """A product file with its ``ESO PRO CATG`` and IFU read from its primary header.

    The IFU is taken from ``EXTNAME = CHANnn`` (how the MUSE pipeline labels
    per-IFU products), else from a ``-NN.fits`` file-name suffix; None if neither.
    """
    from astropy.io import fits

    path = Path(path)
    try:
        hdr = fits.getheader(path, 0)
    except Exception:  # a half-written file is still reported, without metadata
        return RecipeOutput(str(path.absolute()), "", None)
    category = str(hdr.get("HIERARCH ESO PRO CATG", ""))
    # Per-IFU products without EXTNAME still carry the IFU in their name (-NN.fits);
    # a file without a category is no product, so its name is not trusted.
    ifu = ifu_of_product(path, hdr) if category else ifu_of_extname(hdr.get("EXTNAME", ""))
    return RecipeOutput(str(path.absolute()), category, ifu)


def utcnow() -> _dt.datetime:
    """Current time, timezone-aware UTC."""
    return _dt.datetime.now(_dt.timezone.utc)


class Recipe:
    """Base class of reduction recipes.

    Subclasses override:

    * :meth:`_describe` - return ``dict(description=..., parameters={name:
      RecipeParameter}, input_tags=[InputTag], output_tags=[str],
      pipeline_version=str)``; called once, on first use of any of those
      attributes (so registering a recipe costs nothing);
    * :meth:`run` - execute the recipe and return a :class:`RecipeResult`.

    :meth:`validate` is shared: it checks parameter names and types against
    ``parameters`` before anything runs.

    Parameters
    ----------
    name : str
        The recipe name, e.g. ``muse_bias`` or ``sky_residual_clean``.
    """

    def __init__(self, name: str):
        self.name = name
        self._description: dict | None = None

    # -- description, generated lazily ------------------------------------------------
    def _describe(self) -> dict:
        raise NotImplementedError

    def _info(self) -> dict:
        if self._description is None:
            self._description = self._describe()
        return self._description

    def refresh(self) -> None:
        """Forget the description so it is generated again on next use."""
        self._description = None

    @property
    def description(self) -> str:
        """One-paragraph description of what the recipe does."""
        return self._info()["description"]

    @property
    def parameters(self) -> dict[str, RecipeParameter]:
        """Parameters by name, in the recipe's order."""
        return self._info()["parameters"]

    @property
    def input_tags(self) -> list[InputTag]:
        """SOF tags the recipe accepts (one entry per tag and input group)."""
        return self._info()["input_tags"]

    @property
    def output_tags(self) -> list[str]:
        """Product categories the recipe may write."""
        return self._info()["output_tags"]

    @property
    def pipeline_version(self) -> str:
        """Version of the code behind the recipe."""
        return self._info()["pipeline_version"]

    @property
    def raw_tags(self) -> list[str]:
        """Tags of raw (to be reduced) inputs."""
        return _unique(t.tag for t in self.input_tags if t.kind == "raw")

    @property
    def calibration_tags(self) -> list[str]:
        """Tags of calibration inputs."""
        return _unique(t.tag for t in self.input_tags if t.kind == "calib")

    def required_tags(self, group: str | None = None) -> list[str]:
        """Tags without which the recipe does not run, for one input group.

        Parameters
        ----------
        group : str, optional
            Raw tag naming the input set; default: the first one.
        """
        groups = _unique(t.group for t in self.input_tags)
        if not groups:
            return []
        g = group if group is not None else groups[0]
        return [t.tag for t in self.input_tags if t.group == g and t.required]

    # -- parameters ---------------------------------------------------------------------
    def validate(self, params: dict | None) -> dict:
        """Check and coerce parameters; call before running anything.

        Parameters
        ----------
        params : dict
            Parameter name -> value. ``None`` values mean "use the default".

        Returns
        -------
        dict
            The given parameters, coerced to their types (defaults not added).

        Raises
        ------
        ParameterError
            Naming the recipe, the offending parameter and the known ones (with a
            close-match suggestion) for an unknown name; for a value of the wrong
            type or outside the allowed choices.
        """
        known = self.parameters
        out = {}
        for key, value in (params or {}).items():
            name = str(key).lstrip("-")
            if name not in known:
                close = difflib.get_close_matches(name, list(known), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ParameterError(
                    self.name,
                    f"unknown parameter {name!r}{hint} Known parameters: {', '.join(known)}",
                )
            if value is None:
                continue
            out[name] = known[name].coerce(value, self.name)
        return out

    def effective_params(self, params: dict | None) -> dict:
        """Defaults overlaid with the validated ``params``."""
        eff = {n: p.default for n, p in self.parameters.items()}
        eff.update(self.validate(params))
        return eff

    def changed_parameters(self, used: dict, wanted: dict) -> list[str]:
        """Names of the parameters in which a run made with ``used`` differs from one made with ``wanted``.

        A parameter that only chooses which products are saved (:data:`OUTPUT_CHOICES`)
        counts only when the run saved less than is asked now: ``save=cube,skymodel``
        covers ``save=cube``, ``saveimage=true`` covers ``false``.
        """
        choices = OUTPUT_CHOICES.get(self.name, ())
        out = []
        for k in sorted(set(used) | set(wanted)):
            u, w = used.get(k), wanted.get(k)
            if u == w:
                continue
            if k in choices and _saved_covers(u, w):
                continue
            out.append(k)
        return out

    def check_inputs(self, sof: Sequence[tuple[str | os.PathLike, str]], ifu=None) -> None:
        """Refuse a SOF with tags the recipe does not know or without a required one.

        Raises
        ------
        RecipeError
            Naming the unknown or missing tags.
        """
        tags = [t for _, t in sof]
        accepted = {t.tag for t in self.input_tags}
        unknown = sorted(set(tags) - accepted)
        if unknown and accepted:
            raise RecipeError(
                self.name,
                f"unknown input tag(s) {unknown}; accepted: {sorted(accepted)}",
                ifu=ifu,
            )
        groups = _unique(t.group for t in self.input_tags)
        if not groups:
            return
        # The input set is chosen by the raw frames present, as the pipeline does.
        present = [
            g for g in groups
            if any(t.group == g and t.kind == "raw" and t.tag in tags for t in self.input_tags)
        ] or groups[:1]
        missing = [t for t in self.required_tags(present[0]) if t not in tags]
        if missing:
            raise RecipeError(self.name, f"missing required input(s) {missing}", ifu=ifu)

    # -- execution ----------------------------------------------------------------------
    def run(
        self,
        sof: Sequence[tuple[str | os.PathLike, str]],
        workdir: str | os.PathLike,
        params: dict | None = None,
        ifu: int | None = None,
        log: LogCallback | None = None,
        **kw,
    ) -> RecipeResult:
        """Run the recipe on ``sof`` in ``workdir``.

        Parameters
        ----------
        sof : list of (path, tag)
            Input frames.
        workdir : path
            Directory for outputs and logs (created if needed).
        params : dict, optional
            Parameters (validated again here).
        ifu : int, optional
            The IFU (1-24) to reduce, for recipes that reduce one IFU at a time.
        log : callable, optional
            Receives each log line as it is written.

        Returns
        -------
        RecipeResult

        Raises
        ------
        ParameterError
            Bad parameters (nothing was run).
        RecipeError
            The recipe failed; the exception carries ``log_text`` and ``result``.
        """
        raise NotImplementedError

    def to_dict(self) -> dict:
        """The description as JSON-able data."""
        return {
            "name": self.name,
            "description": self.description,
            "pipeline_version": self.pipeline_version,
            "parameters": [p.to_dict() for p in self.parameters.values()],
            "input_tags": [dataclasses.asdict(t) for t in self.input_tags],
            "output_tags": list(self.output_tags),
        }

    def __repr__(self):
        return f"<{type(self).__name__} {self.name}>"


def _unique(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for i in items:
        seen.setdefault(i, None)
    return list(seen)
