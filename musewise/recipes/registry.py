"""The registry of recipes: name -> :class:`~musewise.recipes.base.Recipe`."""

from __future__ import annotations

import difflib

from ..exceptions import DuplicateError, NotFoundError, RecipeDefinitionError
from .base import Recipe


class RecipeRegistry:
    """Recipes by name.

    ``get('bias')`` finds ``muse_bias``: the ``muse_`` prefix of pipeline
    recipes may be left out.
    """

    def __init__(self):
        self._recipes: dict[str, Recipe] = {}

    def register(self, recipe: Recipe, replace: bool = False) -> Recipe:
        """Add a recipe.

        Parameters
        ----------
        recipe : Recipe
            The recipe; its ``name`` is the key.
        replace : bool
            Replace a recipe already registered under that name.

        Returns
        -------
        Recipe
            ``recipe`` (so ``register`` can be used inline).

        Raises
        ------
        DuplicateError
            If another recipe has that name and ``replace`` is false.
        RecipeDefinitionError
            If ``recipe`` is not a :class:`Recipe`.
        """
        if not isinstance(recipe, Recipe):
            raise RecipeDefinitionError(f"not a Recipe: {recipe!r}")
        old = self._recipes.get(recipe.name)
        if old is not None and old is not recipe and not replace:
            raise DuplicateError(
                f"a recipe named {recipe.name!r} is already registered ({old!r}); "
                "pass replace=True to replace it"
            )
        self._recipes[recipe.name] = recipe
        return recipe

    def unregister(self, name: str) -> None:
        """Remove a recipe (no error if absent)."""
        self._recipes.pop(name, None)

    def get(self, name: str) -> Recipe:
        """The recipe called ``name`` (or ``muse_<name>``).

        Raises
        ------
        NotFoundError
            ``No recipe named 'x'; known: ...``, with a suggestion if one is close.
        """
        for key in (name, f"muse_{name}"):
            if key in self._recipes:
                return self._recipes[key]
        known = sorted(self._recipes)
        short = [k[5:] for k in known if k.startswith("muse_")]
        close = difflib.get_close_matches(str(name), known + short, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise NotFoundError(f"No recipe named {name!r}; known: {', '.join(known)}.{hint}")

    def find(self, name: str) -> Recipe | None:
        """The recipe registered under exactly ``name``, or None (no ``muse_`` completion)."""
        return self._recipes.get(name)

    def names(self) -> list[str]:
        """Registered recipe names, sorted."""
        return sorted(self._recipes)

    def __contains__(self, name: str) -> bool:
        return name in self._recipes or f"muse_{name}" in self._recipes

    def __iter__(self):
        return iter(self._recipes.values())


#: The registry used by :func:`musewise.recipes.get_recipe`.
recipes = RecipeRegistry()
