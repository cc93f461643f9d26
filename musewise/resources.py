"""Folders musewise ships beside its code: ``templates/``, ``qc_notebooks/``, ``notebooks/``.

They sit at the top of the source tree. A wheel installs them as data files under
``<prefix>/share/musewise/`` (``[tool.setuptools.data-files]`` in ``pyproject.toml``),
where ``<prefix>`` is the virtualenv, ``~/.local`` or the ``--target`` folder.
:func:`shared_folder` looks in the source tree first (a checkout or an editable
install, where edits must be seen at once), then in those installed places.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .exceptions import NotFoundError

#: The shipped folders (the names in the source tree and under share/musewise).
SHARED_FOLDERS = ("templates", "qc_notebooks", "notebooks")

_PACKAGE = Path(__file__).resolve().parent


def candidates(name: str) -> list[Path]:
    """Where :func:`shared_folder` looks for ``name``, in order."""
    out = []
    tree = _PACKAGE.parent
    if (tree / "pyproject.toml").is_file():  # a source checkout, not site-packages
        out.append(tree / name)
    # <target>/musewise next to <target>/share (pip install --target), and
    # <prefix>/lib/pythonX.Y/site-packages/musewise under <prefix>/share.
    prefixes = [tree, Path(sys.prefix)]
    if len(_PACKAGE.parents) > 3:
        prefixes.insert(1, _PACKAGE.parents[3])
    for prefix in prefixes:
        out.append(prefix / "share" / "musewise" / name)
    return list(dict.fromkeys(out))


def shared_folder(name: str) -> Path:
    """The folder ``name`` (one of :data:`SHARED_FOLDERS`) of this musewise.

    Raises
    ------
    NotFoundError
        If it is in none of the places of :func:`candidates` (a broken install).
    """
    if name not in SHARED_FOLDERS:
        raise NotFoundError(f"musewise ships no folder {name!r}; it ships {', '.join(SHARED_FOLDERS)}")
    for path in candidates(name):
        if path.is_dir():
            return path
    raise NotFoundError(f"musewise's {name}/ folder is missing (looked in "
                        f"{', '.join(map(str, candidates(name)))}); reinstall musewise")


__all__ = ["SHARED_FOLDERS", "candidates", "shared_folder"]
