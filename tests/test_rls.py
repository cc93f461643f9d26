"""Privileges enforced by PostgreSQL itself (issue 11, items 3 and 4).

Real unix accounts (made with ``useradd`` for the module, removed after), a real
PostgreSQL server (``postgres_server``) reached over its unix socket with peer
authentication, and clients run as those accounts with ``runuser``: raw SQL through
psycopg, :class:`~musewise.archive.Archive` and the ``musewise`` CLI. Each attack is
paired with the same action on something the account may touch, so a test cannot pass
by refusing everything. Needs root (to make accounts); skipped otherwise, failed in CI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from conftest import REPO, need
from sqlalchemy import select, text

from musewise.vocabulary import Privilege

PRIVILEGES = tuple(Privilege)
SUFFIX = uuid.uuid4().hex[:6]
#: Test accounts: name -> (archive admin, consortium member, {project: role}).
ACCOUNTS = {
    "a": (False, True, {"galaxies": "member"}),
    "b": (False, True, {"galaxies": "member"}),
    "r": (False, True, {"galaxies": "reviewer"}),
    "m": (False, True, {"galaxies": "manager"}),
    "c": (False, True, {}),
    "e": (False, False, {}),
    "d": (True, True, {}),
}


@pytest.fixture
def open_tmp():
    """A folder under /tmp the test accounts can traverse (pytest's own are closed to them); removed after."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="musewise-rls-"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def user_root(parent: Path, name: str) -> Path:
    """A data root owned by account ``name``."""
    root = parent / f"{name}-root"
    root.mkdir()
    subprocess.run(["chown", name, str(root)], check=True)
    return root


def uname(key: str) -> str:
    return f"mw{key}_{SUFFIX}"


@pytest.fixture(scope="module")
def accounts():
    need(os.geteuid() == 0, "making unix accounts needs root")
    made = []
    try:
        for key in ACCOUNTS:
            subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", uname(key)], check=True,
                           capture_output=True)
            made.append(uname(key))
        yield {k: uname(k) for k in ACCOUNTS}
    finally:
        for name in made:
            subprocess.run(["userdel", name], capture_output=True)


@pytest.fixture(scope="module")
def site(postgres_server, accounts, tmp_path_factory):
    """A PostgreSQL archive with datasets of owners a and b in every privilege, in two projects.

    Returns a dict: ``arch`` (the service's Archive), ``db`` (database name), ``ids``
    (``(owner key, project, privilege) -> dataset id``), ``run`` (b's private run),
    ``raw`` (its input, b's private frame), ``chain`` (galaxies' reference chain id),
    ``child`` (a collection of that chain).
    """
    from musewise.archive import Archive
    from musewise.archive.schema import (Collection, CollectionChain, Dataset, DatasetIfu, QCParameter, Run,
                                         RunInput, StoredFile, ValidityEvent)

    root = tmp_path_factory.mktemp("rls")
    url = postgres_server.create_database()
    arch = Archive.open(root=str(root / "root"), db_url=url, user="admin", project="galaxies")
    arch.add_project("stars")
    for key, (admin, member, projects) in ACCOUNTS.items():
        arch.add_user(accounts[key], admin=admin, member=member, projects=projects)
    ids = {}
    with arch.transaction() as tx:
        s = tx.session
        users = {k: arch.acting_user(s, accounts[k]) for k in ("a", "b")}
        projects = {p: arch.project_row(s, p) for p in ("galaxies", "stars")}
        colls = {}
        for k, u in users.items():
            colls[k] = Collection(name=f"u/{u.name}/work", type="run", owner_id=u.id)
            s.add(colls[k])
        s.flush()
        n = 0
        for k, u in users.items():
            for pname, proj in projects.items():
                for priv in PRIVILEGES:
                    n += 1
                    f = StoredFile(sha256=f"{SUFFIX}{n:058d}", size=1, path=f"t/{SUFFIX}/{n}.fits")
                    s.add(f)
                    s.flush()
                    ds = Dataset(kind="product", category="MASTER_BIAS", file_id=f.id, owner_id=u.id,
                                 project_id=proj.id, privilege=int(priv), collection_id=colls[k].id,
                                 object=f"secret {k} {pname} {priv.name}",
                                 header={"OBJECT": f"secret {k} {pname} {priv.name}"})
                    s.add(ds)
                    s.flush()
                    s.add(DatasetIfu(dataset_id=ds.id, ifu=1))
                    s.add(QCParameter(dataset_id=ds.id, ifu=1, name="QC.BIAS.MEAN", value=1.0))
                    s.add(ValidityEvent(dataset_id=ds.id, user_id=u.id, valid_before=True, valid_after=True,
                                        flag_before="unchecked", flag_after="good"))
                    ids[(k, pname, priv)] = ds.id
        b = users["b"]
        run = Run(recipe="muse_bias", user_id=b.id, project_id=projects["galaxies"].id,
                  privilege=int(Privilege.PRIVATE), collection_id=colls["b"].id, status="done")
        s.add(run)
        s.flush()
        raw = ids[("b", "galaxies", Privilege.PRIVATE)]
        s.add(RunInput(run_id=run.id, dataset_id=raw, tag="BIAS", reason="secret reason"))
        chain = Collection(name="galaxies/reference", type="chained", project_id=projects["galaxies"].id)
        child = Collection(name=f"galaxies/runs/{SUFFIX}", type="run", project_id=projects["galaxies"].id)
        s.add_all([chain, child])
        s.flush()
        s.add(CollectionChain(parent_id=chain.id, child_id=child.id, position=1))
        run_id, chain_id, child_id = run.id, chain.id, child.id
    with arch.engine.connect() as conn:  # statistics of the planner hold column values: probed below
        conn.exec_driver_sql("ANALYZE")
        conn.commit()
    yield {"arch": arch, "url": url, "db": url.rsplit("/", 1)[1], "ids": ids, "run": run_id, "raw": raw,
           "chain": chain_id, "child": child_id, "root": root}
    arch.close()


