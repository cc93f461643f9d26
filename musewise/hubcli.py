"""The shared JupyterHub of a musewise site: ``musewise hub``.

``musewise hub`` starts JupyterHub with ``hub/jupyterhub_config.py`` (or, for
an installed package, the built-in defaults of :func:`configure`):

* login: a shared demo password (JupyterHub's ``SharedPasswordAuthenticator``),
  or sign-up with administrator approval (``NativeAuthenticator``), or the
  consortium's OAuth provider (see the commented example in the config file);
* every user who logs in is registered in the archive (a consortium member,
  not an administrator) by :func:`register_in_archive`;
* single-user servers run as local processes (:class:`MusewiseSpawner`), each
  under its user's own unix account (created at its first start; never root),
  with the kernel of ``MusewiseConfig.kernel_name`` (``musewise``), the archive
  configured (``MUSEWISE_ROOT``, ``MUSEWISE_DB_URL``, ``MUSEWISE_DATASTORE``; the
  archive identity is the account, :mod:`musewise.identity`), the example
  notebooks and templates copied into a home folder (0700) under the data root
  and a scratch folder of their own;
* run as root, ``musewise hub`` first makes the hub's state readable by the hub
  alone and the archive read-only to users (:func:`secure_site`);
* on the default SQLite archive it serves the archive from a PostgreSQL server of
  its own (:mod:`musewise.hubdb`: copied once, a role per user, each server given
  its user's role, the address written into the site config, stopped with the hub);
* the archive's web view (:mod:`musewise.web`) runs as the hub service
  ``archive`` at ``/services/archive/``.

Settings are the traits of :class:`MusewiseHub` (``c.MusewiseHub.port = 8000``
in the config file). ``musewise hub`` options are passed to ``jupyterhub`` as
command-line settings (``--MusewiseHub.port=8000``), which take precedence over
the config file; so can be any other trait (``musewise hub -- --MusewiseHub.admin_users=...``).
The secrets among them may instead come from the environment (see their help).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import sys
from pathlib import Path

from traitlets import Bool, Dict, Float, Int, Set, Unicode, default
from traitlets.config import Config, Configurable

from .config import MusewiseConfig
from .exceptions import ConfigurationError
from .hubdb import datastore_socket, is_managed, writes_through_service
from .kernel import ensure_kernelspec
from .resources import shared_folder

REPO = Path(__file__).resolve().parents[1]
#: Demo logins (any user name) - for demonstrations and tests only, never for a real site.
DEMO_PASSWORD = "muse-demo"
DEMO_ADMIN_PASSWORD = "muse-demo-admin-password-change-me"
SERVICE_NAME = "archive"
#: The hub service of VO access to the releases (musewise.vo).
VO_SERVICE_NAME = "vo"
#: The datastore's writer service (musewise.archive.storeservice), managed by the hub when members have database roles.
DATASTORE_SERVICE_NAME = "musewise-datastore"

#: Secrets that may come from the environment rather than a file or a command line
#: (where other users could read them): trait -> variable.
SECRET_ENV = {"demo_password": "MUSEWISE_HUB_PASSWORD", "admin_password": "MUSEWISE_HUB_ADMIN_PASSWORD",
              "admin_token": "MUSEWISE_HUB_ADMIN_TOKEN"}


class MusewiseHub(Configurable):
    """Settings of the musewise JupyterHub (read by :func:`configure`)."""

    ip = Unicode("127.0.0.1", help="Address the hub's public proxy listens on.").tag(config=True)
    port = Int(8000, help="Port of the hub's public proxy.").tag(config=True)
    hub_port = Int(8081, help="Port of the hub process itself (on 127.0.0.1).").tag(config=True)
    proxy_api_port = Int(0, help="Port of the proxy's REST API on 127.0.0.1 (0: JupyterHub's default, port + 1).").tag(config=True)
    service_port = Int(10101, help="Port of the archive web view service (on 127.0.0.1).").tag(config=True)
    vo = Bool(help="Serve the releases to VO clients (TAP, ObsCore, DataLink) at /services/vo/ "
                   "(musewise.vo: GAVO DaCHS behind the hub). Default: True when DaCHS is installed "
                   "(Debian python3-gavo).").tag(config=True)
    vo_port = Int(10102, help="Port of the VO gateway service (on 127.0.0.1).").tag(config=True)
    vo_refresh = Float(30.0, help="Seconds between the VO service's checks for new or changed releases.").tag(config=True)
    public_url = Unicode(help="The hub's URL as users and VO clients reach it (links in VO responses start "
                              "with it). Default http://<ip>:<port>.").tag(config=True)
    authenticator = Unicode(
        "shared-password",
        help="'shared-password': any user name with the demo password (demos and tests only); "
        "'native': sign-up with administrator approval; anything else: leave "
        "c.JupyterHub.authenticator_class to the config file (e.g. OAuth).",
    ).tag(config=True)
    demo_password = Unicode(
        help="The shared password of 'shared-password' logins (>= 8 characters). Default "
        f"$MUSEWISE_HUB_PASSWORD, else {DEMO_PASSWORD!r}."
    ).tag(config=True)
    admin_password = Unicode(
        help="The password of admin_users with 'shared-password' logins (>= 32 characters). "
        "Default $MUSEWISE_HUB_ADMIN_PASSWORD, else a demo password printed in the banner."
    ).tag(config=True)
    admin_users = Set({"admin"}, help="Hub administrators.").tag(config=True)
    admin_token = Unicode(
        help="An API token with hub-administration rights for automation (e.g. tests, culling), "
        "registered as service 'musewise-admin'. Default $MUSEWISE_HUB_ADMIN_TOKEN (none if unset); "
        "never commit it."
    ).tag(config=True)
    archive_admin = Unicode("admin", help="Archive administrator the hub acts as to register new users.").tag(config=True)
    state_dir = Unicode(help="Hub state: its database and cookie secret, readable by the hub alone "
                             "(0700). Default <root>/hub.").tag(config=True)
    home_template = Unicode(help="Home folders of new users' unix accounts ({username} is replaced), mode "
                                 "0700. Default <root>/home/{username}.").tag(config=True)
    system_users = Bool(help="Run each user's server under its own unix account (created at its first "
                             "start with useradd --system). Default: True when the hub runs as root, which "
                             "it must for this. False (a hub of one astronomer's own account): every server "
                             "runs as the hub's user, no isolation between users; refused as root, where "
                             "it would run users' code as root.").tag(config=True)
    server_python = Unicode(help="The Python that runs users' servers and kernels: an environment with musewise "
                                 "that their accounts can reach (not under /root). Default: the hub's own; with "
                                 "system users, when the hub's own is closed to others (a pyenv under /root), "
                                 "the system's Python of the same version with the hub's packages, made in "
                                 "<root>/hub-python (musewise.hubaccounts.python_users_can_run).").tag(config=True)
    managed_database = Bool(True, help="With system users and the default SQLite archive, serve the archive "
                                       "from a PostgreSQL server the hub runs itself in <root>/postgres "
                                       "(musewise.hubdb: the registry copied once, a role per user, row-level "
                                       "security; stopped with the hub). False: keep SQLite, which members' "
                                       "kernels can read whole (and, read-only, often cannot open).").tag(config=True)
    unix_group = Unicode("musewise", help="Unix group of the hub users' accounts (created if missing): may read "
                                          "the archive's database file and datastore, never write them.").tag(config=True)
    copy_into_home = Dict(
        help="Folders copied into every user's home at each start (files the user already has are "
        "kept): name in home -> source folder. Default: musewise's notebooks/ and templates/. "
        "On the command line: --MusewiseHub.copy_into_home=examples=/path (repeatable)."
    ).tag(config=True)

    @default("vo")
    def _vo_default(self):
        from .vo.dachs import dachs_available

        return dachs_available()

    @default("public_url")
    def _public_url_default(self):
        return f"http://{self.ip}:{self.port}"

    @default("demo_password")
    def _demo_password_default(self):
        return os.environ.get(SECRET_ENV["demo_password"]) or DEMO_PASSWORD

    @default("admin_password")
    def _admin_password_default(self):
        return os.environ.get(SECRET_ENV["admin_password"]) or DEMO_ADMIN_PASSWORD

    @default("admin_token")
    def _admin_token_default(self):
        return os.environ.get(SECRET_ENV["admin_token"], "")

    @default("state_dir")
    def _state_default(self):
        return str(Path(MusewiseConfig.load().root) / "hub")

    @default("home_template")
    def _home_default(self):
        return str(Path(MusewiseConfig.load().root) / "home" / "{username}")

    @default("server_python")
    def _server_python_default(self):
        return sys.executable

    @default("system_users")
    def _system_users_default(self):
        return os.geteuid() == 0

    @default("copy_into_home")
    def _copy_default(self):
        return {"examples": str(shared_folder("notebooks")), "templates": str(shared_folder("templates"))}

    @classmethod
    def from_config(cls, c=None, cli_config=None) -> "MusewiseHub":
        """The settings of config ``c`` (the config file's), overridden by the command line's.

        Parameters
        ----------
        c : traitlets.config.Config, optional
        cli_config : traitlets.config.Config, optional
            Settings given on the command line (``--MusewiseHub.port=9100``). Default:
            those of the running JupyterHub (the config file is read while it starts,
            before it applies its command line, so they are merged here).
        """
        if cli_config is None:
            from traitlets.config import Application

            cli_config = getattr(Application.instance(), "cli_config", None) if Application.initialized() else None
        merged = Config()
        for part in (c, cli_config):
            if part is not None:
                merged.merge(part)
        return cls(config=merged)


def archive_environment(config: MusewiseConfig | None = None) -> dict[str, str]:
    """``MUSEWISE_*`` variables that point a process at this site's archive (explicit paths)."""
    config = config or MusewiseConfig.load()
    env = {"MUSEWISE_ROOT": config.root, "MUSEWISE_DB_URL": config.db_url, "MUSEWISE_DATASTORE": config.datastore_url}
    if os.environ.get("MUSEWISE_CONFIG"):
        env["MUSEWISE_CONFIG"] = os.environ["MUSEWISE_CONFIG"]
    return env


def _spawner_class():
    # Defined on first use: importing jupyterhub for every `musewise` command would be slow.
    from jupyterhub.spawner import LocalProcessSpawner

    class MusewiseSpawner(LocalProcessSpawner):
        """Single-user servers as local processes, each under its user's own unix account.

        Before each start the account is created if missing (``useradd --system``, in
        the hub's group, home mode 0700; :func:`musewise.hubaccounts.ensure_account`),
        the ``musewise`` kernel is registered and the home gets the example notebooks.
        The server then runs as that account (never as root), with the archive's
        address in its environment but no ``MUSEWISE_USER``: its archive identity is
        the account (:mod:`musewise.identity`). A cluster site switches to
        ``SystemdSpawner`` or ``BatchSpawner`` (see ``hub/README.md``) and keeps the
        home preparation by calling :func:`prepare_home` from its spawner's hooks.
        """

        archive_env = Dict(help="MUSEWISE_* variables of the archive, passed to every server.").tag(config=True)
        kernel_name = Unicode(MusewiseConfig.class_traits()["kernel_name"].default_value,
                              help="Kernel registered before each start (MusewiseConfig.kernel_name, "
                                   "which the hub's configuration sets).").tag(config=True)
        copy_into_home = Dict(help="See MusewiseHub.copy_into_home.").tag(config=True)
        scratch_root = Unicode(help="Users' scratch folders live in <scratch_root>/<username>.").tag(config=True)
        home_dir_template = Unicode(help="Home folder of a new account ({username} is replaced); an existing "
                                         "account keeps its own.").tag(config=True)
        unix_group = Unicode("musewise", help="See MusewiseHub.unix_group.").tag(config=True)
        system_users = Bool(True, help="See MusewiseHub.system_users.").tag(config=True)
        python = Unicode(sys.executable, help="See MusewiseHub.server_python.").tag(config=True)
        database_roles = Bool(False, help="Give each server the archive database as its user's own role "
                                          "(peer authentication on the hub's PostgreSQL, musewise.hubdb) "
                                          "instead of archive_env's URL, and create that role before the "
                                          "start.").tag(config=True)

        def make_preexec_fn(self, name):
            if self.system_users:
                return super().make_preexec_fn(name)
            return None  # the hub's own account (a hub of one astronomer)

        def user_env(self, env):
            if self.system_users:
                return super().user_env(env)
            env["USER"] = self.user.name
            env["HOME"] = self.home_dir_template.format(username=self.user.name)
            return env

        def get_env(self):
            env = super().get_env()
            env.update(self.archive_env)
            env.pop("MUSEWISE_USER", None)  # the unix account is the identity
            if self.database_roles:
                from .archive.pgserver import user_database_url

                # The role of the account: the database server checks it (peer), row-level security applies.
                env["MUSEWISE_DB_URL"] = user_database_url(self.archive_env["MUSEWISE_DB_URL"], self.user.name)
            env["PATH"] = f"{Path(self.python).parent}:{env.get('PATH', '/usr/bin:/bin')}"
            return env

        async def start(self):
            from .hubaccounts import ensure_account

            name = self.user.name
            home = self.home_dir_template.format(username=name)
            await asyncio.to_thread(register_kernel, self.python, self.kernel_name)
            if self.database_roles:
                from .archive.pgserver import ensure_user_role

                await asyncio.to_thread(ensure_user_role, self.archive_env["MUSEWISE_DB_URL"], name)
            if self.system_users:
                account = await asyncio.to_thread(ensure_account, name, home, self.unix_group)
                await asyncio.to_thread(prepare_home_as, account, self.copy_into_home, self.scratch_root,
                                        self.python)
            else:
                await asyncio.to_thread(prepare_home, home, name, self.copy_into_home, self.scratch_root)
            return await super().start()

    return MusewiseSpawner


def prepare_home(home, username: str, copy_into_home: dict, scratch_root: str = "") -> Path:
    """Create a user's home with copies of the example notebooks and a link to their scratch folder.

    Files the user already has are kept, so their edits survive restarts; new
    examples appear at the next start. The hub runs it as the user (see
    :meth:`MusewiseSpawner.start`), never as root inside a folder the user controls.
    """
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    for name, source in copy_into_home.items():
        src = Path(source)
        if not src.is_dir():
            continue
        for f in src.rglob("*"):
            dest = home / name / f.relative_to(src)
            if f.is_file() and not dest.exists() and ".ipynb_checkpoints" not in f.parts:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, dest)
    if scratch_root:
        scratch = Path(scratch_root) / username
        scratch.mkdir(parents=True, exist_ok=True)
        link = home / "scratch"
        if not link.exists() and not link.is_symlink():
            link.symlink_to(scratch, target_is_directory=True)
    return home


