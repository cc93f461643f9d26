"""QC review from the web view: the 24-IFU grid of a product, verdicts with claims and audit, QC trends.

The web view runs as a real tornado server on 127.0.0.1 with the real ``HubOAuth`` code and
the stand-in hub of ``test_web_calibrations.py`` (it completes the OAuth login, so a real
Chromium logs in with the hub's cookie and forms go through the hub login's XSRF check);
scripts use API tokens. The stand-in hub's site also serves ``/evil-review``: another
origin's page that posts a verdict to the archive with the visitor's cookies.

Data (project ``galaxies``: alice reviews it, bob is a plain member, carol is outside it,
eve outside the consortium): a MASTER_BIAS per IFU for two nights with its read noise
``bias.ron.max`` (:func:`musewise.qc.testing.bias_trend`), IFU 05 of the second night
spoiled to a ``bad`` value; from that night's biases of IFUs 05 and 06 a MASTER_FLAT each,
and from the IFU-05 flat a cube.
"""

from __future__ import annotations

import re
import struct
from datetime import datetime

import numpy as np
import pytest

from test_qc_trends import _point_on_screen
from test_web_calibrations import FakeOAuthHub, _login, web_behind_hub

from musewise.products.testing import write_cube, write_master
from musewise.qc import review_history, review_state
from musewise.qc.testing import archive_product, bias_trend
from musewise.vocabulary import Privilege

PREFIX = "/services/archive/"
NIGHTS = ("2026-11-20", "2026-11-21")
K = 5  # the spoiled IFU of the second night
SPOILED = (NIGHTS[1], K)


class ReviewHub(FakeOAuthHub):
    """The stand-in hub, plus another site's page posting a verdict with the visitor's cookies."""

    def app(self):
        from tornado import web

        outer = self
        app = super().app()

        class EvilReview(web.RequestHandler):
            def get(self):
                did = self.get_argument("dataset")
                self.finish(f"""<html><body><form id="f" method="post"
                    action="{outer.web_base}datasets/{did}/review">
                    <input name="action" value="verdict"><input name="ifu" value="{self.get_argument('ifu')}">
                    <input name="valid" value="no"><input name="flag" value="bad">
                    <input name="comment" value="forged"></form>
                    <script>document.getElementById('f').submit()</script></body></html>""")

        app.add_handlers(r".*", [(r"/evil-review", EvilReview)])
        return app


@pytest.fixture
def masters(archive, tmp_path):
    """(bias ids by (night, IFU), flat of IFU 05, flat of IFU 06, cube) in project galaxies."""
    project = {"privilege": Privilege.PROJECT, "project": "galaxies"}
    ids = bias_trend(archive, tmp_path / "masters", NIGHTS, spoiled={SPOILED: 3.0}, **project)
    t = datetime(2026, 11, 21, 19)
    flats = {}
    for i in (K, K + 1):
        path = write_master(tmp_path / f"MASTER_FLAT-{i:02d}.fits", "MASTER_FLAT", np.ones((48, 40)), t)
        flats[i] = archive_product(archive, path, "muse_flat", [ids[NIGHTS[1], i]], night=NIGHTS[1], ifu=i,
                                   **project).id
    cube = archive_product(archive, write_cube(tmp_path / "DATACUBE_FINAL.fits", datetime(2026, 11, 22, 2)),
                           "muse_scipost", [flats[K]], night=NIGHTS[1], ifu=None, category="DATACUBE_FINAL",
                           **project).id
    return ids, flats[K], flats[K + 1], cube


@pytest.fixture
def site(archive, masters, tmp_path):
    """(hub, base URL, get(path, user, method, **kw), masters) of a web view over ``masters``."""
    with web_behind_hub(archive, ReviewHub, tmp_path) as (hub, base, get):
        yield hub, base, get, masters


def _tiles(html):
    """IFU -> (dataset id, valid, flag) of the grid's tiles."""
    return {int(m.group(1)): (int(m.group(2)), m.group(3), m.group(4)) for m in re.finditer(
        r'<a class="tile[^"]*" id="tile-(\d+)"[^>]*data-dataset="(\d+)" data-valid="(\w+)" data-flag="(\w+)"', html)}


def _verdict(rec_id, ifu, valid="no", flag="bad", comment="bias level jumps in slice 12", **extra):
    return {"action": "verdict", "ifu": str(ifu), "valid": valid, "flag": flag, "comment": comment, **extra}


# --------------------------------------------------------------------------- pages and forms (API tokens)


