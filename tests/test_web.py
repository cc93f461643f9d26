"""The archive web view and its read-only SQL: pages, JSON API, privileges, hostile SQL.

The web view runs as a real tornado server on 127.0.0.1 with the real
``HubOAuth`` code; only the hub's ``/hub/api/user`` endpoint (which identifies
a token's owner) is a small stand-in here. ``tests/test_hub.py`` runs it under
a real JupyterHub.

Helpers ``populate`` (an archive with raw frames, a run with products and an
executed notebook, and a private product of bob's) and ``fits_*`` are shared
with ``test_hub.py``.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import free_port

from musewise.exceptions import QueryError
from musewise.vocabulary import Privilege

# --------------------------------------------------------------------------- small fake MUSE data


def _header(cards: dict):
    from astropy.io import fits

    return fits.Header([(("HIERARCH " + k) if k.startswith("ESO ") else k, v) for k, v in cards.items()])


def fits_raw(path, dpr_type="BIAS", mjd=61365.1, ifus=(1,), seed=0, shape=(80, 64)):
    """A small raw MUSE frame: primary header plus one CHANnn image per IFU."""
    from astropy.io import fits

    rng = np.random.default_rng(seed)
    h = _header({"INSTRUME": "MUSE", "ESO DPR TYPE": dpr_type, "ESO DPR CATG": "CALIB", "MJD-OBS": mjd,
                 "EXPTIME": 0.0, "ESO INS MODE": "WFM-NOAO-N", "OBJECT": dpr_type})
    hdus = [fits.PrimaryHDU(header=h)]
    for i in ifus:
        data = (1000 + rng.normal(0, 3, shape)).astype(np.float32)
        data[:, shape[1] // 2:] += 50  # a visible feature for the quick look
        hdus.append(fits.ImageHDU(data, name=f"CHAN{i:02d}"))
    fits.HDUList(hdus).writeto(path)
    return Path(path)


def fits_product(path, category="MASTER_BIAS", ifu=1, level=1000.0, cube=False):
    """A small pipeline product: a 2-D image (or a cube) in extension DATA."""
    from astropy.io import fits

    h = _header({"INSTRUME": "MUSE", "ESO PRO CATG": category, "ESO DRS MUSE IFU": ifu,
                 "ESO PRO REC1 PIPE ID": "muse/2.8.7", "ESO INS MODE": "WFM-NOAO-N"})
    y, x = np.mgrid[:48, :40]
    img = (level + np.hypot(x - 20, y - 24)).astype(np.float32)
    data = np.repeat(img[None], 30, axis=0) if cube else img
    fits.HDUList([fits.PrimaryHDU(header=h), fits.ImageHDU(data, name="DATA")]).writeto(path)
    return Path(path)


def executed_notebook(path, text):
    """A tiny executed notebook whose one cell printed ``text``."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(summary)", execution_count=1)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text + "\n")]
    nb.cells = [nbformat.v4.new_markdown_cell("# muse_bias reduction"), cell]
    nb.metadata["kernelspec"] = {"name": "musewise", "display_name": "musewise", "language": "python"}
    nbformat.write(nb, str(path))
    return Path(path)


def populate(arch, workdir) -> dict:
    """Fill an archive (opened by an administrator) with a small reduced night.

    Returns
    -------
    dict
        ``raw``: IDs of 3 consortium BIAS frames; ``master``: alice's MASTER_BIAS (consortium),
        made from them by run ``run`` with notebook ``notebook``; ``cube``: a public
        DATACUBE_FINAL; ``private``: bob's private MASTER_BIAS made by run ``private_run``.
    """
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    raw = [arch.ingest(fits_raw(work / f"bias{i}.fits", mjd=61365.1 + i / 100, seed=i)).record.id
           for i in range(3)]
    alice = arch.as_user("alice")
    run = alice.begin_run("muse_bias", {"nlow": 1, "combine": "sigclip"}, night="2026-11-20", ifu=1,
                          inputs=[(i, "BIAS", "same night, IFU 1") for i in raw], pipeline_version="muse-2.8.7",
                          privilege=Privilege.CONSORTIUM)
    out = alice.finish_run(run, [(fits_product(work / "MASTER_BIAS-01.fits"), "MASTER_BIAS", 1)],
                           notebook=executed_notebook(work / "bias.ipynb", "mean bias level 1000.2 ADU"))
    master = out[0].id
    cube = alice.begin_run("muse_scipost", {}, night="2026-11-20", inputs=[(master, "MASTER_BIAS", "best")],
                           privilege=Privilege.PUBLIC)
    cube_id = alice.finish_run(cube, [(fits_product(work / "DATACUBE.fits", "DATACUBE_FINAL", cube=True),
                                       "DATACUBE_FINAL", 1)])[0].id
    bob = arch.as_user("bob")
    (work / "secret").mkdir(exist_ok=True)
    prun = bob.begin_run("muse_bias", {"nlow": 2}, night="2026-11-20", ifu=1,
                         inputs=[(raw[0], "BIAS", "test")], privilege=Privilege.PRIVATE)
    private = bob.finish_run(prun, [(fits_product(work / "secret" / "MASTER_BIAS-01.fits", level=2000.0),
                                     "MASTER_BIAS", 1)],
                             notebook=executed_notebook(work / "secret.ipynb", "bob's secret notebook"))[0].id
    return {"raw": raw, "master": master, "run": run, "notebook": arch.get_run(run).notebook_id,
            "cube": cube_id, "private": private, "private_run": prun}


