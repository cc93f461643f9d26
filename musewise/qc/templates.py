"""Builder of the QC notebooks (``qc_notebooks/qc_<type>.ipynb``).

Each notebook is a papermill template: a ``parameters`` cell filled by
:func:`musewise.qc.run_qc`, then cells calling :mod:`musewise.qc.notebook`.
Run ``python -m musewise.qc.templates [folder]`` to regenerate the committed
notebooks after changing this file; cell ids are fixed, so regenerating
unchanged cells changes no byte (``tests/test_notebooks.py`` checks it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell

from ..kernel import musewise_notebook

#: QC type -> (title, what the notebook measures).
TITLES = {
    "bias": ("Master bias", "level and read noise per quadrant, against the raw bias frames; columns standing out"),
    "dark": ("Master dark", "dark current per quadrant and hot pixels"),
    "flat": ("Master flat", "slices traced in the TRACE_TABLE and uniformity of the slice levels"),
    "wavecal": ("Wavelength calibration", "residuals per slice and arc lines used (WAVECAL_TABLE / WAVECAL_RESIDUALS), "
                "shift against the previous nights' solutions"),
    "cube": ("Data cube (DATACUBE_FINAL)", "sky residuals at strong sky lines, white-light image, PSF FWHM of point "
             "sources against the DIMM seeing, offsets between the exposures of a combined cube (OFFSET_LIST)"),
    "lsf": ("Line spread function (LSF_PROFILE)", "LSF FWHM of each slice and its spread over the slices"),
    "twilight": ("Twilight cube (TWILIGHT_CUBE)", "flatness of the illumination correction over the field"),
    "response": ("Standard-star response (STD_RESPONSE)", "response per band against the previous nights' responses"),
    "trace": ("Slice trace (TRACE_TABLE)", "slices traced, their widths and edges, curvature, and the shift of the "
              "slice centres against the IFU's previous nights' traces"),
    "residuals": ("Wavelength-fit residuals (WAVECAL_RESIDUALS)", "residual RMS and lines kept per slice, lines "
                  "rejected, and the residuals' trend along the wavelength"),
    "pixtable": ("Pixel table (PIXTABLE_OBJECT / PIXTABLE_STD / PIXTABLE_REDUCED)", "flagged pixels, slices with "
                 "data, wavelength limits and flux level, read memory-mapped column by column"),
    "reduced": ("Pre-reduced CCD image (OBJECT_RED / STD_RED)", "flagged pixels, level and noise"),
    "fov": ("Field-of-view image (IMAGE_FOV / PREVIEW_FOV)", "sources found, background and noise, and agreement "
            "with its cube's white light"),
    "sky": ("Sky model of muse_scipost (SKY_SPECTRUM / SKY_LINES / SKY_CONTINUUM / SKY_MASK / SKY_IMAGE)",
            "flux of the strong sky lines against the previous nights' and the line list the fit started from, "
            "lines fitted, continuum level"),
    "std": ("Standard star (DATACUBE_STD / STD_TELLURIC / STD_FLUXES)", "the star found in the standard's cube and its FWHM, the S/N of its spectrum; "
            "the telluric correction's depth in the A and B bands and its physical limits"),
    "align": ("Exposure alignment (OFFSET_LIST / SOURCE_LIST)", "offsets found against the exposures' header "
              "pointings, flux scales, sources per exposure"),
    "grid": ("A field's grid (OUTPUT_WCS)", "the spaxel size, orientation and extent of the grid every exposure "
             "of the field is resampled onto, the fraction of it the exposures cover and their margin to its edges"),
    "sources": ("Source catalogue of a cube (SOURCE_CATALOG)", "the emission-line and continuum sources found, "
                "the S/N of the lines and the fraction of them at a night-sky line"),
    "zap": ("ZAP-cleaned cube (DATACUBE_ZAP)", "every number of a cube, and the sky-line residuals after ZAP "
            "against those of the cube before"),
}


def build_notebook(qc_type: str) -> nbformat.NotebookNode:
    """The QC notebook of ``qc_type`` (a key of :data:`TITLES`)."""
    title, what = TITLES[qc_type]
    cells = [
        new_markdown_cell(f"# QC: {title}\n\nMeasures {what}. Executed by `musewise.qc.run_qc` with papermill, once "
                          "for the products of a step's batch (one per IFU); the executed notebook is archived with "
                          "the QC run. Every number comes from `musewise.qc.measures`, so the QC can be redone from "
                          "Python."),
        new_code_cell("products = '[]'   # JSON: [{dataset_id, category, ifu, night, product, siblings, raws}, ...]\n"
                      "limits = '{}'     # JSON: {measurement: {sense, warn, bad, unit}}\nresult_path = 'qc_result.json'",
                      metadata={"tags": ["parameters"]}),
        new_code_cell("import json\n%matplotlib inline\nfrom musewise.qc import notebook as qcnb\n"
                      f"qc_type = {qc_type!r}\nlimits = json.loads(limits)"),
        new_markdown_cell("## Measurements"),
        new_code_cell("results = qcnb.measure_products(qc_type, products, limits)"),
        new_markdown_cell("## Figures\n\nOne product: its figure. Several: every judged number against its "
                          "limits, then the figure of each product that crossed one (else of the one closest to "
                          "its limits)."),
        new_code_cell("figs = qcnb.plot_products(qc_type, results, limits)"),
        new_markdown_cell("## Verdicts against the site's thresholds"),
        new_code_cell("qcnb.summarise(results)\nqcnb.save_results(result_path, results)"),
    ]
    nb = musewise_notebook(cells, f"qc-{qc_type}")
    return nb


def write_notebooks(folder: str | Path | None = None) -> list[Path]:
    """Write every QC notebook into ``folder`` (default the shipped ``qc_notebooks/``); returns the files."""
    if folder is None:
        from ..resources import shared_folder

        folder = shared_folder("qc_notebooks")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for qc_type in TITLES:
        path = folder / f"qc_{qc_type}.ipynb"
        nbformat.write(build_notebook(qc_type), path)
        out.append(path)
    return out


__all__ = ["TITLES", "build_notebook", "write_notebooks"]

if __name__ == "__main__":
    for p in write_notebooks(sys.argv[1] if len(sys.argv) > 1 else None):
        print(p)