def test_grid_page_has_a_tile_per_ifu_with_its_verdict_qc_and_thumbnail(site, archive):
    _, _, get, (ids, flat, _, cube) = site
    did = ids[SPOILED]
    r = get(f"datasets/{did}/review", user="alice")
    assert r.status_code == 200
    tiles = _tiles(r.text)
    # The night's 24 single-IFU masters, one per tile, not the other night's.
    assert tiles == {i: (ids[NIGHTS[1], i], "yes", "unchecked") for i in range(1, 25)}
    assert "MASTER_BIAS of 2026-11-21" in r.text
    value = archive.qc(did)[0]["value"]
    # QC numbers beyond the limits are marked (5.0 e- is bad for bias.ron.max by default).
    assert f'<span class="qc-bad">bias.ron.max = {value:.4g} e-' in r.text
    assert r.text.count('<span class="qc-good">bias.ron.max') == 23
    assert f'src="{PREFIX}datasets/{did}/thumb.png"' in r.text
    png = get(f"datasets/{did}/thumb.png", user="alice")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    # Clicking tile 05 (its link) opens it: state and the reviewers' forms.
    r = get(f"datasets/{did}/review", user="alice", params={"ifu": K})
    assert 'id="verdict-form"' in r.text and 'name="_xsrf"' in r.text and 'name="user"' not in r.text
    assert re.search(r'id="ifu-verdict"[^>]*>valid, flag', r.text) and "Claim #%d" % did in r.text
    # bob may see the masters but not judge them; carol and eve may not see them.
    r = get(f"datasets/{did}/review", user="bob", params={"ifu": K})
    assert len(_tiles(r.text)) == 24 and 'id="read-only"' in r.text and "<form" not in r.text
    assert get(f"datasets/{did}/review", user="carol").status_code == 404
    assert get(f"datasets/{did}/review", user="eve").status_code == 404
    assert get(f"datasets/{did}/review", user="alice", params={"ifu": 30}).status_code == 400
    # A cube of all IFUs is one tile; the product page links the grid.
    assert set(_tiles(get(f"datasets/{cube}/review", user="alice").text)) == {0}
    assert f'href="{PREFIX}datasets/{flat}/review"' in get(f"datasets/{flat}", user="alice").text


def test_verdicts_go_through_the_review_with_claims_and_refusals(site, archive):
    _, _, get, (ids, flat, other_flat, cube) = site
    did = ids[SPOILED]
    # bob is logged in as bob whatever the form says: refused, nothing recorded.
    r = get(f"datasets/{did}/review", user="bob", method="POST", data=_verdict(did, K, user="alice"))
    assert r.status_code == 403 and "may not review" in r.text
    assert archive.get(did).is_valid and archive.validity_history(did) == []
    assert get(f"datasets/{did}/review", user="eve", method="POST", data=_verdict(did, K)).status_code == 404
    # A verdict needs a comment, a known flag and validity.
    assert get(f"datasets/{did}/review", user="alice", method="POST", data=_verdict(did, K, comment=" ")
               ).status_code == 400
    assert get(f"datasets/{did}/review", user="alice", method="POST", data=_verdict(did, K, flag="awful")
               ).status_code == 400
    assert get(f"datasets/{did}/review", user="alice", method="POST", data={"action": "drop"}).status_code == 400
    # A claim by admin keeps alice out until it is released.
    assert get(f"datasets/{did}/review", user="admin", method="POST", data={"action": "claim", "ifu": K}
               ).status_code == 302
    r = get(f"datasets/{did}/review", user="alice", params={"ifu": K})
    assert 'id="claimed-note"' in r.text and "admin until" in r.text
    r = get(f"datasets/{did}/review", user="alice", method="POST", data=_verdict(did, K))
    assert r.status_code == 409 and re.search(r"claimed by (&#x27;|')admin(&#x27;|') until", r.text)
    get(f"datasets/{did}/review", user="admin", method="POST", data={"action": "unclaim", "ifu": K})
    r = get(f"datasets/{did}/review", user="alice", method="POST", data=_verdict(did, K))
    assert r.status_code == 302 and r.headers["Location"] == f"{PREFIX}datasets/{did}/review?ifu={K}&done=verdict#editor"
    state = archive.get(did).ifu_state(K)
    assert (state.is_valid, state.flag, state.updated_by) == (False, "bad", "alice")
    actions = [(e["user"], e["action"]) for e in review_history(archive, did)]
    assert ("admin", "claim") in actions and ("admin", "unclaim") in actions and ("alice", "review") in actions
    assert archive.get(flat).affected_by == did and archive.get(cube).affected_by == did
    assert archive.get(other_flat).affected_by is None


# --------------------------------------------------------------------------- a real browser, cookie login


