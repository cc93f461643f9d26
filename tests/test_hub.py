"""The shared JupyterHub, for real: hub + configurable-http-proxy + spawned servers + archive service.

One hub per module (started by ``python -m musewise.cli hub`` on free ports of
127.0.0.1, its own SQLite hub database and a populated SQLite archive; as root it
runs each user's server under a unix account it creates, in a unix group of its
own that the fixture removes with the accounts at the end) serves:

* a scripted login through the hub's login form, which registers the new user in the archive;
* a user server spawned through the REST API and a notebook run in that server's
  ``musewise`` kernel over the kernel websocket, which counts archive datasets;
* headless Chromium logging in and browsing the archive's product page.

Every process the hub started is stopped at the end (process groups killed).
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import requests

from conftest import REPO, free_port, need
from test_web import populate

pytestmark = pytest.mark.hub
CHP = REPO / "node_modules" / ".bin" / "configurable-http-proxy"
PASSWORD = "muse-demo-test"


def _kill_tree(proc):
    import psutil

    try:
        family = [proc, *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = [proc]
    groups = set()
    for p in family:
        try:
            groups.add(os.getpgid(p.pid))
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    # A graceful stop first: the hub stops its proxy, service and users' servers itself.
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)  # it stops users' servers and its PostgreSQL: 30 s were too few on a loaded machine
        except subprocess.TimeoutExpired:
            pass
    for g in groups:
        try:
            os.killpg(g, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def remove_hub_accounts(root: Path, group: str) -> None:
    """Delete the unix accounts a test hub created (homes under ``root``) and its group."""
    for account in pwd.getpwall():
        if account.pw_dir.startswith(f"{root}/") and account.pw_uid != 0:
            subprocess.run(["userdel", account.pw_name], capture_output=True)
    try:
        grp.getgrnam(group)
    except KeyError:
        return
    subprocess.run(["groupdel", group], capture_output=True)


def python_users_can_run(root: Path) -> str:
    """The Python the hub users' servers run (:func:`musewise.hubaccounts.python_users_can_run`)."""
    from musewise.hubaccounts import python_users_can_run as users_python

    python = users_python(root) if os.geteuid() == 0 else sys.executable
    need(python is not None, f"{sys.executable} is not reachable by other accounts and there is no system "
         f"python{sys.version_info.major}.{sys.version_info.minor}")
    return python


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A running hub: dict with url, admin token, archive, dataset ids, log path, data root, unix group."""
    need(CHP.exists(), "configurable-http-proxy missing: run `npm ci` at the repository root")
    from musewise.archive import Archive

    # Users' servers run under their own accounts: their homes and the archive must be reachable
    # from a folder they may pass through (pytest's own temporary folders are root's alone).
    root = Path(tempfile.mkdtemp(prefix="musewise-hub-"))
    root.chmod(0o711)
    group = f"mwt{uuid.uuid4().hex[:8]}"
    # The hub's group is the consortium's group of the stored files (one name at a site: both
    # default to 'musewise'), so that members' kernels read the consortium's products.
    arch = Archive.open(root=str(root), user="admin", unix_group_prefix=group)
    arch.add_project("galaxies", "a science project")
    arch.add_user("alice", projects={"galaxies": "reviewer"})
    arch.add_user("bob", projects=["galaxies"])
    arch.add_user("carol")
    work = tmp_path_factory.mktemp("work")
    ids = populate(arch, work)
    examples = root / "examples-source"
    examples.mkdir(mode=0o755)
    (examples / "README.md").write_text("example notebooks\n")

    sqlite_url = arch.config.db_url
    arch.close()  # the hub copies the SQLite registry into its PostgreSQL: nothing may write it meanwhile
    sqlite_before = _settled_digest(Path(arch.config.archive_path()))
    port, token = free_port(), uuid.uuid4().hex
    env = {**os.environ, "MUSEWISE_ROOT": str(root), "MUSEWISE_DB_URL": sqlite_url,
           "MUSEWISE_DATASTORE": arch.config.datastore_url, "MUSEWISE_HUB_ADMIN_TOKEN": token}
    env.pop("MUSEWISE_CONFIG", None)
    cmd = [sys.executable, "-m", "musewise.cli", "hub", "--ip", "127.0.0.1", "--port", str(port),
           "--hub-port", str(free_port()), "--proxy-api-port", str(free_port()),
           "--service-port", str(free_port()), "--password", PASSWORD,
           "--", f"--MusewiseHub.copy_into_home=examples={examples}", f"--MusewiseHub.unix_group={group}",
           f"--MusewiseHub.server_python={python_users_can_run(root)}",
           f"--MusewiseHub.copy_into_home=templates={REPO / 'templates'}", "--MusewiseHub.vo_refresh=2",
           f"--MusewiseHub.vo_port={free_port()}"]
    log = root / "hub.log"
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"hub exited:\n{log.read_text()[-4000:]}"
            try:
                r = requests.get(f"{url}/hub/api/", timeout=2)
                s = requests.get(f"{url}/services/archive/", timeout=2, allow_redirects=False)
                if r.status_code == 200 and s.status_code in (200, 302):
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, f"hub did not start:\n{log.read_text()[-4000:]}"
            time.sleep(0.5)
        print(f"hub up in {time.monotonic() - started:.1f} s")
        # What the administrator's `musewise --root <root>` on the server opens: the hub's PostgreSQL
        # (from the site config the hub wrote), as the service; tests write through it as an admin does.
        arch = Archive.open(root=str(root), user="admin", unix_group_prefix=group)
        yield {"url": url, "token": token, "archive": arch, "ids": ids, "log": log, "root": root,
               "group": group, "admin": {"Authorization": f"token {token}"}, "sqlite_url": sqlite_url,
               "sqlite_before": sqlite_before}
    finally:
        _kill_tree(proc)
        arch.close()
        from musewise import hubdb

        left_running = (hubdb.server_dir(root) / "data" / "postmaster.pid").exists()
        hubdb.stop(root)  # the hub stops it; a hub killed before it could does not
        if os.geteuid() == 0:
            remove_hub_accounts(root, group)
        for folder in (root, work):  # archive, hub state, users' homes: hundreds of MB
            shutil.rmtree(folder, ignore_errors=True)
    assert not left_running, "the hub did not stop its PostgreSQL server when it stopped"


def _digest(path: Path) -> str:
    """sha256 of a SQLite database file with its journal files (what is on disk)."""
    import hashlib

    h = hashlib.sha256()
    for f in (path, Path(f"{path}-wal"), Path(f"{path}-journal")):
        if f.exists():  # a -wal that was not there is a change too
            h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def _settled_digest(path: Path) -> str:
    """:func:`_digest` once the WAL is checkpointed into the file (what it holds, not where)."""
    import gc
    import sqlite3

    gc.collect()  # a connection still referenced somewhere would checkpoint later, when collected
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()
    return _digest(path)


def login(hub, name, password=PASSWORD) -> requests.Session:
    """Log in through the hub's login form (with its XSRF token), as a browser does."""
    s = requests.Session()
    page = s.get(f"{hub['url']}/hub/login", timeout=30)
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
    data = {"username": name, "password": password}
    if xsrf:
        data["_xsrf"] = xsrf.group(1)
    r = s.post(f"{hub['url']}/hub/login", data=data, allow_redirects=False, timeout=60)
    assert r.status_code == 302, r.text[-2000:]
    return s


