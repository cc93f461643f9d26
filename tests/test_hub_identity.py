"""The identity rule (musewise.identity) and the hub's file modes, in processes of other accounts.

A forked child of the test process drops to an unprivileged account (``nobody``), so
the rule is exercised as a hub user's kernel meets it, without starting a hub.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import stat

import pytest
from pathlib import Path

from musewise import hubaccounts
from musewise.config import MusewiseConfig
from musewise.exceptions import ConfigurationError, IdentityError, PermissionDeniedError
from musewise.identity import acting_identity

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to another unix account")


def as_nobody(fn):
    """``fn()``'s result (or ``"<ExceptionName>: message"``) computed in a child running as ``nobody``."""
    nobody = pwd.getpwnam("nobody")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            try:
                result = fn()
            except Exception as exc:  # reported to the parent, which asserts on it
                result = f"{type(exc).__name__}: {exc}"
            os.write(write, json.dumps(result).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        data = f.read()
    os.waitpid(pid, 0)
    return json.loads(data)


@pytest.fixture
def shared_tmp():
    """A temporary folder other accounts may enter (pytest's own are root's alone); removed after."""
    import shutil
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp(prefix="musewise-identity-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_trusted_process_acts_as_whoever_it_asks_for(tmp_path):
    if os.geteuid() == 0:
        assert acting_identity("admin") == "admin"
    # The owner of the archive's database file is trusted, whoever they are.
    db = tmp_path / "archive.sqlite"
    db.write_bytes(b"")
    assert acting_identity("admin", archive_path=db) == "admin"
    assert acting_identity(None, archive_path=db) is None


@needs_root
def test_another_account_is_its_unix_account_and_nobody_else(shared_tmp, monkeypatch):
    db = shared_tmp / "archive.sqlite"
    db.write_bytes(b"")
    assert as_nobody(lambda: acting_identity(None, archive_path=db)) == "nobody"
    assert as_nobody(lambda: acting_identity("nobody", archive_path=db)) == "nobody"
    refused = as_nobody(lambda: acting_identity("admin", archive_path=db))
    assert refused.startswith("IdentityError") and "may not act as 'admin'" in refused
    # ... unless it runs the archive itself.
    assert as_nobody(lambda: acting_identity("admin", service_accounts=["nobody"], archive_path=db)) == "admin"
    # The configuration applies the same rule to MUSEWISE_USER and to its own default.
    for var in [v for v in os.environ if v.startswith(("MUSEWISE_", "JUPYTERHUB_"))]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("MUSEWISE_DB_URL", f"sqlite:///{db}")
    monkeypatch.setenv("MUSEWISE_ROOT", str(shared_tmp))
    assert as_nobody(lambda: MusewiseConfig.load().user) == "nobody"
    # A site config file's default user (the demo's administrator) is not a member's.
    (shared_tmp / "musewise_config.py").write_text("c.MusewiseConfig.user = 'admin'\n")
    (shared_tmp / "musewise_config.py").chmod(0o644)
    assert MusewiseConfig.load().user == "admin"
    assert as_nobody(lambda: MusewiseConfig.load().user) == "nobody"
    monkeypatch.setenv("MUSEWISE_USER", "admin")
    assert as_nobody(lambda: MusewiseConfig.load().user).startswith("IdentityError")
    monkeypatch.setenv("MUSEWISE_USER", "nobody")
    assert as_nobody(lambda: MusewiseConfig.load().acting_user("admin")).startswith("IdentityError")
    assert issubclass(IdentityError, PermissionError) and issubclass(IdentityError, PermissionDeniedError)


@needs_root
def test_the_cli_refuses_another_user(shared_tmp, monkeypatch, capsys):
    from musewise import cli

    db = shared_tmp / "archive.sqlite"
    db.write_bytes(b"")
    for var in [v for v in os.environ if v.startswith(("MUSEWISE_", "JUPYTERHUB_"))]:
        monkeypatch.delenv(var)

    cli.build_parser()  # its modules imported now: the child cannot read this Python's folders under /root

    def run():
        code = cli.main(["--root", str(shared_tmp), "--db-url", f"sqlite:///{db}", "--user", "admin", "user", "list"])
        return [code, capsys.readouterr().err]

    result = as_nobody(run)
    assert isinstance(result, list), result
    code, err = result
    assert code == 2 and "may not act as 'admin'" in err


def test_unix_names_are_checked():
    assert hubaccounts.check_name("alice") == "alice"
    # musewise: the schema owner's database role, which an account of that name would log in as
    for bad in ("root", "Alice", "-rf", "a/b", "x" * 40, "1abc", "postgres", "musewise", "musewise_users"):
        with pytest.raises(ConfigurationError, match="cannot have a unix account"):
            hubaccounts.check_name(bad)


@needs_root
def test_the_default_unix_group_is_made_though_no_user_may_take_its_name():
    """`musewise hub` with its defaults creates the group musewise (a name refused for users)."""
    import subprocess

    from musewise.hubcli import MusewiseHub

    group = MusewiseHub().unix_group
    existed = group in {g.gr_name for g in grp.getgrall()}
    try:
        assert hubaccounts.ensure_group(group) == grp.getgrnam(group).gr_gid
    finally:
        if not existed:
            subprocess.run(["groupdel", group], check=True)
    with pytest.raises(ConfigurationError, match="unix group 'postgres'"):
        hubaccounts.check_name("postgres", what="unix group", reserved=hubaccounts.SYSTEM_NAMES)


@needs_root
def test_state_is_the_hubs_alone_and_the_archive_read_only_to_the_group(shared_tmp):
    state = shared_tmp / "hub"
    state.mkdir()
    (state / "jupyterhub_cookie_secret").write_text("s3cret")
    hubaccounts.protect_state(state)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "jupyterhub.sqlite").stat().st_mode) == 0o600  # made before JupyterHub runs
    assert stat.S_IMODE((state / "jupyterhub_cookie_secret").stat().st_mode) == 0o600

    group = "mwt" + os.urandom(4).hex()
    db = shared_tmp / "archive.sqlite"
    db.write_bytes(b"x")
    (shared_tmp / "datastore" / "raw").mkdir(parents=True)
    (shared_tmp / "datastore" / "raw" / "f.fits").write_bytes(b"x")
    try:
        hubaccounts.protect_archive(db, shared_tmp / "datastore", group, traversable=(shared_tmp,))
        import grp

        gid = grp.getgrnam(group).gr_gid
        assert (db.stat().st_gid, stat.S_IMODE(db.stat().st_mode)) == (gid, 0o640)
        f = shared_tmp / "datastore" / "raw" / "f.fits"  # no dataset's: root's alone
        assert (f.stat().st_uid, f.stat().st_gid, stat.S_IMODE(f.stat().st_mode)) == (0, 0, 0o400)
        d = (shared_tmp / "datastore" / "raw").stat()
        assert stat.S_IMODE(d.st_mode) == 0o2750 and d.st_gid == gid
        assert stat.S_IMODE(shared_tmp.stat().st_mode) & 0o711 == 0o711
        # Not in the group: nothing; in it or not, never a write.
        assert as_nobody(lambda: open(f, "rb").read() and "read").startswith("PermissionError")
        assert as_nobody(lambda: open(db, "r+b") and "opened").startswith("PermissionError")
        assert as_nobody(lambda: os.listdir(state)).startswith("PermissionError")
    finally:
        import subprocess

        subprocess.run(["groupdel", group], capture_output=True)


