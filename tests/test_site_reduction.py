"""Members of a site reducing at once on its PostgreSQL archive (issue 16, part 4).

What a site runs, with real parts: a PostgreSQL server reached by each member over its
unix socket as their own role (peer authentication, row-level security), a datastore
that belongs to root and that members may only read, the datastore's writer service
(``musewise.archive.storeservice``, run by root as ``musewise hub`` runs it) through
which members' processes store what they archive, and members who are real unix
accounts (made with ``useradd`` for the module, removed after), each reducing in a
process of their own under their account with the real pipeline.

Needs root (accounts, the root-owned datastore); skipped otherwise, failed in CI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
from conftest import need
from test_rls import READ_WRITE  # per path: "read", "read+written" or "denied"

from musewise.archive.schema import Dataset
from musewise.vocabulary import Privilege

NIGHT = "2026-11-20"
SUFFIX = uuid.uuid4().hex[:6]
#: Members reducing at once.
MEMBERS = 10
RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"


def member(i: int) -> str:
    return f"mws{i}_{SUFFIX}"


@pytest.fixture(scope="module")
def site(postgres_server):
    """A site: accounts, its archive on PostgreSQL with a night's biases, a root-owned datastore, the writer service.

    Returns a dict: ``arch`` (the service's Archive), ``root``, ``db``, ``sock`` (the
    writer service's socket), ``python`` (an interpreter the accounts may run, with the
    kernel ``musewise``), ``env(name)`` (a member's process environment), ``service``
    (the writer's process).
    """
    need(os.geteuid() == 0, "making unix accounts and a root-owned datastore needs root")
    from musewise.archive import Archive
    from musewise.archive.filemodes import sync_unix_groups
    from musewise.hubaccounts import python_users_can_run
    from musewise.hubcli import register_kernel
    from musewise.inm import simulate_night

    top = Path(tempfile.mkdtemp(prefix="musewise-site-"))
    os.chmod(top, 0o755)
    prefix = f"mws{SUFFIX}"
    made, service, arch = [], None, None
    try:
        python = python_users_can_run(top)
        need(python is not None, "no Python the test accounts may run")
        register_kernel(python, "musewise")
        for i in range(MEMBERS):
            home = top / "home" / member(i)
            subprocess.run(["useradd", "-M", "-d", str(home), "-s", "/usr/sbin/nologin", member(i)], check=True,
                           capture_output=True)
            made.append(member(i))
        root = top / "root"
        url = postgres_server.create_database()
        db = url.rsplit("/", 1)[1]
        arch = Archive.open(root=str(root), db_url=url, user="admin", project="galaxies", unix_group_prefix=prefix)
        for name in made:
            arch.add_user(name, member=True, projects={"galaxies": "member"})
        sync_unix_groups(arch)
        frames = simulate_night(top / "raw", night=NIGHT, ifus=(1,), n_bias=3, n_dark=0, n_flat=0, n_arc_per_lamp=0,
                                n_skyflat=0, n_std=0, n_object=0, seed=11, progress=False, static=False)
        rep = arch.ingest_many(frames, progress=False)
        assert not rep.refused and len(rep.ingested) == 3
        (root / "scratch").mkdir(mode=0o755, exist_ok=True)
        for name in made:
            for folder in (top / "home" / name, root / "scratch" / name):
                folder.mkdir(parents=True, exist_ok=True)
                shutil.chown(folder, name, name)
                folder.chmod(0o700)
        sock = top / "run" / "datastore.sock"
        service = subprocess.Popen([sys.executable, "-m", "musewise.archive.storeservice", "--socket", str(sock),
                                    "--root", str(root), "--db-url", url],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _wait_for(sock, service)
        os.chmod(sock.parent, 0o755)

        def env(name: str, service_socket: bool = True) -> dict:
            e = {"PATH": "/usr/bin:/bin", "HOME": str(top / "home" / name), "LANG": "C.UTF-8",
                 "MUSEWISE_ROOT": str(root), "MUSEWISE_DB_URL": postgres_server.socket_url(db, name)}
            if service_socket:
                e["MUSEWISE_DATASTORE_SERVICE"] = str(sock)
            return e

        yield {"arch": arch, "root": root, "db": db, "sock": sock, "python": python, "env": env,
               "service": service, "top": top}
    finally:
        if service is not None:
            service.terminate()
            service.wait(timeout=30)
        if arch is not None:
            arch.close()
        for name in made:
            subprocess.run(["userdel", name], capture_output=True)
        import grp

        for g in [g.gr_name for g in grp.getgrall() if g.gr_name.startswith(prefix)]:
            subprocess.run(["groupdel", g], capture_output=True)
        shutil.rmtree(top, ignore_errors=True)


def _wait_for(sock: Path, proc, timeout: float = 60.0) -> None:
    import time

    t0 = time.monotonic()
    while not sock.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the writer service exited: {proc.stderr.read()}")
        if time.monotonic() - t0 > timeout:
            raise AssertionError("the writer service did not listen within a minute")
        time.sleep(0.1)


def _start_as(site, name: str, code: str, *args, service_socket: bool = True) -> subprocess.Popen:
    """Python ``code`` run as account ``name``, in a clean environment of a member's process."""
    return subprocess.Popen([RUNUSER, "-u", name, "--", site["python"], "-c", code, *args],
                            env=site["env"](name, service_socket), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd="/")


def _run_as(site, name: str, code: str, *args, timeout: float = 300, **kw) -> dict:
    proc = _start_as(site, name, code, *args, **kw)
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


# ------------------------------------------------------------------------------ the writer service
MEMBER_WRITES = r'''
import json, os, sys, hashlib
from pathlib import Path
from musewise.archive import Archive
from musewise.archive.storeservice import StoreClient
from musewise.config import MusewiseConfig
args = json.loads(sys.argv[1])
out = {}
def attempt(label, fn):
    try:
        out[label] = "ok: " + str(fn())
    except Exception as exc:
        out[label] = f"refused: {type(exc).__name__}: {exc}"
store = Path(args["datastore"])
attempt("write_datastore", lambda: open(store / "planted.fits", "wb").write(b"x"))
arch = Archive.open(project="galaxies")
out["user"] = arch.user_name
out["count_before"] = arch.count()
attempt("ingest", lambda: arch.ingest(args["frame"], privilege=1).record.id)
out["count_after"] = arch.count()
client = StoreClient(args["sock"])
attempt("put_unreadable", lambda: client.put("/etc/shadow", "raw/x/shadow"))
attempt("put_outside", lambda: client.put(args["frame"], "../outside.fits"))
attempt("put_directory", lambda: client._call({"op": "put", "relpath": "raw/x/d"}, fds=[os.open("/", os.O_RDONLY)]))
mine = client.put(args["frame"], "raw/x/mine.fits.incoming")
attempt("commit_unchecked_name", lambda: client.commit(mine["token"], "raw/x/somebody-elses-name.fits"))
attempt("commit_others_token", lambda: client.commit(args["other_token"], "raw/x/" + args["other_sha"][:12] + "_f.fits"))
attempt("undo_others_token", lambda: client.undo(args["other_token"]))
# The bytes of a stored file, committed again to its own name: adopted, and never removable.
same = client.put(args["stored_copy"], "raw/y/again.incoming")
attempt("commit_stored_again", lambda: client.commit(same["token"], args["stored_path"]))
attempt("undo_stored", lambda: client.undo(same["token"]))
attempt("forged_uid", lambda: client._call({"op": "discard", "token": args["other_token"], "uid": 0}))
print(json.dumps(out))
'''

HOLD_TOKEN = r'''
import json, sys
from musewise.archive.storeservice import StoreClient
got = StoreClient(sys.argv[1]).put(sys.argv[2], "raw/z/held.incoming")
print(json.dumps(got), flush=True)
sys.stdin.readline()
'''


def test_members_write_the_datastore_only_through_the_writer_service(site):
    """A member's ingest is stored by the service, root's and readable by her alone; her attempts
    to write around it, to hand over what she cannot read, to take a checksummed name for other
    bytes, or to touch another's pending file are refused, and nothing stored changes."""
    from test_web import fits_raw

    arch, root = site["arch"], site["root"]
    m0, m1 = member(0), member(1)
    frame = site["top"] / "member-frame.fits"
    fits_raw(frame, mjd=61370.25, seed=77)
    os.chmod(frame, 0o644)
    stored = arch.get(arch.query(category="BIAS")[0].id)
    stored_path = arch.path(stored.id)
    rel = os.path.relpath(stored_path, arch.datastore.root)
    before = {p: (os.stat(root / "datastore" / p).st_mtime_ns, arch.datastore.fs.size(str(root / "datastore" / p)))
              for p in arch.datastore.walk()}
    # Another member holds a pending file; its token is all m0 is given.
    holder = _start_as(site, m1, HOLD_TOKEN, str(site["sock"]), str(frame))
    try:
        held = json.loads(holder.stdout.readline())
        copy = site["top"] / "copy.fits"
        shutil.copyfile(stored_path, copy)
        os.chmod(copy, 0o644)
        # Without the service, the member's ingest fails with the reason and stores nothing.
        no_service = _run_as(site, m0, "import json; from musewise.archive import Archive; a = Archive.open("
                             "project='galaxies');\ntry:\n    a.ingest(__import__('sys').argv[1])\nexcept Exception as e:"
                             "\n    print(json.dumps({'error': f'{type(e).__name__}: {e}', 'n': a.count()}))",
                             str(frame), service_socket=False)
        assert no_service["error"].startswith("DatastoreError") and "writer service" in no_service["error"]
        out = _run_as(site, m0, MEMBER_WRITES, json.dumps({
            "datastore": str(root / "datastore"), "frame": str(frame), "sock": str(site["sock"]),
            "other_token": held["token"], "other_sha": held["sha256"], "stored_copy": str(copy),
            "stored_path": rel}))
    finally:
        holder.communicate("\n", timeout=60)
    assert out["user"] == m0
    assert out["write_datastore"].startswith("refused: PermissionError")
    assert out["ingest"].startswith("ok: ") and out["count_after"] == out["count_before"] + 1
    # The service stored it: root's, not writable, readable by her personal group only.
    rec = arch.get(int(out["ingest"][4:]))
    assert (rec.owner, rec.privilege) == (m0, Privilege.PRIVATE)
    st = os.stat(arch.path(rec.id))
    import grp

    assert (st.st_uid, grp.getgrgid(st.st_gid).gr_name, st.st_mode & 0o777) == (0, m0, 0o440)
    arch.verify(rec.id)
    assert out["put_unreadable"].startswith("refused: DatastoreError") and "Permission denied" in out["put_unreadable"]
    assert out["put_outside"].startswith("refused: DatastoreError") and "inside the store" in out["put_outside"]
    assert out["put_directory"].startswith("refused: DatastoreError") and "regular file" in out["put_directory"]
    assert out["commit_unchecked_name"].startswith("refused: PermissionDeniedError")
    assert "checksum" in out["commit_unchecked_name"]
    for label in ("commit_others_token", "undo_others_token", "forged_uid"):
        assert out[label].startswith("refused: PermissionDeniedError"), (label, out[label])
    assert out["commit_stored_again"] == "ok: True"  # identical bytes: adopted
    assert out["undo_stored"].startswith("refused: PermissionDeniedError") and "never removed" in out["undo_stored"]
    # Nothing stored before changed, nothing was planted; the held file was never committed.
    after = {p: (os.stat(root / "datastore" / p).st_mtime_ns, arch.datastore.fs.size(str(root / "datastore" / p)))
             for p in before}
    assert after == before
    arch.verify(stored.id)
    assert not (root / "datastore" / "planted.fits").exists()
    assert not (root / "outside.fits").exists()
    assert all(os.stat(root / "datastore" / p).st_uid == 0 for p in arch.datastore.walk())
    report = arch.fsck()
    assert report["orphans"] == [] and report["missing"] == []
    # m0's abandoned pending files are temporaries of the service, removed by fsck --repair later.
    assert all(os.stat(root / "datastore" / t).st_uid == 0 for t in report["temporaries"])


SHARE = r'''
import json, sys
from sqlalchemy import text
from musewise.archive import Archive
from musewise.vocabulary import RAW_COLLECTION
args = json.loads(sys.argv[1])
arch = Archive.open(project="galaxies")
out = {}
if args.get("ingest"):
    out["id"] = arch.ingest(args["ingest"], privilege=1).record.id
    out["sees"] = sorted(r.id for r in arch.query(category="BIAS") if r.owner != "admin")
if args.get("file_id"):
    # A hostile member names another's stored file in raw SQL, without holding its bytes.
    try:
        with arch.engine.begin() as conn:
            coll = conn.scalar(text("SELECT id FROM collections WHERE name = :n"), {"n": RAW_COLLECTION})
            conn.execute(text("INSERT INTO datasets (kind, category, file_id, owner_id, project_id, privilege, "
                              "collection_id, is_valid, flag, comment, created) SELECT 'raw', 'BIAS', :f, u.id, NULL, 1, "
                              ":c, true, 'unchecked', '', now() FROM users u WHERE u.name = current_user"),
                         {"f": args["file_id"], "c": coll})
        out["insert"] = "ok"
    except Exception as exc:
        out["insert"] = f"refused: {type(exc).__name__}: {str(exc).splitlines()[0]}"
    out["sees_file"] = arch.engine.connect().execute(text("SELECT count(*) FROM files WHERE id = :f"),
                                                     {"f": args["file_id"]}).scalar()
print(json.dumps(out))
'''


def test_identical_bytes_of_two_members_are_one_file_read_by_both_and_nobody_else(site):
    """Two members archive byte-identical frames privately: one stored file, a dataset each,
    readable by both through its ACL, and by no third member; a third member who names the
    file in raw SQL without holding its bytes is refused, and sees nothing of it."""
    from test_web import fits_raw

    arch = site["arch"]
    a, b, c = member(2), member(3), member(4)
    frame = site["top"] / "twin.fits"
    fits_raw(frame, mjd=61370.30, seed=78)
    os.chmod(frame, 0o644)
    got_a = _run_as(site, a, SHARE, json.dumps({"ingest": str(frame), "night": NIGHT}))
    got_b = _run_as(site, b, SHARE, json.dumps({"ingest": str(frame), "night": NIGHT}))
    ra, rb = arch.get(got_a["id"]), arch.get(got_b["id"])
    assert ra.id != rb.id and (ra.owner, rb.owner) == (a, b)
    assert (ra.privilege, rb.privilege) == (Privilege.PRIVATE, Privilege.PRIVATE)
    assert ra.sha256 == rb.sha256 and ra.storage_path == rb.storage_path  # one stored file
    assert got_a["sees"] == [ra.id] and got_b["sees"] == [rb.id]  # neither sees the other's dataset
    path = arch.path(ra.id)
    reads = {n: _run_as(site, n, READ_WRITE, json.dumps({"f": path}))["f"] for n in (a, b, c)}
    assert reads == {a: "read", b: "read", c: "denied"}
    with arch.session() as s:
        file_id = s.get(Dataset, ra.id).file_id
    hostile = _run_as(site, c, SHARE, json.dumps({"file_id": file_id}))
    assert hostile["insert"].startswith("refused:") and "row-level security" in hostile["insert"], hostile
    assert hostile["sees_file"] == 0
    assert _run_as(site, c, READ_WRITE, json.dumps({"f": path}))["f"] == "denied"
    arch.verify(ra.id)


# ------------------------------------------------------------------------------ ten members at once
REDUCE = r'''
import json, sys, time
from musewise import dpu
from musewise.archive import Archive
args = json.loads(sys.argv[1])
arch = Archive.open(project="galaxies")
out = dpu.run("bias", date=args["night"], ifu=1, p=args["p"], archive=arch, engine="local", progress=False,
              raise_on_failure=False)
mine = arch.query(category="MASTER_BIAS")
print(json.dumps({"user": arch.user_name, "runs": [[o.run_id, o.status, o.products, o.notebook_id, o.error]
                                                   for o in out],
                  "sees": sorted(r.id for r in mine), "path": arch.path(out[0].products[0]) if out[0].ok else None}))
'''


@pytest.mark.pipeline
def test_ten_members_reducing_at_once_lose_and_duplicate_nothing(site):
    """Ten members, each in a process of their own account, reduce the same night's bias at once
    (personal trials, two parameter sets). Every run succeeds with one product and its
    notebook, each product is its owner's alone, every stored file is whole and named by
    one row, and nothing was lost or stored twice."""
    shutil.which("esorex") or pytest.skip("esorex (cpl-plugin-muse) not installed")
    arch = site["arch"]
    names = [member(i) for i in range(MEMBERS)]
    params = {n: ({"combine": "median"} if i % 2 else {"combine": "sigclip"}) for i, n in enumerate(names)}
    # Pending files the module's earlier tests abandoned on purpose (fsck --repair removes them).
    abandoned = set(arch.fsck()["temporaries"])
    procs = {n: _start_as(site, n, REDUCE, json.dumps({"night": NIGHT, "p": params[n]})) for n in names}
    results = {}
    for n, proc in procs.items():
        out, err = proc.communicate(timeout=1800)
        assert proc.returncode == 0, f"{n}: {err[-3000:]}"
        results[n] = json.loads(out.strip().splitlines()[-1])
    # Each member's process acted as its account and made one product with its notebook.
    for n, got in results.items():
        assert got["user"] == n
        (run_id, status, products, notebook_id, error), = got["runs"]
        assert status == "succeeded", f"{n}: {error}"
        assert len(products) == 1 and notebook_id is not None
    run_ids = [got["runs"][0][0] for got in results.values()]
    product_ids = [got["runs"][0][2][0] for got in results.values()]
    assert len(set(run_ids)) == MEMBERS and len(set(product_ids)) == MEMBERS
    # The service's view: exactly these products, one per run, each its owner's, private.
    masters = arch.query(category="MASTER_BIAS")
    assert sorted(r.id for r in masters) == sorted(product_ids)
    runs = {r.id: r for r in arch.runs(recipe="muse_bias")}
    assert sorted(runs) == sorted(run_ids)
    for n, got in results.items():
        run = runs[got["runs"][0][0]]
        rec = arch.get(got["runs"][0][2][0])
        assert run.status == "succeeded" and list(run.output_ids) == [rec.id]
        assert (rec.owner, rec.privilege, rec.run_id) == (n, Privilege.PRIVATE, run.id)
        assert run.parameters.get("combine") == params[n]["combine"]
        assert got["sees"] == [rec.id]  # her own trial only: the others' are private
    # Every product and notebook is whole; identical bytes (two runs of one parameter set can
    # write the same MASTER_BIAS) are one stored file, read by the owners of its datasets.
    notebooks = [runs[r].notebook_id for r in run_ids]
    files = [arch.get(i) for i in product_ids + notebooks]
    paths_of: dict[str, set] = {}
    for f in files:
        paths_of.setdefault(f.sha256, set()).add(f.storage_path)
    assert all(len(p) == 1 for p in paths_of.values()), paths_of
    assert len({f.sha256 for f in files[MEMBERS:]}) == MEMBERS  # each notebook records its own run
    for i in product_ids + notebooks:
        arch.verify(i)
    report = arch.fsck(verify_checksums=True)
    report["temporaries"] = sorted(set(report["temporaries"]) - abandoned)
    assert report == {"orphans": [], "temporaries": [], "missing": [], "corrupt": []}
    store = site["root"] / "datastore"
    assert all(os.stat(store / p).st_uid == 0 and not os.stat(store / p).st_mode & 0o222
               for p in arch.datastore.walk())
    first = names[0]
    sha = {n: arch.get(got["runs"][0][2][0]).sha256 for n, got in results.items()}
    reads = _run_as(site, first, READ_WRITE, json.dumps({n: got["path"] for n, got in results.items()}))
    assert reads == {n: "read" if sha[n] == sha[first] else "denied" for n in names}
    assert reads[first] == "read" and "denied" in reads.values()
    # They ran at once: the runs' recorded intervals overlap.
    spans = sorted((runs[r].started, runs[r].ended) for r in run_ids)
    assert max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans) >= MEMBERS // 2, spans
    # Where each ran: ten kernels of ten accounts, none of them the service's.
    assert {runs[r].user for r in run_ids} == set(names)