def test_banner_tells_where_and_how_to_log_in(hub):
    deadline = time.monotonic() + 30
    while "log in as" not in hub["log"].read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    text = hub["log"].read_text()
    assert f"{hub['url']}/hub/login" in text and PASSWORD in text


def test_login_registers_the_user_in_the_archive(hub):
    arch = hub["archive"]
    assert "dave" not in [u["name"] for u in arch.users()]
    login(hub, "dave")
    dave = next(u for u in arch.users() if u["name"] == "dave")
    assert dave["is_member"] and not dave["is_admin"]
    r = requests.post(f"{hub['url']}/hub/login", data={"username": "mallory", "password": "wrong"}, timeout=30,
                      allow_redirects=False)
    assert r.status_code != 302
    assert "mallory" not in [u["name"] for u in arch.users()]


def _wait_ready(hub, name, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        model = requests.get(f"{hub['url']}/hub/api/users/{name}", headers=hub["admin"], timeout=30).json()
        server = model.get("servers", {}).get("")
        if server and server.get("ready"):
            return server
        time.sleep(0.5)
    raise AssertionError(f"server of {name} not ready:\n{hub['log'].read_text()[-4000:]}")


async def _run_in_kernel(ws_url, token, code, timeout=120) -> str:
    """Execute code in a kernel over the Jupyter websocket protocol; return its stdout."""
    import asyncio

    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    conn = await websocket_connect(HTTPRequest(ws_url, headers={"Authorization": f"token {token}"}))
    msg_id = uuid.uuid4().hex
    conn.write_message(json.dumps({
        "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex, "msg_type": "execute_request",
                   "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True},
    }))
    out, error = [], None
    deadline = asyncio.get_event_loop().time() + timeout
    while True:
        raw = await asyncio.wait_for(conn.read_message(), deadline - asyncio.get_event_loop().time())
        assert raw is not None, "kernel websocket closed"
        msg = json.loads(raw)
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = msg["msg_type"]
        if kind == "stream":
            out.append(msg["content"]["text"])
        elif kind == "error":
            error = "\n".join(msg["content"]["traceback"])
        elif kind == "status" and msg["content"]["execution_state"] == "idle":
            break
    conn.close()
    assert error is None, error
    return "".join(out)


def test_notebook_in_the_spawned_server_queries_the_archive(hub):
    import asyncio

    import nbformat

    url, name = hub["url"], "erin"
    login(hub, name)
    r = requests.post(f"{url}/hub/api/users/{name}/server", headers=hub["admin"], timeout=60)
    assert r.status_code in (201, 202), r.text
    t0 = time.monotonic()
    _wait_ready(hub, name)
    print(f"server spawned in {time.monotonic() - t0:.1f} s")
    token = requests.post(f"{url}/hub/api/users/{name}/tokens", headers=hub["admin"], timeout=30,
                          json={"note": "test", "expires_in": 600}).json()["token"]
    auth = {"Authorization": f"token {token}"}
    api = f"{url}/user/{name}/api"

    specs = requests.get(f"{api}/kernelspecs", headers=auth, timeout=30).json()
    assert specs["default"] == "musewise" and "musewise" in specs["kernelspecs"]
    home = {c["name"] for c in requests.get(f"{api}/contents", headers=auth, timeout=30).json()["content"]}
    assert {"examples", "scratch"} <= home
    assert requests.get(f"{api}/contents/examples/README.md", headers=auth, timeout=30).status_code == 200

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import os\nfrom musewise import Archive\narch = Archive.open()\n"
        "print(arch.user_name, arch.count(category='BIAS'), arch.count(category='MASTER_BIAS'))"),
        nbformat.v4.new_code_cell("open('scratch/written.txt', 'w').write('ok')\nprint(os.environ['HOME'])")]
    nb.metadata["kernelspec"] = {"name": "musewise", "display_name": "musewise", "language": "python"}
    r = requests.put(f"{api}/contents/count.ipynb", headers=auth, timeout=30,
                     json={"type": "notebook", "format": "json", "content": json.loads(nbformat.writes(nb))})
    assert r.status_code in (200, 201), r.text
    session = requests.post(f"{api}/sessions", headers=auth, timeout=120, json={
        "path": "count.ipynb", "type": "notebook", "name": "count.ipynb", "kernel": {"name": "musewise"}}).json()
    assert session["kernel"]["name"] == "musewise"
    stored = requests.get(f"{api}/contents/count.ipynb", headers=auth, timeout=30).json()["content"]
    ws = f"ws://127.0.0.1:{url.rsplit(':', 1)[1]}/user/{name}/api/kernels/{session['kernel']['id']}/channels"
    outputs = [asyncio.run(_run_in_kernel(ws, token, "".join(cell["source"])))
               for cell in stored["cells"] if cell["cell_type"] == "code"]
    # erin is a new consortium member: 3 raw biases, alice's master bias, not bob's private one.
    assert outputs[0].split() == ["erin", "3", "1"]
    assert (hub["root"] / "scratch" / name / "written.txt").read_text() == "ok"
    assert outputs[1].strip() == str(hub["root"] / "home" / name)
    r = requests.delete(f"{url}/hub/api/users/{name}/server", headers=hub["admin"], timeout=60)
    assert r.status_code in (202, 204)