# --------------------------------------------------------------------------- servers


class FakeHubAPI:
    """The hub's ``/hub/api/user`` endpoint: token ``tok-<name>`` belongs to hub user <name>."""

    def __init__(self, users, scope="access:services!service=archive"):
        self.users, self.scope = users, scope

    def app(self):
        from tornado import web

        outer = self

        class UserHandler(web.RequestHandler):
            def get(self):
                token = self.request.headers.get("Authorization", "").split()[-1]
                name = token[4:] if token.startswith("tok-") else None
                if name not in outer.users:
                    raise web.HTTPError(403)
                self.finish({"kind": "user", "name": name, "admin": False, "groups": [],
                             "scopes": [outer.scope, f"read:users!user={name}"]})

        return web.Application([(r"/hub/api/user", UserHandler)])


class ServerThread:
    """Tornado applications served on 127.0.0.1 from an event loop in a thread."""

    def __init__(self):
        self.loop = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.servers = []

    def _run(self):
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.ready.set()
        self.loop.run_forever()

    def start(self):
        self.thread.start()
        self.ready.wait()
        return self

    def serve(self, make_app, port):
        from tornado.httpserver import HTTPServer

        async def start():
            server = HTTPServer(make_app())
            server.listen(port, "127.0.0.1")
            self.servers.append(server)

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(30)

    def stop(self):
        async def stop():
            for s in self.servers:
                s.stop()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def populated(archive, tmp_path):
    return archive, populate(archive, tmp_path / "work")


@pytest.fixture
def web(populated, tmp_path):
    """The web view on a free port; yields (get(path, user, **kw) -> requests.Response, ids)."""
    import requests
    from jupyterhub.services.auth import HubOAuth

    from musewise.web.app import make_app

    arch, ids = populated
    hub_port, web_port = free_port(), free_port()
    servers = ServerThread().start()
    servers.serve(FakeHubAPI({u["name"] for u in arch.users()} | {"stranger"}).app, hub_port)
    auth = HubOAuth(api_url=f"http://127.0.0.1:{hub_port}/hub/api", api_token="service-secret",
                    oauth_client_id="service-archive", base_url="/services/archive/", hub_prefix="/hub/",
                    hub_host="", access_scopes={"access:services!service=archive"}, cache_max_age=0,
                    oauth_redirect_uri=f"http://127.0.0.1:{web_port}/services/archive/oauth_callback")
    servers.serve(lambda: make_app(arch, hub_auth=auth, cache_dir=tmp_path / "cache", sql_limit=50), web_port)
    base = f"http://127.0.0.1:{web_port}/services/archive/"

    def get(path, user=None, method="GET", **kw):
        headers = kw.pop("headers", {})
        if user:
            headers["Authorization"] = f"token tok-{user}"
        return requests.request(method, base + path, headers=headers, allow_redirects=False, timeout=60, **kw)

    yield get, ids
    servers.stop()


# --------------------------------------------------------------------------- pages


def test_login_is_required(web):
    get, ids = web
    r = get(f"datasets/{ids['master']}")
    assert r.status_code == 302 and "/hub/api/oauth2/authorize" in r.headers["Location"]
    assert get("api/datasets").status_code == 403
    assert get("api/datasets", user="nobody").status_code == 403


