"""Releases in the ESO Phase 3 shape: the exported cube's headers, identical re-exports, verification."""

from __future__ import annotations

import json
import warnings
from datetime import datetime, timedelta

import pytest
from astropy.io import fits

from musewise.exceptions import ReleaseVerificationError
from musewise.products import testing as pt
from musewise.qc import testing as qct
from musewise.release import create_release, export_release, manifest_of, obscore_rows, verify_folder
from musewise.release import core as release_core


def _raw_object(path, when: datetime, obid: int, seed: int):
    """A raw science exposure (a raw frame of the test CCD with the headers of an OBJECT exposure)."""
    pt.write_raw_bias(path, when, seed=seed)
    with fits.open(path, mode="update") as h:
        h0 = h[0].header
        h0["HIERARCH ESO DPR TYPE"], h0["HIERARCH ESO DPR CATG"] = "OBJECT", "SCIENCE"
        h0["OBJECT"], h0["EXPTIME"], h0["HIERARCH ESO OBS ID"] = "NGC 0000", 600.0, obid
        h0["ARCFILE"] = f"MUSE.{when:%Y-%m-%dT%H:%M:%S}.000.fits"
    return path


@pytest.fixture
def science(archive, tmp_path):
    """A cube and its IMAGE_FOV made by one muse_scipost run from a master bias and two raw exposures.

    Returns (cube, image, bias, raw exposure ids, raw bias ids); the cube has a seeing QC value.
    """
    bias, raw_biases = qct.bias_product(archive, tmp_path / "b")
    t0 = datetime(2026, 11, 21, 2)
    exposures = [archive.ingest(_raw_object(tmp_path / f"obj{k}.fits", t0 + timedelta(minutes=11 * k),
                                            1234567 + k, 50 + k)).record.id for k in range(2)]
    cube = pt.write_cube(tmp_path / "DATACUBE_FINAL.fits", t0)
    image = pt.write_image_fov(tmp_path / "IMAGE_FOV_0001.fits", cube)
    fits.setval(cube, "PROV6", value="MUSE.stale.fits")  # a PROVi of the file's own: replaced, not kept
    run = archive.begin_run("muse_scipost", {}, night="2026-11-20",
                            inputs=[(bias.id, "MASTER_BIAS", "test")] + [(i, "OBJECT", "test") for i in exposures])
    made = archive.finish_run(run, [(str(cube), "DATACUBE_FINAL", None), (str(image), "IMAGE_FOV", None)])
    archive.add_qc(made[0].id, {"cube.fwhm.median": 0.812}, units={"cube.fwhm.median": "arcsec"}, run_id=run)
    return made[0], made[1], bias, exposures, raw_biases


@pytest.fixture
def dr3(archive, science):
    cube, image, bias, _, _ = science
    return create_release(archive, "DR3", "1.0", [bias.id, cube.id, image.id], "Phase 3 test")


def _entries(archive, name="DR3"):
    return {p["dataset_id"]: p for p in manifest_of(archive, name)["products"]}


