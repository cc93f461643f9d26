"""VO access to the releases through the real hub: pyvo and astropy against GAVO DaCHS behind the gateway.

The hub of ``test_hub`` (JupyterHub, configurable-http-proxy, the archive on the hub's
PostgreSQL) runs the ``vo`` service: its own PostgreSQL server, a public and a
consortium DaCHS data centre, and the gateway at ``/services/vo/``. Here an
administrator freezes two releases, a public one (a cube with a sky position) and a
consortium one (a master bias with its notebook, and the cube), and VO clients ask:

* without a login: the ObsCore cone search finds the public cube, DataLink gives its
  file (whose bytes match the release manifest) and its W3C PROV history; the
  consortium release is nowhere, by TAP, DataLink or file URL;
* with a member's hub token: the consortium release too, with the notebook of the run
  that made the master bias;
* hostile requests: forged tokens and other credential schemes are refused with a reason,
  ADQL cannot write or reach the databases' other tables, paths cannot leave the release
  folders.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from datetime import datetime

import pytest
import requests

from conftest import need
from test_hub import hub, login  # noqa: F401 - the module's hub

pytestmark = pytest.mark.hub
pyvo = pytest.importorskip("pyvo")


def _wait_for(predicate, timeout=180.0, what="VO service"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(1.0)
    raise AssertionError(f"{what} not ready in {timeout:.0f} s (last error: {last!r})")


@pytest.fixture(scope="module")
def vo(hub):  # noqa: F811
    """Two releases frozen in the hub's archive and published: dict with URLs, IDs and sessions."""
    from astropy.io import fits

    from musewise.products import testing as pt
    from musewise.products.catalog import empty_sources, write_source_catalog
    from musewise.qc import testing as qct
    from musewise.release.obscore import wcs_info
    from musewise.release import create_release, manifest_of
    from musewise.vo.dachs import dachs_available
    from musewise.vocabulary import Privilege

    need(dachs_available(), "GAVO DaCHS missing: apt-get install python3-gavo postgresql-15-pgsphere")
    arch, ids = hub["archive"], hub["ids"]
    work = hub["root"] / "vo-test"
    work.mkdir()
    cube = qct.archive_product(arch, pt.write_cube(work / "DATACUBE_FINAL.fits", datetime(2026, 11, 21, 2)),
                               "muse_scipost", [ids["master"]], ifu=None, category="DATACUBE_FINAL")
    arch.publish([cube.id], privilege=Privilege.PUBLIC)
    # A source catalogue of that cube, with one Lyman-alpha-like line source at its centre.
    info = wcs_info(arch.path(cube.id))
    sources = empty_sources()
    sources.add_row([1, "line", info["s_ra"], info["s_dec"], 12.0, 12.0, LAE_WAVELENGTH, 3.1e-17, 2.0e-18, 15.5,
                     "", ""])
    cat_file = write_source_catalog(work / "SOURCE_CATALOG.fits", sources, {}, {},
                                    fits.getheader(arch.path(cube.id)))
    cat = qct.archive_product(arch, cat_file, "muselet", [cube.id], ifu=None, category="SOURCE_CATALOG",
                              privilege=Privilege.PUBLIC)
    create_release(arch, "DR1", "1.0", [cube.id, cat.id], "public release")
    create_release(arch, "INT", "0.1", [ids["master"], cube.id], "consortium release")
    tap_url = f"{hub['url']}/services/vo/tap"
    public = pyvo.dal.TAPService(tap_url)
    started = time.monotonic()
    try:
        _wait_for(lambda: len(public.search("SELECT obs_publisher_did FROM ivoa.obscore")) == 2,
                  what="public data centre with release DR1")
    except AssertionError as exc:  # what the vo service said is in the hub's log
        vo_lines = [line for line in hub["log"].read_text(errors="replace").splitlines() if " vo]" in line
                    or "musewise.vo" in line or "Traceback" in line or "Error" in line]
        raise AssertionError(f"{exc}\nthe hub's log, vo service:\n" + "\n".join(vo_lines[-60:])) from None
    print(f"VO published in {time.monotonic() - started:.1f} s")
    login(hub, "alice")  # the hub knows alice once she has logged in
    token = requests.post(f"{hub['url']}/hub/api/users/alice/tokens", headers=hub["admin"], timeout=30,
                          json={"note": "TOPCAT at another site"}).json()["token"]
    member = requests.Session()
    member.headers["Authorization"] = f"token {token}"
    consortium = pyvo.dal.TAPService(tap_url, session=member)
    _wait_for(lambda: len(consortium.search("SELECT obs_publisher_did FROM ivoa.obscore")) == 4,
              what="consortium data centre with release INT")
    return {"tap": tap_url, "public": public, "consortium": consortium, "member": member, "cube": cube, "cat": cat,
            "master": ids["master"], "manifest": manifest_of(arch, "DR1", "1.0"), "base": f"{hub['url']}/services/vo"}


