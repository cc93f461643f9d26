"""The datastore on an S3 object store (a real S3 server, moto's, on 127.0.0.1).

The ingest and release tests run on it too (their ``datastore_settings`` is
parametrised); these are what only an object store needs: write-once without
a filesystem's modes, local copies that are checked, and viewers that read a
cube in byte ranges instead of fetching it whole.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from musewise.exceptions import DatastoreError, IntegrityError


@pytest.fixture
def datastore_settings(s3_server, tmp_path):
    from conftest import s3_settings

    return s3_settings(s3_server, tmp_path)


def test_an_s3_store_is_write_once_and_its_copies_are_checked(archive, tmp_path, s3_server):
    ds = archive.datastore
    assert not ds.is_local
    a, b = tmp_path / "a.fits", tmp_path / "b.fits"
    a.write_bytes(b"A" * 5000)
    b.write_bytes(b"B" * 5000)
    first = ds.put(a, "x/frame.fits")
    first.commit()
    # Another writer (another process: its own filesystem object, no listing cached) is refused.
    from musewise.archive.datastore import Datastore

    other = Datastore(archive.config.datastore_url, options=archive.config.datastore_options, cache=tmp_path / "c2")
    second = other.put(b, "x/frame.fits")
    with pytest.raises(DatastoreError, match="refusing to overwrite"):
        second.commit()
    assert other.temporaries() == [] and ds.walk() == ["x/frame.fits"]
    assert s3_server.filesystem().cat_file(f"{ds.root}/x/frame.fits") == b"A" * 5000
    # A local copy is fetched once, checked, and a copy of changed bytes is refused and not kept.
    local = ds.local_path("x/frame.fits", first.sha256)
    assert open(local, "rb").read() == b"A" * 5000 and local.startswith(str(ds.cache))
    s3_server.filesystem().pipe_file(f"{ds.root}/x/frame.fits", b"C" * 5000)  # changed behind the archive's back
    with pytest.raises(IntegrityError, match="x/frame.fits"):
        other.local_path("x/frame.fits", first.sha256)
    assert not (tmp_path / "c2" / "x" / "frame.fits").exists()
    with pytest.raises(IntegrityError):
        ds.verify("x/frame.fits", first.sha256)
    with pytest.raises(DatastoreError, match="missing"):
        ds.local_path("x/nothing.fits")


def _short_cube(path, n_planes: int):
    """The first ``n_planes`` of a test cube, in ``DATACUBE_FINAL.fits`` beside it.

    Planes of 72 x 72 spaxels (20 KB) are fetched as separate ranges, as a full cube's
    are; fewer of them keep the test fast, since the test S3 server copies a whole
    object for each range it serves (~20 ms per range of a 36 MB object).
    """
    from astropy.io import fits

    out = path.with_name("DATACUBE_FINAL.fits")
    with fits.open(path) as h:
        fits.HDUList([fits.PrimaryHDU(header=h[0].header)] + [
            fits.ImageHDU(h[e].data[:n_planes], header=h[e].header, name=e) for e in ("DATA", "STAT")]).writeto(out)
    return out


def test_a_viewer_opens_an_archived_cube_in_s3_without_fetching_it(archive, tmp_path):
    from musewise.products import testing as pt
    from musewise.products.cube import MuseCube
    from musewise.products.remote import RangedArray
    from musewise.qc import testing as qct
    from musewise.widgets.cubeio import open_cube

    path = _short_cube(pt.write_cube(tmp_path / "full.fits", datetime(2026, 11, 21, 2), size=72), 200)
    bias, _ = qct.bias_product(archive, tmp_path / "b")
    rec = qct.archive_product(archive, path, "muse_scipost", [bias.id], ifu=None, category="DATACUBE_FINAL")
    local = MuseCube.open(path, find_image_fov=False)
    cube = open_cube(rec.id, archive=archive, cache_dir=tmp_path / "white")
    assert isinstance(cube._data, RangedArray) and not any(archive.datastore.cache.rglob("*.fits"))
    assert cube.shape == local.shape and np.array_equal(cube.wave, local.wave)
    # what a viewer shows first: a plane and a spaxel's spectrum, each from a few bytes of the file
    np.testing.assert_array_equal(cube.plane(5500.0).data, local.plane(5500.0).data)
    spectrum, expected = cube.spectrum(30, 31), local.spectrum(30, 31)
    np.testing.assert_array_equal(spectrum.data, expected.data)
    np.testing.assert_array_equal(spectrum.var, expected.var)
    fetched = cube._data.bytes_read + cube._stat.bytes_read
    size = path.stat().st_size
    assert fetched < 0.05 * size, f"{fetched} of {size} bytes fetched"
    np.testing.assert_allclose(cube.aperture_spectrum(32, 32, 3).data, local.aperture_spectrum(32, 32, 3).data)
    np.testing.assert_array_equal(cube.narrow_band(5520.0, 10.0).data, local.narrow_band(5520.0, 10.0).data)
    # the white light is computed once from ranged reads, then comes from the cache
    np.testing.assert_allclose(cube.white_light().data, local.white_light().data, equal_nan=True)
    again = open_cube(rec.id, archive=archive, cache_dir=tmp_path / "white")
    assert again.white_light().data.shape == (72, 72) and again.white_light_source == "cache"
