"""Provenance as a graph: each dataset and run once, in bounded time, as W3C PROV and Graphviz.

The history is a full reduction of 2 nights x 24 IFUs written as registry rows
(:func:`musewise.archive.testdata.add_cascade`: biases -> master bias per IFU ->
flats -> master flat -> arcs -> wavelength solution -> twilight -> standard ->
pixel tables per exposure and IFU -> a cube per exposure -> the combined cube),
on SQLite and PostgreSQL. The web view runs as a real tornado server (the
helpers of ``test_web.py``).
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy import event, func, select, text, update

from conftest import free_port
from test_web import FakeHubAPI, ServerThread

from musewise.archive.schema import Dataset, Run, RunInput, User
from musewise.archive.testdata import add_cascade
from musewise.cli import main
from musewise.exceptions import NotFoundError
from musewise.vocabulary import Privilege

N1, N2 = "2026-11-20", "2026-11-21"


@pytest.fixture
def cascade(archive):
    t = time.perf_counter()
    c = add_cascade(archive, nights=(N1, N2))
    print(f"cascade of {c.n_datasets} datasets and {len(c.runs)} runs written in {time.perf_counter() - t:.2f} s")
    return archive, c


def _count(arch, q):
    with arch.session() as s:
        return s.scalar(q)


# ------------------------------------------------------------------ the graph


def test_each_dataset_and_run_once_in_few_queries(cascade, record_property):
    arch, c = cascade
    statements = []
    listener = lambda *a: statements.append(a[2])  # noqa: E731 - (conn, cursor, statement, ...)
    event.listen(arch.engine, "before_cursor_execute", listener)
    try:
        t = time.perf_counter()
        graph = arch.provenance(c.combined)
        took = time.perf_counter() - t
    finally:
        event.remove(arch.engine, "before_cursor_execute", listener)
    print(f"provenance of the 2 x 24-IFU combined cube: {len(graph.datasets)} datasets, {len(graph.runs)} runs, "
          f"{len(graph.used)} used, built in {took * 1000:.0f} ms with {len(statements)} SQL statements")
    record_property("provenance_seconds", took)
    # Each row once: as many nodes as distinct rows in the registry (notebooks are not inputs).
    assert len(graph.datasets) == c.n_datasets == _count(arch, select(func.count()).where(Dataset.kind != "notebook"))
    assert len(graph.runs) == len(c.runs) == _count(arch, select(func.count(Run.id)))
    assert len(graph.used) == _count(arch, select(func.count()).select_from(RunInput))
    assert len(graph.generated) == len(c.products) and not graph.truncated
    nodes = list(graph.walk())
    assert len(nodes) == len(set((type(n), n.id) for n in nodes)) == c.n_datasets + len(c.runs)
    assert nodes[0].id == c.combined and graph.producer(c.combined).recipe == "muse_exp_combine"
    assert {d.id for d in graph.ancestors()} == set(graph.datasets) - {c.combined}
    # One batched query per level (the tree walk made one query per node: ~2,000 here).
    assert len(statements) < 100
    assert took < 5.0, f"provenance took {took:.2f} s (goal < 0.5 s; see benchmarks/bench_provenance.py)"


def test_a_shared_master_bias_is_one_node_with_all_its_consumers(cascade):
    arch, c = cascade
    graph = arch.provenance(c.combined)
    mb = c.master_biases[N1, 3]
    # flat, wavecal, twilight, standard-star pixel table and 2 science pixel tables of IFU 3 read it
    consumers = graph.consumers(mb)
    assert sorted(r.recipe for r in consumers) == ["muse_flat", "muse_scibasic", "muse_scibasic",
                                                   "muse_scibasic", "muse_twilight", "muse_wavecal"]
    assert len({r.id for r in consumers}) == 6
    label = graph.datasets[mb].label()
    assert "MASTER_BIAS IFU 03 2026-11-20" in label
    text_ = graph.to_text()
    assert text_.count(label) == 1  # described once, referenced by id from each consumer
    assert text_.count("muse_bias [succeeded") == 48  # each master bias run once
    # the raw biases (24 IFUs in one file) feed the 24 master biases of their night
    raw_bias = [d.id for _, d in graph.inputs(graph.producer(mb).id)]
    assert len(raw_bias) == 5 and all(len(graph.consumers(b)) == 24 for b in raw_bias)


def test_hidden_inputs_are_bare_ids_without_detail(cascade):
    arch, c = cascade
    mb = c.master_biases[N1, 5]
    with arch.transaction() as tx:
        s = tx.session
        bob = s.scalar(select(User).where(User.name == "bob"))
        mb_run = s.get(Dataset, mb).run_id
        s.execute(update(Dataset).where(Dataset.id == mb).values(privilege=int(Privilege.PRIVATE), owner_id=bob.id))
        s.execute(update(Run).where(Run.id == mb_run).values(privilege=int(Privilege.PRIVATE), user_id=bob.id))
        twilight = s.scalar(select(Run.id).where(Run.recipe == "muse_twilight", Run.night == N1))
        s.execute(update(Run).where(Run.id == twilight).values(privilege=int(Privilege.PRIVATE), user_id=bob.id))
        secret_name = s.get(Dataset, mb).file.original_name
        skyflats = set(s.scalars(select(RunInput.dataset_id).where(RunInput.run_id == twilight,
                                                                   RunInput.tag == "SKYFLAT")))
    graph = arch.as_user("carol").provenance(c.combined)
    node = graph.datasets[mb]
    assert not node.visible and node.category is None and node.filename is None and node.ifu is None
    assert node.label() == f"#{mb} (not visible to you)"
    assert mb_run not in graph.runs  # the walk does not go through what carol may not see
    hidden_run = graph.runs[twilight]
    assert not hidden_run.visible and hidden_run.recipe is None and hidden_run.parameters == {}
    assert not skyflats & set(graph.datasets)  # the hidden twilight run's own inputs stay unknown
    for out in (graph.to_text(), graph.to_dot(max_drawn=None), graph.to_prov_json(), graph.to_provn()):
        assert secret_name not in out
        assert f"#{mb} (not visible to you)" in out
    as_dict = graph.to_dict()
    assert secret_name not in json.dumps(as_dict)
    assert {"id": mb, "visible": False, "category": None} == {k: v for k, v in as_dict["datasets"][
        [d["id"] for d in as_dict["datasets"]].index(mb)].items() if k in ("id", "visible", "category")}
    assert f"#{mb} MASTER_BIAS" not in graph.to_text()
    # bob, who owns them, sees both; the administrator too
    for who in ("bob", "admin"):
        g = arch.as_user(who).provenance(c.combined)
        assert g.datasets[mb].category == "MASTER_BIAS" and g.runs[mb_run].recipe == "muse_bias"
    with pytest.raises(NotFoundError):
        arch.as_user("carol").provenance(mb)
    with pytest.raises(NotFoundError, match="visible"):  # consortium data: not for an outside user
        arch.as_user("eve").provenance(c.combined)


def test_prov_json_and_provn_round_trip(cascade):
    from prov.model import ProvActivity, ProvAgent, ProvDocument, ProvEntity, ProvGeneration, ProvUsage

    arch, c = cascade
    graph = arch.provenance(c.combined)
    doc = ProvDocument.deserialize(content=graph.to_prov_json(), format="json")
    kinds = {}
    for rec in doc.get_records():
        kinds[type(rec)] = kinds.get(type(rec), 0) + 1
    assert kinds[ProvEntity] == c.n_datasets and kinds[ProvActivity] == len(c.runs)
    assert kinds[ProvUsage] == len(graph.used) and kinds[ProvGeneration] == len(c.products)
    assert kinds[ProvAgent] == 1  # every run was made by the archive's administrator
    cube = doc.get_record(f"mw:dataset-{c.combined}")[0]
    assert dict((str(k), v) for k, v in cube.attributes)["mw:category"] == "DATACUBE_FINAL"
    provn = graph.to_provn()
    run = graph.producer(c.combined)
    assert provn.startswith("document") and f"wasGeneratedBy(mw:dataset-{c.combined}, mw:run-{run.id}" in provn
    assert f'used(mw:run-{run.id}, mw:dataset-{c.exposure_cubes[0]}' in provn


def test_dot_and_svg_link_each_run_to_its_notebook(cascade):
    arch, c = cascade
    small = arch.provenance(c.master_biases[N2, 7])  # one run, its 5 raw biases
    svg = small.to_svg(run_url=lambda r: f"/nb/{r.notebook_id}", dataset_url=lambda d: f"/ds/{d.id}")
    run = small.producer(small.root_id)
    assert svg.startswith("<svg") and f'xlink:href="/nb/{run.notebook_id}"' in svg
    assert all(f'xlink:href="/ds/{d}"' in svg for d in small.datasets)
    assert svg.count('class="node"') == 7  # the master bias, its run, 5 raw biases
    big = arch.provenance(c.combined)
    full = big.to_dot(run_url=lambda r: f"/nb/{r.notebook_id}", max_drawn=None)
    assert all(f'URL="/nb/{r.notebook_id}"' in full for r in big.runs.values())  # every run of the full drawing
    t = time.perf_counter()
    drawn = big.to_svg(run_url=lambda r: f"/nb/{r.notebook_id}")
    took = time.perf_counter() - t
    n_drawn = drawn.count('class="node"')
    print(f"condensed drawing of {len(big.datasets) + len(big.runs)} nodes: {n_drawn} nodes in {took * 1000:.0f} ms")
    assert "24 x MASTER_BIAS" in drawn and "48 x PIXTABLE_OBJECT" in drawn
    assert f'xlink:href="/nb/{big.producer(c.combined).notebook_id}"' in drawn  # a run alone keeps its link
    assert n_drawn < 80 and took < 5.0


def test_the_node_cap_bounds_the_walk(cascade):
    arch, c = cascade
    graph = arch.provenance(c.combined, max_nodes=100)
    assert graph.truncated and len(graph.datasets) + len(graph.runs) <= 100
    assert "TRUNCATED at 100 nodes" in graph.to_text()
    ids = set(graph.datasets) | {("r", r) for r in graph.runs}
    assert all(u.dataset_id in ids and ("r", u.run_id) in ids for u in graph.used)  # no dangling edge
    assert not arch.provenance(c.combined).truncated


def test_cli_formats(cascade, capsys, archive_config):
    arch, c = cascade
    base = ["--root", archive_config.root, "--db-url", archive_config.db_url, "--user", "carol", "provenance",
            str(c.combined)]
    assert main(base + ["--format", "provn"]) == 0
    assert f"entity(mw:dataset-{c.combined}" in capsys.readouterr().out
    assert main(base + ["--format", "prov-json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["entity"]) == c.n_datasets
    assert main(base + ["--format", "dot"]) == 0
    assert capsys.readouterr().out.count("shape=") >= c.n_datasets + len(c.runs)
    assert main(base) == 0
    assert capsys.readouterr().out.startswith(f"provenance of #{c.combined} DATACUBE_FINAL")


# ------------------------------------------------------------------ the web view


@pytest.fixture
def served(cascade, tmp_path):
    """The web view of the cascade's archive; yields (get(path, user), arch, cascade)."""
    import requests
    from jupyterhub.services.auth import HubOAuth

    from musewise.web.app import make_app

    arch, c = cascade
    hub_port, web_port = free_port(), free_port()
    servers = ServerThread().start()
    servers.serve(FakeHubAPI({u["name"] for u in arch.users()}).app, hub_port)
    auth = HubOAuth(api_url=f"http://127.0.0.1:{hub_port}/hub/api", api_token="service-secret",
                    oauth_client_id="service-archive", base_url="/services/archive/", hub_prefix="/hub/",
                    hub_host="", access_scopes={"access:services!service=archive"}, cache_max_age=0,
                    oauth_redirect_uri=f"http://127.0.0.1:{web_port}/services/archive/oauth_callback")
    servers.serve(lambda: make_app(arch, hub_auth=auth, cache_dir=tmp_path / "cache"), web_port)
    base = f"http://127.0.0.1:{web_port}/services/archive/"

    def get(path, user="carol", timeout=120):
        return requests.get(base + path, headers={"Authorization": f"token tok-{user}"}, allow_redirects=False,
                            timeout=timeout)

    yield get, arch, c
    servers.stop()


