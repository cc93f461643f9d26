"""One configurable object for a musewise installation.

Every setting is a traitlet with help text. Values come, in increasing order of
precedence, from the defaults below, a ``musewise_config.py`` in the data root
(or the file named by ``$MUSEWISE_CONFIG``), environment variables
(``MUSEWISE_ROOT``, ``MUSEWISE_DB_URL``, ``MUSEWISE_DATASTORE``, ``MUSEWISE_DATASTORE_SERVICE``,
``MUSEWISE_USER``, ``MUSEWISE_DASK_SCHEDULER``, ``MUSEWISE_ESOREX``,
``MUSEWISE_RECIPE_CACHE``) and keyword arguments. Only this module reads them:
the other modules are given the values.
Site paths and secrets belong in the environment or the site's config file,
never in the repository.

The acting ``user`` is checked by :func:`musewise.identity.acting_identity`: in a
process that is not trusted (a hub user's server) it is the unix account, and
naming someone else is refused.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path

from traitlets import Bool, Dict, Int, List, Unicode, default
from traitlets.config import Config, Configurable, PyFileConfigLoader

from .exceptions import ConfigurationError

_ENV = {
    "root": "MUSEWISE_ROOT",
    "db_url": "MUSEWISE_DB_URL",
    "datastore_url": "MUSEWISE_DATASTORE",
    "datastore_service": "MUSEWISE_DATASTORE_SERVICE",
    "user": "MUSEWISE_USER",
    "dask_scheduler": "MUSEWISE_DASK_SCHEDULER",
    "esorex": "MUSEWISE_ESOREX",
    "crash_point": "MUSEWISE_TEST_CRASH_AT",
    "recipe_cache": "MUSEWISE_RECIPE_CACHE",
}


class MusewiseConfig(Configurable):
    """Settings of one musewise installation (archive, datastore, execution)."""

    root = Unicode(
        help="Data root of the installation: holds the SQLite archive, the datastore "
        "and users' scratch space unless those are set separately."
    ).tag(config=True)

    @default("root")
    def _root_default(self):
        return str(Path.home() / "musewise-data")

    db_url = Unicode(
        help="SQLAlchemy URL of the archive database. Default: SQLite file "
        "<root>/archive.sqlite. For the shared site use "
        "postgresql+psycopg://user@host/dbname."
    ).tag(config=True)

    @default("db_url")
    def _db_url_default(self):
        return f"sqlite:///{Path(self.root) / 'archive.sqlite'}"

    datastore_url = Unicode(
        help="fsspec URL of the write-once datastore (a local folder, a shared "
        "filesystem path, or an object-store URL such as s3://bucket/musewise)."
    ).tag(config=True)

    @default("datastore_url")
    def _datastore_default(self):
        return str(Path(self.root) / "datastore")

    datastore_options = Dict(
        help="fsspec storage options of the datastore, e.g. {'endpoint_url': "
        "'https://s3.example.org'} for an S3 store. Keep credentials out of it: s3fs reads "
        "them from the AWS chain (AWS_ACCESS_KEY_ID..., ~/.aws/credentials)."
    ).tag(config=True)

    datastore_cache = Unicode(
        help="Folder of the local copies of an object-store datastore's files, which the "
        "pipeline reads (one sub-folder per user, private to that user). Default: "
        "<scratch>/cache/datastore. Unused for a datastore on a local or shared filesystem."
    ).tag(config=True)

    @default("datastore_cache")
    def _datastore_cache_default(self):
        return str(Path(self.scratch) / "cache" / "datastore")

    datastore_service = Unicode(
        help="Unix socket of the datastore's writer service (python -m musewise.archive.storeservice), "
        "through which members' processes, connected to PostgreSQL as their own roles, store the "
        "files of their ingests and runs: at a site the datastore is the service's and members "
        "may only read it. Empty: each process writes the datastore itself."
    ).tag(config=True)

    scratch = Unicode(
        help="Folder for per-user scratch space and reduction working directories."
    ).tag(config=True)

    @default("scratch")
    def _scratch_default(self):
        return str(Path(self.root) / "scratch")

    user = Unicode(
        help="Name of the archive user acting in this session (the JupyterHub user "
        "inside the hub)."
    ).tag(config=True)

    @default("user")
    def _user_default(self):
        return os.environ.get("JUPYTERHUB_USER") or getpass.getuser()

    project = Unicode(
        "consortium",
        help="Project that committed products are published to by default.",
    ).tag(config=True)

    esorex = Unicode("esorex", help="The esorex executable that runs MUSE pipeline recipes.").tag(
        config=True
    )

    recipe_cache = Unicode(
        help="Folder of the cached descriptions of the pipeline recipes (parameters, input "
        "tags, products, read from esorex once per pipeline version). Default: "
        "$XDG_CACHE_HOME/musewise/recipes (~/.cache/musewise/recipes)."
    ).tag(config=True)

    @default("recipe_cache")
    def _recipe_cache_default(self):
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return str(Path(base) / "musewise" / "recipes")

    kernel_name = Unicode(
        "musewise",
        help="Jupyter kernel that executes reduction and QC notebooks and that the hub's "
        "servers start by default. `make setup` registers it in the virtualenv "
        "(python -m musewise.kernel).",
    ).tag(config=True)

    dask_scheduler = Unicode(
        "",
        help="Address of a running Dask scheduler (tcp://host:8786). Empty: start a "
        "LocalCluster. 'jobqueue:slurm' etc. uses dask-jobqueue with cluster_kwargs.",
    ).tag(config=True)

    n_workers = Int(2, help="Workers of the LocalCluster started when no scheduler is set.").tag(
        config=True
    )

    calibration_validity_days = Dict(
        {},
        help="Certified validity of new calibrations per category, as [days before, days after] "
        "their MJD-OBS, overriding musewise.vocabulary.DEFAULT_VALIDITY_DAYS "
        "(e.g. {'STD_RESPONSE': [3, 3]}).",
    ).tag(config=True)

    collections = List(
        Unicode(),
        [],
        help="Collection search path of personal work, searched in order (chains stand for their "
        "members). Empty: the user's own trials (u/<user>/calib, u/<user>), then the project's "
        "reference reduction (<project>/calib, <project>/reference), then MUSE/calib, MUSE/static, "
        "MUSE/ingested, MUSE/raw.",
    ).tag(config=True)

    reference_privilege = Int(
        3,
        help="Privilege of the reference reduction's products (commit=True runs): 3 consortium "
        "(every member sees them from their first login), 2 project, 4 public.",
    ).tag(config=True)

    def archive_path(self) -> str:
        """The file whose owner owns this archive: the SQLite database, else the data root."""
        prefix = "sqlite:///"
        if self.db_url.startswith(prefix) and len(self.db_url) > len(prefix):
            return self.db_url[len(prefix):].split("?", 1)[0]
        return self.root

    def acting_user(self, requested: str | None = None) -> str:
        """The archive user this process acts as when it asks for ``requested`` (default: ``user``).

        Raises
        ------
        IdentityError
            In a process that is not trusted (see :func:`musewise.identity.acting_identity`,
            e.g. a hub user's server) when ``requested`` is not its unix account.
        """
        from .identity import acting_identity

        # No list of trusted accounts here: a user can write their own config file. The
        # archive's service account is trusted as the owner of the archive's files.
        return acting_identity(requested or self.user, archive_path=self.archive_path()) or self.user

    def validity_days(self, category: str) -> tuple[float, float]:
        """Default certified validity of a new calibration of ``category``: (days before, days after)."""
        from .vocabulary import DEFAULT_VALIDITY_DAYS, FALLBACK_VALIDITY_DAYS

        if category in self.calibration_validity_days:
            before, after = self.calibration_validity_days[category]
            return float(before), float(after)
        return DEFAULT_VALIDITY_DAYS.get(category, FALLBACK_VALIDITY_DAYS)

    crash_point = Unicode(
        "",
        help="For the kill-safety tests only: the archive kills its own process (SIGKILL) at this "
        "instant of a write ('before-db-commit'). Empty in every real installation.",
    ).tag(config=True)

    checksum_on_read = Bool(
        False, help="Verify the sha256 checksum every time a file is read from the datastore."
    ).tag(config=True)

    unix_group_prefix = Unicode(
        "musewise",
        help="Unix group of the consortium's members; '<prefix>-<project>' is the group of a project's "
        "members. Stored files are given these groups so that users' own accounts read only what "
        "they may see (see musewise.archive.filemodes).",
    ).tag(config=True)

    @classmethod
    def load(cls, config_file: str | os.PathLike | None = None, **overrides) -> "MusewiseConfig":
        """Build the configuration from file, environment and keyword overrides.

        Parameters
        ----------
        config_file : path, optional
            A traitlets Python config file (``c.MusewiseConfig.root = ...``).
            Default: ``$MUSEWISE_CONFIG``, else ``<root>/musewise_config.py`` if present.
        **overrides
            Trait values that take precedence over everything else.

        Raises
        ------
        ConfigurationError
            If an override names no setting or the config file cannot be read.
        """
        unknown = set(overrides) - set(cls.class_trait_names(config=True))
        if unknown:
            raise ConfigurationError(
                f"unknown musewise setting(s) {sorted(unknown)}; known: "
                f"{sorted(cls.class_trait_names(config=True))}"
            )
        values = {k: os.environ[v] for k, v in _ENV.items() if os.environ.get(v)}
        values.update({k: v for k, v in overrides.items() if v is not None})
        cfg = Config()
        path = config_file or os.environ.get("MUSEWISE_CONFIG")
        if not path and values.get("root"):
            candidate = Path(values["root"]) / "musewise_config.py"
            path = str(candidate) if candidate.exists() else None
        if path:
            p = Path(path)
            try:
                cfg = PyFileConfigLoader(p.name, path=str(p.parent)).load_config()
            except Exception as exc:  # traitlets raises several types
                raise ConfigurationError(f"cannot read musewise config file {p}: {exc}") from exc
        config = cls(config=cfg, **values)
        # An untrusted process (a hub user's server) is its unix account: asking for someone
        # else ($MUSEWISE_USER, user=) is refused; a default (a site config file's user, meant
        # for the archive's owner, or $JUPYTERHUB_USER) gives way to the account.
        from .identity import acting_identity

        explicit = values.get("user")
        config.user = (config.acting_user(explicit) if explicit
                       else acting_identity(None, archive_path=config.archive_path()) or config.user)
        return config

    def as_dict(self) -> dict:
        """All settings as a plain dict (for provenance records and display)."""
        return {k: getattr(self, k) for k in self.class_trait_names(config=True)}
