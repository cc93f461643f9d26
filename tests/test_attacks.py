"""Attacks by a hostile consortium member, each a defect found in the code and fixed (issue 11, item 5).

Each test tries the attack for real - raw SQL through the sandbox, the web view on a
real tornado server on 127.0.0.1 as another hub identity, the Python API as another
archive user - and asserts it now fails, while the same action on what the user may see
still works (so a test cannot pass by refusing everything). Fixtures ``populated`` and
``web`` come from ``test_web.py`` (bob owns one private product, ``ids['private']``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from test_release import dr1, products  # noqa: F401  (fixtures)
from test_web import populated, web  # noqa: F401  (fixtures)

from musewise.exceptions import QueryError


def sql(arch, query, **kw):
    from musewise.web.sqlpage import run_readonly_sql

    return run_readonly_sql(arch, query, **kw)


# --------------------------------------------------------------------------- 1. the SQL page

#: Raises "integer overflow" on each row it is evaluated on where the condition holds.
OVERFLOW = "abs(CASE WHEN {} THEN -9223372036854775807 - 1 ELSE 0 END) >= 0"


def _oracle(arch, table: str, condition: str, where: str = "") -> str:
    """'overflow' if the query evaluated ``condition`` as true on some row it could reach."""
    try:
        sql(arch, f"SELECT count(*) FROM {table} t WHERE {where}{OVERFLOW.format(condition)}")
    except QueryError as exc:
        return "overflow" if "overflow" in str(exc) else str(exc)
    return "no row"


def test_sql_hidden_rows_are_absent_not_filtered(populated):
    """An error raised on a row tells it exists: hidden rows must not be reachable at all."""
    arch, ids = populated
    carol = arch.as_user("carol")  # consortium member: sees all but bob's private product and run
    secret, prun, master = ids["private"], ids["private_run"], ids["master"]
    sha = arch.as_user("bob").get(secret).sha256
    probes = [("datasets", "t.id = {}", "", secret, master),
              ("datasets", "t.id = {} AND t.category = 'MASTER_BIAS'", "t.category = 'MASTER_BIAS' AND ", secret, master),
              ("datasets", "t.id = {}", "t.run_id > 0 AND ", secret, master),
              ("dataset_ifus", "t.dataset_id = {}", "t.ifu = 1 AND ", secret, master),
              ("files", "t.sha256 = '{}'", "", sha, arch.get(master).sha256),
              ("runs", "t.id = {}", "", prun, ids["run"]),
              ("run_inputs", "t.run_id = {}", f"t.dataset_id = {ids['raw'][0]} AND ", prun, ids["run"])]
    for table, cond, where, hidden, visible in probes:
        assert _oracle(carol, table, cond.format(visible), where) == "overflow", (table, cond)  # the oracle works
        assert _oracle(carol, table, cond.format(hidden), where) == "no row", (table, cond)
    assert _oracle(arch.as_user("bob"), "datasets", f"t.id = {secret}") == "overflow"  # the owner reaches it
    # Tables the page does not offer are not reachable either, not even to count their rows.
    for table in ("collections", "alembic_version", "exposures", "collection_chains", "sqlite_master",
                  "sqlite_schema", "sqlite_temp_master", "_visible_datasets", "temp._visible_datasets"):
        with pytest.raises(QueryError):
            sql(carol, f"SELECT count(*) FROM {table}")
        with pytest.raises(QueryError):
            sql(carol, f"WITH c AS (SELECT * FROM {table}) SELECT count(*) FROM c")
    assert sql(carol, "SELECT count(*) FROM datasets")[1] == [(carol.count(),)]
    assert sql(carol, "WITH c AS (SELECT * FROM runs) SELECT count(*) FROM c")[1] == [(len(carol.runs()),)]


def test_sql_unclosed_comment_cannot_remove_the_limit(populated):
    arch, _ = populated
    many = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000) SELECT i FROM n"
    # ") /*" closes the wrapping subquery itself and comments out the appended ") LIMIT 50".
    for tail in (") /*", " /*", " /* unclosed", ") --", ") UNION ALL SELECT * FROM (SELECT 1"):
        try:
            _, rows = sql(arch.as_user("carol"), many + tail, limit=50)
        except QueryError:
            continue
        assert len(rows) <= 50, tail
    with pytest.raises(QueryError, match="incomplete"):
        sql(arch.as_user("carol"), many + " /*", limit=50)
    with pytest.raises(QueryError, match="incomplete"):
        sql(arch.as_user("carol"), "SELECT 'abc", limit=50)
    # Closed comments and "--" comments are fine.
    _, rows = sql(arch.as_user("carol"), many + " /* all */ -- numbers", limit=50)
    assert len(rows) == 50


def test_sql_huge_strings_are_refused(populated):
    arch, _ = populated
    carol = arch.as_user("carol")
    # SQLite stops printf at the length limit (its result is NULL) instead of building 50 MB.
    assert sql(carol, "SELECT printf('%50000000d', 1)")[1] == [(None,)]
    assert sql(carol, "SELECT length(printf('%.*c', 50000000, 'x'))")[1] == [(None,)]
    for big in ("replace(printf('%3000000d', 1), ' ', 'xx')",
                "(WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10) "
                "SELECT group_concat(printf('%1000000d', i)) FROM n)"):
        with pytest.raises(QueryError, match="longer than"):
            sql(carol, f"SELECT length({big})")
    with pytest.raises(QueryError, match="too large"):  # 40 values of 1 MB: 40 MB in all
        sql(carol, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40) "
                   "SELECT printf('%1000000d', i) FROM n")
    _, rows = sql(carol, "SELECT length(printf('%1000000d', 1))")  # a 1 MB value is fine
    assert rows == [(1000000,)]


def test_sql_attacks_through_the_web_view(web):
    """The same attacks, sent as carol to the real web view."""
    get, ids = web
    ok = get("api/sql", user="carol", params={"q": "SELECT count(*) AS n FROM datasets"})
    assert ok.status_code == 200 and ok.json()["rows"] == [[6]]
    probe = f"SELECT count(*) FROM datasets t WHERE {OVERFLOW.format('t.id = %d' % ids['private'])}"
    bob = get("api/sql", user="bob", params={"q": probe})
    assert bob.status_code == 400 and "overflow" in bob.json()["message"]
    carol = get("api/sql", user="carol", params={"q": probe})
    assert carol.status_code == 200 and carol.json()["rows"] == ok.json()["rows"]
    for q in ("SELECT count(*) FROM collections", "SELECT replace(printf('%3000000d', 1), ' ', 'xx')",
              "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000) SELECT i FROM n) /*"):
        r = get("api/sql", user="carol", params={"q": q})
        assert r.status_code == 400, (q, r.text[:200])
        page = get("sql", user="carol", params={"q": q})
        assert page.status_code == 400 and 'id="sql-error"' in page.text


# --------------------------------------------------------------------------- 2. stored XSS from header text

XSS = "<img src=x onerror=alert(document.cookie)>"


def _html_values(widget) -> list[str]:
    """Every HTML text an ipywidgets tree sends to the browser."""
    import ipywidgets as widgets

    out = [widget.value] if isinstance(widget, (widgets.HTML, widgets.HTMLMath)) else []
    for child in getattr(widget, "children", ()):
        out += _html_values(child)
    return out


def _assert_escaped(texts, where):
    joined = "\n".join(texts)
    assert "<img" not in joined, (where, joined[:500])
    assert "&lt;img src=x onerror=alert(document.cookie)&gt;" in joined, where


def test_header_text_is_escaped_in_the_viewers(tmp_path):
    from astropy.io import fits

    from musewise.widgets import CompareViewer, CubeViewer, RegionViewer
    from musewise.products.testing import write_synthetic_cube

    cube = write_synthetic_cube(tmp_path / "cube.fits", shape=(40, 12, 10), seed=3).path
    fits.setval(cube, "OBJECT", value=XSS)

    class Record:  # a record whose category was written by someone else
        id, category, is_valid = 42, XSS, True
        run_id = exposure = None

    class Source:
        def path(self, dataset_id):
            return str(cube)

        def file(self, dataset_id):
            return Path(cube)

    viewer = CubeViewer(Record(), archive=Source(), cache_dir=tmp_path / "cache", prefetch=False)
    _assert_escaped(_html_values(viewer), "cube viewer")
    viewer._regions_path.value = str(tmp_path / f"{XSS}.reg")
    viewer._load_regions.click()  # the error names the file: shown as text
    assert XSS in viewer.status
    _assert_escaped([viewer._status.value], "cube viewer status")
    compare = CompareViewer(cube, cube, labels=(XSS, "B"), cache_dir=tmp_path / "cache")
    _assert_escaped(_html_values(compare), "compare viewer")
    region = RegionViewer(cube, cache_dir=tmp_path / "cache")
    _assert_escaped(_html_values(region), "region viewer")
    region._path.value = str(tmp_path / f"{XSS}.reg")
    region._load.click()
    _assert_escaped([region._status.value], "region viewer status")


def test_header_text_is_escaped_in_the_web_view(web, populated, tmp_path):
    from astropy.io import fits

    from test_web import fits_raw

    get, _ = web
    arch, _ = populated
    path = fits_raw(tmp_path / "xss.fits", mjd=61366.2, seed=9)
    fits.setval(path, "OBJECT", value=XSS)
    did = arch.ingest(path).record.id
    for page in (f"datasets/{did}", "datasets/raw?per_page=100", "datasets/all?per_page=100"):
        r = get(page, user="carol")
        assert r.status_code == 200 and "<img src=x" not in r.text, page
    assert XSS in get(f"datasets/{did}", user="carol").text.replace("&lt;", "<").replace("&gt;", ">")
    sql = get("sql", user="carol", params={"q": f"SELECT object FROM datasets WHERE id = {did}"})
    assert sql.status_code == 200 and "<img src=x" not in sql.text and "&lt;img src=x" in sql.text


# --------------------------------------------------------------------------- 3. write rights: QC, publish, ingest


def test_only_reviewers_set_qc_values(populated):
    from musewise.exceptions import PermissionDeniedError

    arch, ids = populated
    master = ids["master"]  # alice's product, visible to every consortium member
    arch.as_user("alice").add_qc(master, {"bias.level": 1000.2}, ifu=1, units={"bias.level": "adu"})
    for who in ("bob", "carol"):  # they see it, but review nothing of it
        with pytest.raises(PermissionDeniedError, match="may not set QC"):
            arch.as_user(who).add_qc(master, {"bias.level": -1.0}, ifu=1)
        with pytest.raises(PermissionDeniedError):
            arch.as_user(who).add_qc(master, {"forged": 1.0})
    assert [(q["name"], q["value"]) for q in arch.as_user("carol").qc(master)] == [("bias.level", 1000.2)]
    arch.add_member("bob", "consortium", "reviewer")  # a reviewer of the dataset's project may
    arch.as_user("bob").add_qc(master, {"bias.level": 1000.3}, ifu=1)
    assert [q["value"] for q in arch.qc(master)] == [1000.3]


def test_only_project_members_publish_into_a_project(populated):
    from musewise.exceptions import PermissionDeniedError
    from musewise.vocabulary import Privilege

    arch, ids = populated
    arch.add_project("stars", "a project bob is not in")
    bob = arch.as_user("bob")
    with pytest.raises(PermissionDeniedError, match="not a member of project 'stars'"):
        bob.publish([ids["private"]], Privilege.PROJECT, project="stars")
    rec = bob.get(ids["private"])
    assert rec.privilege == Privilege.PRIVATE and rec.project != "stars"
    bob.publish([ids["private"]], Privilege.PROJECT, project="galaxies")  # his own project
    assert arch.as_user("alice").get(ids["private"]).privilege == Privilege.PROJECT
    with pytest.raises(PermissionDeniedError):
        arch.as_user("carol").publish([ids["master"]], Privilege.PUBLIC)  # not hers, not her project


def test_only_project_members_ingest_into_a_project(populated, tmp_path):
    from test_web import fits_raw

    from musewise.exceptions import PermissionDeniedError

    arch, _ = populated
    before = arch.count()
    frames = [fits_raw(tmp_path / f"f{i}.fits", mjd=61370.1 + i / 10, seed=20 + i) for i in range(4)]
    for who, project in (("carol", "galaxies"), ("eve", "galaxies"), ("carol", None), ("eve", None)):
        with pytest.raises(PermissionDeniedError, match="may not ingest into project"):
            arch.as_user(who).ingest(frames[0], project=project)
        with pytest.raises(PermissionDeniedError):
            arch.as_user(who).ingest_many([frames[1]], project=project, progress=False)
    assert arch.count() == before and arch.fsck()["orphans"] == [] and arch.fsck()["temporaries"] == []
    rec = arch.as_user("bob").ingest(frames[2], project="galaxies").record  # a member may
    assert rec.owner == "bob" and rec.project == "galaxies"
    assert arch.ingest(frames[3], project="galaxies").created  # and the administrator


# --------------------------------------------------------------------------- 4. hidden datasets are not told


def test_ingesting_bytes_archived_privately_tells_nothing(populated, tmp_path):
    from test_web import fits_raw

    from musewise.vocabulary import Privilege

    arch, _ = populated
    path = fits_raw(tmp_path / "secret_raw.fits", mjd=61371.3, seed=31)
    mine = arch.as_user("bob").ingest(path, project="galaxies", privilege=Privilege.PRIVATE).record
    again = arch.as_user("bob").ingest(path, project="galaxies").record  # the owner gets it back
    assert again.id == mine.id
    alice = arch.as_user("alice")  # may not see bob's frame; tries its bytes
    res = alice.ingest(path, project="galaxies")
    assert res.record.id != mine.id and res.record.owner == "alice" and res.created
    assert arch.as_user("bob").get(mine.id).privilege == Privilege.PRIVATE
    assert mine.id not in {r.id for r in alice.query(limit=None)}
    report = alice.ingest_many([path], project="galaxies", progress=False)  # now hers: a duplicate
    assert [r.id for r in report.duplicates] == [res.record.id] and not report.refused


def test_ingest_race_with_a_private_copy_gives_the_user_their_own_dataset(populated, tmp_path):
    """Bob archives the same bytes (privately) between alice's check and her commit."""
    from sqlalchemy import event

    from test_web import fits_raw

    from musewise.archive import Archive
    from musewise.vocabulary import Privilege

    arch, _ = populated
    path = fits_raw(tmp_path / "raced.fits", mjd=61372.3, seed=41)
    alice = Archive(arch.config, user="alice")  # her own engine and connections, as in another process
    bob = Archive(arch.config, user="bob")
    raced = {}

    def before_insert(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO FILES") and not raced:
            raced["bob"] = bob.ingest(path, project="galaxies", privilege=Privilege.PRIVATE).record.id

    event.listen(alice.engine, "before_cursor_execute", before_insert)
    try:
        res = alice.ingest(path, project="galaxies")
    finally:
        event.remove(alice.engine, "before_cursor_execute", before_insert)
        alice.close()
        bob.close()
    assert "bob" in raced  # the race happened
    assert res.record.owner == "alice" and res.record.id != raced["bob"]
    assert arch.as_user("bob").get(raced["bob"]).privilege == Privilege.PRIVATE
    assert arch.get(res.record.id).sha256 == arch.get(raced["bob"]).sha256  # one file, two datasets
    assert arch.fsck()["orphans"] == [] and arch.fsck()["temporaries"] == []


def test_a_run_names_only_the_datasets_the_user_may_see(web, populated):
    from musewise.vocabulary import Privilege

    get, ids = web
    arch, _ = populated
    alice = arch.as_user("alice")
    run, notebook, master = ids["run"], ids["notebook"], ids["master"]
    assert arch.as_user("carol").get_run(run).notebook_id == notebook
    alice.publish([notebook, master], Privilege.PRIVATE)  # the run stays visible, its products do not
    carol = arch.as_user("carol")
    for rec in (carol.get_run(run), carol.get_runs([run])[run], next(r for r in carol.runs() if r.id == run)):
        assert rec.notebook_id is None and master not in rec.output_ids
    assert alice.get_run(run).notebook_id == notebook and alice.get_run(run).output_ids == (master,)
    assert next(r for r in alice.runs() if r.id == run).output_ids == (master,)  # the listing, too
    from musewise.web.sqlpage import run_readonly_sql

    assert run_readonly_sql(carol, f"SELECT notebook_id FROM runs WHERE id = {run}")[1] == [(None,)]
    assert run_readonly_sql(alice, f"SELECT notebook_id FROM runs WHERE id = {run}")[1] == [(notebook,)]
    body = get(f"api/runs/{run}", user="carol").json()
    assert body["notebook_id"] is None and body["output_ids"] == []
    page = get(f"runs/{run}", user="carol")
    assert page.status_code == 200 and f"datasets/{notebook}" not in page.text and f"#{notebook}" not in page.text


def test_release_refusal_does_not_name_a_hidden_input(populated):
    from musewise.exceptions import ReleaseRefusedError
    from musewise.release.core import create_release
    from musewise.vocabulary import Privilege

    arch, ids = populated
    raw = ids["raw"][0]  # the administrator's frame, an input of the input of alice's cube
    arch.set_validity(raw, is_valid=False, comment="bad bias")  # alice's products become affected
    with pytest.raises(ReleaseRefusedError, match=f"#{raw}"):  # while alice may see the input: named
        create_release(arch.as_user("alice"), "dr1", "1", [ids["cube"]])
    arch.publish([raw], Privilege.PRIVATE)
    with pytest.raises(ReleaseRefusedError, match="affected by invalid input") as refused:
        create_release(arch.as_user("alice"), "dr1", "1", [ids["cube"]])
    assert f"#{raw}" not in str(refused.value)


# --------------------------------------------------------------------------- 5. downloads of any file name


def test_download_of_a_file_whose_name_is_not_latin1(web, populated, tmp_path):
    import re
    from pathlib import Path
    from urllib.parse import unquote

    from test_web import fits_raw

    get, _ = web
    arch, _ = populated
    name = 'Ωmega "ciel" étoile_北.fits'
    did = arch.ingest(fits_raw(tmp_path / name, mjd=61373.2, seed=51)).record.id
    for path in (f"datasets/{did}/file", f"api/datasets/{did}/file"):
        r = get(path, user="carol")
        assert r.status_code == 200, (path, r.status_code)
        assert r.content == Path(arch.path(did)).read_bytes()
        value = r.headers["Content-Disposition"]
        encoded = re.search(r"filename\*=UTF-8''([^;\s]+)", value)
        assert encoded and unquote(encoded.group(1)) == name  # filename* (RFC 5987), what browsers read
        assert 'filename="_mega _ciel_ _toile__.fits"' in r.headers["Content-Disposition"]


# --------------------------------------------------------------------------- 6. bad header values


def _bad_frames(folder):
    """Files each with one bad header value or extension: {file name: the reason's words}."""
    import numpy as np
    from astropy.io import fits

    from test_web import fits_product, fits_raw

    folder.mkdir(parents=True, exist_ok=True)

    def raw(name, seed, **cards):
        path = fits_raw(folder / name, mjd=61380.1 + seed / 100, seed=seed)
        with fits.open(path, mode="update") as hdul:
            for k, v in cards.items():
                hdul[0].header[k.replace("_", "-")] = v
        return path

    def raw_with(name, seed, hdu):
        path = fits_raw(folder / name, mjd=61380.1 + seed / 100, seed=seed)
        with fits.open(path) as hdul:
            fits.HDUList([h.copy() for h in hdul] + [hdu]).writeto(path, overwrite=True)
        return path

    image = fits.ImageHDU(np.zeros((80, 64), np.float32))
    raw("mjd_text.fits", 1, MJD_OBS="yesterday")
    raw("exptime_text.fits", 2, EXPTIME="long")
    raw("mjd_huge.fits", 3, MJD_OBS=1e12)
    raw("object_long.fits", 4, OBJECT="NGC 1365 " * 12)  # 107 characters (stripped), in CONTINUE cards
    fits_product(folder / "MASTER_BIAS.fits", ifu="seven")  # the IFU number written as text
    raw_with("chan_twice.fits", 5, fits.ImageHDU(image.data, name="CHAN01"))
    raw_with("chan99.fits", 6, fits.ImageHDU(image.data, name="CHAN99"))
    table = fits.BinTableHDU.from_columns([fits.Column("x", "E", array=np.zeros(3))], name="CHAN01")
    path = fits_raw(folder / "chan_table.fits", mjd=61380.2, seed=7)
    with fits.open(path) as hdul:
        fits.HDUList([hdul[0].copy(), table]).writeto(path, overwrite=True)
    fits_raw(folder / "good.fits", mjd=61380.3, seed=8)
    return {"mjd_text.fits": "MJD-OBS is 'yesterday', not a number",
            "exptime_text.fits": "EXPTIME is 'long', not a number",
            "mjd_huge.fits": "MJD-OBS = 1e+12 is outside",
            "object_long.fits": "OBJECT is 107 characters long",
            "MASTER_BIAS.fits": "ESO DRS MUSE IFU is 'seven', not an IFU number",
            "chan_twice.fits": "extension CHAN01 appears twice",
            "chan99.fits": "extension CHAN99 is 99, not an IFU number",
            "chan_table.fits": "extension CHAN01 is not a 2-D CCD image (BINTABLE"}


def test_a_bad_header_value_refuses_that_file_only(archive, tmp_path):
    from musewise.exceptions import InvalidFrameError
    from musewise.ingest import inspect_file

    want = _bad_frames(tmp_path / "night")
    for name, reason in want.items():
        with pytest.raises(InvalidFrameError) as refused:
            inspect_file(tmp_path / "night" / name)
        assert reason in refused.value.reason, name
    report = archive.ingest_many([tmp_path / "night"], progress=False)
    assert [r.filename for r in report.ingested] == ["good.fits"]
    refused = {p.rsplit("/", 1)[-1]: why for p, why in report.refused}
    assert set(refused) == set(want)
    for name, reason in want.items():
        assert reason in refused[name], (name, refused[name])
    assert archive.count() == 1
    fsck = archive.fsck()
    assert fsck["orphans"] == fsck["temporaries"] == fsck["missing"] == []


def test_the_registry_widths_are_the_ones_ingest_checks():
    from musewise.archive.schema import Dataset
    from musewise.ingest import FIELD_WIDTHS

    for field, width in FIELD_WIDTHS.items():
        assert Dataset.__table__.c[field].type.length == width, field


# --------------------------------------------------------------------------- 7. the notebook view, huge numbers


def test_notebook_view_renders_notebooks_only(web):
    get, ids = web
    ok = get(f"datasets/{ids['notebook']}/notebook.html", user="carol")
    assert ok.status_code == 200 and "mean bias level 1000.2 ADU" in ok.text
    for key in ("master", "cube"):  # FITS files are never read as JSON
        r = get(f"datasets/{ids[key]}/notebook.html", user="carol")
        assert r.status_code == 404 and "not a notebook" in r.text


def test_notebook_view_refuses_a_huge_notebook(populated, tmp_path):
    from musewise.exceptions import InvalidArgumentError
    from musewise.web.notebook import notebook_html

    arch, ids = populated
    size = arch.get(ids["notebook"]).size
    with pytest.raises(InvalidArgumentError, match="too large"):
        notebook_html(arch, ids["notebook"], tmp_path, max_bytes=size - 1)
    assert "mean bias level" in notebook_html(arch, ids["notebook"], tmp_path, max_bytes=size)


HUGE = "9" * 25


@pytest.mark.parametrize("path, status, words", [
    (f"datasets/all?page={HUGE}", 400, "page must be from 1"),
    (f"api/datasets?page={HUGE}", 400, "page must be from 1"),
    (f"api/datasets?per_page={HUGE}", 400, "per_page must be from 1"),
    (f"datasets/all?ifu={HUGE}", 400, "ifu must be from 1 to 24"),
    ("api/datasets?ifu=25", 400, "ifu must be from 1 to 24"),
    (f"api/datasets?run_id={HUGE}", 400, "run_id must be from 1"),
    ("api/datasets?ifu=seven", 400, "ifu must be a whole number"),
    (f"api/certifications?ifu={HUGE}", 400, "ifu must be from 1 to 24"),
    (f"datasets/MASTER/quicklook.png?ifu={HUGE}", 400, "ifu must be from 1 to 24"),
    (f"datasets/{HUGE}", 404, ""),
    (f"api/datasets/{HUGE}", 404, ""),
    (f"runs/{HUGE}", 404, ""),
    (f"api/provenance/{HUGE}", 404, ""),
    (f"datasets/{HUGE}/provenance.json", 404, ""),
    ("datasets/9223372036854775807", 404, ""),
])
def test_huge_numbers_are_refused_not_failed(web, path, status, words):
    get, ids = web
    r = get(path.replace("MASTER", str(ids["master"])), user="carol")
    assert r.status_code == status, (path, r.status_code, r.text[:300])
    assert words in r.text


# --------------------------------------------------------------------------- 8. releases


def test_release_export_link_cannot_edit_the_archive(archive, dr1, tmp_path):
    import os
    import stat

    from musewise.release import export_release, manifest_of, verify_folder

    folder = export_release(archive, "DR1", "1.0", tmp_path / "linked", link=True)
    copies = {p["path"] for p in manifest_of(archive, "DR1")["products"] if p.get("phase3")}
    assert copies  # the cube: a Phase 3 copy is the export's own file, never the archive's inode
    for f in (folder / "products").rglob("*.fits"):
        st = f.stat()
        if f.relative_to(folder).as_posix() in copies:
            assert st.st_nlink == 1
            continue
        assert st.st_nlink == 2  # the archive's own file, hard-linked
        assert not st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH), oct(st.st_mode)
    assert verify_folder(folder).ok
    # Every file the archive stores is read-only, hard-linked or not.
    for rel in archive.datastore.walk():
        assert not os.stat(archive.datastore.local_path(rel)).st_mode & 0o222, rel


