"""One viewer session per process: open a cube, show its first image, show one spectrum.

Run by ``benchmarks/bench_widgets.py``, each session in a fresh process (so its
peak memory is its own and a "cold" file is not pinned by an earlier mapping),
with the interpreter of the library's own virtualenv::

    python benchmarks/viewer_sessions.py {empty,musewise,mpdaf,jdaviz} JOB_JSON

``JOB_JSON`` holds ``path`` (the cube), ``x``, ``y`` (the spaxel, 0-based) and,
for musewise, ``cache_dir`` (the white-light sidecar folder). The session
prints ``STAGE <name> <seconds>`` lines as it goes (so the parent can tell
where a session it had to stop had got to) and ends with one
``RESULT <json>`` line: times in seconds from the start of the session's work
(imports are timed apart, ``import_s``), and the process's memory from
``/proc/self/status`` in bytes (``peak_rss``: VmHWM, the high-water mark of
resident memory, file-backed pages of memory maps included).

What "first image" and "one spectrum" are for each library, headless (no
browser: nothing is serialised to a page or drawn on screen, for any library):

* **musewise**: ``CubeViewer(path)`` inside a running asyncio loop, as in a
  kernel, until the constructor returns with an image in its image viewer (the
  middle plane while the white light is computed in a worker thread, or the
  white light from the sidecar cache); then ``viewer.select_spaxel(x, y)``
  (DATA and STAT read, bokeh sources updated). The session then waits for the
  background white light so its memory is in the peak.
* **jdaviz** (5.0.2): ``Cubeviz()``, then the cube read with specutils and
  ``cubeviz.load(spectrum, format="3D Spectrum")`` (jdaviz's FITS importer
  takes flux only from an extension named FLUX or SCI and uncertainty only
  from ERR/IVAR/VAR, so it refuses a MUSE ``DATACUBE``'s DATA/STAT; specutils'
  ``wcs1d-fits`` reader with ``hdu="DATA", uncertainty_hdu="STAT",
  uncertainty_type="var"`` reads it), then the flux viewer is given the size
  a browser would report (520 x 420 px) so glue computes the image of the
  displayed slice; the first image is that RGBA array. One spectrum: a
  circular spatial subset of radius 0.5 spaxel at (x, y) imported through
  the Subset Tools plugin, which Cubeviz turns into an extracted spectrum in
  the spectrum viewer (what drawing a small aperture does in the UI); the
  session checks that it is the spaxel's DATA.
* **mpdaf**: ``Cube(path).mean(axis=0)``, the white-light image (mpdaf has no
  viewer; this is the image its users compute and plot first), then
  ``cube[:, y, x]`` from the loaded cube.
* **empty**: nothing: the interpreter's own memory, the baseline subtracted
  from the others.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

#: Size of the jdaviz flux viewer as a browser would report it, px (musewise's image viewer size).
VIEWER_WIDTH, VIEWER_HEIGHT = 520, 420


def memory() -> dict:
    """This process's memory from ``/proc/self/status``, bytes."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0]) * 1024
    return {"peak_rss": out["VmHWM"], "rss": out["VmRSS"], "rss_anon": out.get("RssAnon", 0),
            "rss_file": out.get("RssFile", 0)}


class Clock:
    """Stage times from one start, printed as they are reached."""

    def __init__(self):
        self.t0 = time.perf_counter()
        print("STAGE start 0.000", flush=True)

    def stage(self, name: str) -> float:
        t = time.perf_counter() - self.t0
        print(f"STAGE {name} {t:.3f}", flush=True)
        return t


def session_empty(job) -> dict:
    return {}


def session_musewise(job) -> dict:
    import asyncio

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    t = time.perf_counter()
    from musewise.widgets import CubeViewer

    res = {"import_s": time.perf_counter() - t}

    async def run():
        clock = Clock()
        viewer = CubeViewer(job["path"], cache_dir=job["cache_dir"])
        res["first_image_s"] = clock.stage("first_image")
        if viewer.image is None:
            raise RuntimeError("CubeViewer returned without an image")
        res["first_image_what"] = ("white light (sidecar)" if viewer.white_light_future is None
                                   else "middle plane, white light in background")
        spec = viewer.select_spaxel(job["x"], job["y"])
        res["spectrum_s"] = clock.stage("spectrum") - res["first_image_s"]
        if spec.data.shape != (viewer.cube.shape[0],):
            raise RuntimeError(f"spectrum of {spec.data.shape} values, not one per plane")
        if viewer.white_light_future is not None:
            await viewer.white_light_future
        res["white_light_s"] = clock.stage("white_light")
        res["white_light_source"] = viewer.cube.white_light_source

    asyncio.run(run())
    return res


