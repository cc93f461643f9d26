"""Unix accounts and file modes of the hub: no user code runs as root.

``musewise hub`` (run as root) calls these, so that nothing is set up by hand:

* :func:`ensure_account`: every hub user gets a system account of the same name
  (``useradd --system``) in the hub's group, with a home of mode 0700 that they own;
  their server and kernels run under it (:class:`musewise.hubcli.MusewiseSpawner`);
* :func:`protect_state`: the hub's state folder (cookie secret, ``jupyterhub.sqlite``)
  is 0700 root and its files 0600, readable by the hub alone;
* :func:`protect_archive`: the archive's SQLite file and the datastore belong to root
  and the hub's group, 0640 / 2750: users' servers may read them, never write them.

What this does and does not protect is said in ``hub/README.md``: with SQLite a
user's code can read every row of the database file (the privilege rule is then
applied by the Python API only); a database server with a role per user closes that,
and the hub runs one itself on the default SQLite archive (:mod:`musewise.hubdb`).
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import re
import stat
import subprocess
from pathlib import Path

from .exceptions import ConfigurationError, PermissionDeniedError

log = logging.getLogger("musewise.hub")

#: Names ``useradd`` accepts and that cannot be mistaken for options or paths.
UNIX_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
#: The comment (GECOS) of the accounts musewise creates.
ACCOUNT_COMMENT = "musewise hub user"
#: Accounts never handed to a hub user, whatever the login says. ``musewise`` and
#: ``musewise_users`` are the database's service and group roles: on the hub's PostgreSQL
#: (peer authentication) an account of that name would log in as the schema owner.
SYSTEM_NAMES = frozenset({"root", "daemon", "bin", "sys", "nobody", "postgres", "www-data"})
RESERVED = SYSTEM_NAMES | {"musewise", "musewise_users"}


def check_name(name: str, *, what: str = "hub user", reserved=RESERVED) -> str:
    """``name`` if it can be a hub user's unix account (or, with ``reserved``, a group's name).

    Raises
    ------
    ConfigurationError
        If it is not a valid unix name or is one musewise must not take over.
    """
    if not UNIX_NAME.match(name) or name in reserved:
        raise ConfigurationError(
            f"{what} {name!r} cannot have a unix account of that name: use lower-case letters, "
            "digits, '_' and '-' (at most 32, not starting with a digit or '-'), and not a system account")
    return name


def ensure_group(group: str) -> int:
    """The ID of unix group ``group``, created (``groupadd --system``) if missing."""
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        # The default group is named musewise: a name no user may take, but the group's own.
        name = check_name(group, what="unix group", reserved=SYSTEM_NAMES)
        subprocess.run(["groupadd", "--system", name], check=True, capture_output=True)
        log.info("created unix group %s", group)
        return grp.getgrnam(group).gr_gid


def ensure_account(name: str, home: str | os.PathLike, group: str) -> pwd.struct_passwd:
    """The unix account of hub user ``name``, created if missing, with its home ready.

    Parameters
    ----------
    name : str
        Hub user name, also the account's name.
    home : path
        Its home folder (created mode 0700, owned by the account). An account this function made
        earlier with another home is given this one; the former home's files are not moved.
    group : str
        The hub's group (created if missing), added to the account's groups: its members
        may read the archive's files.

    Raises
    ------
    PermissionDeniedError
        If ``name`` is an existing account that is not a hub user's (not created by this
        function and not in ``group``): a system or person's account is never taken over.
    ConfigurationError
        If the account has another home and runs processes (another hub's server), so that
        its home cannot be changed; nothing is changed then.
    """
    check_name(name)
    gid = ensure_group(group)
    try:
        account = pwd.getpwnam(name)
    except KeyError:
        Path(home).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["useradd", "--system", "--user-group", "--groups", group, "--home-dir", str(home),
                        "--shell", "/bin/bash", "--comment", ACCOUNT_COMMENT, name],
                       check=True, capture_output=True)
        log.info("created unix account %s (home %s)", name, home)
        account = pwd.getpwnam(name)
    else:
        if account.pw_uid == 0 or (gid not in os.getgrouplist(name, account.pw_gid)
                                   and account.pw_gecos != ACCOUNT_COMMENT):
            raise PermissionDeniedError(
                f"unix account {name!r} exists and is not a musewise hub user's (not in group {group!r}): "
                "the hub does not run a server under it; add it to the group if it is meant to")
        if gid not in os.getgrouplist(name, account.pw_gid):
            # A hub user's account made under another group (the site renamed MusewiseHub.unix_group):
            # without the group their kernels could not read the consortium's files.
            subprocess.run(["usermod", "--append", "--groups", group, name], check=True, capture_output=True)
            log.info("added unix account %s to group %s", name, group)
        if account.pw_gecos == ACCOUNT_COMMENT and Path(account.pw_dir) != Path(home):
            # An account a hub made with another home (the site moved its homes, or another hub on
            # this machine, e.g. a demo's, made it): the home is this hub's. The old folder is left
            # as it is: moving it could carry a user's files into a folder that is later removed.
            done = subprocess.run(["usermod", "--home", str(home), name], capture_output=True, text=True)
            if done.returncode:
                # usermod refuses while the account runs processes: another hub's server on this machine.
                raise ConfigurationError(
                    f"unix account {name!r} has its home in {account.pw_dir}, not in this hub's {home}, and "
                    f"cannot be moved now ({done.stderr.strip() or 'usermod status ' + str(done.returncode)}): "
                    "another hub on this machine may be running a server for it; stop that server, or give "
                    "both hubs the same homes")
            log.warning("unix account %s now has its home in %s; its former home %s was left as it was",
                        name, home, account.pw_dir)
            account = pwd.getpwnam(name)
    home = Path(account.pw_dir)
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, account.pw_uid, account.pw_gid)
    home.chmod(0o700)
    return account


def closed_to_others(path: str | os.PathLike) -> Path | None:
    """The first folder on the way to ``path`` (resolved) that other accounts cannot pass, if any.

    Users' servers run the hub's own Python: a virtualenv under ``/root`` (mode 0700)
    cannot start them, which is better said before the first spawn than after it.
    """
    target = Path(os.path.realpath(path))
    for folder in [*reversed(target.parents), target]:
        if not folder.stat().st_mode & stat.S_IXOTH:  # search (folders) or execute (the program)
            return folder
    return None


def python_users_can_run(folder: str | os.PathLike) -> str | None:
    """This Python, or one that the hub users' accounts can run with this environment's packages.

    The hub (root) runs this interpreter; users' servers and kernels run the one returned
    (``MusewiseHub.server_python``). When this interpreter lives in a folder closed to
    others (a pyenv under ``/root``: its virtualenvs link to it), a virtualenv of the
    system's Python of the same version is made in ``folder/python`` (kept for the next
    start) that sees this environment's site-packages, Jupyter data and configuration: the
    same packages, an interpreter the users may execute. A site installing musewise where
    its users can reach it (``/opt``) needs none of this.

    Returns
    -------
    str or None
        The interpreter's path; None when this one is closed to others and the system has
        no reachable Python of the same version.
    """
    import shutil
    import sys

    if closed_to_others(sys.executable) is None:
        return sys.executable
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(f"python{version}", path="/usr/local/bin:/usr/bin")
    if not system or closed_to_others(system) is not None:
        return None
    venv = Path(folder) / "python"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([system, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
    site_dirs = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (venv / "lib" / f"python{version}" / "site-packages" / "this-environment.pth").write_text(
        "".join(f"import site; site.addsitedir({p!r})\n" for p in site_dirs))
    # Jupyter's data (nbconvert and lab templates, ...) is found under sys.prefix: this environment's,
    # except its kernels, which run the interpreter the users cannot.
    data = venv / "share" / "jupyter"
    data.mkdir(parents=True, exist_ok=True)
    for entry in (Path(sys.prefix) / "share" / "jupyter").iterdir():
        if entry.name != "kernels" and not (data / entry.name).exists():
            (data / entry.name).symlink_to(entry)
    # ... and so is its configuration under sys.prefix/etc: which server extensions are on
    # (JupyterLab itself: without it /user/<name>/lab is a 404).
    etc = venv / "etc" / "jupyter"
    if (Path(sys.prefix) / "etc" / "jupyter").is_dir() and not etc.exists():
        etc.parent.mkdir(exist_ok=True)
        etc.symlink_to(Path(sys.prefix) / "etc" / "jupyter")
    return str(python)


def protect_state(state_dir: str | os.PathLike) -> None:
    """Make the hub's state folder readable by the hub alone (folder 0700, its files 0600).

    ``jupyterhub.sqlite`` is created here, empty and 0600, so that JupyterHub's database
    (every user's tokens) is never readable by others, not even between creation and a chmod.
    """
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o700)
    db = state / "jupyterhub.sqlite"
    if not db.exists():
        os.close(os.open(db, os.O_CREAT | os.O_WRONLY, 0o600))
    for f in state.iterdir():
        if f.is_file() and not f.is_symlink():
            f.chmod(0o600)


def protect_archive(db_file: str | os.PathLike | None, datastore: str | os.PathLike | None, group: str,
                    traversable: tuple = ()) -> None:
    """Make the archive readable by ``group`` and writable by its owner (root) alone.

    Parameters
    ----------
    db_file : path, optional
        The SQLite database file (and its ``-wal``/``-shm``): 0640 root:group.
    datastore : path, optional
        A local datastore folder: folders 2750 (new files inherit the group); files root's
        alone (0400) until :meth:`Archive.protect_files` gives each the group and mode its
        datasets' privileges call for (:mod:`musewise.archive.filemodes`), as
        :func:`musewise.hubcli.secure_site` does next: a private file never becomes the group's.
    group : str
        The hub's group (created if missing).
    traversable : tuple of paths
        Folders users must pass through (the data root, the parents of homes and scratch):
        0711, so that they can reach what is theirs without listing the rest.
    """
    gid = ensure_group(group)
    for folder in traversable:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(stat.S_IMODE(folder.stat().st_mode) & 0o755 | 0o711)
    if db_file:
        for f in (Path(db_file), Path(f"{db_file}-wal"), Path(f"{db_file}-shm"), Path(f"{db_file}-journal")):
            if f.exists():
                os.chown(f, 0, gid)
                f.chmod(0o640)
    if datastore and Path(datastore).is_dir():
        os.chown(datastore, 0, gid)
        os.chmod(datastore, 0o2750)
        for folder, dirs, files in os.walk(datastore):
            for d in dirs:
                p = os.path.join(folder, d)
                os.chown(p, 0, gid, follow_symlinks=False)
                os.chmod(p, 0o2750)
            for name in files:
                p = os.path.join(folder, name)
                if not os.path.islink(p):
                    os.chown(p, 0, 0)
                    os.chmod(p, 0o400)
