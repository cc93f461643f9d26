"""A member's own kernel in the real hub cannot become someone else (issue 11, items 1 and 2).

The hub of ``test_hub.py`` (real JupyterHub, configurable-http-proxy, a spawned server
under its user's own unix account) is started for this module; alice's kernel then
tries every way in it has besides the archive's SQL (the PostgreSQL half is tested
with the database's roles): asking the Python API, the environment and the command
line for the administrator, reading the hub's secrets and bob's home, writing the
datastore and the database file. Each must fail, and alice's own work must still work.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

import pytest
import requests

from test_hub import _run_in_kernel, _wait_ready, hub, login  # noqa: F401 - hub is the module's fixture
from test_web import fits_raw

pytestmark = pytest.mark.hub

#: Runs in alice's kernel: each attempt's outcome as "ok: ..." or "refused: <exception>".
ATTEMPTS = r'''
import json, os, sqlite3, subprocess, sys, pwd
from pathlib import Path
from musewise import Archive
state, bob_home, datastore, db_file, private_id = json.loads(ARGS)
out = {}
def cli(*argv, env=None):  # started together: each pays for importing musewise
    return subprocess.Popen([sys.executable, "-m", "musewise.cli", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
def finished(proc):
    stdout, stderr = proc.communicate(timeout=120)
    if proc.returncode:
        raise PermissionError(f"exit {proc.returncode}: {stderr.strip()[-300:]}")
    return stdout.strip()[-300:]
cli_user_admin = cli("--user", "admin", "user", "add", "mallory", "--admin")
cli_env_admin = cli("user", "list", env={"MUSEWISE_USER": "admin"})
def attempt(name, fn):
    try:
        out[name] = "ok: " + str(fn())
    except BaseException as exc:
        out[name] = f"refused: {type(exc).__name__}: {exc}"
attempt("whoami", lambda: pwd.getpwuid(os.getuid()).pw_name)
attempt("own_archive", lambda: (Archive.open().user_name, Archive.open().count(category="BIAS")))
attempt("open_as_admin_write", lambda: Archive.open(user="admin").add_user("mallory", admin=True))
attempt("open_as_admin_read", lambda: Archive.open(user="admin").get(private_id).id)
def env_admin():
    os.environ["MUSEWISE_USER"] = "admin"
    try:
        return Archive.open().user_name
    finally:
        del os.environ["MUSEWISE_USER"]
attempt("env_admin", env_admin)
attempt("cli_user_admin", lambda: finished(cli_user_admin))
attempt("cli_env_admin", lambda: finished(cli_env_admin))
attempt("cookie_secret", lambda: len(Path(state, "jupyterhub_cookie_secret").read_bytes()))
attempt("hub_database", lambda: len(Path(state, "jupyterhub.sqlite").read_bytes()))
attempt("list_state", lambda: os.listdir(state))
attempt("list_bob_home", lambda: os.listdir(bob_home))
attempt("read_bob_file", lambda: Path(bob_home, "notes.txt").read_text())
attempt("write_datastore_new", lambda: open(Path(datastore, "planted.fits"), "wb").write(b"x"))
some_file = next(p for p in Path(datastore).rglob("*") if p.is_file())
attempt("write_datastore_file", lambda: open(some_file, "r+b").write(b"x"))
attempt("open_db_for_writing", lambda: open(db_file, "r+b").write(b"x"))
def sql_write():
    con = sqlite3.connect(db_file)
    con.execute("UPDATE users SET is_admin = 1")
    con.commit()
attempt("sqlite_write", sql_write)
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def alice_tries(hub):
    """Run :data:`ATTEMPTS` in alice's kernel (her server spawned by the hub); its outcomes by name."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the hub creates a unix account per user")
    from musewise.hubaccounts import ensure_account
    from musewise.vocabulary import Privilege

    t0 = time.monotonic()
    url, arch, root = hub["url"], hub["archive"], hub["root"]
    alice, bob = "alice", "bob"
    # bob's private raw frame, and a home of his with a file in it (as his own server would leave it).
    private = arch.as_user(bob).ingest(fits_raw(root / "bob-secret.fits", mjd=61366.3, seed=9),
                                       privilege=Privilege.PRIVATE, project="galaxies").record.id
    account = ensure_account(bob, root / "home" / bob, hub["group"])  # what the hub does at his first start
    (root / "home" / bob / "notes.txt").write_text("bob's notes")
    os.chown(root / "home" / bob / "notes.txt", account.pw_uid, account.pw_gid)

    login(hub, alice)
    r = requests.post(f"{url}/hub/api/users/{alice}/server", headers=hub["admin"], timeout=60)
    assert r.status_code in (201, 202), r.text
    _wait_ready(hub, alice)
    token = requests.post(f"{url}/hub/api/users/{alice}/tokens", headers=hub["admin"], timeout=30,
                          json={"note": "test", "expires_in": 600}).json()["token"]
    api, auth = f"{url}/user/{alice}/api", {"Authorization": f"token {token}"}
    kernel = requests.post(f"{api}/kernels", headers=auth, timeout=120, json={"name": "musewise"}).json()
    ws = f"ws://127.0.0.1:{url.rsplit(':', 1)[1]}/user/{alice}/api/kernels/{kernel['id']}/channels"
    args = json.dumps([str(root / "hub"), str(root / "home" / bob), arch.config.datastore_url,
                       arch.config.archive_path(), private])
    stdout = asyncio.run(_run_in_kernel(ws, token, f"ARGS = {args!r}\n" + ATTEMPTS))
    out = json.loads(stdout.strip().splitlines()[-1])
    print(f"alice's kernel tried {len(out)} ways in: {time.monotonic() - t0:.1f} s with the spawn")
    yield out
    requests.delete(f"{url}/hub/api/users/{alice}/server", headers=hub["admin"], timeout=60)


def test_a_members_kernel_cannot_become_anyone_else(hub, alice_tries):
    import pwd

    out, root, arch = alice_tries, hub["root"], hub["archive"]
    # alice is alice (not root), and her own work goes on.
    assert out["whoami"] == "ok: alice"
    assert out["own_archive"] == "ok: ('alice', 3)"  # the consortium's 3 biases, not bob's private one
    home = root / "home" / "alice"
    assert home.stat().st_uid == pwd.getpwnam("alice").pw_uid and home.stat().st_mode & 0o777 == 0o700
    # Every way to act as the administrator is refused, with the reason.
    # refused before it can try: the kernel acts as alice whatever it asks for
    assert out["open_as_admin_write"].startswith("refused: IdentityError"), out["open_as_admin_write"]
    for way in ("env_admin", "cli_user_admin", "cli_env_admin"):
        assert out[way].startswith("refused:") and "may not act as 'admin'" in out[way], (way, out[way])
    # The hub's secrets, bob's home, the datastore and the database file are closed to her.
    for way in ("cookie_secret", "hub_database", "list_state", "list_bob_home", "read_bob_file",
                "write_datastore_new", "write_datastore_file", "open_db_for_writing"):
        assert out[way].startswith("refused: PermissionError"), (way, out[way])
    assert out["sqlite_write"].startswith("refused: OperationalError") and "readonly" in out["sqlite_write"]
    assert not (root / "datastore" / "planted.fits").exists()
    assert "mallory" not in [u["name"] for u in arch.users()]
    assert not any(u["is_admin"] for u in arch.users() if u["name"] in ("alice", "bob"))


def test_the_api_does_not_read_as_the_administrator_in_a_members_kernel(alice_tries):
    assert alice_tries["open_as_admin_read"].startswith("refused: IdentityError"), alice_tries["open_as_admin_read"]
