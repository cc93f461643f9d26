"""Optional dependencies: imported only by the feature that needs them, with a clear error.

The extras of ``pyproject.toml`` group them (``pip install 'musewise[hub]'``). A
feature calls :func:`require` when it is used, so ``musewise`` works without the
extras and a missing one is reported with its install command; a module that is
installed but fails to import raises its own error, which is never hidden.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from .exceptions import MissingDependencyError

#: Optional top-level modules: module -> (distribution, musewise extra that installs it).
OPTIONAL = {
    "jupyterhub": ("jupyterhub", "hub"),
    "nativeauthenticator": ("jupyterhub-nativeauthenticator", "hub"),
    "voila": ("voila", "hub"),
    "psycopg": ("psycopg[binary]", "postgres"),
    "dask_jobqueue": ("dask-jobqueue", "jobqueue"),
    "mpdaf": ("mpdaf", "sources"),
    "photutils": ("photutils", "sources"),
}


def require(module: str, feature: str) -> ModuleType:
    """Import an optional module for ``feature``.

    Parameters
    ----------
    module : str
        Top-level module name, a key of :data:`OPTIONAL`.
    feature : str
        What needs it, in the user's words (``musewise hub``).

    Returns
    -------
    module

    Raises
    ------
    MissingDependencyError
        If the module is not installed; the message names the install command.
    """
    if importlib.util.find_spec(module) is None:
        dist, extra = OPTIONAL[module]
        raise MissingDependencyError(feature, dist, f"pip install 'musewise[{extra}]' (or pip install '{dist}')")
    # Installed: import it, and let an error inside it surface as it is.
    return importlib.import_module(module)


__all__ = ["OPTIONAL", "require"]