def test_release_verify_finds_every_change(archive, dr1, tmp_path):
    import os

    from musewise.release import export_release, verify_folder

    original = export_release(archive, "DR1", "1.0", tmp_path / "DR1")
    assert verify_folder(original).ok and (original / "files.sha256").is_file()
    product = next((original / "products").rglob("*.fits")).relative_to(original)
    provenance = next((original / "provenance").glob("*.txt")).relative_to(original)

    def changed(edit):
        import shutil

        folder = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
        shutil.copytree(original, folder, symlinks=True)
        edit(folder)
        return " ".join(verify_folder(folder).problems)

    def append(rel, text="edited\n"):
        return lambda f: open(f / rel, "a").write(text)

    def replace_by_symlink(f):
        os.chmod(f / product, 0o644)
        (f / product).unlink()
        (f / product).symlink_to(original / product)

    assert "provenance" in changed(append(provenance))
    assert "README.md: changed" in changed(append("README.md"))
    assert "obscore.csv: changed" in changed(append("obscore.csv", "x,y\n"))
    assert "notes.txt: not in the manifest" in changed(lambda f: (f / "notes.txt").write_text("hi"))
    assert "provenance/extra.txt: not in the manifest" in changed(
        lambda f: (f / "provenance" / "extra.txt").write_text("hi"))
    assert f"{product.as_posix()}: a symbolic link" in changed(replace_by_symlink)
    assert "README.md: missing" in changed(lambda f: (f / "README.md").unlink())
    assert "files.sha256" in changed(append("files.sha256", "0" * 64 + "  notes.txt\n"))