#: Line wavelength of the catalogue's source (Angstrom, air): the simulated emitter's.
LAE_WAVELENGTH = 6686.19


def _did(release, version, dataset_id):
    return f"ivo://musewise.consortium/release?{release}/{version}/{dataset_id}"


def test_an_obscore_cone_search_finds_the_public_cube_without_login(vo):
    from astropy.io import fits
    from astropy.wcs import WCS

    from musewise.products.wcs import spectral_axis

    cube = vo["cube"]
    rows = vo["public"].search("SELECT obs_publisher_did, s_ra, s_dec, dataproduct_type, em_min, em_max, "
                               "access_format FROM ivoa.obscore WHERE dataproduct_type = 'cube'").to_table()
    assert list(rows["obs_publisher_did"]) == [_did("DR1", "1.0", cube.id)]
    ra, dec = float(rows["s_ra"][0]), float(rows["s_dec"][0])
    assert rows["dataproduct_type"][0] == "cube"
    assert rows["access_format"][0] == "application/x-votable+xml;content=datalink"
    near = vo["public"].search(f"SELECT obs_publisher_did FROM ivoa.obscore WHERE dataproduct_type = 'cube' AND "
                               f"CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', {ra + 0.002}, {dec}, 0.01)) = 1")
    assert [r["obs_publisher_did"] for r in near] == [_did("DR1", "1.0", cube.id)]
    # The footprint itself (s_region) answers a spatial query too; a cone elsewhere finds nothing.
    inside = vo["public"].search(f"SELECT COUNT(*) AS n FROM ivoa.obscore WHERE dataproduct_type = 'cube' AND "
                                 f"INTERSECTS(s_region, CIRCLE('ICRS', {ra}, {dec}, 0.0001)) = 1")
    assert int(inside.to_table()["n"][0]) == 1
    far = vo["public"].search(f"SELECT COUNT(*) AS n FROM ivoa.obscore WHERE "
                              f"CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', {ra + 1}, {dec}, 0.01)) = 1")
    assert int(far.to_table()["n"][0]) == 0
    # Asynchronous queries (UWS) work through the gateway as well, and their URLs are the hub's.
    job = vo["public"].submit_job("SELECT COUNT(*) AS n FROM ivoa.obscore")
    assert job.url.startswith(vo["base"] + "/")
    job.run()
    job.wait(phases=["COMPLETED", "ERROR"], timeout=60)
    assert job.phase == "COMPLETED" and int(job.fetch_result().to_table()["n"][0]) == 2
    job.delete()
    # Position and spectral range are the served cube's own (ObsCore: degrees, metres).
    with fits.open(vo_file(vo, cube.id)) as h:
        hdr = h["DATA"].header
        centre = WCS(hdr).celestial.pixel_to_world_values((hdr["NAXIS1"] - 1) / 2, (hdr["NAXIS2"] - 1) / 2)
        wave, _air = spectral_axis(hdr, hdr["NAXIS3"], axis=3)
    assert abs(float(centre[0]) - ra) < 1e-6 and abs(float(centre[1]) - dec) < 1e-6
    assert float(rows["em_min"][0]) == pytest.approx(wave.min() * 1e-10, rel=1e-5)
    assert float(rows["em_max"][0]) == pytest.approx(wave.max() * 1e-10, rel=1e-5)


def vo_file(vo, dataset_id):
    """The product file as DataLink's #this link gives it, anonymously (in memory)."""
    links = pyvo.dal.adhoc.DatalinkResults.from_result_url(
        f"{vo['base']}/musewise/q/dl/dlmeta?ID={requests.utils.quote(_did('DR1', '1.0', dataset_id), safe='')}")
    this = [link for link in links if link.semantics == "#this"]
    assert len(this) == 1
    r = requests.get(this[0].access_url, timeout=60)
    assert r.status_code == 200
    return io.BytesIO(r.content)