def _python_visible(arch, name) -> set[int]:
    from musewise.archive.privileges import visible_datasets
    from musewise.archive.schema import Dataset

    with arch.session() as s:
        return set(s.scalars(select(Dataset.id).where(visible_datasets(arch.acting_user(s, name)))))


def _can_see(arch, name, ids) -> set[int]:
    from musewise.archive.privileges import can_see
    from musewise.archive.schema import Dataset

    with arch.session() as s:
        user = arch.acting_user(s, name)
        member_of = set(arch.roles(s, user))
        return {d.id for d in s.scalars(select(Dataset).where(Dataset.id.in_(ids)))
                if can_see(user, d.privilege, d.owner_id, d.project_id, member_of)}


def _rls_visible(arch, role) -> set[int]:
    with arch.engine.connect() as conn:
        conn.execute(text(f'SET ROLE "{role}"'))
        got = set(conn.scalars(text("SELECT id FROM datasets")))
        conn.rollback()
        return got


def test_python_filter_and_row_level_security_show_the_same_rows(site, accounts):
    """Every privilege x every kind of user: the SQL filter, the Python rule and PostgreSQL's policies agree."""
    arch, ids = site["arch"], site["ids"]
    mine = set(ids.values())
    expect = {  # written out by hand from the rule, for the datasets of this test
        "a": {i for (k, p, pr), i in ids.items() if k == "a" or pr >= Privilege.CONSORTIUM
              or (pr == Privilege.PROJECT and p == "galaxies")},
        "c": {i for (k, p, pr), i in ids.items() if pr >= Privilege.CONSORTIUM},
        "e": {i for (k, p, pr), i in ids.items() if pr == Privilege.PUBLIC},
        "d": mine,
    }
    for key, name in accounts.items():
        py = _python_visible(arch, name) & mine
        assert py == _can_see(arch, name, mine), key
        assert _rls_visible(arch, name) & mine == py, key
        if key in expect:
            assert py == expect[key], key
    # A role with no archive user row (the group role itself) sees public data only.
    assert _rls_visible(arch, "musewise_users") & mine == expect["e"]


RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"


def _account_python(name: str) -> str:
    # The virtualenv's interpreter may live where other accounts cannot go (a pyenv under
    # /root); the system's of the same version runs the same site-packages.
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for exe in (sys.executable, f"/usr/bin/{ver}"):
        if subprocess.run([RUNUSER, "-u", name, "--", exe, "-c", "pass"], capture_output=True).returncode == 0:
            return exe
    pytest.skip(f"no {ver} interpreter the test accounts may run")