# --------------------------------------------------------------------------- 8. leftovers of killed processes


def test_fsck_repair_removes_what_killed_ingests_left_and_nothing_else(populated, tmp_path):
    import os

    from test_archive import _crash_ingest
    from test_web import fits_raw

    from musewise.cli import main
    from musewise.exceptions import PermissionDeniedError
    from musewise.ingest import inspect_file

    arch, ids = populated
    before = sorted(arch.datastore.walk())
    killed = fits_raw(tmp_path / "killed.fits", mjd=61390.1, seed=61)
    assert _crash_ingest(arch, killed, crash_at="before-db-commit") == -9  # a real SIGKILL
    half = fits_raw(tmp_path / "half.fits", mjd=61390.2, seed=62)
    arch.datastore.put(half, "raw/half.fits")  # copied, never committed: what a kill mid-copy leaves
    report = arch.fsck()
    assert len(report["orphans"]) == 1 and len(report["temporaries"]) == 1
    with pytest.raises(PermissionDeniedError):
        arch.as_user("alice").fsck(repair=True)
    # Young leftovers may be an ingest still writing: left alone.
    young = arch.fsck(repair=True)
    assert young["removed"] == [] and young["orphans"] == report["orphans"]
    leftovers = report["orphans"] + report["temporaries"]
    for rel in sorted(arch.datastore.walk()) + arch.datastore.temporaries():  # everything is old now
        os.utime(os.path.join(arch.datastore.root, rel), (1e9, 1e9))
    assert main(["--root", arch.config.root, "--db-url", arch.config.db_url, "--user", "admin",
                 "fsck", "--repair", "--older-than", "600"]) == 0
    assert arch.fsck() == {"orphans": [], "temporaries": [], "missing": [], "corrupt": []}
    assert sorted(arch.datastore.walk()) == before and set(leftovers).isdisjoint(before)
    for did in [*ids["raw"], ids["master"], ids["cube"]]:
        arch.verify(did)  # every archived file is intact
    assert arch.ingest(killed, info=inspect_file(killed)).created  # and the killed ingest can be redone