def test_datalink_gives_the_released_file_and_its_provenance(vo):
    from prov.model import ProvDocument

    from musewise.release.phase3 import exported_checksum

    cube = vo["cube"]
    rows = vo["public"].search("SELECT obs_publisher_did, access_url FROM ivoa.obscore WHERE dataproduct_type = 'cube'")
    links = next(rows.iter_datalinks())
    by = {}
    for link in links:
        by.setdefault(link.semantics, []).append(link)
    assert set(by) == {"#this", "#provenance", "#preview"}
    png = requests.get(by["#preview"][0].access_url, timeout=60)
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    preview = vo["public"].search("SELECT preview FROM ivoa.obscore WHERE dataproduct_type = 'cube'").to_table()
    assert preview["preview"][0] == by["#preview"][0].access_url
    this = requests.get(by["#this"][0].access_url, timeout=60)
    assert this.status_code == 200
    entry = next(p for p in vo["manifest"]["products"] if p["dataset_id"] == cube.id)
    exported = exported_checksum(entry)[0]
    assert hashlib.sha256(this.content).hexdigest() == exported, "the file served is not the released one"
    prov = [link for link in by["#provenance"] if link.content_type == "application/x-prov+json"]
    doc = ProvDocument.deserialize(content=requests.get(prov[0].access_url, timeout=60).text, format="json")
    text = doc.get_provn()
    assert "muse_scipost" in text and "muse_bias" in text  # the cube's run and the run of its master bias


def test_the_consortium_release_is_invisible_without_a_token(vo):
    from astropy.io.votable import parse_single_table

    master = vo["master"]
    anon = vo["public"].search("SELECT obs_publisher_did FROM ivoa.obscore WHERE obs_collection LIKE '%INT%'")
    assert len(anon) == 0
    mine = vo["consortium"].search("SELECT obs_publisher_did, dataproduct_subtype FROM ivoa.obscore "
                                   "WHERE obs_collection LIKE '%INT%'").to_table()
    assert _did("INT", "0.1", master) in set(mine["obs_publisher_did"])
    # DataLink of a consortium product: a fault for anonymous clients, links for members.
    url = f"{vo['base']}/musewise/q/dl/dlmeta?ID={requests.utils.quote(_did('INT', '0.1', master), safe='')}"
    anon_links = parse_single_table(io.BytesIO(requests.get(url, timeout=60).content)).to_table()
    assert len(anon_links) == 1 and not anon_links["access_url"][0]
    assert "NotFound" in anon_links["error_message"][0]
    member_links = pyvo.dal.adhoc.DatalinkResults.from_result_url(url, session=vo["member"])
    by = {link.content_type: link for link in member_links if link.semantics in ("#this", "#provenance")}
    notebook = requests.get(by["application/x-ipynb+json"].access_url, headers=vo["member"].headers, timeout=60)
    assert "mean bias level 1000.2 ADU" in json.dumps(notebook.json())
    file_url = by["application/fits"].access_url
    assert vo["member"].get(file_url, timeout=60).status_code == 200
    # The same URLs without the token: not there (the public data centre has no such file).
    assert requests.get(file_url, timeout=60).status_code == 404
    assert requests.get(by["application/x-ipynb+json"].access_url, timeout=60).status_code == 404
    assert requests.get(f"{vo['base']}/musewise/q/dl/static/INT-0.1/manifest.json", timeout=60).status_code == 404


def test_forged_tokens_and_other_schemes_are_refused_with_a_reason(vo):
    for header in ("token not-a-real-token", "Bearer 0123456789abcdef", "Basic YWxpY2U6bXVzZQ==", "token "):
        r = requests.get(f"{vo['tap']}/sync", params={"LANG": "ADQL", "QUERY": "SELECT 1 FROM ivoa.obscore"},
                         headers={"Authorization": header}, timeout=30)
        assert r.status_code == 403, header
        assert "token" in r.text.lower()
    # Headers that name a user are not identities: the data stay public.
    r = requests.get(f"{vo['tap']}/sync", timeout=30, headers={"X-Forwarded-User": "alice", "Remote-User": "admin",
                                                               "Cookie": "jupyterhub-session-id=x"},
                     params={"LANG": "ADQL", "QUERY": "SELECT COUNT(*) AS n FROM ivoa.obscore", "FORMAT": "csv"})
    assert r.status_code == 200 and r.text.split()[-1] == "2"


def test_adql_cannot_write_or_read_other_tables(vo):
    from pyvo.dal import DALQueryError

    for adql in ("DELETE FROM ivoa.obscore", "SELECT * FROM ivoa.obscore; DROP TABLE musewise.main",
                 "SELECT * FROM pg_catalog.pg_authid", "SELECT * FROM dc.users",
                 "SELECT * FROM musewise.main WHERE 1=1 OR pg_sleep(5) IS NULL"):
        with pytest.raises(DALQueryError):
            vo["public"].search(adql)
    assert len(vo["public"].search("SELECT * FROM ivoa.obscore")) == 2
    # Paths cannot climb out of the release folders.
    for path in ("musewise/q/dl/static/../../../../etc/gavo.rc", "musewise/q/dl/static/%2e%2e/%2e%2e/etc/feed",
                 "getproduct/..%2F..%2Fetc%2Ffeed"):
        r = requests.get(f"{vo['base']}/{path}", timeout=30)
        assert r.status_code in (400, 403, 404), path
        assert "password" not in r.text


