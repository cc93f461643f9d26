"""Plain-Python recipes: a function becomes a recipe by decoration.

The function's signature is the recipe's interface::

    @register_python_recipe("sky_residual_clean",
                            inputs={"DATACUBE_FINAL": True},
                            outputs=["DATACUBE_FINAL"])
    def sky_residual_clean(frames, workdir, *, method: Literal["pca", "median"] = "pca",
                           ncomp: int = 5, log=None):
        '''Remove sky residuals ...

        Parameters
        ----------
        method : {"pca", "median"}
            How the residual sky is modelled.
        '''

* ``frames`` receives ``{tag: [Path, ...]}`` and ``workdir`` the output folder;
* every further argument is a recipe parameter: type from the annotation
  (``bool``, ``int``, ``float``, ``str`` or ``Literal[...]`` for choices),
  default from the default value, help from the numpydoc Parameters section;
* optional ``log`` receives a callable to write log lines, optional ``ifu`` the IFU;
* it returns the products it wrote: paths (category and IFU are read from their
  headers), ``(path, category)`` pairs or :class:`RecipeOutput` objects.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import re
import traceback
import typing
from pathlib import Path
from typing import Callable, Iterable, Sequence

from ..exceptions import RecipeDefinitionError, RecipeError
from .base import (
    InputTag,
    LogCallback,
    Recipe,
    RecipeOutput,
    RecipeParameter,
    RecipeResult,
    describe_product,
    utcnow,
)

#: Function arguments that are not recipe parameters.
_RESERVED = ("log", "ifu")


def parse_numpydoc_parameters(doc: str | None) -> dict[str, str]:
    """Descriptions of the entries of a numpydoc ``Parameters`` section."""
    doc = inspect.cleandoc(doc or "")
    m = re.search(r"^Parameters\n-+\n(.*?)(?=^\S[^\n]*\n-+\n|\Z)", doc, re.M | re.S)
    if not m:
        return {}
    out: dict[str, list[str]] = {}
    current = None
    for line in m.group(1).splitlines():
        if line and not line[0].isspace():
            names = line.split(":", 1)[0]
            current = [n.strip() for n in names.split(",")]
            for n in current:
                out[n] = []
        elif current and line.strip():
            for n in current:
                out[n].append(line.strip())
    return {k: " ".join(v) for k, v in out.items()}


def _summary(doc: str | None) -> str:
    doc = inspect.cleandoc(doc or "")
    return " ".join(doc.split("\n\n", 1)[0].split())


def parameters_from_signature(func: Callable) -> dict[str, RecipeParameter]:
    """Recipe parameters of a recipe function (all arguments after the first two).

    Raises
    ------
    RecipeDefinitionError
        If a parameter has no default or an annotation that is not bool, int,
        float, str or a ``Literal`` of one of those.
    """
    sig = inspect.signature(func)
    try:
        hints = typing.get_type_hints(func)
    except NameError as exc:  # string annotations naming something not importable
        raise RecipeDefinitionError(
            f"cannot resolve the annotations of {func.__qualname__}: {exc}; import the "
            "types used (e.g. typing.Literal) at module level"
        ) from exc
    helps = parse_numpydoc_parameters(func.__doc__)
    args = list(sig.parameters.values())
    if len(args) < 2:
        raise RecipeDefinitionError(f"{func.__qualname__} must take (frames, workdir, ...)")
    out = {}
    for a in args[2:]:
        if a.name in _RESERVED or a.kind in (a.VAR_KEYWORD, a.VAR_POSITIONAL):
            continue
        if a.default is inspect.Parameter.empty:
            raise RecipeDefinitionError(f"recipe parameter {a.name!r} of {func.__qualname__} needs a default")
        hint = hints.get(a.name, type(a.default))
        choices = None
        if typing.get_origin(hint) is typing.Literal:
            choices = typing.get_args(hint)
            hint = type(choices[0])
        if hint not in (bool, int, float, str):
            raise RecipeDefinitionError(
                f"recipe parameter {a.name!r} of {func.__qualname__}: type {hint!r} is not "
                "bool, int, float, str or Literal[...]"
            )
        out[a.name] = RecipeParameter(a.name, hint, a.default, helps.get(a.name, ""), choices)
    return out


class PythonRecipe(Recipe):
    """A recipe implemented by a Python function (see the module docstring).

    Parameters
    ----------
    func : callable
        ``func(frames, workdir, **params)``.
    name : str
        Recipe name.
    inputs : dict
        ``{tag: required}`` of accepted SOF tags.
    outputs : list of str
        Product categories written.
    calibrations : iterable of str
        Those of ``inputs`` that are calibrations (the others are raw inputs).
    """

    def __init__(self, func: Callable, name: str, inputs: dict[str, bool],
                 outputs: Sequence[str] = (), calibrations: Iterable[str] = ()):
        super().__init__(name)
        self.func = func
        calibrations = set(calibrations)
        group = next((t for t in inputs if t not in calibrations), "")
        self._static = {
            "description": _summary(func.__doc__) or name,
            "parameters": parameters_from_signature(func),
            "input_tags": [
                InputTag(t, "calib" if t in calibrations else "raw", bool(req), "", "", group)
                for t, req in inputs.items()
            ],
            "output_tags": list(outputs),
            "pipeline_version": _version(),
        }
        self._accepts = set(inspect.signature(func).parameters)

    def _describe(self) -> dict:
        return self._static

    def run(self, sof, workdir, params=None, ifu=None, log: LogCallback | None = None,
            inputs: Sequence[int] = (), **kw) -> RecipeResult:
        """Run the function on ``sof`` (see :meth:`Recipe.run`).

        Raises
        ------
        ParameterError
            Bad parameters (nothing ran).
        RecipeError
            The function raised; ``log_text`` ends with the traceback and
            ``result`` holds the failed result.
        """
        eff = self.effective_params(params)
        self.check_inputs(sof, ifu=ifu)
        workdir = Path(workdir).absolute()
        workdir.mkdir(parents=True, exist_ok=True)
        frames: dict[str, list[Path]] = {}
        for p, tag in sof:
            frames.setdefault(tag, []).append(Path(p).absolute())
        lines: list[str] = []

        def _log(msg: str) -> None:
            for line in str(msg).splitlines() or [""]:
                lines.append(line)
                if log is not None:
                    log(line)

        extra = {}
        if "log" in self._accepts:
            extra["log"] = _log
        if "ifu" in self._accepts:
            extra["ifu"] = ifu
        command = [f"{self.func.__module__}.{self.func.__qualname__}"] + [
            f"--{k}={v}" for k, v in eff.items()
        ]
        started = utcnow()
        returncode, error = 0, None
        try:
            produced = self.func(frames, workdir, **eff, **extra) or []
            outputs = [_as_output(o) for o in produced]
        except Exception as exc:  # any failure of user code becomes a RecipeError
            returncode, error, outputs = 1, exc, []
            _log(traceback.format_exc())
        result = RecipeResult(
            recipe=self.name, returncode=returncode, outputs=outputs,
            log_text="\n".join(lines) + ("\n" if lines else ""), command=command,
            params=eff, pipeline_version=self.pipeline_version, started=started,
            ended=utcnow(), ifu=ifu, inputs=[(str(Path(p).absolute()), t) for p, t in sof],
            workdir=str(workdir),
        )
        if error is not None:
            err = RecipeError(self.name, f"{type(error).__name__}: {error}", ifu=ifu,
                              inputs=inputs)
            err.log_text, err.result = result.log_text, result
            raise err from error
        return result


@contextlib.contextmanager
def library_log(log: LogCallback | None, logger: str, prefix: str):
    """While inside, pass the INFO records of a library's ``logger`` to a recipe's ``log`` callback.

    A library's INFO lines (ZAP's, MUSELET's) are its account of what it did; the root
    logger (pytest, a kernel) may drop INFO before any handler sees it, so the logger's
    level is set to INFO while inside and restored after. Nothing happens without ``log``.

    Parameters
    ----------
    log : callable or None
        The recipe's log callback.
    logger : str
        Name of the library's logger (``"zap.zap"``).
    prefix : str
        Put before each line (``"zap"`` gives ``"zap: ..."``).
    """
    if log is None:
        yield
        return

    class _Handler(logging.Handler):
        def emit(self, record):
            log(f"{prefix}: {record.getMessage()}")

    handler = _Handler(logging.INFO)
    lib = logging.getLogger(logger)
    level = lib.level
    lib.setLevel(logging.INFO)
    lib.addHandler(handler)
    try:
        yield
    finally:
        lib.removeHandler(handler)
        lib.setLevel(level)


def _as_output(o) -> RecipeOutput:
    if isinstance(o, RecipeOutput):
        return o
    if isinstance(o, (tuple, list)):
        path, category = o[0], o[1]
        ifu = o[2] if len(o) > 2 else describe_product(path).ifu
        return RecipeOutput(str(Path(path).absolute()), category, ifu)
    if isinstance(o, (str, os.PathLike)):
        return describe_product(o)
    raise RecipeDefinitionError(f"a recipe function returned {o!r}; expected paths or (path, category)")


def _version() -> str:
    from .. import __version__

    return f"musewise/{__version__}"


def register_python_recipe(name: str, inputs: dict[str, bool], outputs: Sequence[str] = (),
                           calibrations: Iterable[str] = (), registry=None):
    """Decorator: turn a function into a :class:`PythonRecipe` and register it.

    The function itself is returned unchanged (so it can still be called
    directly); the recipe is available as ``func.recipe`` and via
    ``get_recipe(name)``.

    Parameters
    ----------
    name : str
        Recipe name.
    inputs : dict
        ``{tag: required}``.
    outputs : list of str
        Product categories it writes.
    calibrations : iterable of str
        Input tags that are calibrations.
    registry : RecipeRegistry, optional
        Default: the package registry.
    """

    def deco(func):
        from .registry import recipes

        reg = registry or recipes
        rec = PythonRecipe(func, name, inputs, outputs, calibrations)
        old = reg.find(name)
        # Re-importing the defining module (autoreload, notebooks) replaces the
        # recipe; any other clash of names is an error.
        same = isinstance(old, PythonRecipe) and (
            (old.func.__module__, old.func.__qualname__) == (func.__module__, func.__qualname__)
        )
        reg.register(rec, replace=same)
        func.recipe = rec
        return func

    return deco
