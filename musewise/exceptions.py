"""The musewise exception tree.

Every error raised on purpose by musewise derives from :class:`MusewiseError`;
each leaf also derives from the builtin that describes it best, so callers can
catch either ``musewise.exceptions.NotFoundError`` or plain ``LookupError``.

The tree::

    MusewiseError
    ├── ConfigurationError (ValueError)
    ├── InvalidArgumentError (ValueError)
    ├── UnsupportedTypeError (TypeError)
    ├── NothingSelectedError (ValueError)
    ├── InvalidFrameError (ValueError)
    ├── NotFoundError (LookupError)
    │   └── CalibrationNotFoundError
    ├── DuplicateError (ValueError)
    │   └── BytesStoredAlready
    ├── PermissionDeniedError (PermissionError)
    │   ├── IdentityError
    │   ├── ReferenceInputError
    │   └── ReleaseFrozenError
    ├── RunStateError (ValueError)
    ├── ReleaseRefusedError (ValueError)
    ├── DiskSpaceError (OSError)
    ├── DatastoreError (OSError)
    ├── IntegrityError (ValueError)
    │   └── ReleaseVerificationError
    ├── QueryError (ValueError)
    ├── OutsideCubeError (IndexError)
    ├── NoWCSError (ValueError)
    ├── RecipeDefinitionError (TypeError)
    ├── RecipeError (RuntimeError)
    │   ├── ParameterError (ValueError)
    │   ├── PipelineNotInstalledError (FileNotFoundError)
    │   └── ReductionFailed
    ├── QCError (RuntimeError)
    ├── QCNotApplicableError (ValueError)
    ├── AlreadyClaimedError (RuntimeError)
    ├── ServiceStartError (RuntimeError)
    └── MissingDependencyError (ImportError)
"""

from __future__ import annotations

import os


class MusewiseError(Exception):
    """Base class of all musewise errors."""


class ConfigurationError(MusewiseError, ValueError):
    """A configuration value is missing or invalid."""


class InvalidArgumentError(MusewiseError, ValueError):
    """A function was given a value it cannot use (unknown name, out of range, wrong shape).

    The message names the value and what is accepted instead.
    """


class UnsupportedTypeError(MusewiseError, TypeError):
    """A function was given an object of a kind it cannot use (or a keyword it does not know).

    The message names what is accepted instead.
    """


class NothingSelectedError(MusewiseError, ValueError):
    """A viewer was asked to act on its selection (an IFU, a spectrum, an image, a range) before one was made."""


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


class BytesStoredAlready(DuplicateError):
    """The registry holds the bytes of ``path`` already, in a file row the acting user cannot
    see: just stored by another process (a retry finds it), or under other members' datasets
    only. A member's own dataset may share such a file only when the datastore's writer
    service saw the bytes come from them (``MusewiseConfig.datastore_service``)."""

    def __init__(self, path, sha256: str, *, through_writer_service: bool = False):
        self.path, self.sha256 = str(path), sha256
        where = f"{os.path.basename(self.path)}: the archive holds these bytes already (sha256 {sha256[:16]}...)"
        if through_writer_service:
            # Through the service a committed file of the same bytes is shared (a file claim):
            # only a file another process has not committed yet can refuse the insert.
            super().__init__(f"{where}, in a file not yet visible to you (another process was committing the "
                             "same bytes at the same time); archiving again lets your dataset share it")
        else:
            super().__init__(f"{where}, under datasets you may not see; archive them through the datastore's "
                             "writer service (MusewiseConfig.datastore_service), which lets your dataset "
                             "share the stored file")


class PermissionDeniedError(MusewiseError, PermissionError):
    """The user lacks the privilege for the requested action."""


class IdentityError(PermissionDeniedError):
    """A process asked to act in the archive as someone other than its own unix account.

    Raised by :func:`musewise.identity.acting_identity` in a hub user's server (or any
    process that is neither root nor the archive's service account): there the archive
    identity is the unix account, whatever ``user=``, ``MUSEWISE_USER`` or ``--user`` say.
    """


