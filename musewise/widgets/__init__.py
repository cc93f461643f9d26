"""Interactive viewers for MUSE data in JupyterLab and Voila (ipywidgets + bokeh).

* :class:`CubeViewer` - white light, spaxel/aperture spectra, planes and
  narrow bands of a cube;
* :class:`SpectrumViewer` - a 1-D spectrum with variance, sky and emission lines;
* :class:`ImageViewer` - any 2-D product (IMAGE_FOV, master bias/flat of an IFU);
* :class:`QCPanel` - the 24 IFUs of a product (or a night's per-IFU products): flags,
  validity, quick-look and the audited review controls;
* :class:`ArchiveBrowser` - search and page through the archive, open a product in the
  right viewer, with its provenance and the run's notebook;
* :class:`RegionViewer` - the summed spectrum (with variance) of a circle or polygon
  drawn on a cube's image; region files in and out (:mod:`.skyregions`);
* :class:`CompareViewer` - two cubes of one field side by side, a sky-linked spaxel and
  the difference spectrum (:mod:`.compare`);
* :class:`CalibrationTimeline` - which calibration is certified when, per IFU, and the
  reviewers' control to change a certified range;
* :class:`SpaxelOriginViewer` - click a spaxel: the exposures, IFUs and slices its pixels
  came from and the calibrations (with their validity) that made them (:mod:`musewise.origin`);
* :class:`PlanViewer` - the dry-run plan of a target (each run, its inputs and why it is
  needed) and the button that runs it in the background, each run's state shown as it ends;
* :class:`QCTrends` - a QC parameter over the nights, per IFU, with its thresholds; a click
  on a point opens that product in a :class:`QCPanel` to set its flag;
* :class:`MuseCube`, :class:`Image`, :class:`Spectrum` - the products the viewers
  show, from :mod:`musewise.products` (usable without any UI).

Each viewer is an ``ipywidgets.VBox``, so panels (QC, archive browser) can embed them.
The UI modules (ipywidgets, bokeh) load on first use: ``from musewise.widgets
import MuseCube`` needs only numpy and astropy.
"""

from __future__ import annotations

from ..exceptions import OutsideCubeError
from ..products import Image, MuseCube, Spectrum

_LAZY = {
    "CubeViewer": ".cube_viewer",
    "SpectrumViewer": ".spectrum_viewer",
    "ImageViewer": ".image_viewer",
    "QCPanel": ".qc_panel",
    "ArchiveBrowser": ".archive_browser",
    "RegionViewer": ".region_viewer",
    "CompareViewer": ".compare_viewer",
    "CalibrationTimeline": ".timeline",
    "SpaxelOriginViewer": ".origin_viewer",
    "PlanViewer": ".plan_view",
    "QCTrends": ".qc_trends",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'musewise.widgets' has no attribute {name!r}")


__all__ = ["ArchiveBrowser", "CalibrationTimeline", "CompareViewer", "CubeViewer", "Image",
           "ImageViewer", "MuseCube", "OutsideCubeError", "PlanViewer", "QCPanel", "QCTrends", "RegionViewer",
           "Spectrum", "SpaxelOriginViewer", "SpectrumViewer"]