def test_tap_schema_and_capabilities_name_the_hubs_address(vo):
    tables = {t.name for t in vo["public"].tables}
    assert {"ivoa.obscore", "tap_schema.tables"} <= tables
    caps = requests.get(f"{vo['tap']}/capabilities", timeout=30)
    assert caps.status_code == 200 and f"{vo['base']}/tap" in caps.text
    assert "127.0.0.1:" + vo["base"].split(":")[-1].split("/")[0] in caps.text
    avail = requests.get(f"{vo['tap']}/availability", timeout=30)
    assert avail.status_code == 200 and "true" in avail.text.lower()


def test_the_sources_of_a_released_catalogue_are_a_tap_table(vo):
    rows = vo["public"].search(
        f"SELECT s.source_id, s.kind, s.ra, s.dec, s.wavelength, s.snr, o.dataproduct_subtype "
        f"FROM musewise.sources AS s JOIN ivoa.obscore AS o ON o.obs_publisher_did = s.catalog_did "
        f"WHERE s.wavelength BETWEEN {LAE_WAVELENGTH - 2.5} AND {LAE_WAVELENGTH + 2.5}").to_table()
    assert len(rows) == 1 and rows["kind"][0] == "line" and int(rows["source_id"][0]) == 1
    assert float(rows["wavelength"][0]) == pytest.approx(LAE_WAVELENGTH)
    assert rows["dataproduct_subtype"][0] == "source_catalog"
    # A cone around the cube's centre finds it, in ADQL on the table's own positions.
    cube = vo["public"].search("SELECT s_ra, s_dec FROM ivoa.obscore WHERE dataproduct_type = 'cube'").to_table()
    cone = vo["public"].search(f"SELECT COUNT(*) AS n FROM musewise.sources WHERE CONTAINS(POINT('ICRS', ra, dec), "
                               f"CIRCLE('ICRS', {float(cube['s_ra'][0])}, {float(cube['s_dec'][0])}, 0.001)) = 1")
    assert int(cone.to_table()["n"][0]) == 1


def test_a_valid_token_of_an_outside_user_sees_public_data_only(vo, hub):  # noqa: F811
    """Identity decides, not the token's being valid: an outside user's hub token gets the public releases."""
    arch = hub["archive"]
    arch.add_user("eve", member=False)
    requests.post(f"{hub['url']}/hub/api/users/eve", headers=hub["admin"], timeout=30)
    token = requests.post(f"{hub['url']}/hub/api/users/eve/tokens", headers=hub["admin"], timeout=30,
                          json={"note": "outside collaborator"}).json()["token"]
    s = requests.Session()
    s.headers["Authorization"] = f"token {token}"
    eve = pyvo.dal.TAPService(vo["tap"], session=s)
    dids = set(eve.search("SELECT obs_publisher_did FROM ivoa.obscore").to_table()["obs_publisher_did"])
    assert dids == {_did("DR1", "1.0", vo["cube"].id), _did("DR1", "1.0", vo["cat"].id)}


def test_a_killed_data_centre_is_a_clear_error_then_comes_back(vo, hub):  # noqa: F811
    import psutil

    home = hub["root"] / "vo" / "consortium"
    (server,) = [p for p in psutil.process_iter(["cmdline", "cwd"])
                 if "serve" in (p.info["cmdline"] or []) and p.info["cwd"] == str(home)]
    server.kill()
    server.wait(30)
    r = vo["member"].get(f"{vo['tap']}/availability", timeout=30)
    if r.status_code != 200:  # unless the service was quicker than this request
        assert r.status_code == 502 and "consortium VO server does not answer" in r.text
    _wait_for(lambda: len(vo["consortium"].search("SELECT obs_publisher_did FROM ivoa.obscore")) == 4,
              timeout=120, what="the consortium data centre started again")
    # The public data centre was never affected.
    assert len(vo["public"].search("SELECT obs_publisher_did FROM ivoa.obscore")) == 2