def test_tables_by_category_sort_filter_page(web):
    get, ids = web
    home = get("", user="eve")
    assert home.status_code == 200 and "what <b>eve</b> may see" in home.text
    r = get("datasets/raw", user="carol")
    assert r.status_code == 200 and "3 datasets" in r.text
    assert all(f'href="/services/archive/datasets/{i}"' in r.text for i in ids["raw"])
    r = get("datasets/calibrations", user="alice")
    assert f"/datasets/{ids['master']}\"" in r.text
    assert f"/datasets/{ids['cube']}\"" not in r.text  # science products have their own table
    r = get("datasets/raw?sort=id&desc=1&per_page=2", user="carol")
    first, second = (r.text.index(f'datasets/{i}"') for i in (ids["raw"][2], ids["raw"][1]))
    assert first < second and f'datasets/{ids["raw"][0]}"' not in r.text
    assert "page 1 of 2" in r.text and 'rel="next"' in r.text
    r2 = get("datasets/raw?sort=id&desc=1&per_page=2&page=2", user="carol")
    assert f'datasets/{ids["raw"][0]}"' in r2.text and 'rel="next"' not in r2.text
    assert "0 datasets" in get("datasets/raw?night=2030-01-01", user="carol").text
    assert get("datasets/all?sort=password", user="carol").status_code == 400


def test_product_page_shows_headers_ifus_provenance_and_notebook(web):
    get, ids = web
    r = get(f"datasets/{ids['master']}", user="carol")
    assert r.status_code == 200
    page = r.text
    assert "MASTER_BIAS" in page and "ESO PRO CATG" in page and "muse/2.8.7" in page
    assert 'id="ifus"' in page and "unchecked" in page
    tree = page[page.index('id="provenance"'):page.index('id="notebook"')]
    assert "muse_bias" in tree and "combine=sigclip" in tree and "same night, IFU 1" in tree
    assert all(f"datasets/{i}\"" in tree for i in ids["raw"])
    assert f"datasets/{ids['notebook']}/notebook.html" in page
    nb = get(f"datasets/{ids['notebook']}/notebook.html", user="carol")
    assert nb.status_code == 200 and "mean bias level 1000.2 ADU" in nb.text
    assert "sandbox" in nb.headers["Content-Security-Policy"]
    run = get(f"runs/{ids['run']}", user="carol")
    assert run.status_code == 200 and "muse_bias" in run.text and "same night, IFU 1" in run.text


@pytest.mark.parametrize("key", ["raw", "master", "cube"])
def test_quicklook_png(web, key):
    get, ids = web
    did = ids[key][0] if key == "raw" else ids[key]
    r = get(f"datasets/{did}/quicklook.png", user="carol")
    assert r.status_code == 200 and r.content.startswith(b"\x89PNG")
    assert get(f"datasets/{did}/quicklook.png", user="carol").content == r.content  # cached


def test_versions_page(web):
    get, _ = web
    r = get("versions", user="carol")
    assert r.status_code == 200
    for name in ("musewise", "esorex", "cpl-plugin-muse", "Python", "astropy", "jupyterhub", "database"):
        assert f"<td>{name}</td>" in r.text


def test_download_streams_the_archived_bytes(web, populated):
    get, ids = web
    arch, _ = populated
    r = get(f"datasets/{ids['master']}/file", user="carol")
    assert r.status_code == 200
    assert r.content == Path(arch.path(ids["master"])).read_bytes()
    assert "MASTER_BIAS-01.fits" in r.headers["Content-Disposition"]


# --------------------------------------------------------------------------- privileges everywhere


def test_private_product_is_invisible_to_others(web, populated):
    get, ids = web
    secret = ids["private"]
    for who in ("alice", "carol", "eve"):
        assert f'datasets/{secret}"' not in get("datasets/all?per_page=500", user=who).text
        assert get(f"datasets/{secret}", user=who).status_code == 404
        assert get(f"datasets/{secret}/file", user=who).status_code == 404
        assert get(f"datasets/{secret}/quicklook.png", user=who).status_code == 404
        assert get(f"api/datasets/{secret}", user=who).status_code == 404
        assert get(f"api/datasets/{secret}/file", user=who).status_code == 404
        assert get(f"api/provenance/{secret}", user=who).status_code == 404
        assert get(f"api/runs/{ids['private_run']}", user=who).status_code == 404
        listed = get("api/datasets?per_page=500", user=who).json()
        assert secret not in [d["id"] for d in listed["datasets"]]
        rows = get("api/sql", user=who, params={"q": f"SELECT id FROM datasets WHERE id = {secret}"}).json()
        assert rows["rows"] == []
        page = get("sql", user=who, params={"q": "SELECT id, category FROM datasets ORDER BY id"}).text
        assert f"<td>{secret}</td>" not in page
    # ... while its owner and the administrator see it everywhere.
    for who in ("bob", "admin"):
        assert get(f"datasets/{secret}", user=who).status_code == 200
        assert get(f"api/datasets/{secret}/file", user=who).status_code == 200
        rows = get("api/sql", user=who, params={"q": f"SELECT id FROM datasets WHERE id = {secret}"}).json()
        assert rows["rows"] == [[secret]]


