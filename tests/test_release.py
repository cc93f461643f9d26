"""Data releases: frozen rows, manifest with checksums and provenance, export, verify, ObsCore."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from prov.model import ProvDocument
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from musewise.cli import main
from musewise.exceptions import DuplicateError, PermissionDeniedError
from musewise.qc import review
from musewise.products import testing as pt
from musewise.qc import testing as qct
from musewise.release import (
    OBSCORE_COLUMNS,
    ReleaseFrozenError,
    ReleaseVerificationError,
    create_release,
    export_release,
    list_releases,
    manifest_of,
    obscore_rows,
    release_status,
    verify_folder,
)
from musewise.archive.schema_review import Release


@pytest.fixture(params=["folder", "s3"])
def datastore_settings(request, tmp_path):
    """The release guarantees hold on a local folder and on an S3 object store alike."""
    from conftest import each_datastore

    return each_datastore(request, tmp_path)


@pytest.fixture
def products(archive, tmp_path):
    """A master bias (made from 3 raw frames) and a cube made from it; returns (bias, cube, raw ids)."""
    bias, raws = qct.bias_product(archive, tmp_path / "b")
    cube = qct.archive_product(archive, pt.write_cube(tmp_path / "DATACUBE_FINAL.fits", datetime(2026, 11, 21, 2)),
                               "muse_scipost", [bias.id], ifu=None, category="DATACUBE_FINAL")
    return bias, cube, raws


@pytest.fixture
def dr1(archive, products):
    bias, cube, _ = products
    return create_release(archive, "DR1", "1.0", [bias.id, cube.id], "first consortium release")


def test_manifest_has_checksums_and_provenance(archive, products, dr1):
    bias, cube, raws = products
    assert dr1.n_products == 2 and dr1.dataset_ids == (bias.id, cube.id)
    m = manifest_of(archive, "DR1", "1.0")
    entry = {p["dataset_id"]: p for p in m["products"]}
    assert entry[bias.id]["sha256"] == bias.sha256 and entry[cube.id]["size"] == cube.size
    prov = entry[cube.id]["provenance"]
    runs = {r["id"]: r for r in prov["runs"]}
    made_by = {g["dataset_id"]: g["run_id"] for g in prov["generated"]}
    assert prov["root"] == cube.id and runs[made_by[cube.id]]["recipe"] == "muse_scipost"
    assert [u["dataset_id"] for u in prov["used"] if u["run_id"] == made_by[cube.id]] == [bias.id]
    assert {u["dataset_id"] for u in prov["used"] if u["run_id"] == made_by[bias.id]} == set(raws)
    assert [r.label for r in list_releases(archive)] == ["DR1 1.0"]
    assert list_releases(archive.as_user("eve")) == []  # consortium data: not for outside users


def test_release_is_frozen(archive, dr1, products):
    with pytest.raises(DuplicateError, match="already exists"):
        create_release(archive, "DR1", "1.0", [products[0].id])
    # The ORM refuses...
    with pytest.raises(ReleaseFrozenError):
        with archive.transaction() as tx:
            tx.session.get(Release, dr1.id).description = "edited"
    # ...and so does the database, whatever client writes.
    for sql in ("UPDATE releases SET description = 'edited'", "DELETE FROM release_items",
                "UPDATE ivoa_obscore SET target_name = 'x'", "DELETE FROM releases"):
        with pytest.raises(DBAPIError, match="frozen"):
            with archive.engine.begin() as conn:
                conn.execute(text(sql))
    assert manifest_of(archive, "DR1")["description"] == "first consortium release"


def test_only_valid_reviewable_products_are_released(archive, products):
    bias, cube, raws = products
    with pytest.raises(ValueError, match="not a product"):
        create_release(archive, "DR2", "1", [raws[0]])
    with pytest.raises(PermissionDeniedError):
        create_release(archive.as_user("carol"), "DR2", "1", [bias.id])
    archive.set_validity(bias.id, 1, is_valid=False, comment="bad bias")
    with pytest.raises(ValueError, match="marked invalid"):
        create_release(archive, "DR2", "1", [bias.id])
    # A cube holds no per-IFU row: its own verdict keeps it out of a release too.
    archive.set_validity(cube.id, is_valid=False, flag="bad", comment="sky residuals")
    with pytest.raises(ValueError, match="marked invalid"):
        create_release(archive, "DR2", "1", [cube.id])


def _flip_a_stored_bit(archive, relpath: str, at: int) -> None:
    """Change one bit of a stored file where it is stored (as a disk fault or a hand edit would)."""
    ds = archive.datastore
    if ds.is_local:
        with open(ds.local_path(relpath), "r+b") as f:
            f.seek(at)
            b = f.read(1)
            f.seek(at)
            f.write(bytes([b[0] ^ 1]))
        return
    with ds.open(relpath) as f:
        data = bytearray(f.read())
    data[at] ^= 1
    ds.fs.pipe_file(f"{ds.root}/{relpath}", bytes(data))


def test_changed_product_file_is_detected(archive, dr1, products, tmp_path):
    bias = products[0]
    assert release_status(archive, "DR1", "1.0")["files"].ok
    _flip_a_stored_bit(archive, bias.storage_path, 5000)
    st = release_status(archive, "DR1", "1.0")
    assert not st["files"].ok and f"#{bias.id}" in st["files"].problems[0]
    with pytest.raises(ReleaseVerificationError):
        export_release(archive, "DR1", "1.0", tmp_path / "export")


def test_export_and_verify_detect_a_changed_byte(archive, dr1, tmp_path, capsys):
    folder = export_release(archive, "DR1", "1.0", tmp_path / "DR1-1.0")
    for name in ("manifest.json", "manifest.sha256", "README.md", "obscore.csv"):
        assert (folder / name).is_file()
    assert len(list((folder / "provenance").glob("*.txt"))) == 2
    cube = dr1.dataset_ids[1]
    doc = ProvDocument.deserialize(source=str(folder / "provenance" / f"{cube}.prov.json"), format="json")
    assert doc.get_record(f"mw:dataset-{cube}")  # the released cube, as a W3C PROV entity
    rep = verify_folder(folder)
    assert rep.ok and rep.checked == 2
    # One flipped bit in one product file is found and named.
    victim = next((folder / "products").rglob("*.fits"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    rep = verify_folder(folder)
    assert not rep.ok and len(rep.problems) == 1 and victim.name in rep.problems[0]
    assert main(["release", "verify", str(folder)]) == 1
    assert "FAILED" in capsys.readouterr().out
    # An edited manifest is caught by its own checksum; a stray file is reported.
    m = folder / "manifest.json"
    m.write_bytes(m.read_bytes().replace(b"first consortium", b"First consortium"))
    (folder / "products" / "extra.fits").write_bytes(b"x")
    problems = " ".join(verify_folder(folder).problems)
    assert "the manifest was changed" in problems and "not in the manifest" in problems


def test_invalidation_after_release_is_recorded_not_silent(archive, dr1, products):
    bias = products[0]
    out = review(archive, bias.id, 1, False, "bad", "bias structure found later")
    assert out.releases == ("DR1/1.0",)
    st = release_status(archive, "DR1", "1.0")
    assert [(e["dataset_id"], e["user"]) for e in st["invalidated"]] == [(bias.id, "admin")]
    assert st["release"].manifest_sha256 == dr1.manifest_sha256  # the release itself stays frozen
    assert manifest_of(archive, "DR1")["products"][0]["flags"] == {"1": "unchecked"}


def test_obscore_rows(archive, dr1, products):
    bias, cube, _ = products
    rows = {r["dataset_id"]: r for r in obscore_rows(archive)}
    assert set(OBSCORE_COLUMNS) <= set(rows[cube.id])
    c = rows[cube.id]
    assert (c["dataproduct_type"], c["calib_level"], c["instrument_name"]) == ("cube", 3, "MUSE")
    assert c["s_ra"] == pytest.approx(150.1, abs=0.01) and c["s_dec"] == pytest.approx(-30.2, abs=0.01)
    assert c["em_min"] == pytest.approx(5400e-10) and c["em_max"] == pytest.approx(6498.75e-10)
    assert c["s_region"].startswith("POLYGON ICRS") and c["s_fov"] == pytest.approx(24 * 0.2 * 2 ** 0.5 / 3600, rel=0.05)
    assert c["t_exptime"] == 600 and c["obs_publisher_did"].endswith(f"DR1/1.0/{cube.id}")
    assert rows[bias.id]["calib_level"] == 2 and rows[bias.id]["access_format"] == "application/fits"
    with archive.engine.connect() as conn:  # VO tools query the table by its standard name
        n = conn.execute(text("SELECT count(*) FROM ivoa_obscore WHERE instrument_name = 'MUSE'")).scalar()
    assert n == 2
    assert obscore_rows(archive.as_user("eve")) == []


def test_cli_create_list_export(archive_config, archive, products, tmp_path, capsys):
    bias, cube, _ = products
    base = ["--root", archive_config.root, "--db-url", archive_config.db_url, "--user", "admin"]
    assert main(base + ["release", "create", "DR9", "0.1", str(bias.id), str(cube.id), "-d", "test"]) == 0
    assert main(base + ["release", "list"]) == 0
    assert "DR9" in capsys.readouterr().out
    assert main(base + ["release", "export", "DR9", "0.1", str(tmp_path / "out")]) == 0
    assert main(["release", "verify", str(tmp_path / "out")]) == 0
    assert main(base + ["qc", "queue"]) == 0
    assert main(base + ["qc", "claim", str(bias.id)]) == 0
    assert main(base + ["qc", "review", str(bias.id), "--valid", "--flag", "good", "-m", "ok"]) == 0
    assert main(base + ["qc", "history", str(bias.id)]) == 0
    out = capsys.readouterr().out
    assert "claimed by admin" in out and "review" in out


def test_the_demo_releases_its_cube_once(archive, products, capsys):
    """``make demo`` freezes the field's cube for the VO service; running it again keeps that release."""
    from musewise.demo import release_cube

    _, cube, _ = products
    release_cube(archive, "2026-11-20", cube.id)
    release_cube(archive, "2026-11-20", cube.id)
    out = capsys.readouterr().out
    assert f"release DEMO-2026-11-20 {cube.id}: 1 product" in out and "exists already" in out
    assert [r.label for r in list_releases(archive)] == [f"DEMO-2026-11-20 {cube.id}"]
    archive.set_validity(cube.id, is_valid=False, flag="bad", comment="stripes")
    release_cube(archive, "2026-11-21", cube.id)
    assert "not released" in capsys.readouterr().out