def test_product_page_draws_the_graph_with_notebook_links(served, record_property):
    get, arch, c = served
    get(f"datasets/{c.combined}")  # warm up (templates, first connections)
    t = time.perf_counter()
    r = get(f"datasets/{c.combined}")
    took = time.perf_counter() - t
    print(f"product page of the combined cube: {len(r.content) / 1e3:.0f} kB in {took * 1000:.0f} ms")
    record_property("product_page_seconds", took)
    assert r.status_code == 200 and took < 5.0
    section = r.text[r.text.index('id="provenance"'):r.text.index('id="header"')]
    graph = arch.provenance(c.combined)
    combine = graph.producer(c.combined)
    assert "<svg" in section and "24 x MASTER_BIAS" in section
    assert f'xlink:href="/services/archive/datasets/{combine.notebook_id}/notebook.html"' in section
    # the readable list: every dataset once, every run with a link to its notebook
    assert all(section.count(f'id="prov-d{d}"') == 1 for d in graph.datasets)
    assert all(f'href="/services/archive/datasets/{r.notebook_id}/notebook.html"' in section
               for r in graph.runs.values())
    assert f"{c.n_datasets} datasets, {len(c.runs)} runs" in section
    # downloads: PROV-JSON, PROV-N, SVG
    pj = get(f"datasets/{c.combined}/provenance.json")
    assert pj.status_code == 200 and len(pj.json()["entity"]) == c.n_datasets
    assert "attachment" in pj.headers["Content-Disposition"]
    pn = get(f"datasets/{c.combined}/provenance.provn")
    assert pn.status_code == 200 and pn.text.startswith("document") and "mw:run-" in pn.text
    svg = get(f"datasets/{c.combined}/provenance.svg")
    assert svg.headers["Content-Type"] == "image/svg+xml" and svg.text.startswith("<svg")
    small = get(f"datasets/{c.master_biases[N1, 1]}")
    run = arch.provenance(c.master_biases[N1, 1]).producer(c.master_biases[N1, 1])
    assert f'xlink:href="/services/archive/datasets/{run.notebook_id}/notebook.html"' in small.text
    assert get(f"datasets/{c.combined}/provenance.json", user="eve").status_code == 404


