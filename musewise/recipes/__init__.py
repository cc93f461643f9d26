"""Reduction recipes: the MUSE pipeline's (through esorex) and plain-Python ones.

One interface for both::

    >>> from musewise.recipes import get_recipe
    >>> rec = get_recipe("bias")                        # muse_bias  # doctest: +SKIP
    >>> rec.parameters["combine"].choices               # doctest: +SKIP
    ('average', 'median', 'minmax', 'sigclip')
    >>> p = rec.validate({"combine": "median"})         # doctest: +SKIP
    >>> res = rec.run(sof, workdir, p, ifu=1, log=print)  # doctest: +SKIP
    >>> res.outputs_of("MASTER_BIAS")[0].ifu            # doctest: +SKIP
    1

Pipeline recipes are described by the installed pipeline itself
(``esorex --params`` / ``--man-page``), lazily and cached per pipeline
version; :func:`describe_pipeline` regenerates all descriptions. Python
recipes are functions decorated with :func:`register_python_recipe`.

Public API: :class:`Recipe` (base class), :class:`EsorexRecipe`,
:class:`PythonRecipe`, :class:`RecipeParameter`, :class:`InputTag`,
:class:`RecipeResult`, :class:`RecipeOutput`, :func:`register`,
:func:`get_recipe`, :func:`list_recipes`, :func:`register_python_recipe`,
:func:`describe_pipeline`, :func:`write_sof`.
"""

from __future__ import annotations

import time

from ..exceptions import PipelineNotInstalledError
from .bands import BandedScipost
from .base import InputTag, Recipe, RecipeOutput, RecipeParameter, RecipeResult, write_sof
from .esorex import (
    INSTALL_HINT,
    EsorexRecipe,
    configure,
    esorex_executable,
    forget_versions,
    list_esorex_recipes,
)
from .python import PythonRecipe, register_python_recipe
from .registry import RecipeRegistry, recipes

#: MUSE pipeline recipes registered at import (described on first use).
MUSE_RECIPES = (
    "muse_bias", "muse_dark", "muse_flat", "muse_wavecal", "muse_lsf", "muse_twilight",
    "muse_scibasic", "muse_scipost", "muse_exp_combine", "muse_standard", "muse_geometry",
    "muse_astrometry", "muse_exp_align", "muse_create_sky",
)


def register(recipe: Recipe, replace: bool = False) -> Recipe:
    """Add a recipe to the registry (see :meth:`RecipeRegistry.register`)."""
    return recipes.register(recipe, replace=replace)


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; ``"bias"`` finds ``muse_bias``.

    Raises
    ------
    musewise.exceptions.NotFoundError
        ``No recipe named 'x'; known: ...``.
    """
    return recipes.get(name)


def list_recipes() -> list[str]:
    """Names of all registered recipes, sorted."""
    return recipes.names()


def describe_pipeline(all_recipes: bool = False) -> dict[str, float]:
    """Regenerate (and re-cache) the descriptions of the pipeline recipes.

    Parameters
    ----------
    all_recipes : bool
        Also register and describe every other recipe ``esorex --recipes`` lists.

    Returns
    -------
    dict
        Recipe name -> seconds its description took to generate.

    Raises
    ------
    PipelineNotInstalledError
        If esorex or the MUSE plug-ins are missing (names the install command).
    """
    forget_versions()
    if all_recipes:
        for name in list_esorex_recipes():
            if recipes.find(name) is None:
                register(EsorexRecipe(name))
    times = {}
    for rec in list(recipes):
        if isinstance(rec, EsorexRecipe):
            t0 = time.perf_counter()
            rec.generate()
            times[rec.name] = time.perf_counter() - t0
    return times


for _name in MUSE_RECIPES:
    register(EsorexRecipe(_name) if _name != "muse_scipost" else BandedScipost(_name))
del _name

from . import skyclean  # noqa: E402  (registers the sky_residual_clean recipe)
from . import cubecombine  # noqa: E402,F401  (registers the combine_cubes recipe)
from . import fieldgrid  # noqa: E402,F401  (registers the field_grid recipe)
from . import zapclean  # noqa: E402  (registers the zap recipe; zap itself is imported when it runs)
from . import sources  # noqa: E402,F401  (registers the muselet recipe; mpdaf is imported when it runs)

__all__ = [
    "INSTALL_HINT", "MUSE_RECIPES", "BandedScipost", "EsorexRecipe", "InputTag", "PipelineNotInstalledError",
    "PythonRecipe", "Recipe", "RecipeOutput", "RecipeParameter", "RecipeRegistry",
    "RecipeResult", "configure", "describe_pipeline", "esorex_executable", "get_recipe", "list_recipes",
    "register", "register_python_recipe", "write_sof",
]
