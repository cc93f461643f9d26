"""The calibration timeline in the web view, certifications on a dataset's page, the reviewers' form.

The web view runs as a real tornado server on 127.0.0.1 with the real ``HubOAuth`` code,
as in ``test_web.py``; the stand-in hub here also completes the OAuth login
(``/hub/api/oauth2/authorize`` logs in whoever ``hub.login_as`` names, ``.../token``
hands out ``tok-<name>``), so a real Chromium logs in with the hub's cookie and the form
goes through the hub login's XSRF check. Scripts use API tokens, as in ``test_web.py``.

Data: ``certified_history`` of ``test_calibration_timeline.py`` (nightly reference
MASTER_BIAS of IFUs 1 and 2 certified in ``galaxies/calib``, alice's trial in
``u/alice/calib``, an invalid bias, an affected flat, an open-ended static table) plus a
combined cube that holds no per-IFU state.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from conftest import free_port
from test_calibration_timeline import NIGHT, certified_history
from test_web import FakeHubAPI, ServerThread

from musewise.vocabulary import Privilege

PREFIX = "/services/archive/"


class FakeOAuthHub(FakeHubAPI):
    """The hub's user endpoint plus its OAuth login: ``login_as`` is who is logged in at the hub."""

    def __init__(self, users, web_base=""):
        super().__init__(users)
        self.login_as, self.codes, self.web_base = None, {}, web_base

    def app(self):
        from tornado import web
        from tornado.httputil import url_concat

        outer = self
        user_app = super().app()

        class Authorize(web.RequestHandler):
            def get(self):
                if outer.login_as is None:
                    raise web.HTTPError(403, "nobody is logged in at the hub")
                code = secrets.token_urlsafe(8)
                outer.codes[code] = outer.login_as
                self.redirect(url_concat(self.get_argument("redirect_uri"),
                                         {"code": code, "state": self.get_argument("state")}))

        class Token(web.RequestHandler):
            def post(self):
                name = outer.codes.pop(self.get_argument("code"), None)
                if name is None:
                    raise web.HTTPError(400, "bad code")
                self.finish({"access_token": f"tok-{name}", "token_type": "Bearer"})

        class Evil(web.RequestHandler):
            """Another site's page that posts to the archive with the visitor's cookies."""

            def get(self):
                did = self.get_argument("dataset")
                self.finish(f"""<html><body><form id="f" method="post"
                    action="{outer.web_base}datasets/{did}/certify">
                    <input name="collection" value="{self.get_argument('collection')}">
                    <input name="begin" value="61000"><input name="end" value="61001">
                    <input name="comment" value="forged"></form>
                    <script>document.getElementById('f').submit()</script></body></html>""")

        return web.Application([(r"/hub/api/oauth2/authorize", Authorize), (r"/hub/api/oauth2/token", Token),
                                (r"/evil", Evil)] + [(r.matcher.regex.pattern, r.target)
                                                     for r in user_app.wildcard_router.rules])


def write_cube(path):
    """A combined DATACUBE_FINAL of all IFUs: no IFU keyword, so no per-IFU state."""
    h = fits.Header([("INSTRUME", "MUSE"), ("HIERARCH ESO PRO CATG", "DATACUBE_FINAL"),
                     ("MJD-OBS", 61365.1), ("HIERARCH ESO PRO REC1 ID", "muse_scipost")])
    fits.HDUList([fits.PrimaryHDU(header=h), fits.ImageHDU(np.ones((4, 6, 5), np.float32), name="DATA")]
                 ).writeto(path)
    return Path(path)


@pytest.fixture
def site(archive, tmp_path):
    """(hub, base URL, get(path, user, method, **kw), ids) of a web view over ``certified_history``."""
    ids = certified_history(archive, tmp_path / "work")
    alice = archive.as_user("alice")
    run = alice.begin_run("muse_scipost", {}, inputs=[(ids["bias"][(1, 61365.1)], "MASTER_BIAS", "best")],
                          privilege=Privilege.CONSORTIUM, project="galaxies")
    ids["cube"] = alice.finish_run(run, [(write_cube(tmp_path / "work" / "DATACUBE.fits"), "DATACUBE_FINAL",
                                          None)])[0].id
    with web_behind_hub(archive, FakeOAuthHub, tmp_path) as (hub, base, get):
        yield hub, base, get, ids