def test_other_requests_are_answered_while_a_provenance_page_is_built(served):
    """A provenance page waiting on the database does not stop the server answering others.

    PostgreSQL lets the test hold the lineage table locked, so the page is
    certainly still being built while the other request is made; SQLite's
    readers are never blocked by a lock.
    """
    get, arch, c = served
    if arch.engine.dialect.name != "postgresql":
        pytest.skip("only PostgreSQL lets the test hold the lineage table locked")
    slow = {}
    with arch.engine.connect() as conn:
        conn.execute(text("LOCK TABLE run_inputs IN ACCESS EXCLUSIVE MODE"))
        waiting = threading.Thread(target=lambda: slow.update(r=get(f"datasets/{c.combined}")))
        waiting.start()
        deadline = time.time() + 30
        while time.time() < deadline:  # until the page's query waits on the lock
            conn.execute(text("SELECT pg_stat_clear_snapshot()"))  # activity is read once per transaction
            n = conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                  "AND datname = current_database()")).scalar()
            if n:
                break
            time.sleep(0.05)
        assert n, "the provenance page never reached the locked table"
        t = time.perf_counter()
        other = get("datasets/raw", timeout=15)  # a blocked event loop would not answer at all
        assert other.status_code == 200 and time.perf_counter() - t < 10
        assert "r" not in slow  # the provenance page is still waiting
        conn.rollback()  # releases the lock
    waiting.join(60)
    assert slow["r"].status_code == 200 and "<svg" in slow["r"].text