def test_outside_user_sees_only_public_data(web):
    get, ids = web
    listed = get("api/datasets?per_page=500", user="eve").json()
    assert [d["id"] for d in listed["datasets"]] == [ids["cube"]]
    tree = get(f"datasets/{ids['cube']}", user="eve").text
    assert "not visible to you" in tree  # the cube's consortium inputs are not shown
    assert get("api/datasets", user="stranger").status_code == 403  # a hub user unknown to the archive


# --------------------------------------------------------------------------- JSON API


def test_json_api(web, populated):
    get, ids = web
    arch, _ = populated
    r = get("api/datasets", user="carol", params={"category": "BIAS", "sort": "id", "desc": "1"})
    body = r.json()
    assert r.headers["Content-Type"] == "application/json"
    assert body["total"] == 3 and [d["id"] for d in body["datasets"]] == sorted(ids["raw"], reverse=True)
    assert get("api/datasets", user="carol", params={"kind": "science"}).json()["total"] == 1
    one = get(f"api/datasets/{ids['master']}", user="carol").json()
    assert one["category"] == "MASTER_BIAS" and one["header"]["ESO PRO CATG"] == "MASTER_BIAS"
    assert one["ifus"][0]["ifu"] == 1 and one["privilege"] == "consortium"
    f = get(one["file_url"].split("/services/archive/")[1], user="carol")
    assert f.content == Path(arch.path(ids["master"])).read_bytes()
    assert f.headers["X-Checksum-SHA256"] == one["sha256"]
    run = get(f"api/runs/{ids['run']}", user="carol").json()
    assert run["recipe"] == "muse_bias" and run["output_ids"] == [ids["master"]]
    prov = get(f"api/provenance/{ids['master']}", user="carol").json()
    assert prov["root"] == ids["master"] and [r["id"] for r in prov["runs"]] == [ids["run"]]
    assert sorted(u["dataset_id"] for u in prov["used"]) == sorted(ids["raw"])
    sql = get("api/sql", user="carol", method="POST", data=json.dumps({"q": "SELECT count(*) AS n FROM datasets"}))
    assert sql.json()["columns"] == ["n"] and sql.json()["rows"] == [[arch.as_user("carol").count()]]
    bad = get("api/sql", user="carol", params={"q": "DELETE FROM datasets"})
    assert bad.status_code == 400 and "message" in bad.json()
    assert get("api/datasets", user="carol", params={"kind": "bogus"}).status_code == 400


# --------------------------------------------------------------------------- the SQL sandbox


HOSTILE = [
    "DROP TABLE datasets",
    "DELETE FROM datasets",
    "UPDATE datasets SET privilege = 4",
    "INSERT INTO users (name) VALUES ('mallory')",
    "SELECT 1; DELETE FROM datasets",
    "SELECT 1; DROP TABLE users;",
    "ATTACH DATABASE '/tmp/evil.sqlite' AS evil",
    "PRAGMA writable_schema = 1",
    "PRAGMA query_only = 0",
    "SELECT load_extension('/tmp/evil.so')",
    "SELECT * FROM arch.datasets",
    "SELECT name FROM pragma_table_info('datasets')",
    "SELECT * FROM json_each('[1]')",
    "SELECT * FROM main.sqlite_master",
    "SELECT * FROM sqlite_temp_master",
    "WITH datasets AS (SELECT sql FROM sqlite_temp_master) SELECT * FROM datasets",
    "SELECT * FROM temp._visible_datasets",
    "SELECT email FROM users",
    "SELECT * FROM alembic_version",
    "CREATE TEMP VIEW x AS SELECT * FROM datasets",
    "WITH d AS (DELETE FROM datasets RETURNING id) SELECT * FROM d",
    "VACUUM INTO '/tmp/copy.sqlite'",
    "SELECT writefile('/tmp/x', 'y')",
    "",
]