@contextlib.contextmanager
def web_behind_hub(archive, hub_class, tmp_path):
    """The archive's web view behind a ``hub_class`` OAuth hub, both on 127.0.0.1.

    Yields ``(hub, base, get)``: ``get(path, user=None, method="GET", **kw)`` requests
    ``base + path`` with ``user``'s API token (none: anonymous), without following redirects.
    """
    import requests
    from jupyterhub.services.auth import HubOAuth

    from musewise.web.app import make_app

    hub_port, web_port = free_port(), free_port()
    base = f"http://127.0.0.1:{web_port}{PREFIX}"
    hub = hub_class({u["name"] for u in archive.users()}, web_base=base)
    servers = ServerThread().start()
    try:
        servers.serve(hub.app, hub_port)
        auth = HubOAuth(api_url=f"http://127.0.0.1:{hub_port}/hub/api", api_token="service-secret",
                        oauth_client_id="service-archive", base_url=PREFIX, hub_prefix="/hub/",
                        hub_host=f"http://127.0.0.1:{hub_port}",
                        access_scopes={"access:services!service=archive"},
                        cache_max_age=0, oauth_redirect_uri=f"{base}oauth_callback")
        servers.serve(lambda: make_app(archive, hub_auth=auth, cache_dir=tmp_path / "cache"), web_port)
        hub.url = f"http://127.0.0.1:{hub_port}"

        def get(path, user=None, method="GET", **kw):
            headers = kw.pop("headers", {})
            if user:
                headers["Authorization"] = f"token tok-{user}"
            return requests.request(method, base + path, headers=headers, allow_redirects=False,
                                    timeout=60, **kw)

        yield hub, base, get
    finally:
        servers.stop()


def _bars(html):
    return {int(m.group(1)): int(m.group(2)) for m in re.finditer(r'<a id="bar-(\d+)"[^>]*data-dataset="(\d+)"', html)}


# --------------------------------------------------------------------------- pages (API tokens)


def test_timeline_page_draws_a_linked_bar_per_certified_range(site, archive):
    _, _, get, ids = site
    r = get("calibrations", user="carol", params={"category": "MASTER_BIAS", "night": NIGHT})
    assert r.status_code == 200
    bars = _bars(r.text)
    expected = {c.id: c.dataset_id for c in archive.as_user("carol").certifications(
        category="MASTER_BIAS", mjd_from=61335.0, mjd_to=61395.0)}
    assert bars == expected and len(bars) == 7  # 6 nightly reference biases and alice's trial
    assert all(f'href="{PREFIX}datasets/{d}"' in r.text for d in bars.values())
    assert '<line id="marker"' in r.text and ">IFU 01<" in r.text and ">IFU 02<" in r.text
    invalid = [c for c, d in bars.items() if d == ids["invalid"]][0]
    assert re.search(rf'<a id="bar-{invalid}" class="bar state-invalid"', r.text)
    # A search path limits the collections and outlines its choice at the night.
    path = "galaxies/calib, galaxies/reference, MUSE/calib"
    r = get("calibrations", user="carol", params={"category": "MASTER_BIAS", "night": NIGHT, "collections": path})
    assert set(_bars(r.text).values()) == {d for (i, m), d in ids["bias"].items()}
    assert re.search(r'class="bar state-usable chosen" href="[^"]*datasets/%d"' % ids["bias"][(1, 61365.1)], r.text)
    # Every category: the static table serves every IFU, open-ended (a triangle at the edge).
    r = get("calibrations", user="carol", params={"ifu": 2, "night": NIGHT})
    assert ">LINE_CATALOG all IFUs<" in r.text and ids["static"] in _bars(r.text).values()
    assert "state-affected" in r.text  # the flat made from the invalid bias
    # Without a night: the newest night a calibration was made for (a bounded window around it).
    r = get("calibrations", user="carol", params={"category": "MASTER_BIAS"})
    assert 'value="2026-11-30"' in r.text and '<line id="marker"' in r.text
    assert ids["bias"][(1, 61375.1)] in _bars(r.text).values()
    for bad in ({"night": "tomorrow"}, {"ifu": "30"}, {"span": "-1"}):
        assert get("calibrations", user="carol", params=bad).status_code == 400