# ------------------------------------------------------------------ the widget


def test_widget_draws_the_graph_and_offers_each_runs_notebook(cascade, record_property):
    from musewise.widgets import ArchiveBrowser

    arch, c = cascade
    bad = c.master_biases[N2, 9]
    arch.set_validity(bad, is_valid=False, flag="bad", comment="shutter stuck")
    browser = ArchiveBrowser(arch.as_user("carol"), web_url="/services/archive/")
    t = time.perf_counter()
    graph = browser.show_provenance(c.combined)
    took = time.perf_counter() - t
    print(f"widget provenance of the combined cube in {took * 1000:.0f} ms")
    record_property("widget_seconds", took)
    html = browser.provenance_html
    assert "<svg" in html and "24 x MASTER_BIAS" in html and took < 5.0
    assert "1 INVALID" in html and "shutter stuck" in html  # the invalid input stands out, with why
    combine = graph.producer(c.combined)
    assert f'xlink:href="/services/archive/datasets/{combine.notebook_id}/notebook.html"' in html
    # every run of the graph can show its executed notebook from the chooser
    assert sorted(v for _, v in browser._run_choice.options) == sorted(c.runs)
    assert any(label.startswith(f"run {combine.id} muse_exp_combine") for label, _ in browser._run_choice.options)
    assert html.count(f"<b>#{c.master_biases[N1, 3]}</b> MASTER_BIAS IFU 03") == 1  # each dataset once in the list