class ReferenceInputError(PermissionDeniedError):
    """A reference run (``commit=True``) was given an input from outside the reference reduction."""


class RunStateError(MusewiseError, ValueError):
    """A run cannot change state that way (e.g. it already ended)."""


class ReleaseFrozenError(PermissionDeniedError):
    """An attempt to change or delete a frozen data release."""


class ReleaseRefusedError(MusewiseError, ValueError):
    """A product may not be released (invalid, affected by an invalid input, or not a product)."""


class DiskSpaceError(MusewiseError, OSError):
    """Not enough free disk for what a plan would archive; nothing was run."""


class DatastoreError(MusewiseError, OSError):
    """The file store could not read or write a file."""


class IntegrityError(MusewiseError, ValueError):
    """Stored bytes do not match their recorded checksum."""


class QueryError(MusewiseError, ValueError):
    """A user query was refused (not read-only, unknown column, bad syntax)."""


class ReleaseVerificationError(IntegrityError):
    """An exported release folder or a released file does not match its manifest.

    Parameters
    ----------
    problems : sequence of str
        One line per file that is changed, missing or unexpected (kept as ``problems``).
    """

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__(f"{len(self.problems)} problem(s): " + "; ".join(self.problems[:5]))


class NoWCSError(MusewiseError, ValueError):
    """An image or cube has no celestial WCS, so sky coordinates cannot be given."""


class OutsideCubeError(MusewiseError, IndexError):
    """A spaxel or wavelength lies outside the cube."""


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


class RecipeDefinitionError(MusewiseError, TypeError):
    """A recipe is defined wrongly: a function signature, parameter type or return value
    musewise cannot use, or an object registered as a recipe that is not one."""


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


class PipelineNotInstalledError(RecipeError, FileNotFoundError):
    """esorex or the MUSE recipe plug-ins are not installed; the message names the install command."""


class ReductionFailed(RecipeError):
    """One or more runs of a reduction failed; each is recorded as failed in the archive.

    Parameters
    ----------
    recipe : str
        The recipe of the runs.
    outcomes : list of musewise.dpu.runner.RunOutcome
        All runs of the call, failed and succeeded (kept as ``outcomes``).
    """

    def __init__(self, recipe, outcomes):
        self.outcomes = list(outcomes)
        bad = [o for o in self.outcomes if not o.ok]
        first = bad[0]
        msg = (f"{len(bad)} of {len(self.outcomes)} run(s) failed: "
               + ", ".join(f"run {o.run_id} ({o.label})" for o in bad)
               + f"; first error: {first.error.splitlines()[0] if first.error else '?'}")
        super().__init__(recipe, msg, ifu=first.ifu)


class QCError(MusewiseError, RuntimeError):
    """A QC run failed (it is recorded as a failed run with its notebook).

    Parameters
    ----------
    message : str
    dataset_id : int, optional
        The product under quality control.
    run_id : int, optional
        The failed QC run.
    """

    def __init__(self, message, dataset_id=None, run_id=None):
        self.dataset_id, self.run_id = dataset_id, run_id
        super().__init__(message)


class QCNotApplicableError(MusewiseError, ValueError):
    """No QC notebook exists for the product's category (or the QC type is unknown)."""


class AlreadyClaimedError(MusewiseError, RuntimeError):
    """Another reviewer holds an unexpired claim on the product."""



class ServiceStartError(MusewiseError, RuntimeError):
    """A server musewise starts for a session or a test (Voila, PostgreSQL, a spare Jupyter kernel)
    exited or did not answer in time.

    The message holds the end of its log.
    """


class MissingDependencyError(MusewiseError, ImportError):
    """A feature needs an optional package that is not installed.

    Parameters
    ----------
    feature : str
        What was asked for, e.g. ``musewise hub``.
    package : str
        The missing distribution, e.g. ``jupyterhub``.
    install : str
        The command that installs it, e.g. ``pip install 'musewise[hub]'``.
    """

    def __init__(self, feature, package, install):
        self.feature, self.package, self.install = feature, package, install
        super().__init__(f"{feature} needs {package}, which is not installed: {install}")