def test_dataset_page_shows_certifications_history_and_own_verdict(site, archive):
    _, _, get, ids = site
    did = ids["bias"][(1, 61365.1)]
    page = get(f"datasets/{did}", user="alice").text
    assert 'id="certifications"' in page and "galaxies/calib" in page and "61358.100" in page
    assert 'id="certification-history"' in page and "default range of MASTER_BIAS" in page
    assert 'action="/services/archive/datasets/%d/certify"' % did in page and 'name="_xsrf"' in page
    assert re.search(r'id="collection">galaxies/run/\d+<', page)
    assert re.search(r'id="verdict"[^>]*>valid, flag', page)
    # A non-reviewer sees the ranges, not the form.
    page = get(f"datasets/{did}", user="bob").text
    assert "61358.100" in page and "/certify" not in page and 'id="no-review"' in page
    # The invalid bias and what it affected say so.
    page = get(f"datasets/{ids['invalid']}", user="carol").text
    assert re.search(r'id="verdict" class="bad">INVALID, flag <span class="flag-bad">bad</span>: bad columns', page)
    page = get(f"datasets/{ids['flat']}", user="carol").text
    assert 'id="affected"' in page and f'datasets/{ids["invalid"]}"' in page
    # A combined cube: no per-IFU state, its own verdict applies (no "No IFU recorded").
    page = get(f"datasets/{ids['cube']}", user="carol").text
    assert "No IFU recorded" not in page and 'id="no-ifus"' in page and "Not split by IFU" in page
    assert 'id="certifications"' not in page  # not a calibration


def test_reviewer_changes_a_range_with_a_token_and_others_are_refused(site, archive):
    _, _, get, ids = site
    did = ids["bias"][(1, 61365.1)]
    form = {"collection": "galaxies/calib", "begin": "61360", "end": "2026-11-28", "comment": "drift"}
    r = get(f"datasets/{did}/certify", user="alice", method="POST", data=form)
    assert r.status_code == 302 and r.headers["Location"].endswith("?certified=galaxies%2Fcalib#certifications")
    c = archive.certifications(dataset_id=did)[0]
    assert (c.begin_mjd, c.end_mjd, c.certified_by) == (61360.0, pytest.approx(61372.5), "alice")
    for who, status, words in (("bob", 403, "may not certify"), ("carol", 403, "may not certify"),
                               ("eve", 404, "no dataset")):
        r = get(f"datasets/{did}/certify", user=who, method="POST", data={**form, "end": "61361"})
        assert r.status_code == status and words in r.text
    r = get(f"datasets/{did}/certify", user="alice", method="POST", data={**form, "begin": "61370", "end": "61360"})
    assert r.status_code == 400 and "must end after it begins" in r.text
    assert archive.certifications(dataset_id=did)[0].end_mjd == pytest.approx(61372.5)


def test_certifications_api(site, archive):
    _, _, get, ids = site
    body = get("api/certifications", user="carol", params={"category": "MASTER_BIAS", "ifu": 2}).json()
    rows = {c["dataset_id"]: c for c in body["certifications"]}
    assert set(rows) == {ids["bias"][(2, m)] for m in (61355.1, 61365.1, 61375.1)}
    bad = rows[ids["invalid"]]
    assert bad["is_valid"] is False and bad["usable"] is False and bad["collection"] == "galaxies/calib"
    assert bad["begin_mjd"] == pytest.approx(61358.1) and bad["dataset_url"] == f"{PREFIX}datasets/{ids['invalid']}"
    assert get("api/certifications", user="eve").json() == {"certifications": []}
    assert get("api/certifications").status_code == 403


def test_search_page_filters_by_collection_and_shows_it(site, archive):
    _, _, get, ids = site
    r = get("datasets/all", user="carol", params={"collection": "MUSE/raw"})
    assert "3 datasets" in r.text and r.text.count('<td class="collection">MUSE/raw</td>') == 3
    r = get("datasets/calibrations", user="carol", params={"collection": "galaxies/reference", "per_page": 100})
    shown = set(map(int, re.findall(r'href="/services/archive/datasets/(\d+)"', r.text)))
    assert shown == {*ids["bias"].values(), ids["flat"]}  # the reference reduction, not alice's trial
    r = get("datasets/calibrations", user="carol", params={"collection": "u/alice, MUSE/static"})
    shown = set(map(int, re.findall(r'href="/services/archive/datasets/(\d+)"', r.text)))
    assert shown == {ids["trial"], ids["static"]}
    assert get("datasets/all", user="carol", params={"collection": "nope"}).status_code == 400
    r = get("datasets/all", user="carol", params={"collection": "galaxies/calib"})
    assert r.status_code == 400 and "calibration collection" in r.text
    api = get("api/datasets", user="carol", params={"collection": "MUSE/raw"}).json()
    assert api["total"] == 3 and {d["collection"] for d in api["datasets"]} == {"MUSE/raw"}