@pytest.mark.parametrize("sql", HOSTILE)
def test_sql_refuses_hostile_input(populated, sql):
    arch, ids = populated
    alice = arch.as_user("alice")
    before = arch.count()
    with pytest.raises(QueryError):
        run(alice, sql)
    assert arch.count() == before
    assert [u["name"] for u in arch.users()] == ["admin", "alice", "bob", "carol", "eve"]
    assert arch.as_user("bob").get(ids["private"]).privilege == Privilege.PRIVATE


def run(arch, sql, limit=1000):
    from musewise.web.sqlpage import run_readonly_sql

    return run_readonly_sql(arch, sql, limit=limit)


def test_sql_sees_exactly_what_the_user_sees(populated):
    arch, ids = populated
    for who in ("admin", "alice", "bob", "carol", "eve"):
        a = arch.as_user(who)
        _, rows = run(a, "SELECT id FROM datasets ORDER BY id")
        assert [r[0] for r in rows] == sorted(r.id for r in a.query(limit=None))
        _, rows = run(a, "SELECT DISTINCT dataset_id FROM dataset_ifus ORDER BY 1")
        assert {r[0] for r in rows} <= {r.id for r in a.query()}
        _, runs = run(a, "SELECT id FROM runs")
        assert sorted(r[0] for r in runs) == sorted(r.id for r in a.runs())
    # Joins, header keywords, aggregates and CTEs work.
    cols, rows = run(arch.as_user("carol"), """
        WITH m AS (SELECT id, json_extract(header, '$."ESO PRO CATG"') AS catg FROM datasets)
        SELECT m.catg, f.size > 0 AS has_bytes, count(*) FROM m
        JOIN datasets d ON d.id = m.id JOIN files f ON f.id = d.file_id
        WHERE m.catg IS NOT NULL GROUP BY 1, 2 ORDER BY 1""")
    assert cols == ["catg", "has_bytes", "count(*)"]
    assert rows == [("DATACUBE_FINAL", 1, 1), ("MASTER_BIAS", 1, 1)]
    # The private file's checksum cannot be found through the files table either.
    _, rows = run(arch.as_user("carol"), "SELECT sha256 FROM files")
    assert arch.as_user("bob").get(ids["private"]).sha256 not in {r[0] for r in rows}


def test_sql_limits_rows_and_time(populated):
    arch, _ = populated
    _, rows = run(arch, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) "
                        "SELECT i FROM n", limit=10)
    assert len(rows) == 10
    from musewise.web.sqlpage import run_readonly_sql

    with pytest.raises(QueryError, match="stopped"):
        run_readonly_sql(arch, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
                               "SELECT count(*) FROM n", timeout=0.5)


def test_sql_page_shows_results_and_errors(web):
    get, ids = web
    r = get("sql", user="carol", params={"q": "SELECT id, category FROM datasets WHERE category = 'BIAS'"})
    assert r.status_code == 200 and 'id="sql-result"' in r.text and "3 rows" in r.text
    r = get("sql", user="carol", params={"q": "DROP TABLE datasets"})
    assert r.status_code == 400 and 'id="sql-error"' in r.text


def test_an_unexpected_error_is_a_logged_500_that_shows_nothing_of_its_cause(web, monkeypatch, caplog):
    """Only the user's own mistakes are 4xx; a ValueError from deep inside is the service's failure."""
    import logging

    from musewise.web import api, base, pages

    get, _ = web

    def broken(*args):
        raise ValueError("cannot parse /srv/secret/archive.sqlite")

    monkeypatch.setattr(pages, "component_versions", broken)
    monkeypatch.setattr(api, "run_readonly_sql", broken)
    with caplog.at_level(logging.ERROR):
        page = get("versions", user="carol")
        js = get("api/sql", user="carol", params={"q": "SELECT 1"})
    assert page.status_code == 500 and js.status_code == 500
    assert base.INTERNAL_ERROR in page.text and js.json()["message"] == base.INTERNAL_ERROR
    for text in (page.text, js.text):
        assert "/srv/secret" not in text and "Traceback" not in text and "ValueError" not in text
    logged = [r for r in caplog.records if r.exc_info and "/srv/secret" in str(r.exc_info[1])]
    assert len(logged) == 2  # each failure is in the service's log, with its traceback
    # a refusal is still a 400 with its reason, and not logged as a failure
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        bad = get("api/sql", method="POST", user="carol", data=json.dumps({"q": "SELECT 1", "limit": "many"}))
    assert bad.status_code == 400 and "limit must be a whole number" in bad.json()["message"]
    assert not [r for r in caplog.records if r.exc_info]
