"""A member's own kernel in the real hub cannot become someone else, nor read or change what is not theirs.

The hub of ``test_hub.py`` (real JupyterHub, configurable-http-proxy, a spawned server
under its user's own unix account, the archive in the hub's own PostgreSQL) is started
for this module; alice's kernel then tries every way in it has: asking the Python API,
the environment and the command line for the administrator, SQL straight to the
database as herself and as other roles, reading the hub's secrets, bob's home and the
old SQLite file, writing the datastore. Each must fail, and alice's own work (her
privilege changes, her QC values and flags as a reviewer) must still work (issue 11,
items 1 to 3).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest
import requests

from test_hub import _run_in_kernel, _wait_ready, hub, login  # noqa: F401 - hub is the module's fixture
from test_web import fits_raw

pytestmark = pytest.mark.hub

#: Runs in alice's kernel: each attempt's outcome as "ok: ..." or "refused: <exception>".
ATTEMPTS = r'''
import json, os, sqlite3, subprocess, sys, pwd
from pathlib import Path
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from musewise import Archive
from musewise.vocabulary import Privilege
a = json.loads(ARGS)
state, bob_home, datastore, db_file, private_id = a["state"], a["bob_home"], a["datastore"], a["db_file"], a["private"]
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
attempt("read_private_file", lambda: len(Path(a["private_path"]).read_bytes()))
# The SQLite file the hub copied into its PostgreSQL: every private row is in it.
attempt("read_sqlite_file", lambda: len(open(db_file, "rb").read()))
attempt("open_db_for_writing", lambda: open(db_file, "r+b").write(b"x"))
def sqlite_read():
    con = sqlite3.connect(f"file:{db_file}?mode=ro&immutable=1", uri=True)
    return con.execute("SELECT header FROM datasets WHERE id = ?", (private_id,)).fetchall()
attempt("sqlite_read", sqlite_read)
# SQL straight to the database, past the Python API: as herself, and as other roles.
url = os.environ["MUSEWISE_DB_URL"]
out["db_url"] = url
def sql(statement, role=None):
    engine = create_engine(make_url(url).set(username=role) if role else url)
    try:
        with engine.begin() as conn:
            r = conn.execute(text(statement))
            return r.fetchall() if r.returns_rows else f"{r.rowcount} rows"
    finally:
        engine.dispose()
attempt("sql_private_row", lambda: sql(f"SELECT id, header FROM datasets WHERE id = {private_id}"))
attempt("sql_private_file_row", lambda: sql(f"SELECT path FROM files WHERE id = {a['private_file']}"))
attempt("sql_private_run", lambda: sql(f"SELECT id FROM runs WHERE id = {a['private_run']}"))
attempt("sql_consortium_rows", lambda: sql("SELECT count(*) FROM datasets WHERE category = 'BIAS'")[0][0])
for role in ("musewise", "postgres", "bob"):
    attempt(f"sql_as_{role}", lambda role=role: sql("SELECT count(*) FROM datasets", role=role))
attempt("sql_set_role", lambda: sql("SET ROLE musewise"))
attempt("sql_change_private", lambda: sql(f"UPDATE datasets SET comment = 'x' WHERE id = {private_id}"))
attempt("sql_delete_private", lambda: sql(f"DELETE FROM datasets WHERE id = {private_id}"))
attempt("sql_hide_bobs", lambda: sql(f"UPDATE datasets SET privilege = 1 WHERE id = {a['bob_project']}"))
attempt("sql_take_bobs", lambda: sql(f"UPDATE datasets SET owner_id = (SELECT id FROM users WHERE name = "
                                     f"'alice') WHERE id = {a['bob_project']}"))
attempt("sql_become_admin", lambda: sql("UPDATE users SET is_admin = true WHERE name = 'alice'"))
attempt("sql_empty_reference", lambda: sql("DELETE FROM collection_chains WHERE parent_id = "
                                           "(SELECT id FROM collections WHERE name = 'galaxies/reference')"))
attempt("sql_reorder_reference", lambda: sql("UPDATE collection_chains SET position = 9 WHERE parent_id = "
                                             "(SELECT id FROM collections WHERE name = 'galaxies/reference')"))
# Writes through the API: what alice may do works, what she may not is refused.
me = Archive.open()
attempt("publish_own", lambda: me.publish([a["own"]], privilege=Privilege.PROJECT, project="galaxies"))
attempt("qc_as_reviewer", lambda: me.add_qc(a["bob_project"], {"QC.ALICE.CHECK": 1.5}))
attempt("flag_as_reviewer", lambda: me.set_validity(a["bob_project"], flag="warning",
                                                    comment="checked by alice").flag)
attempt("publish_bobs", lambda: me.publish([a["bob_project"]], privilege=Privilege.PUBLIC))
attempt("qc_of_private", lambda: me.add_qc(private_id, {"QC.ALICE.CHECK": 1.0}))
attempt("chain_reference", lambda: me.define_chain("galaxies/reference", []))
attempt("search", lambda: sorted(r.id for r in me.query(category="BIAS")))
# Her own frame: stored by the hub's writer service (she may not write the datastore herself).
out["writer"] = os.environ.get("MUSEWISE_DATASTORE_SERVICE")
attempt("ingest_own", lambda: me.ingest(a["alice_frame"], privilege=Privilege.PRIVATE, project="galaxies").record.id)
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
    # bob's frame his project sees (alice reviews galaxies), and galaxies' reference chain.
    bob_project = arch.as_user(bob).ingest(fits_raw(root / "bob-project.fits", mjd=61366.4, seed=10),
                                           privilege=Privilege.PROJECT, project="galaxies").record.id
    arch.define_chain("galaxies/reference", ["MUSE/raw"])
    from musewise.archive.schema import Dataset

    with arch.session() as s:
        private_file = s.get(Dataset, private).file_id
    alice_frame = fits_raw(root / "alice-frame.fits", dpr_type="DARK", mjd=61366.5, seed=11)
    os.chmod(alice_frame, 0o644)
    account = ensure_account(bob, root / "home" / bob, hub["group"])  # what the hub does at his first start
    # An account the hub made before (another data root on this machine) keeps its home: bob's is that one.
    bob_home = Path(account.pw_dir)
    (bob_home / "notes.txt").write_text("bob's notes")
    os.chown(bob_home / "notes.txt", account.pw_uid, account.pw_gid)

    login(hub, alice)
    r = requests.post(f"{url}/hub/api/users/{alice}/server", headers=hub["admin"], timeout=60)
    assert r.status_code in (201, 202), r.text
    _wait_ready(hub, alice)
    token = requests.post(f"{url}/hub/api/users/{alice}/tokens", headers=hub["admin"], timeout=30,
                          json={"note": "test", "expires_in": 600}).json()["token"]
    api, auth = f"{url}/user/{alice}/api", {"Authorization": f"token {token}"}
    kernel = requests.post(f"{api}/kernels", headers=auth, timeout=120, json={"name": "musewise"}).json()
    ws = f"ws://127.0.0.1:{url.rsplit(':', 1)[1]}/user/{alice}/api/kernels/{kernel['id']}/channels"
    args = json.dumps({"state": str(root / "hub"), "bob_home": str(bob_home),
                       "datastore": arch.config.datastore_url, "db_file": hub["sqlite_url"][len("sqlite:///"):],
                       "private": private, "private_path": arch.path(private), "private_file": private_file,
                       "private_run": hub["ids"]["private_run"], "bob_project": bob_project,
                       "own": hub["ids"]["master"], "alice_frame": str(alice_frame)})
    stdout = asyncio.run(_run_in_kernel(ws, token, f"ARGS = {args!r}\n" + ATTEMPTS))
    out = json.loads(stdout.strip().splitlines()[-1])
    print(f"alice's kernel tried {len(out)} ways in: {time.monotonic() - t0:.1f} s with the spawn")
    out["_ids"] = {"private": private, "bob_project": bob_project}
    yield out
    requests.delete(f"{url}/hub/api/users/{alice}/server", headers=hub["admin"], timeout=60)


def test_a_members_kernel_cannot_become_anyone_else(hub, alice_tries):
    import pwd

    out, root, arch = alice_tries, hub["root"], hub["archive"]
    # alice is alice (not root), and her own work goes on.
    assert out["whoami"] == "ok: alice"
    # the consortium's 3 biases and bob's frame of galaxies, not bob's private one
    assert arch.as_user("alice").count(category="BIAS") == 4
    assert out["own_archive"] == "ok: ('alice', 4)"
    home = root / "home" / "alice"
    assert home.stat().st_uid == pwd.getpwnam("alice").pw_uid and home.stat().st_mode & 0o777 == 0o700
    # Every way to act as the administrator is refused, with the reason.
    # refused before it can try: the kernel acts as alice whatever it asks for
    assert out["open_as_admin_write"].startswith("refused: IdentityError"), out["open_as_admin_write"]
    for way in ("env_admin", "cli_user_admin", "cli_env_admin"):
        assert out[way].startswith("refused:") and "may not act as 'admin'" in out[way], (way, out[way])
    # The hub's secrets, bob's home, the datastore and the database file are closed to her.
    for way in ("cookie_secret", "hub_database", "list_state", "list_bob_home", "read_bob_file",
                "write_datastore_new", "write_datastore_file", "read_private_file", "read_sqlite_file",
                "open_db_for_writing"):
        assert out[way].startswith("refused: PermissionError"), (way, out[way])
    assert out["sqlite_read"].startswith("refused: OperationalError"), out["sqlite_read"]
    assert not (root / "datastore" / "planted.fits").exists()
    assert "mallory" not in [u["name"] for u in arch.users()]
    assert not any(u["is_admin"] for u in arch.users() if u["name"] in ("alice", "bob"))


def test_the_api_does_not_read_as_the_administrator_in_a_members_kernel(alice_tries):
    assert alice_tries["open_as_admin_read"].startswith("refused: IdentityError"), alice_tries["open_as_admin_read"]


def test_sql_from_a_members_kernel_reaches_only_what_row_level_security_lets_her(hub, alice_tries):
    """The kernel's database address is alice's own role on the hub's PostgreSQL; SQL past the API finds nothing more."""
    out, arch = alice_tries, hub["archive"]
    assert out["db_url"].startswith("postgresql+psycopg://alice@/"), out["db_url"]
    for way in ("sql_private_row", "sql_private_file_row", "sql_private_run"):
        assert out[way] == "ok: []", (way, out[way])
    assert out["sql_consortium_rows"] == "ok: 4"  # control: the rows she may see are there
    for role in ("musewise", "postgres", "bob"):  # the unix account is the database identity
        assert out[f"sql_as_{role}"].startswith("refused: OperationalError") and "authentication failed" in \
            out[f"sql_as_{role}"], out[f"sql_as_{role}"]
    assert out["sql_set_role"].startswith("refused: ProgrammingError") and "permission denied" in out["sql_set_role"]
    for way in ("sql_change_private", "sql_delete_private", "sql_empty_reference", "sql_reorder_reference"):
        assert out[way] == "ok: 0 rows", (way, out[way])  # not there for her to change
    assert "only the owner of dataset" in out["sql_hide_bobs"], out["sql_hide_bobs"]
    assert "only the archive service" in out["sql_take_bobs"], out["sql_take_bobs"]
    assert "permission denied" in out["sql_become_admin"], out["sql_become_admin"]
    ids = out["_ids"]
    bobs = arch.get(ids["bob_project"])
    assert (bobs.owner, bobs.privilege) == ("bob", 2)
    assert arch.get(ids["private"]).comment == ""
    assert list(arch.collection("galaxies/reference").members) == ["MUSE/raw"]
    assert not any(u["is_admin"] for u in arch.users() if u["name"] == "alice")