# --------------------------------------------------------------------------- a real browser, cookie login


def _login(page, hub, base, who, path):
    page.context.clear_cookies()
    hub.login_as = who
    page.goto(base + path)
    page.wait_for_url(re.compile(re.escape(base + path.split("?")[0]) + r".*"), timeout=30000)
    assert who in page.inner_text("header")


@pytest.mark.browser
def test_browser_reviewer_changes_a_range_and_a_forged_post_is_refused(site, archive, page, output_dir):
    hub, base, _, ids = site
    did = ids["bias"][(1, 61365.1)]
    _login(page, hub, base, "alice", f"calibrations?category=MASTER_BIAS&night={NIGHT}")
    assert page.locator("svg.timeline a.bar").count() == 7
    assert page.locator("#marker").count() == 1
    box = page.locator(f"svg.timeline a.bar[data-dataset='{did}'] rect").first.bounding_box()
    assert box["width"] > 100  # a 14-day range of a 60-day window, 930 pixels wide
    page.screenshot(path=str(output_dir / "timeline_alice.png"), full_page=True)
    page.locator(f"svg.timeline a.bar[data-dataset='{did}']").first.click()
    page.wait_for_url(re.compile(rf".*/datasets/{did}$"))
    form = page.locator("form.certify").first
    form.locator("input[name=begin]").fill("61360")
    form.locator("input[name=end]").fill("2026-11-28")
    form.locator("input[name=comment]").fill("bias drifts after the 28th")
    form.locator("button[type=submit]").click()
    page.wait_for_selector("#certified-note")
    history = page.inner_text("#certification-history")
    assert "bias drifts after the 28th" in history and "alice" in history and "change" in history
    page.screenshot(path=str(output_dir / "dataset_after_change.png"), full_page=True)
    c = archive.certifications(dataset_id=did)[0]
    assert (c.begin_mjd, c.end_mjd) == (61360.0, pytest.approx(61372.5))
    # Another site's page posting with alice's cookie but without the XSRF token: refused.
    with page.expect_response(lambda resp: resp.url.endswith("/certify")) as forged:
        page.goto(f"{hub.url}/evil?dataset={did}&collection=galaxies/calib")
    assert forged.value.status == 403 and forged.value.request.method == "POST"
    c = archive.certifications(dataset_id=did)[0]
    assert (c.begin_mjd, c.comment) == (61360.0, "bias drifts after the 28th")


@pytest.mark.browser
def test_browser_non_reviewer_sees_no_form_and_a_forged_post_is_refused(site, archive, page, output_dir):
    hub, base, _, ids = site
    did = ids["bias"][(1, 61365.1)]
    _login(page, hub, base, "bob", f"datasets/{did}")
    assert page.locator("#certified-ranges").count() == 1 and page.locator("form.certify").count() == 0
    assert "may change its ranges" in page.inner_text("#no-review")
    page.screenshot(path=str(output_dir / "dataset_bob.png"), full_page=True)
    # A forged POST from the page, without and with bob's own XSRF token.
    without = page.evaluate("""async (url) => {
        const r = await fetch(url, {method: 'POST', body: new URLSearchParams(
            {collection: 'galaxies/calib', begin: '61000', end: '61001', comment: 'forged'})});
        return [r.status, await r.text()]; }""", f"{base}datasets/{did}/certify")
    assert without[0] == 403
    xsrf = [c["value"] for c in page.context.cookies() if c["name"] == "_xsrf"][0]
    with_token = page.evaluate("""async ([url, xsrf]) => {
        const r = await fetch(url, {method: 'POST', body: new URLSearchParams(
            {collection: 'galaxies/calib', begin: '61000', end: '61001', comment: 'forged', _xsrf: xsrf})});
        return [r.status, await r.text()]; }""", [f"{base}datasets/{did}/certify", xsrf])
    assert with_token[0] == 403 and "may not certify" in with_token[1]
    c = archive.certifications(dataset_id=did)[0]
    assert (c.begin_mjd, c.end_mjd) == (pytest.approx(61358.1), pytest.approx(61372.1))