@needs_root
def test_a_hub_starting_on_an_archive_keeps_private_files_from_the_group(shared_tmp):
    """Files archived before the hub starts keep their privileges' modes: the hub's start opens the
    consortium's to its group and never a private one (it made every file 0640 to the group)."""
    import grp
    import subprocess

    from musewise.archive import Archive
    from musewise.hubcli import MusewiseHub, secure_site
    from musewise.products.testing import write_synthetic_cube
    from musewise.vocabulary import Privilege

    group = "mwt" + os.urandom(4).hex()
    mw = MusewiseConfig.load(root=str(shared_tmp), user="admin", unix_group_prefix=group)
    arch = Archive(mw, user="admin")
    arch.add_user("alice")
    alice = arch.as_user("alice")
    made = {}
    for privilege in (Privilege.PRIVATE, Privilege.CONSORTIUM):
        path = write_synthetic_cube(shared_tmp / f"cube{int(privilege)}.fits", shape=(8, 4, 5), seed=int(privilege)).path
        run = alice.begin_run("muse_scipost", {}, night="2026-11-20", privilege=privilege)
        made[privilege] = alice.finish_run(run, [(path, "DATACUBE_FINAL", None)])[0]
    arch.close()
    hub = MusewiseHub(config=None)
    hub.system_users, hub.unix_group = False, group
    hub.state_dir, hub.home_template = str(shared_tmp / "hub"), str(shared_tmp / "home" / "{username}")
    try:
        secure_site(hub, mw)
        gid = grp.getgrnam(group).gr_gid
        private = Path(Archive(mw, user="admin").path(made[Privilege.PRIVATE].id)).stat()
        shared = Path(Archive(mw, user="admin").path(made[Privilege.CONSORTIUM].id)).stat()
        assert not (private.st_gid == gid and private.st_mode & 0o040) and not private.st_mode & 0o004
        assert shared.st_gid == gid and shared.st_mode & 0o040 and not shared.st_mode & 0o222
    finally:
        subprocess.run(["groupdel", group], capture_output=True)


@needs_root
def test_an_existing_account_that_is_no_hub_users_is_not_taken_over(tmp_path):
    group = "mwt" + os.urandom(4).hex()
    try:
        with pytest.raises(PermissionDeniedError, match="not a musewise hub user's"):
            hubaccounts.ensure_account("games", tmp_path / "games", group)
    finally:
        import subprocess

        subprocess.run(["groupdel", group], capture_output=True)
    assert pwd.getpwnam("games").pw_dir != str(tmp_path / "games")