def _as_account(name: str, code: str, *args, env=None, timeout=120) -> subprocess.CompletedProcess:
    """Run Python ``code`` as unix account ``name`` (a clean environment: nothing inherited from root)."""
    import sysconfig

    path = os.pathsep.join([str(REPO), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    base = {"PATH": "/usr/bin:/bin", "PYTHONPATH": path, "HOME": "/tmp", "LANG": "C.UTF-8"}
    return subprocess.run([RUNUSER, "-u", name, "--", _account_python(name), "-c", code, *args],
                          env={**base, **(env or {})}, capture_output=True, text=True, timeout=timeout)


RAW_SQL = r'''
import json, sys
import psycopg
args = json.loads(sys.argv[1])
out = {}
def attempt(label, sql):
    try:
        with psycopg.connect(host=args["sock"], port=args["port"], dbname=args["db"], user=args["me"],
                             autocommit=True) as conn:
            cur = conn.execute(sql)
            out[label] = {"rows": cur.fetchall() if cur.description else None, "count": cur.rowcount}
    except psycopg.Error as exc:
        out[label] = {"error": exc.sqlstate or type(exc).__name__}
for role in ("musewise", "postgres", args["other"]):
    try:
        psycopg.connect(host=args["sock"], port=args["port"], dbname=args["db"], user=role).close()
        out["connect " + role] = "connected"
    except psycopg.OperationalError as exc:
        out["connect " + role] = "refused"
for label, sql in args["statements"].items():
    attempt(label, sql)
print(json.dumps(out))
'''


def _raw_sql(site, pg, me, other, statements: dict[str, str]) -> dict:
    r = _as_account(me, RAW_SQL, json.dumps({"sock": str(pg.sock), "port": pg.server.port, "db": site["db"],
                                             "me": me, "other": other, "statements": statements}))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_raw_sql_as_a_unix_account_cannot_read_or_change_what_is_not_its_own(site, accounts, postgres_server):
    ids, a, b = site["ids"], accounts["a"], accounts["b"]
    secret = ids[("b", "galaxies", Privilege.PRIVATE)]
    b_project = ids[("b", "galaxies", Privilege.PROJECT)]
    b_cons = ids[("b", "galaxies", Privilege.CONSORTIUM)]
    b_stars = ids[("b", "stars", Privilege.PROJECT)]
    own = ids[("a", "galaxies", Privilege.PRIVATE)]
    chain = site["chain"]
    got = _raw_sql(site, postgres_server, a, b, {
        "secret row": f"SELECT id, header FROM datasets WHERE id = {secret}",
        "secret object": "SELECT count(*) FROM datasets WHERE object LIKE 'secret b % PRIVATE'",
        "other project": f"SELECT id FROM datasets WHERE id = {b_stars}",
        "secret ifus": f"SELECT * FROM dataset_ifus WHERE dataset_id = {secret}",
        "secret qc": f"SELECT * FROM qc_parameters WHERE dataset_id = {secret}",
        "secret validity": f"SELECT * FROM validity_events WHERE dataset_id = {secret}",
        "secret run": f"SELECT * FROM runs WHERE id = {site['run']}",
        "secret inputs": f"SELECT * FROM run_inputs WHERE run_id = {site['run']}",
        "statistics": "SELECT count(*) FROM pg_stats WHERE tablename IN ('datasets', 'runs', 'run_inputs')",
        "own row": f"SELECT id, header FROM datasets WHERE id = {own}",
        "project row": f"SELECT id FROM datasets WHERE id = {b_project}",
        "update b": f"UPDATE datasets SET comment = 'mine now' WHERE id = {b_cons}",
        "delete b": f"DELETE FROM datasets WHERE id = {b_cons}",
        "invalidate b": f"UPDATE datasets SET is_valid = false WHERE id = {b_project}",
        "qc of b": f"UPDATE qc_parameters SET value = 99 WHERE dataset_id = {b_project}",
        "delete qc of b": f"DELETE FROM qc_parameters WHERE dataset_id = {b_cons}",
        "flag ifu of b": f"UPDATE dataset_ifus SET flag = 'bad' WHERE dataset_id = {b_project}",
        "reorder chain": f"UPDATE collection_chains SET position = 99 WHERE parent_id = {chain}",
        "empty chain": f"DELETE FROM collection_chains WHERE parent_id = {chain}",
        "extend chain": f"INSERT INTO collection_chains (parent_id, child_id, position) VALUES ({chain}, "
                        f"(SELECT id FROM collections WHERE name = 'u/{a}/work'), 100)",
        "rename chain": f"UPDATE collections SET name = 'x' WHERE id = {chain}",
        "become admin": f"UPDATE users SET is_admin = true WHERE name = '{a}'",
        "join project": f"INSERT INTO memberships (user_id, project_id, role) SELECT id, 1, 'manager' "
                        f"FROM users WHERE name = '{a}'",
        "dataset as b": f"INSERT INTO datasets (kind, category, file_id, owner_id, privilege, collection_id, "
                        f"is_valid, flag, comment) SELECT 'product', 'X', file_id, owner_id, 4, collection_id, "
                        f"true, 'good', '' FROM datasets WHERE id = {b_cons}",
        "steal own": f"UPDATE datasets SET owner_id = (SELECT owner_id FROM datasets WHERE id = {b_cons}) "
                     f"WHERE id = {own}",
        "set role": "SET ROLE musewise",
        "publish own": f"UPDATE datasets SET privilege = 3 WHERE id = {own}",
        "fake audit": f"INSERT INTO validity_events (dataset_id, user_id, valid_before, valid_after, flag_before, "
                      f"flag_after, comment) SELECT {own}, owner_id, true, false, 'good', 'bad', '' "
                      f"FROM datasets WHERE id = {b_cons}",
    })
    for role in ("musewise", "postgres", b):
        assert got[f"connect {role}"] == "refused", role  # the unix account is the database identity
    for label in ("secret row", "other project", "secret ifus", "secret qc", "secret validity", "secret run",
                  "secret inputs"):
        assert got[label]["rows"] == [], label
    assert got["secret object"]["rows"] == [[0]]
    assert got["statistics"]["rows"] == [[0]]  # the planner's sampled values are not shown past the policies
    with site["arch"].engine.connect() as conn:  # control: there are statistics to hide
        assert conn.scalar(text("SELECT count(*) FROM pg_stats WHERE tablename = 'datasets'")) > 0
    assert got["own row"]["rows"][0][1]["OBJECT"] == "secret a galaxies PRIVATE"  # controls: what a may see
    assert got["project row"]["rows"] == [[b_project]]
    for label in ("update b", "delete b", "invalidate b", "qc of b", "delete qc of b", "flag ifu of b",
                  "reorder chain", "empty chain", "rename chain"):
        assert got[label] == {"rows": None, "count": 0}, label  # the rows are not there for a to change
    for label in ("extend chain", "become admin", "join project", "dataset as b", "steal own", "set role",
                  "fake audit"):
        assert got[label].get("error") == "42501", (label, got[label])
    assert got["publish own"] == {"rows": None, "count": 1}  # a changes what is a's
    arch = site["arch"]
    assert arch.get(b_cons).comment == "" and arch.get(b_project).is_valid
    assert [m for m in arch.collection("galaxies/reference").members] == [f"galaxies/runs/{SUFFIX}"]
    assert not any(u["is_admin"] for u in arch.users() if u["name"] == a)


def test_raw_sql_reviewer_sets_validity_but_not_privilege(site, accounts, postgres_server):
    ids, r = site["ids"], accounts["r"]
    b_project = ids[("b", "galaxies", Privilege.PROJECT)]
    b_stars = ids[("b", "stars", Privilege.CONSORTIUM)]
    got = _raw_sql(site, postgres_server, r, accounts["b"], {
        "flag": f"UPDATE datasets SET flag = 'warning', comment = 'reviewed' WHERE id = {b_project}",
        "other project": f"UPDATE datasets SET flag = 'bad' WHERE id = {b_stars}",
        "hide": f"UPDATE datasets SET privilege = 1 WHERE id = {b_project}",
        "qc": f"UPDATE qc_parameters SET value = 2 WHERE dataset_id = {b_project}",
    })
    assert got["flag"]["count"] == 1 and got["qc"]["count"] == 1
    assert got["other project"]["count"] == 0  # r reviews galaxies, not stars
    assert got["hide"]["error"] == "42501"  # only b (or an administrator) changes who sees b's data
    rec = site["arch"].get(b_project)
    assert (rec.flag, rec.privilege) == ("warning", Privilege.PROJECT)


def test_raw_sql_sees_the_file_rows_of_the_datasets_it_may_see_only(site, accounts, postgres_server):
    """``files`` (checksum, storage path, original name) follows the datasets over each file."""
    from musewise.archive.schema import Dataset, StoredFile

    ids, a, b = site["ids"], accounts["a"], accounts["b"]
    with site["arch"].session() as s:
        file_of = dict(s.execute(select(Dataset.id, Dataset.file_id).where(Dataset.id.in_(ids.values()))).all())
        paths = dict(s.execute(select(StoredFile.id, StoredFile.path)).all())
    secret = file_of[ids[("b", "galaxies", Privilege.PRIVATE)]]
    other_project = file_of[ids[("b", "stars", Privilege.PROJECT)]]
    seen_file = file_of[ids[("b", "galaxies", Privilege.PROJECT)]]
    own = file_of[ids[("a", "galaxies", Privilege.PRIVATE)]]
    new_sha = f"{SUFFIX}{'f' * 58}"
    got = _raw_sql(site, postgres_server, a, b, {
        "secret by id": f"SELECT sha256, path FROM files WHERE id = {secret}",
        "secret by path": f"SELECT id FROM files WHERE path = '{paths[secret]}'",
        "other project": f"SELECT id FROM files WHERE id = {other_project}",
        "all": "SELECT id FROM files",
        "own": f"SELECT path FROM files WHERE id = {own}",
        "project": f"SELECT id FROM files WHERE id = {seen_file}",
        # an ingest adds the file's row and reads it back before its dataset exists
        "add": f"INSERT INTO files (sha256, size, path, original_name, created) VALUES ('{new_sha}', 1, "
               f"'t/{SUFFIX}/new.fits', 'new.fits', now()) RETURNING id",
        "change": f"UPDATE files SET path = 'x' WHERE id = {own}",
    })
    for label in ("secret by id", "secret by path", "other project"):
        assert got[label]["rows"] == [], (label, got[label])
    all_seen = {row[0] for row in got["all"]["rows"]}
    assert secret not in all_seen and other_project not in all_seen and {own, seen_file} <= all_seen
    assert got["own"]["rows"] == [[paths[own]]] and got["project"]["rows"] == [[seen_file]]
    assert len(got["add"]["rows"]) == 1  # a file no dataset claims yet is seen by whoever adds it
    assert got["change"].get("error") == "42501"  # the store is write-once
    with site["arch"].engine.begin() as conn:
        conn.execute(text("DELETE FROM files WHERE sha256 = :s"), {"s": new_sha})
    # The service sees every row (the web view, the reference reduction).
    with site["arch"].engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM files WHERE id = :i"), {"i": secret}) == 1


HIDDEN_BYTES = r'''
import json, sys
from musewise.archive import Archive
from musewise.exceptions import DuplicateError
args = json.loads(sys.argv[1])
arch = Archive.open(root=args["root"], db_url=args["url"], project="galaxies")
out = {"before": arch.count()}
try:
    out["ingest"] = "stored %d" % arch.ingest(args["frame"], project="galaxies").record.id
except DuplicateError as exc:
    out["ingest"] = "%s: %s" % (type(exc).__name__, exc)
out["after"] = arch.count()
print(json.dumps(out))
'''


def test_a_member_storing_bytes_archived_under_anothers_private_dataset_gets_a_clear_refusal(
        site, accounts, postgres_server, open_tmp):
    """Without the writer service, a member's role cannot see the file row of identical bytes
    under another member's private dataset: the ingest is refused with a message that says why
    and what to do, and what is stored is unchanged."""
    from test_web import fits_raw

    from musewise.archive.datastore import sha256_file
    from musewise.archive.schema import Dataset, StoredFile

    arch, a, b = site["arch"], accounts["a"], accounts["b"]
    frame = fits_raw(open_tmp / "same-bytes.fits", mjd=61371.2, seed=77)
    os.chmod(frame, 0o644)
    sha, size = sha256_file(frame)
    secret = site["ids"][("b", "galaxies", Privilege.PRIVATE)]
    with arch.transaction() as tx:
        s = tx.session
        theirs = s.get(Dataset, secret)
        f = StoredFile(sha256=sha, size=size, path=f"t/{SUFFIX}/same.fits", original_name="b.fits")
        s.add(f)
        s.flush()
        ds = Dataset(kind="raw", category="BIAS", file_id=f.id, owner_id=theirs.owner_id,
                     project_id=theirs.project_id, privilege=int(Privilege.PRIVATE),
                     collection_id=theirs.collection_id, object="b's frame", header={})
        s.add(ds)
        s.flush()
        file_id, ds_id, owner_id = f.id, ds.id, theirs.owner_id
    try:
        root = user_root(open_tmp, a)
        r = _as_account(a, HIDDEN_BYTES, json.dumps({"root": str(root), "frame": str(frame),
                                                     "url": postgres_server.socket_url(site["db"], a)}))
        assert r.returncode == 0, r.stderr
        got = json.loads(r.stdout)
        assert got["ingest"].startswith("BytesStoredAlready: same-bytes.fits: the archive holds these bytes "
                                        "already"), got
        assert "writer service" in got["ingest"] and "b.fits" not in got["ingest"]
        assert got["after"] == got["before"]
        with arch.session() as s:
            kept = s.get(Dataset, ds_id)
            assert (kept.file_id, kept.privilege, kept.owner_id) == (file_id, int(Privilege.PRIVATE), owner_id)
            assert s.scalar(select(StoredFile.id).where(StoredFile.sha256 == sha)) == file_id
    finally:
        with arch.engine.begin() as conn:
            conn.execute(text("DELETE FROM datasets WHERE id = :i"), {"i": ds_id})
            conn.execute(text("DELETE FROM files WHERE id = :i"), {"i": file_id})


ARCHIVE_AS = r'''
import json, sys, os
from musewise.archive import Archive
from musewise.exceptions import NotFoundError, PermissionDeniedError
args = json.loads(sys.argv[1])
out = {}
try:
    Archive.open(root=args["root"], db_url=args["url"], user=args["other"])
    out["open as other"] = "opened"
except PermissionDeniedError as exc:
    out["open as other"] = "refused"
arch = Archive.open(root=args["root"], db_url=args["url"])
out["user"] = arch.user_name
try:
    arch.as_user(args["other"])
    out["as_user"] = "switched"
except PermissionDeniedError:
    out["as_user"] = "refused"
try:
    arch.get(args["secret"])
    out["get secret"] = "seen"
except NotFoundError:
    out["get secret"] = "hidden"
out["query"] = sorted(r.id for r in arch.query())
for label, call in (("validity", lambda: arch.set_validity(args["project"], is_valid=False, comment="x")),
                    ("add_qc", lambda: arch.add_qc(args["project"], {"QC.X": 1.0})),
                    ("chain", lambda: arch.define_chain("galaxies/reference", [])),
                    ("add_user", lambda: arch.add_user("intruder", admin=True))):
    try:
        call()
        out[label] = "done"
    except PermissionDeniedError:
        out[label] = "refused"
arch.set_validity(args["own"], flag="good", comment="mine")
out["own"] = arch.get(args["own"]).flag
print(json.dumps(out))
'''


def test_archive_and_cli_as_a_unix_account_take_its_identity(site, accounts, postgres_server, open_tmp):
    ids, a, b = site["ids"], accounts["a"], accounts["b"]
    root = user_root(open_tmp, a)
    url = postgres_server.socket_url(site["db"], a)
    secret = ids[("b", "galaxies", Privilege.PRIVATE)]
    args = {"root": str(root), "url": url, "other": b, "secret": secret,
            "project": ids[("b", "galaxies", Privilege.PROJECT)], "own": ids[("a", "galaxies", Privilege.PRIVATE)]}
    r = _as_account(a, ARCHIVE_AS, json.dumps(args), env={"MUSEWISE_USER": "admin"})
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["open as other"] == "refused" and got["as_user"] == "refused"
    assert got["user"] == a  # MUSEWISE_USER=admin changes nothing: the database says who this is
    assert got["get secret"] == "hidden" and secret not in got["query"]
    assert set(got["query"]) == _python_visible(site["arch"], a) & set(got["query"]) and got["query"]
    assert {k: got[k] for k in ("validity", "add_qc", "chain", "add_user")} == dict.fromkeys(
        ("validity", "add_qc", "chain", "add_user"), "refused")
    assert got["own"] == "good"
    cli = "import sys; from musewise.cli import main; sys.exit(main(sys.argv[1:]))"
    common = ["--root", str(root), "--db-url", url]
    r = _as_account(a, cli, *common, "--user", "admin", "query", "--format", "ids")
    assert r.returncode == 2 and "cannot act as archive user 'admin'" in r.stderr
    r = _as_account(a, cli, *common, "query", "--format", "ids")
    assert r.returncode == 0, r.stderr
    shown = {int(x) for x in r.stdout.split()}
    assert secret not in shown and ids[("a", "galaxies", Privilege.PRIVATE)] in shown
    r = _as_account(a, cli, *common, "show", str(secret), "--header")
    assert r.returncode == 2 and "secret" not in r.stdout


def test_site_database_starts_itself_and_users_log_in_as_their_account(accounts, open_tmp):
    """``start_site_database``: nothing set up by hand; no TCP; the service and users by peer."""
    from musewise.archive import Archive
    from musewise.archive.pgserver import (ensure_user_role, start_site_database, stop_site_database,
                                           user_database_url)

    state = open_tmp / "state"
    try:
        url = start_site_database(state)
        assert start_site_database(state) == url  # a second call finds it running
        arch = Archive.open(root=str(open_tmp / "root"), db_url=url, user="admin")
        arch.add_user(accounts["c"])
        ensure_user_role(url, accounts["c"])  # idempotent
        conf = (state / "postgres" / "data" / "pg_hba.conf").read_text()
        assert "host" not in conf.split() and "trust" not in conf
        r = _as_account(accounts["c"], "import sys; from musewise.archive import Archive; "
                        "a = Archive.open(root=sys.argv[2], db_url=sys.argv[1]); print(a.user_name, a.count())",
                        user_database_url(url, accounts["c"]), str(user_root(open_tmp, accounts["c"])))
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == [accounts["c"], "0"]
        arch.close()
    finally:
        stop_site_database(state)
    assert not (state / "postgres" / "data" / "postmaster.pid").exists()


READ_WRITE = r'''
import json, sys
out = {}
for label, path in json.loads(sys.argv[1]).items():
    try:
        with open(path, "rb") as f:
            f.read(10)
        out[label] = "read"
    except PermissionError:
        out[label] = "denied"
    try:
        open(path, "ab").close()
        out[label] += "+written"
    except PermissionError:
        pass
print(json.dumps(out))
'''


def test_datastore_files_are_readable_only_by_those_who_may_see_them(accounts, open_tmp):
    """The bytes follow the rule: private to the owner, project to its members, never writable by users."""
    import grp

    from test_web import fits_raw

    from musewise.archive import Archive
    from musewise.archive.filemodes import sync_unix_groups

    prefix = f"mwt{SUFFIX}"
    arch = Archive.open(root=str(open_tmp / "root"), db_url=f"sqlite:///{open_tmp / 'a.sqlite'}", user="admin",
                        project="galaxies", unix_group_prefix=prefix)
    try:
        arch.add_project("stars")
        for key, (admin, member, projects) in ACCOUNTS.items():
            arch.add_user(accounts[key], admin=admin, member=member, projects=projects)
        sync_unix_groups(arch)
        assert set(grp.getgrnam(f"{prefix}-galaxies").gr_mem) == {accounts[k] for k in "abrm"}
        b = arch.as_user(accounts["b"])
        made = {}
        for i, (label, priv, proj) in enumerate([("private", Privilege.PRIVATE, "galaxies"),
                                                 ("galaxies", Privilege.PROJECT, "galaxies"),
                                                 ("consortium", Privilege.CONSORTIUM, "galaxies"),
                                                 ("public", Privilege.PUBLIC, "galaxies")]):
            rec = b.ingest(fits_raw(open_tmp / f"{label}.fits", mjd=61370.1 + i / 10, seed=40 + i),
                           privilege=priv, project=proj).record
            made[label] = (rec.id, arch.path(rec.id))
        paths = {k: p for k, (_, p) in made.items()}

        def reads(key):
            r = _as_account(accounts[key], READ_WRITE, json.dumps(paths))
            assert r.returncode == 0, r.stderr
            return json.loads(r.stdout)

        assert reads("b") == {"private": "read", "galaxies": "read", "consortium": "read", "public": "read"}
        assert reads("a") == {"private": "denied", "galaxies": "read", "consortium": "read", "public": "read"}
        assert reads("c") == {"private": "denied", "galaxies": "denied", "consortium": "read", "public": "read"}
        assert reads("e") == {"private": "denied", "galaxies": "denied", "consortium": "denied", "public": "read"}
        b.publish([made["private"][0]], Privilege.PUBLIC)  # the mode follows the privilege
        assert reads("e")["private"] == "read"
        assert all(os.stat(p).st_uid == 0 and not os.stat(p).st_mode & 0o222 for p in paths.values())
    finally:
        arch.close()
        for g in [g.gr_name for g in grp.getgrall() if g.gr_name.startswith(prefix)]:
            subprocess.run(["groupdel", g], capture_output=True)