@pytest.mark.browser
def test_browser_reviewer_sets_an_ifu_invalid_and_its_dependents_are_affected(site, archive, page, output_dir):
    hub, base, _, (ids, flat, other_flat, cube) = site
    did = ids[SPOILED]
    _login(page, hub, base, "alice", f"datasets/{ids[NIGHTS[1], 1]}/review")
    assert page.locator("#ifu-grid a.tile").count() == 24
    page.wait_for_function("() => [...document.querySelectorAll('img.thumb')].every(i => i.complete && i.naturalWidth)")
    page.screenshot(path=str(output_dir / "grid_alice.png"), full_page=True)
    page.locator(f"#tile-{K:02d}").click()
    page.wait_for_url(re.compile(rf".*/datasets/{did}/review\?ifu={K}#editor$"))
    form = page.locator("#verdict-form")
    form.locator("input[name=valid][value=no]").check()
    form.locator("select[name=flag]").select_option("bad")
    form.locator("input[name=comment]").fill("read noise 6 e-, bias level jumps")
    form.locator("button[type=submit]").click()
    page.wait_for_selector("#done")
    assert "INVALID" in page.inner_text("#ifu-verdict") and "read noise 6 e-" in page.inner_text("#ifu-verdict")
    tile = page.locator(f"#tile-{K:02d}")
    assert "invalid" in tile.get_attribute("class") and tile.get_attribute("data-flag") == "bad"
    shown = {int(a.get_attribute("data-dataset")) for a in page.locator("#affected-list a.affected-link").all()}
    assert shown == {flat, cube}
    assert "alice" in page.inner_text("#audit-trail") and "read noise 6 e-" in page.inner_text("#audit-trail")
    page.screenshot(path=str(output_dir / "grid_after_verdict.png"), full_page=True)
    # The database: the verdict with the reviewer's name, its dependents affected.
    rec = archive.get(did)
    assert (rec.is_valid, rec.flag, rec.ifu_state(K).updated_by) == (False, "bad", "alice")
    last = archive.validity_history(did)[-1]
    assert (last["user"], last["valid_after"], last["comment"]) == ("alice", False, "read noise 6 e-, bias level jumps")
    assert [e["user"] for e in review_history(archive, did) if e["action"] == "review"] == ["alice"]
    for dep in (flat, cube):
        assert archive.get(dep).affected_by == did
        assert {s["state"] for s in review_state(archive, dep).values()} == {"affected"}
    assert archive.get(other_flat).affected_by is None and review_state(archive, other_flat) == {}
    # An affected product's page says by what.
    page.goto(f"{base}datasets/{flat}/review?ifu={K}")
    assert f"#{did}" in page.inner_text("#review-state") and "affected" in page.inner_text("#review-state")
    assert "affected" in page.locator(f"#tile-{K:02d}").get_attribute("class")
    # Another site's page posting with alice's cookie, without the XSRF token: refused.
    victim = ids[NIGHTS[1], 9]
    with page.expect_response(lambda resp: resp.url.endswith(f"/datasets/{victim}/review")) as forged:
        page.goto(f"{hub.url}/evil-review?dataset={victim}&ifu=9")
    assert forged.value.status == 403 and forged.value.request.method == "POST"
    # A same-origin script posting without the token: refused too.
    status = page.evaluate("""async (url) => (await fetch(url, {method: 'POST', body: new URLSearchParams(
        {action: 'verdict', ifu: '9', valid: 'no', flag: 'bad', comment: 'forged'})})).status""",
                           f"{base}datasets/{victim}/review")
    assert status == 403
    assert archive.get(victim).is_valid and archive.validity_history(victim) == []
    # Every route of the web view that takes a POST refuses alice's cookie without the token.
    refused = {}
    for path in _post_routes(archive, victim):
        refused[path] = page.evaluate("""async (url) => (await fetch(url, {method: 'POST', body:
            new URLSearchParams({action: 'claim', collection: 'x', q: 'SELECT 1'})})).status""", base + path)
    assert {f"datasets/{victim}/review", f"datasets/{victim}/certify", "api/sql"} <= set(refused)
    assert set(refused.values()) == {403}, refused
    assert review_history(archive, victim) == []


def _post_routes(archive, dataset_id):
    """Paths (below the prefix) of every route of the web view whose handler takes a POST."""
    from tornado import web

    from musewise.web.app import make_app

    app = make_app(archive, hub_auth=object(), cache_dir="unused")
    out = []
    for rule in app.wildcard_router.rules:
        cls = rule.target
        if isinstance(cls, type) and issubclass(cls, web.RequestHandler) and cls.post is not web.RequestHandler.post:
            path = rule.matcher.regex.pattern.rstrip("$").replace("([0-9]{1,18})", str(dataset_id))
            out.append(path.replace("\\", "")[len(PREFIX):])
    return out