def test_a_member_writes_what_she_may_from_her_kernel_and_the_database_refuses_the_rest(hub, alice_tries):
    from musewise.vocabulary import Privilege

    out, arch, ids = alice_tries, hub["archive"], alice_tries["_ids"]
    # Her own dataset's privilege; QC values and a flag on her project's data, as its reviewer.
    assert out["publish_own"] == "ok: None", out["publish_own"]
    own = arch.get(hub["ids"]["master"])
    assert (own.privilege, own.project) == (Privilege.PROJECT, "galaxies")
    assert out["qc_as_reviewer"] == "ok: None", out["qc_as_reviewer"]
    assert {q["name"]: q["value"] for q in arch.qc(ids["bob_project"])}.get("QC.ALICE.CHECK") == 1.5
    assert out["flag_as_reviewer"] == "ok: warning", out["flag_as_reviewer"]
    assert arch.validity_history(ids["bob_project"])[-1]["user"] == "alice"
    # Not bob's privilege, not what she cannot see, not the project's reference chain.
    assert out["publish_bobs"].startswith("refused: PermissionDeniedError"), out["publish_bobs"]
    assert arch.get(ids["bob_project"]).privilege == Privilege.PROJECT
    assert out["qc_of_private"].startswith("refused: NotFoundError"), out["qc_of_private"]
    assert out["chain_reference"].startswith("refused: PermissionDeniedError"), out["chain_reference"]
    assert list(arch.collection("galaxies/reference").members) == ["MUSE/raw"]
    # Her own frame, archived from her kernel: stored by the hub's writer service, root's,
    # read-only, readable by her group alone.
    assert out["writer"] and out["writer"].endswith("datastore.sock"), out["writer"]
    assert out["ingest_own"].startswith("ok: "), out["ingest_own"]
    mine = arch.get(int(out["ingest_own"][4:]))
    assert (mine.owner, mine.privilege) == ("alice", Privilege.PRIVATE)
    import grp

    st = os.stat(arch.path(mine.id))
    assert (st.st_uid, grp.getgrgid(st.st_gid).gr_name, st.st_mode & 0o777) == (0, "alice", 0o440)
    arch.verify(mine.id)
    # ... and her searches find her project's frame, never bob's private one.
    found = out["search"]
    assert str(ids["bob_project"]) in found and str(ids["private"]) not in found.replace(",", " ").split(), found