def test_api_token_from_the_hub_reads_the_json_api(hub):
    url, ids = hub["url"], hub["ids"]
    login(hub, "alice")
    token = requests.post(f"{url}/hub/api/users/alice/tokens", headers=hub["admin"], timeout=30,
                          json={"note": "script at another site"}).json()["token"]
    auth = {"Authorization": f"token {token}"}
    body = requests.get(f"{url}/services/archive/api/datasets", params={"category": "BIAS"}, headers=auth,
                        timeout=30).json()
    assert body["total"] == 3
    f = requests.get(f"{url}/services/archive/api/datasets/{ids['master']}/file", headers=auth, timeout=30)
    assert f.status_code == 200 and f.content == Path(hub["archive"].path(ids["master"])).read_bytes()
    assert requests.get(f"{url}/services/archive/api/datasets/{ids['private']}", headers=auth,
                        timeout=30).status_code == 404
    assert requests.get(f"{url}/services/archive/api/datasets", timeout=30).status_code == 403


@pytest.mark.browser
def test_browser_login_and_product_page(hub, page, output_dir):
    url, ids = hub["url"], hub["ids"]
    page.set_default_timeout(90_000)  # a busy 2-core machine renders the product page slowly
    page.goto(f"{url}/hub/login")
    page.fill("input[name=username]", "carol")
    page.fill("input[name=password]", PASSWORD)
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url(re.compile(r".*/(hub/spawn|hub/home|user/carol).*"), timeout=60000)
    page.goto(f"{url}/services/archive/datasets/{ids['master']}")
    page.wait_for_selector("#provenance", timeout=60000)
    tree = page.inner_text("#provenance")
    assert "muse_bias" in tree and "same night, IFU 1" in tree and "combine=sigclip" in tree
    frame = page.frame_locator("iframe.notebook")
    frame.locator("text=mean bias level 1000.2 ADU").wait_for(timeout=60000)
    page.wait_for_function("document.querySelector('img.quicklook').naturalWidth > 0", timeout=60000)
    assert "carol" in page.inner_text("header")
    page.screenshot(path=str(output_dir / "product_page.png"), full_page=True)
    # The private product of bob is not there for carol.
    r = page.goto(f"{url}/services/archive/datasets/{ids['private']}")
    assert r.status == 404
    page.goto(f"{url}/services/archive/datasets/raw")
    assert "3 datasets" in page.inner_text("#count")
    page.screenshot(path=str(output_dir / "raw_frames.png"), full_page=True)


def test_the_hub_serves_the_sqlite_archive_from_its_own_postgresql(hub):
    """The default SQLite archive became the hub's PostgreSQL; the SQLite file is as it was, closed to users."""
    from sqlalchemy import text

    from musewise import hubdb

    root, arch = hub["root"], hub["archive"]
    db_file = Path(hub["sqlite_url"][len("sqlite:///"):])
    assert arch.engine.dialect.name == "postgresql" and hubdb.is_managed(arch.config.db_url, root)
    assert _digest(db_file) == hub["sqlite_before"]
    assert db_file.stat().st_uid == 0 and db_file.stat().st_mode & 0o077 == 0
    assert arch.get(hub["ids"]["private"]).owner == "bob"
    with arch.engine.connect() as conn:  # unix socket only: the server has no TCP port to reach
        assert conn.scalar(text("SHOW listen_addresses")) == ""
    # The administrator's command line on the server uses the same archive (the site config says where).
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSEWISE_")}
    r = subprocess.run([sys.executable, "-m", "musewise.cli", "--root", str(root), "user", "list"], env=env,
                       capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 0 and "carol" in r.stdout, r.stderr[-2000:]
