"""Write the QC notebooks ``qc_<type>.ipynb`` of this folder (run after editing the cells below).

Each notebook is a papermill template: a ``parameters`` cell filled by
:func:`musewise.qc.run_qc`, then cells calling :mod:`musewise.qc.notebook`.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

TITLES = {
    "bias": ("Master bias", "level and read noise per quadrant, against the raw bias frames"),
    "dark": ("Master dark", "dark current per quadrant and hot pixels"),
    "flat": ("Master flat", "slices traced in the TRACE_TABLE and uniformity of the slice levels"),
    "wavecal": ("Wavelength calibration", "residuals per slice and arc lines used (WAVECAL_TABLE / WAVECAL_RESIDUALS)"),
    "cube": ("Data cube (DATACUBE_FINAL)", "sky residuals at strong sky lines, white-light image, PSF FWHM of point sources"),
}


def build(qc_type: str) -> nbformat.NotebookNode:
    title, what = TITLES[qc_type]
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        new_markdown_cell(f"# QC: {title}\n\nMeasures {what}. Executed by `musewise.qc.run_qc` with papermill; "
                          "the executed notebook is archived with the QC run. Every number comes from "
                          "`musewise.qc.measures`, so the QC can be redone from Python."),
        new_code_cell("dataset_id = 0\ncategory = ''\nifu = 0\nnight = ''\nproduct = ''\n"
                      "siblings = '{}'   # JSON: {category: path}\nraws = '[]'       # JSON: [path, ...]\n"
                      "limits = '{}'     # JSON: {measurement: {sense, warn, bad, unit}}\nresult_path = 'qc_result.json'",
                      metadata={"tags": ["parameters"]}),
        new_code_cell("import json\n%matplotlib inline\nfrom musewise.qc import notebook as qcnb\n"
                      "siblings, raws, limits = json.loads(siblings), json.loads(raws), json.loads(limits)\n"
                      f"qc_type = {qc_type!r}\n"
                      "print(f'dataset {dataset_id} {category} IFU {ifu} night {night}: {product}')"),
        new_markdown_cell("## Measurements"),
        new_code_cell("m = qcnb.measure(qc_type, product, siblings, raws, ifu=ifu)\n"
                      "verdict = qcnb.check(limits, m)\nqcnb.show_table(m, verdict)"),
        new_markdown_cell("## Figures"),
        new_code_cell("fig = qcnb.plot(qc_type, m)"),
        new_markdown_cell("## Verdict against the site's thresholds"),
        new_code_cell("print(verdict.flag.upper(), '-', verdict.summary())\nqcnb.save_result(result_path, m, verdict)"),
    ]
    return nb


if __name__ == "__main__":
    here = Path(__file__).parent
    for t in TITLES:
        nbformat.write(build(t), here / f"qc_{t}.ipynb")
        print("wrote", here / f"qc_{t}.ipynb")