def register_kernel(python: str, kernel_name: str) -> None:
    """Register the kernel ``kernel_name`` in the environment of ``python`` (this one, or another's)."""
    import subprocess

    if python == sys.executable:
        ensure_kernelspec(kernel_name)
    else:
        subprocess.run([python, "-m", "musewise.kernel"], check=True, capture_output=True, timeout=120)


def prepare_home_as(account, copy_into_home: dict, scratch_root: str = "", python: str = sys.executable) -> None:
    """:func:`prepare_home` for unix ``account`` (a ``pwd`` entry), from a root process.

    The scratch folder is created by root (its parent is root's) and given to the
    account, 0700; the copying runs in a child process under the account, so a
    symbolic link the user planted in their home cannot make root write elsewhere.
    """
    import json
    import subprocess

    if scratch_root:
        scratch = Path(scratch_root) / account.pw_name
        scratch.mkdir(parents=True, exist_ok=True)
        os.chown(scratch, account.pw_uid, account.pw_gid, follow_symlinks=False)
        scratch.chmod(0o700)
    code = ("import json, sys; from musewise.hubcli import prepare_home; "
            "prepare_home(*json.loads(sys.argv[1]))")
    subprocess.run([python, "-c", code, json.dumps([account.pw_dir, account.pw_name, copy_into_home,
                                                             scratch_root])],
                   user=account.pw_uid, group=account.pw_gid, extra_groups=[], cwd=account.pw_dir,
                   env={"HOME": account.pw_dir, "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                        **({"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {})},
                   check=True, capture_output=True, timeout=120)