def test_a_killed_vo_service_leaves_nothing_running_once_the_hub_has_started_it_again(vo, hub):  # noqa: F811
    """SIGKILL cannot stop the data centres: the next start stops what the killed one left."""
    import psutil

    state = hub["root"] / "vo"

    def running(what):
        out = []
        for p in psutil.process_iter(["cmdline", "cwd"]):
            cmd = p.info["cmdline"] or []
            if what == "dachs" and "serve" in cmd and str(p.info["cwd"] or "").startswith(str(state)):
                out.append(p.pid)
            elif what == "postgres" and any(a == str(state / "postgres" / "data") for a in cmd):
                out.append(p.pid)  # the postmaster (its children name no folder)
            elif what == "service" and cmd[1:3] == ["-m", "musewise.vo"]:
                out.append(p.pid)
        return set(out)

    before, postmaster = running("dachs"), running("postgres")
    assert len(before) == 2 and len(postmaster) == 1
    (service,) = running("service")
    psutil.Process(service).kill()
    psutil.Process(service).wait(30)
    assert running("dachs") == before  # what SIGKILL leaves behind
    _wait_for(lambda: running("service") - {service}, timeout=60, what="the hub starting the VO service again")
    _wait_for(lambda: len(vo["public"].search("SELECT obs_publisher_did FROM ivoa.obscore")) == 2,
              timeout=240, what="the VO service started again by the hub")
    assert len(vo["consortium"].search("SELECT obs_publisher_did FROM ivoa.obscore")) == 4
    after = running("dachs")
    assert len(after) == 2 and not after & before, (before, after)
    assert len(running("postgres")) == 1 and running("postgres") != postmaster


def test_the_archives_tables_are_served_as_each_audience_may_see_them(vo, hub):  # noqa: F811
    """musewise.datasets, runs, run_inputs, dataset_ifus and qc in ADQL: the archive's privilege rule holds,
    and a reviewer's verdict reaches the data centre at its next check."""
    arch, ids = hub["archive"], hub["ids"]
    cube = vo["cube"].id

    def datasets(tap):
        t = tap.search("SELECT dataset_id, privilege, released_did FROM musewise.datasets").to_table()
        return {int(d): (p, r) for d, p, r in zip(t["dataset_id"], t["privilege"], t["released_did"])}

    public, member = datasets(vo["public"]), datasets(vo["consortium"])
    assert {cube, vo["cat"].id, ids["cube"]} <= set(public)
    assert {p for p, _ in public.values()} == {"public"}
    assert public[cube][1] == _did("DR1", "1.0", cube)
    assert {ids["master"], *ids["raw"]} <= set(member) and not {ids["master"], *ids["raw"]} & set(public)
    assert ids["private"] not in member and ids["private"] not in public
    # The reduction history in ADQL: the cube's run and inputs, as far as each audience may see them.
    history = ("SELECT r.recipe, i.dataset_id, i.tag FROM musewise.datasets AS d "
               "JOIN musewise.runs AS r ON r.run_id = d.run_id "
               f"LEFT OUTER JOIN musewise.run_inputs AS i ON i.run_id = r.run_id WHERE d.dataset_id = {cube}")
    seen = vo["consortium"].search(history).to_table()
    assert set(seen["recipe"]) == {"muse_scipost"} and ids["master"] in set(int(i) for i in seen["dataset_id"])
    # The cube was published, its run (consortium privilege) was not: the public sees no history of it.
    assert len(vo["public"].search(history)) == 0
    # A verdict and a QC number given now are in the tables at the service's next check (every 2 s here).
    # (A flag, not is_valid=False: invalidating would mark the released cube affected, for the other tests.)
    arch.set_validity(ids["raw"][1], 1, flag="warning", comment="VO test: saturated in IFU 1")
    arch.add_qc(ids["master"], {"vo_test_median": 1000.2}, ifu=1, units={"vo_test_median": "adu"})
    ifu_rows = _wait_for(lambda: vo["consortium"].search(
        f"SELECT is_valid, flag, comment FROM musewise.dataset_ifus WHERE dataset_id = {ids['raw'][1]} AND ifu = 1"
        " AND flag = 'warning'").to_table(), timeout=60, what="the IFU verdict in musewise.dataset_ifus")
    assert bool(ifu_rows["is_valid"][0]) and "saturated" in ifu_rows["comment"][0]
    # The data centre takes the archive's rows a refresh at a time: the QC value may come a refresh after the verdict.
    qc_sql = f"SELECT qc_value, unit FROM musewise.qc WHERE name = 'vo_test_median' AND dataset_id = {ids['master']}"
    qc = _wait_for(lambda: vo["consortium"].search(qc_sql).to_table(), timeout=60, what="the QC value in musewise.qc")
    assert float(qc["qc_value"][0]) == pytest.approx(1000.2) and qc["unit"][0] == "adu"
    assert len(vo["public"].search("SELECT * FROM musewise.qc WHERE name = 'vo_test_median'")) == 0