def _open_checked(path):
    """Open with astropy's checksum verification; a failed check (a warning) is an error here."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fits.open(path, checksum=True)


def test_exported_cube_has_phase3_headers(archive, science, dr3, tmp_path):
    cube, image, bias, exposures, raw_biases = science
    folder = export_release(archive, "DR3", "1.0", tmp_path / "out")
    entry = _entries(archive)
    cube_file, image_file = folder / entry[cube.id]["path"], folder / entry[image.id]["path"]
    with _open_checked(cube_file) as h, fits.open(archive.path(cube.id)) as archived:
        h0 = h[0].header
        assert h0["PRODCATG"] == "SCIENCE.CUBE.IFS"
        # ASSON1 names the white-light image, which is in the folder with its own category.
        assert (h0["ASSON1"], h0["ASSOC1"]) == (image_file.name, "ANCILLARY.IMAGE.WHITELIGHT")
        # PROVi: the raw frames the provenance reaches, the exposures first, by their ARCFILE.
        prov = [h0[f"PROV{i}"] for i in range(1, 6)]
        assert prov[:2] == ["MUSE.2026-11-21T02:00:00.000.fits", "MUSE.2026-11-21T02:11:00.000.fits"]
        assert set(prov[2:]) == {archive.get(i).filename for i in raw_biases} and "PROV6" not in h0
        # The cube covers 5400-6498.75 Angstrom: WAVELMIN/MAX in nm.
        assert (h0["WAVELMIN"], h0["WAVELMAX"]) == (540.0, 649.875)
        assert (h0["NCOMBINE"], h0["TEXPTIME"], h0["OBID1"], h0["OBID2"]) == (2, 1200.0, 1234567, 1234568)
        assert h0["MJD-END"] == pytest.approx(archive.get(exposures[1]).mjd_obs + 600 / 86400)
        assert h0["SKY_RES"] == pytest.approx(0.812) and h0["FLUXCAL"] == "UNCALIBRATED"
        assert (h0["SPECSYS"], h0["OBSTECH"], h0["PROCSOFT"]) == ("BARYCENT", "IFU", "muse/2.8.7")
        assert h0["RA"] == pytest.approx(150.1, abs=0.01)
        # One resolving power for a folder: the header's and ObsCore's, at 594.9 nm.
        obscore = {r["dataset_id"]: r for r in obscore_rows(archive, "DR3")}[cube.id]
        assert h0["SPEC_RES"] == pytest.approx(obscore["em_res_power"], abs=0.05) == 2234.9
        assert "SPEC_BIN" not in h0  # not allowed in a SCIENCE.CUBE.IFS primary header
        d, s = h["DATA"].header, h["STAT"].header
        assert (d["HDUCLAS2"], d["ERRDATA"], s["HDUCLAS2"], s["HDUCLAS3"], s["SCIDATA"]) == \
            ("DATA", "STAT", "ERROR", "MSE", "DATA")
        # The data are the archived bytes.
        for name in ("DATA", "STAT"):
            assert h[name].data.tobytes() == archived[name].data.tobytes()
    with _open_checked(image_file) as h:
        assert h[0].header["PRODCATG"] == "ANCILLARY.IMAGE.WHITELIGHT" and h[1].header["HDUCLAS2"] == "DATA"
    # What could not be filled is said in the manifest, not invented.
    assert {"ABMAGLIM", "PIXNOISE", "PROG_ID"} <= set(entry[cube.id]["phase3"]["missing"])
    assert "SKY_RES" not in entry[cube.id]["phase3"]["missing"]
    # A master bias has no Phase 3 category: exported as archived.
    bias_file = folder / entry[bias.id]["path"]
    assert "phase3" not in entry[bias.id] and bias_file.read_bytes() == open(archive.path(bias.id), "rb").read()


def test_archive_bytes_unchanged_and_export_repeatable(archive, science, dr3, tmp_path):
    cube = science[0]
    before = open(archive.path(cube.id), "rb").read()
    a = export_release(archive, "DR3", "1.0", tmp_path / "export-a")
    b = export_release(archive, "DR3", "1.0", tmp_path / "export-b")
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    # The archive keeps its file and its checksum; the manifest records both files' checksums.
    assert open(archive.path(cube.id), "rb").read() == before
    archive.verify(cube.id)
    e = _entries(archive)[cube.id]
    assert e["sha256"] == cube.sha256 and e["phase3"]["sha256"] != cube.sha256
    assert e["phase3"]["size"] == (a / e["path"]).stat().st_size
    assert manifest_of(archive, "DR3")["format"] == "musewise-release/2"


def test_verify_names_a_changed_header_byte(archive, science, dr3, tmp_path):
    cube = science[0]
    folder = export_release(archive, "DR3", "1.0", tmp_path / "out")
    rep = verify_folder(folder)
    assert rep.ok and rep.checked == 3
    victim = folder / _entries(archive)[cube.id]["path"]
    data = bytearray(victim.read_bytes())
    at = data.index(b"SCIENCE.CUBE.IFS")
    data[at + 15] = ord("T")  # 'SCIENCE.CUBE.IFT': one byte of the primary header
    victim.write_bytes(bytes(data))
    rep = verify_folder(folder)
    assert not rep.ok and len(rep.problems) == 1 and victim.name in rep.problems[0]
    # The FITS checksum of the changed HDU says so too.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fits.open(victim, checksum=True).close()
    assert [str(w.message).strip() for w in caught] == ["Checksum verification failed for HDU ('PRIMARY', 1)."]


def test_export_refuses_a_copy_unlike_the_frozen_one(archive, science, dr3, tmp_path, monkeypatch):
    from musewise.products import fitsio

    # As if this musewise wrote the headers differently from the one that froze the release.
    monkeypatch.setattr(fitsio, "encode_checksum", lambda sum32: "0" * 16)
    with pytest.raises(ReleaseVerificationError, match="DATACUBE_FINAL.fits: the Phase 3 copy written now"):
        export_release(archive, "DR3", "1.0", tmp_path / "out")
    assert not list((tmp_path / "out").rglob("*DATACUBE_FINAL.fits"))  # no file that is not the release's


def test_release_without_phase3_entries_still_verifies(archive, science, tmp_path, monkeypatch):
    """A release frozen before Phase 3 (format 1: no ``phase3`` entries) exports and verifies as before."""
    cube, image, bias, _, _ = science
    monkeypatch.setattr(release_core, "plan_release", lambda *a: None)
    monkeypatch.setattr(release_core, "MANIFEST_FORMAT", "musewise-release/1")
    create_release(archive, "OLD", "1", [cube.id, image.id])
    m = manifest_of(archive, "OLD")
    assert m["format"] == "musewise-release/1" and not any("phase3" in p for p in m["products"])
    folder = export_release(archive, "OLD", "1", tmp_path / "old")
    assert verify_folder(folder).ok
    e = {p["dataset_id"]: p for p in m["products"]}[cube.id]
    assert (folder / e["path"]).read_bytes() == open(archive.path(cube.id), "rb").read()


def test_manifest_keeps_the_phase3_keywords(archive, science, dr3):
    """The keywords are frozen with the release: a later QC value does not change an export."""
    cube = science[0]
    frozen = _entries(archive)[cube.id]["phase3"]
    archive.add_qc(cube.id, {"cube.fwhm.median": 1.9}, units={"cube.fwhm.median": "arcsec"})
    again = _entries(archive)[cube.id]["phase3"]
    assert json.dumps(frozen, sort_keys=True) == json.dumps(again, sort_keys=True)
    assert dict((k, v) for k, v, _ in frozen["primary"])["SKY_RES"] == pytest.approx(0.812)