def session_mpdaf(job) -> dict:
    t = time.perf_counter()
    from mpdaf.obj import Cube

    res = {"import_s": time.perf_counter() - t}
    clock = Clock()
    cube = Cube(job["path"])
    image = cube.mean(axis=0)
    res["first_image_s"] = clock.stage("first_image")
    res["first_image_what"] = "white light (cube.mean(axis=0))"
    if image.shape != cube.shape[1:]:
        raise RuntimeError(f"white light of shape {image.shape}")
    spec = cube[:, job["y"], job["x"]]
    res["spectrum_s"] = clock.stage("spectrum") - res["first_image_s"]
    if spec.shape != (cube.shape[0],):
        raise RuntimeError(f"spectrum of shape {spec.shape}")
    return res


def session_jdaviz(job) -> dict:
    import datetime

    import numpy as np

    t = time.perf_counter()
    from astropy import units as u
    from astropy.io import fits
    from jdaviz import Cubeviz
    from regions import CirclePixelRegion, PixCoord
    from specutils import Spectrum

    res = {"import_s": time.perf_counter() - t}
    import jdaviz

    res["version"] = jdaviz.__version__
    clock = Clock()
    cubeviz = Cubeviz()
    clock.stage("app")
    spectrum = Spectrum.read(job["path"], format="wcs1d-fits", hdu="DATA",
                             uncertainty_hdu="STAT", uncertainty_type="var")
    clock.stage("read")
    cubeviz.load(spectrum, format="3D Spectrum")
    del spectrum  # jdaviz holds its own copies
    clock.stage("load")
    flux_viewer = cubeviz.app.get_viewer("flux-viewer")
    if not any(layer.visible for layer in flux_viewer.layers):
        raise RuntimeError("the flux viewer has no visible layer after loading")
    # What the browser does when the viewer is displayed: report its size, upon
    # which glue computes the displayed slice's image at that resolution.
    now = datetime.datetime.now().isoformat()
    flux_viewer._vl.view_data = {"bench": {"width": VIEWER_WIDTH, "height": VIEWER_HEIGHT,
                                           "focused_at": now, "resized_at": now}}
    image = np.asarray(flux_viewer._composite_image.image)
    res["first_image_s"] = clock.stage("first_image")
    res["first_image_what"] = "slice at the slice plugin's wavelength (middle plane)"
    if image.shape[:2] != (VIEWER_HEIGHT, VIEWER_WIDTH):
        raise RuntimeError(f"flux viewer image of shape {image.shape}, expected "
                           f"{(VIEWER_HEIGHT, VIEWER_WIDTH)}")

    spectrum_viewer = cubeviz.app.get_viewer("spectrum-viewer")
    before = {layer.layer.label for layer in spectrum_viewer.layers}
    cubeviz.plugins["Subset Tools"].import_region(
        CirclePixelRegion(PixCoord(job["x"], job["y"]), radius=0.5))
    new = [layer.layer.label for layer in spectrum_viewer.layers
           if layer.layer.label not in before]
    res["spectrum_s"] = clock.stage("spectrum") - res["first_image_s"]
    if not new:
        raise RuntimeError("no spectrum appeared in the spectrum viewer for the subset")
    with fits.open(job["path"], memmap=True) as hdul:
        want = np.asarray(hdul["DATA"].section[:, job["y"], job["x"]], dtype=np.float64)
        bunit = u.Unit(hdul["DATA"].header["BUNIT"])
    # jdaviz moves BUNIT's scale (1e-20) into the values: compare in BUNIT
    got = cubeviz.get_data(new[0]).flux.to_value(bunit)
    ok = np.isfinite(want)
    if got.shape != want.shape or not np.allclose(got[ok], want[ok], rtol=1e-5):
        raise RuntimeError(f"the subset spectrum {new[0]!r} is not spaxel ({job['x']}, "
                           f"{job['y']}) of DATA")
    res["spectrum_label"] = new[0]
    return res


SESSIONS = {"empty": session_empty, "musewise": session_musewise, "mpdaf": session_mpdaf,
            "jdaviz": session_jdaviz}


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    name, job = argv[0], json.loads(argv[1])
    warnings.simplefilter("ignore")
    res = SESSIONS[name](job)
    res.update(memory())
    print("RESULT " + json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
