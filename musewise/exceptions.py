"""The musewise exception tree.

Every error raised on purpose by musewise derives from :class:`MusewiseError`;
each leaf also derives from the builtin that describes it best, so callers can
catch either ``musewise.exceptions.NotFoundError`` or plain ``LookupError``.
"""

from __future__ import annotations


class MusewiseError(Exception):
    """Base class of all musewise errors."""


class ConfigurationError(MusewiseError, ValueError):
    """A configuration value is missing or invalid."""


class InvalidFrameError(MusewiseError, ValueError):
    """A file is not a readable MUSE FITS frame (corrupt, truncated, wrong headers).

    Parameters
    ----------
    path : str
        The offending file.
    reason : str
        What is wrong with it, in words a user can act on.
    """

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class NotFoundError(MusewiseError, LookupError):
    """A dataset, run, user or project does not exist (or is not visible to the user)."""


class DuplicateError(MusewiseError, ValueError):
    """An object with the same identity already exists."""


class PermissionDeniedError(MusewiseError, PermissionError):
    """The user lacks the privilege for the requested action."""


class ReferenceInputError(PermissionDeniedError):
    """A reference run (``commit=True``) was given an input from outside the reference reduction."""


class RunStateError(MusewiseError, ValueError):
    """A run cannot change state that way (e.g. it already ended)."""


class ReleaseRefusedError(MusewiseError, ValueError):
    """A product may not be released (invalid, affected by an invalid input, or not a product)."""


class DatastoreError(MusewiseError, OSError):
    """The file store could not read or write a file."""


class IntegrityError(MusewiseError, ValueError):
    """Stored bytes do not match their recorded checksum."""


class QueryError(MusewiseError, ValueError):
    """A user query was refused (not read-only, unknown column, bad syntax)."""


class CalibrationNotFoundError(NotFoundError):
    """No valid calibration of the required type exists for an IFU and date.

    Parameters
    ----------
    category : str
        The calibration category, e.g. ``MASTER_BIAS``.
    ifu : int
        The IFU (1-24) it was needed for.
    night : str
        The observing night (``YYYY-MM-DD``) of the frames to reduce.
    detail : str, optional
        Why the candidates were rejected.
    """

    def __init__(self, category, ifu, night, detail=""):
        self.category, self.ifu, self.night = category, ifu, night
        msg = f"no valid {category} for IFU {ifu} around night {night}"
        if detail:
            msg += f": {detail}"
        super().__init__(msg)


class RecipeError(MusewiseError, RuntimeError):
    """A recipe failed or was called wrongly.

    Parameters
    ----------
    recipe : str
        Recipe name, e.g. ``muse_bias``.
    message : str
        What went wrong.
    ifu : int, optional
        The IFU being reduced.
    inputs : sequence of int, optional
        Archive IDs of the input datasets.
    """

    def __init__(self, recipe, message, ifu=None, inputs=()):
        self.recipe, self.ifu, self.inputs = recipe, ifu, tuple(inputs)
        where = f" (IFU {ifu})" if ifu is not None else ""
        ids = f"; inputs {list(self.inputs)}" if self.inputs else ""
        super().__init__(f"{recipe}{where}: {message}{ids}")


class ParameterError(RecipeError, ValueError):
    """A recipe parameter is unknown or has the wrong type; raised before anything runs."""
