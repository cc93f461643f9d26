"""No musewise step reads a whole cube (or pixel table) as float64.

A 24-IFU cube (~300 x 300 x 3700) is 1.3 GB as float32 and 2.7 GB as float64; its
pixel tables are 9.1 GB. The notebook plots and the Python recipes read them as memory
maps, a block at a time; these tests measure the peak of Python's (and numpy's)
allocations with :mod:`tracemalloc` on files larger than one block.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

MB = 2**20


def _peak(func, *args, **kw) -> int:
    tracemalloc.start()
    try:
        func(*args, **kw)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture
def cube_file(tmp_path):
    """A 3700 x 150 x 150 float32 cube (318 MiB, five of white_light's 64 MiB blocks; as float64 635 MiB)."""
    from astropy.io import fits

    shape = (3700, 150, 150)
    path = tmp_path / "DATACUBE_FINAL.fits"
    data = np.empty(shape, np.float32)
    data[:] = np.random.default_rng(1).normal(size=shape[1:]).astype(np.float32)[None]
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, name="DATA")]).writeto(path)
    del data
    return path, int(np.prod(shape)) * 4


def test_white_light_of_a_cube_reads_it_a_block_at_a_time(cube_file):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from musewise.dpu.notebook import plot_white_light

    path, nbytes = cube_file
    peak = _peak(plot_white_light, path)
    print(f"white light peak {peak / MB:.0f} MiB")
    plt.close("all")
    assert peak < 0.4 * nbytes, f"peak {peak / MB:.0f} MiB for a {nbytes / MB:.0f} MiB float32 cube"


def test_pixel_table_spectrum_samples_before_converting(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from astropy.io import fits

    from musewise.dpu.notebook import plot_pixtable_spectrum

    n = 8_000_000  # rows: 30 MiB a float32 column, 61 MiB as float64
    rng = np.random.default_rng(2)
    lam = rng.uniform(4750, 9350, n).astype(np.float32)[:, None]
    path = tmp_path / "PIXTABLE_REDUCED.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(lam, name="lambda"),
                  fits.ImageHDU(np.ones_like(lam), name="data"),
                  fits.ImageHDU(np.zeros(lam.shape, np.int32), name="dq")]).writeto(path)
    del lam
    peak = _peak(plot_pixtable_spectrum, path)
    print(f"pixtable peak {peak / MB:.0f} MiB")
    plt.close("all")
    # less than one column as float64 (the figure's own work on the sampled rows takes the rest)
    assert peak < 2.0 * n * 4, f"peak {peak / MB:.0f} MiB for {n * 4 / MB:.0f} MiB float32 columns"


def test_sky_residual_projection_stays_float32():
    from musewise.recipes.skyclean import _project

    rng = np.random.default_rng(3)
    residual = rng.normal(size=(3700, 3000)).astype(np.float32)  # 42 MiB
    eig = np.linalg.qr(rng.normal(size=(3700, 5)))[0].T  # eigen-spectra (ncomp, n_lambda)
    peak = _peak(_project, eig, residual)
    print(f"projection peak {peak / MB:.0f} MiB")
    # the float32 model and two 16 MiB float64 blocks: less than the residual as float64
    assert peak < 2.0 * residual.nbytes, f"peak {peak / MB:.0f} MiB for a {residual.nbytes / MB:.0f} MiB residual"
    model = _project(eig, residual)
    assert model.dtype == np.float32
    np.testing.assert_allclose(model, (eig.T @ (eig @ residual.astype(np.float64))), rtol=1e-4, atol=1e-5)