@pytest.mark.browser
def test_browser_non_reviewer_sees_the_grid_read_only_and_a_post_is_refused(site, archive, page, output_dir):
    hub, base, _, (ids, *_) = site
    did = ids[SPOILED]
    _login(page, hub, base, "bob", f"datasets/{did}/review?ifu={K}")
    assert page.locator("#ifu-grid a.tile").count() == 24 and page.locator("form").count() == 0
    assert "may see this product but not change" in page.inner_text("#read-only")
    page.screenshot(path=str(output_dir / "grid_bob.png"), full_page=True)
    # With bob's own XSRF token (a real session), and naming alice in the form: still bob, refused.
    xsrf = [c["value"] for c in page.context.cookies() if c["name"] == "_xsrf"][0]
    status, text = page.evaluate("""async ([url, xsrf]) => {
        const r = await fetch(url, {method: 'POST', body: new URLSearchParams({action: 'verdict', ifu: '5',
            valid: 'no', flag: 'bad', comment: 'not mine to judge', user: 'alice', _xsrf: xsrf})});
        return [r.status, await r.text()]; }""", [f"{base}datasets/{did}/review", xsrf])
    assert status == 403 and "may not review" in text
    assert archive.get(did).is_valid and archive.validity_history(did) == []


@pytest.mark.browser
def test_browser_trend_page_shows_two_nights_and_a_click_opens_the_product(site, archive, page, output_dir):
    hub, base, _, (ids, *_) = site
    did = ids[SPOILED]
    _login(page, hub, base, "alice", "trends?parameter=bias.ron.max")
    page.locator("#trend-plot canvas").first.wait_for(timeout=60_000)
    nights = page.evaluate("""() => { for (const root of Bokeh.index) for (const v of [root, ...(root.child_views
        || [])]) { const r = (v.model.renderers || []).find(x => x.name === 'points');
        if (r) return [...new Set(r.data_source.data.night)]; } return null; }""")
    assert sorted(nights) == list(NIGHTS)
    rows = page.locator("#trend-nights tr").all_inner_texts()[1:]
    assert [r.split("\t")[:2] for r in rows] == [[NIGHTS[0], "24"], [NIGHTS[1], "24"]]
    assert page.locator("#trend-outliers a").all_inner_texts() == [f"#{did} MASTER_BIAS"]
    where = _point_on_screen(page, did)
    page.screenshot(path=str(output_dir / "trend.png"), full_page=True)
    page.mouse.click(where["x"], where["y"])
    page.wait_for_url(re.compile(rf".*/datasets/{did}/review\?ifu={K}#editor$"), timeout=30_000)
    assert page.locator(f"#tile-{K:02d}.selected").count() == 1 and page.locator("#verdict-form").count() == 1
    page.screenshot(path=str(output_dir / "trend_click_opens_grid.png"), full_page=True)


# --------------------------------------------------------------------------- the grid without a browser


def test_grid_of_a_raw_frame_holds_its_ifus_and_a_verdict_on_one_affects_only_its_products(archive, tmp_path):
    from test_web import fits_product, fits_raw

    from musewise.qc import review
    from musewise.qc.grid import ifu_grid
    from musewise.web.quicklook import thumbnail_png

    raw = archive.ingest(fits_raw(tmp_path / "MUSE.raw.fits", ifus=(1, 2, 3))).record.id
    made = {i: archive_product(archive, fits_product(tmp_path / f"MASTER_BIAS-{i:02d}.fits", ifu=i), "muse_bias",
                               [raw], ifu=i).id for i in (1, 2)}
    grid = ifu_grid(archive, raw)
    assert sorted(grid.tiles) == [1, 2, 3] and grid.dataset_ids == [raw]
    assert all(t.can_review and t.state.is_valid and t.claim is None for t in grid.tiles.values())
    out = review(archive, raw, 2, False, "bad", "IFU 02 saturated")
    assert {a.dataset_id for a in out.affected} == {made[2]}
    grid = ifu_grid(archive, raw)
    assert [(i, t.state.is_valid, t.state.flag) for i, t in sorted(grid.tiles.items())] == [
        (1, True, "unchecked"), (2, False, "bad"), (3, True, "unchecked")]
    assert archive.get(made[2]).affected_by == raw and archive.get(made[1]).affected_by is None
    # The product of IFU 02 is one tile of its night's grid, marked affected; IFU 01's is not.
    grid = ifu_grid(archive, made[2])
    assert grid.tile(2).affected and not grid.tile(1).affected and grid.tile(2).review["source"] == raw
    # Thumbnails of a raw frame are of the asked IFU, small, cached.
    one, two = (thumbnail_png(archive, raw, tmp_path / "cache", ifu=i) for i in (1, 2))
    assert one[:8] == two[:8] == b"\x89PNG\r\n\x1a\n" and len(list((tmp_path / "cache").glob("*-thumb.png"))) == 2
    assert max(struct.unpack(">II", one[16:24])) <= 96  # the PNG's width and height (its IHDR chunk)