def __getattr__(name):
    if name == "MusewiseSpawner":
        cls = _spawner_class()
        globals()["MusewiseSpawner"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_archives: dict = {}


def _hub_archive(admin: str):
    from .archive import Archive

    key = (admin, tuple(sorted(archive_environment().items())))
    if key not in _archives:
        arch = Archive.open(user=admin)
        admins = [u["name"] for u in arch.users() if u["is_admin"]]
        if admin not in admins:
            arch = arch.as_user(admins[0])
        _archives[key] = arch
    return _archives[key]


def register_user(name: str, admin: str = "admin") -> bool:
    """Register hub user ``name`` in the archive as a consortium member; False if already there."""
    from .exceptions import DuplicateError

    arch = _hub_archive(admin)
    if any(u["name"] == name for u in arch.users()):
        return False
    try:
        arch.add_user(name, admin=False, member=True, full_name=name)
    except DuplicateError:
        return False
    logging.getLogger("musewise.hub").info("registered hub user %s in the archive", name)
    return True


def register_in_archive(archive_admin: str = "admin"):
    """A JupyterHub ``post_auth_hook``: every user who logs in exists in the archive.

    Users only reach this after their login succeeded, so with NativeAuthenticator
    they are registered at their first login after an administrator approved them.
    """

    async def hook(authenticator, handler, authentication):
        if authentication:
            await asyncio.to_thread(register_user, authentication["name"], archive_admin)
        return authentication

    return hook


def configure(c, hub: MusewiseHub | None = None) -> MusewiseHub:
    """Apply musewise's defaults to a JupyterHub config object ``c``.

    Call it from ``jupyterhub_config.py`` after setting ``c.MusewiseHub`` traits;
    set anything you want to override after the call.
    """
    from .optional import require

    hub = hub or MusewiseHub.from_config(c)
    mw = MusewiseConfig.load()
    archive_env = archive_environment(mw)
    state = Path(hub.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        if not hub.system_users:
            raise ConfigurationError("c.MusewiseHub.system_users = False would run every user's code as root: "
                                     "run the hub as an unprivileged account for that, or keep system users")

    c.JupyterHub.ip = hub.ip
    c.JupyterHub.port = hub.port
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.hub_port = hub.hub_port
    c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
    c.ConfigurableHTTPProxy.pid_file = str(state / "proxy.pid")
    chp = REPO / "node_modules" / ".bin" / "configurable-http-proxy"
    if chp.exists():
        c.ConfigurableHTTPProxy.command = [str(chp)]
    if hub.proxy_api_port:
        c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{hub.proxy_api_port}"

    # Who may log in.
    c.Authenticator.admin_users = set(hub.admin_users)
    if hub.authenticator == "shared-password":
        c.JupyterHub.authenticator_class = "shared-password"
        c.SharedPasswordAuthenticator.user_password = hub.demo_password
        c.SharedPasswordAuthenticator.admin_password = hub.admin_password
        c.Authenticator.allow_all = True
    elif hub.authenticator == "native":
        nativeauthenticator = require("nativeauthenticator", "musewise hub --auth native")

        c.JupyterHub.authenticator_class = "native"
        c.JupyterHub.template_paths = [str(Path(nativeauthenticator.__file__).parent / "templates")]
        c.NativeAuthenticator.open_signup = False  # an administrator approves each sign-up at /hub/authorize
        c.NativeAuthenticator.minimum_password_length = 10
        c.Authenticator.allow_all = True  # approval, not a list of names, decides
    c.Authenticator.post_auth_hook = register_in_archive(hub.archive_admin)

    # Single-user servers.
    c.JupyterHub.spawner_class = __getattr__("MusewiseSpawner")
    c.Spawner.ip = "127.0.0.1"
    c.Spawner.cmd = [hub.server_python, "-m", "jupyterhub.singleuser"]
    c.Spawner.default_url = "/lab"
    c.Spawner.args = [f"--MultiKernelManager.default_kernel_name={mw.kernel_name}"]
    # The hub's PYTHONPATH (the musewise it runs) is the servers' too; secrets in its environment are not.
    c.Spawner.env_keep = ["JUPYTERHUB_SINGLEUSER_APP", "PYTHONPATH"]
    c.Spawner.http_timeout = 120
    c.Spawner.start_timeout = 120
    c.MusewiseSpawner.home_dir_template = hub.home_template
    c.MusewiseSpawner.system_users = hub.system_users
    c.MusewiseSpawner.unix_group = hub.unix_group
    c.MusewiseSpawner.python = hub.server_python
    c.MusewiseSpawner.archive_env = archive_env
    c.MusewiseSpawner.database_roles = hub.system_users and is_managed(mw.db_url, mw.root)
    c.MusewiseSpawner.kernel_name = mw.kernel_name
    c.MusewiseSpawner.copy_into_home = dict(hub.copy_into_home)
    c.MusewiseSpawner.scratch_root = mw.scratch

    # The archive web view, and who may use it.
    c.JupyterHub.services = [{
        "name": SERVICE_NAME,
        "url": f"http://127.0.0.1:{hub.service_port}",
        "command": [sys.executable, "-m", "musewise.web"],
        "environment": {**archive_env, "MUSEWISE_USER": hub.archive_admin},
        "oauth_no_confirm": True,
        "display": True,
    }]
    if c.MusewiseSpawner.database_roles and writes_through_service(mw):
        # Members' roles may only read the datastore: what their kernels archive is stored
        # by the writer service (root), which knows each caller from the kernel.
        sock = datastore_socket(mw.root)
        sock.parent.mkdir(parents=True, exist_ok=True)
        sock.parent.chmod(0o755)
        c.JupyterHub.services.append({
            "name": DATASTORE_SERVICE_NAME,
            "command": [sys.executable, "-m", "musewise.archive.storeservice", "--socket", str(sock)],
            "environment": {**archive_env, "MUSEWISE_USER": hub.archive_admin},
            "display": False,
        })
        c.MusewiseSpawner.archive_env = {**archive_env, "MUSEWISE_DATASTORE_SERVICE": str(sock)}
    scopes = {f"access:services!service={SERVICE_NAME}"}
    if hub.vo:
        # Public releases need no login: the gateway itself decides who sees what (musewise.vo.gateway).
        c.JupyterHub.services.append({
            "name": VO_SERVICE_NAME,
            "url": f"http://127.0.0.1:{hub.vo_port}",
            "command": [sys.executable, "-m", "musewise.vo", "--state", str(Path(mw.root) / "vo"),
                        "--public-url", hub.public_url.rstrip("/") + f"/services/{VO_SERVICE_NAME}",
                        "--refresh", str(hub.vo_refresh)],
            "environment": {**archive_env, "MUSEWISE_USER": hub.archive_admin},
            "display": False,
        })
        scopes.add(f"access:services!service={VO_SERVICE_NAME}")
    roles = []
    if "extra_user_scopes" in _hub_traits():
        c.JupyterHub.extra_user_scopes = scopes
    else:
        roles.append({"name": "user", "scopes": ["self", *sorted(scopes)]})
    if hub.admin_token:
        c.JupyterHub.services.append({"name": "musewise-admin", "api_token": hub.admin_token})
        roles.append({"name": "musewise-admin", "services": ["musewise-admin"],
                      "scopes": ["admin:users", "admin:servers", "tokens", "access:servers", "read:hub",
                                 "access:services"]})
    c.JupyterHub.load_roles = roles
    return hub


def secure_site(hub: MusewiseHub, mw: MusewiseConfig) -> None:
    """What a root hub does before it starts: its state private, the archive read-only to users.

    The archive is created if missing (as the hub's archive administrator, who
    then owns it), so that its files exist and get their modes now; see
    :mod:`musewise.hubaccounts` for the modes.
    """
    from .archive import Archive
    from .hubaccounts import closed_to_others, protect_archive, protect_state

    if hub.system_users:
        closed = closed_to_others(hub.server_python)
        if closed is not None:
            raise ConfigurationError(
                f"users' servers run {hub.server_python}, which their accounts cannot reach ({closed} is closed "
                "to others): install musewise in a virtualenv outside root's home, e.g. under /opt, or name "
                "one with --MusewiseHub.server_python")
    from .archive.filemodes import sync_unix_groups

    protect_state(hub.state_dir)
    arch = Archive.open(mw, user=hub.archive_admin)
    try:
        db_file = mw.archive_path() if mw.db_url.startswith("sqlite:") else None
        datastore = mw.datastore_url if "://" not in mw.datastore_url else None
        homes = Path(hub.home_template.format(username="x")).parent
        protect_archive(db_file, datastore, hub.unix_group, traversable=(mw.root, homes, mw.scratch))
        # Then each stored file opens to whom its datasets' privileges say (files made before
        # this hub, or by another, included): the groups first, then the modes.
        sync_unix_groups(arch)
        arch.protect_files()
    finally:
        arch.close()


def _hub_traits():
    from jupyterhub.app import JupyterHub

    return JupyterHub.class_trait_names()


def demo_banner(hub: MusewiseHub | None = None) -> str:
    """The address of the hub and how to log in (printed by ``musewise hub`` and ``make demo``)."""
    hub = hub or MusewiseHub()
    url = f"http://{hub.ip}:{hub.port}"
    lines = [f"musewise hub: {url}/hub/login", f"  archive web view: {url}/services/archive/"]
    if hub.vo:
        lines.append(f"  VO (TAP, ObsCore, DataLink) of the releases: {url}/services/{VO_SERVICE_NAME}/tap "
                     "(public data without a login; consortium data with a hub token)")
    if hub.authenticator == "shared-password":
        lines += [f"  log in as alice, bob or carol (or any name) with the password {hub.demo_password!r}",
                  f"  administrators {', '.join(sorted(hub.admin_users))}: password {hub.admin_password!r}",
                  "  (demo logins: anyone with the password can log in; not for a real site)"]
    elif hub.authenticator == "native":
        lines += [f"  sign up at {url}/hub/signup; administrators ({', '.join(sorted(hub.admin_users))}) "
                  f"approve sign-ups at {url}/hub/authorize"]
    return "\n".join(lines)


def config_file(path: str | None = None, state_dir: str | None = None) -> Path:
    """The JupyterHub config to run: ``path``, the repository's ``hub/jupyterhub_config.py``, or a minimal one.

    The minimal one is written into ``state_dir`` (default ``MusewiseHub.state_dir``).
    """
    if path:
        return Path(path)
    repo_cfg = REPO / "hub" / "jupyterhub_config.py"
    if repo_cfg.exists():
        return repo_cfg
    state = Path(state_dir or MusewiseHub().state_dir)
    state.mkdir(parents=True, exist_ok=True)
    cfg = state / "jupyterhub_config.py"
    cfg.write_text("from musewise.hubcli import configure\n\nconfigure(c)\n")
    return cfg


def wait_until_ready(url: str, timeout: float = 120.0, proc=None) -> bool:
    """Wait until the hub at ``url`` answers its API (False if it did not within ``timeout`` s)."""
    import time
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{url}/hub/api/", timeout=2) as r:
                if r.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    return False


def cmd_hub(args) -> int:
    """Run the hub in the foreground; print the address and logins once it answers.

    On the default SQLite archive with system users it first starts the hub's own
    PostgreSQL (:mod:`musewise.hubdb`) and stops it when the hub stops.
    """
    from traitlets.config.loader import KVArgParseConfigLoader

    from .optional import require

    require("jupyterhub", "musewise hub")
    mw = MusewiseConfig.load(root=getattr(args, "root", None), db_url=getattr(args, "db_url", None))
    options = {"ip": args.ip, "port": args.port, "authenticator": args.auth, "state_dir": args.state_dir,
               "hub_port": args.hub_port, "proxy_api_port": args.proxy_api_port, "service_port": args.service_port}
    # The options become command-line settings of jupyterhub, which configure() reads
    # with precedence over the config file; --MusewiseHub.* after `--` are passed as they are.
    extra = [a for a in args.jupyterhub_args if a != "--"]
    hub_args = [f"--MusewiseHub.{name}={value}" for name, value in options.items() if value is not None] + extra
    own = KVArgParseConfigLoader([a for a in hub_args if a.startswith("--MusewiseHub.")]).load_config()
    # The password goes to jupyterhub in its environment, which other users cannot read (its argv they can).
    secrets = {SECRET_ENV["demo_password"]: args.password} if args.password else {}
    hub = MusewiseHub(config=own, **({"demo_password": args.password} if args.password else {}))
    if "state_dir" not in own.MusewiseHub:  # the default, under this command's data root
        hub.state_dir = str(Path(mw.root) / "hub")
    if "home_template" not in own.MusewiseHub:
        hub.home_template = str(Path(mw.root) / "home" / "{username}")
    if hub.system_users and "server_python" not in own.MusewiseHub:
        from .hubaccounts import closed_to_others, python_users_can_run

        if closed_to_others(hub.server_python) is not None:
            users_python = python_users_can_run(Path(mw.root) / "hub-python")
            if users_python is not None:  # else secure_site() says what to do
                print(f"users' servers run {users_python}: the system's Python with this environment's packages "
                      f"({hub.server_python} is in a folder closed to others)", flush=True)
                hub.server_python = users_python
                hub_args.append(f"--MusewiseHub.server_python={users_python}")
    ensure_kernelspec(mw.kernel_name)
    Path(hub.state_dir).mkdir(parents=True, exist_ok=True)
    from . import hubdb

    managed = hub.managed_database and hubdb.wanted(mw, hub.system_users)
    if managed:
        # Before anything opens the archive: from here on it is the hub's PostgreSQL.
        site_config = os.environ.get("MUSEWISE_CONFIG") or str(Path(mw.root) / "musewise_config.py")
        mw = hubdb.start(mw, admin=hub.archive_admin, site_config=site_config)
        print(f"archive database: the hub's PostgreSQL in {hubdb.server_dir(mw.root)} (written to {site_config})",
              flush=True)
    try:
        return _run_hub(args, hub, mw, hub_args, secrets)
    finally:
        if managed:
            hubdb.stop(mw.root)


def _run_hub(args, hub: MusewiseHub, mw: MusewiseConfig, hub_args: list[str], secrets: dict) -> int:
    import signal
    import subprocess

    if os.geteuid() == 0:
        secure_site(hub, mw)
    cfg = config_file(args.config, hub.state_dir)
    # Explicit archive paths: users' servers run with another HOME, so defaults would differ.
    env = {**os.environ, **archive_environment(mw), **secrets}
    print(f"starting JupyterHub with {cfg} (state in {hub.state_dir}) ...", flush=True)
    proc = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(cfg), *hub_args], cwd=hub.state_dir,
                            env=env)
    # Stopping this command stops the hub (which stops its proxy, service and users' servers).
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: proc.send_signal(signum))
    try:
        if wait_until_ready(f"http://{hub.ip}:{hub.port}", timeout=180, proc=proc):
            print("\n" + demo_banner(hub) + "\n", flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        return proc.wait()


def add_hub_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``musewise hub`` to the ``musewise`` command's sub-commands."""
    p = subparsers.add_parser("hub", help="start the shared JupyterHub with the archive web view",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--ip", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="public port (default 8000)")
    p.add_argument("--auth", choices=["shared-password", "native", "config"],
                   help="login: a shared demo password (default), sign-up with approval, or as the config file says")
    p.add_argument("--password", help=f"the shared demo password (default {DEMO_PASSWORD!r})")
    p.add_argument("--state-dir", help="hub state and users' homes (default <root>/hub)")
    p.add_argument("--hub-port", type=int, help="port of the hub process (default 8081)")
    p.add_argument("--proxy-api-port", type=int, help="port of the proxy's API (default port + 1)")
    p.add_argument("--service-port", type=int, help="port of the archive web view (default 10101)")
    p.add_argument("--config", help="JupyterHub config file (default hub/jupyterhub_config.py)")
    p.add_argument("jupyterhub_args", nargs=argparse.REMAINDER, help="after --: passed to jupyterhub")
    p.set_defaults(func=cmd_hub)
    return p


def main(argv=None) -> int:
    """``python -m musewise.hubcli [options]``: the same as ``musewise hub``."""
    parser = argparse.ArgumentParser(prog="musewise")
    for name in ("--root", "--db-url"):
        parser.add_argument(name)
    add_hub_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["hub", *(argv if argv is not None else sys.argv[1:])])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