@needs_root
def test_a_hub_users_account_made_under_another_group_joins_the_hubs(tmp_path):
    """An account the hub made earlier (another unix_group) gets the current group: its kernels read the files."""
    import subprocess

    old, new = "mwt" + os.urandom(4).hex(), "mwt" + os.urandom(4).hex()
    name = "mwu" + os.urandom(3).hex()
    try:
        first = hubaccounts.ensure_account(name, tmp_path / name, old)
        again = hubaccounts.ensure_account(name, tmp_path / name, new)
        assert again.pw_uid == first.pw_uid
        groups = os.getgrouplist(name, again.pw_gid)
        assert grp.getgrnam(new).gr_gid in groups and grp.getgrnam(old).gr_gid in groups
    finally:
        subprocess.run(["userdel", name], capture_output=True)
        for g in (old, new):
            subprocess.run(["groupdel", g], capture_output=True)


@needs_root
def test_a_hub_users_account_made_by_another_hub_gets_this_hubs_home_and_keeps_the_old_files(tmp_path):
    """A demo's hub made alice with a home in its data root, since removed; the next hub's alice
    lives in that hub's homes, and a former home that still exists is left as it was."""
    import shutil
    import subprocess

    group = "mwt" + os.urandom(4).hex()
    name = "mwu" + os.urandom(3).hex()
    demo_home, site_home, third_home = (tmp_path / d / "home" / name for d in ("demo", "site", "third"))
    try:
        made = hubaccounts.ensure_account(name, demo_home, group)
        shutil.rmtree(tmp_path / "demo")
        moved = hubaccounts.ensure_account(name, site_home, group)
        assert moved.pw_uid == made.pw_uid and moved.pw_dir == str(site_home)
        assert site_home.stat().st_uid == made.pw_uid and site_home.stat().st_mode & 0o777 == 0o700
        assert not demo_home.exists()  # the removed home is not made again
        (site_home / "analysis.ipynb").write_text("{}")
        again = hubaccounts.ensure_account(name, third_home, group)
        assert again.pw_dir == str(third_home) and third_home.is_dir()
        assert (site_home / "analysis.ipynb").read_text() == "{}"  # nothing moved or removed
        # While the account runs a process (the other hub's server), its home stays, with a clear error.
        server = subprocess.Popen(["sleep", "60"], user=again.pw_uid, group=again.pw_gid)
        try:
            with pytest.raises(ConfigurationError, match="another hub on this machine"):
                hubaccounts.ensure_account(name, site_home, group)
        finally:
            server.kill()
            server.wait()
        assert pwd.getpwnam(name).pw_dir == str(third_home)
    finally:
        subprocess.run(["userdel", name], capture_output=True)
        subprocess.run(["groupdel", group], capture_output=True)


def test_configure_refuses_to_run_users_code_as_root(tmp_path, monkeypatch):
    from traitlets.config import Config

    from musewise import hubcli

    for var in [v for v in os.environ if v.startswith("MUSEWISE_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("MUSEWISE_ROOT", str(tmp_path / "root"))
    c = Config()
    hub = hubcli.configure(c)
    assert "--allow-root" not in c.Spawner.args
    assert c.MusewiseSpawner.system_users is (os.geteuid() == 0) and hub.system_users is (os.geteuid() == 0)
    assert c.MusewiseSpawner.home_dir_template == str(tmp_path / "root" / "home" / "{username}")
    assert "MUSEWISE_USER" not in c.MusewiseSpawner.archive_env
    if os.geteuid() == 0:
        c = Config()
        c.MusewiseHub.system_users = False
        with pytest.raises(ConfigurationError, match="as root"):
            hubcli.configure(c)


@needs_root
def test_the_hub_refuses_a_python_its_users_cannot_run(shared_tmp):
    closed = shared_tmp / "closed"
    (closed / "bin").mkdir(parents=True)
    (closed / "bin" / "python").write_text("")
    closed.chmod(0o700)
    assert hubaccounts.closed_to_others(closed / "bin" / "python") == closed
    closed.chmod(0o755)
    (closed / "bin" / "python").chmod(0o755)
    opened = hubaccounts.closed_to_others(closed / "bin" / "python")
    assert opened is None or not str(shared_tmp).startswith(str(opened))


@needs_root
def test_a_members_process_on_the_server_logs_in_to_the_hubs_database_as_itself():
    """The site config names the service's role (root's); another account given it connects as its own
    role, the one peer authentication grants it, instead of a bare "Peer authentication failed"."""
    from musewise.archive.pgserver import peer_database_url

    site = "postgresql+psycopg://musewise@/musewise?host=/srv/musewise/postgres/sock&port=5432"
    assert peer_database_url(site) == site  # root: the service
    from sqlalchemy.engine import make_url

    theirs = make_url(as_nobody(lambda: peer_database_url(site)))
    assert (theirs.username, theirs.database, theirs.query["host"]) == ("nobody", "musewise",
                                                                          "/srv/musewise/postgres/sock")
    tcp = "postgresql+psycopg://musewise:secret@db.example.org/musewise"
    assert as_nobody(lambda: peer_database_url(tcp)) == tcp  # a password login is the site's own choice
    assert as_nobody(lambda: peer_database_url("sqlite:////srv/a.sqlite")) == "sqlite:////srv/a.sqlite"
