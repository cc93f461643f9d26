"""Builder of the papermill reduction-notebook templates (``templates/<recipe>.ipynb``).

All templates share one shape; they differ in the quick-look cell. Run
``python -m musewise.dpu.templates [folder]`` to regenerate the committed
notebooks after changing this file; cell ids are fixed, so regenerating
unchanged cells changes no byte (``tests/test_notebooks.py`` checks it).

A template has a cell tagged ``parameters`` (papermill replaces it):

``recipe``, ``step``, ``run_id``, ``ifu``, ``night``, ``sof`` (JSON list of
[path, tag]), ``inputs`` (JSON list of {dataset_id, tag, reason, path}),
``workdir``, ``params`` (JSON dict), ``archive`` (JSON dict of archive settings,
without secrets), ``quicklook`` (JSON list of figure kinds), ``timeout`` (s), ``threads`` (OpenMP
threads of the pipeline, ``DpuConfig.recipe_threads``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell

from ..kernel import musewise_notebook

#: Recipes with a template of their own; any other recipe uses ``generic.ipynb``.
TEMPLATE_RECIPES = (
    "muse_bias", "muse_dark", "muse_flat", "muse_wavecal", "muse_lsf", "muse_twilight",
    "muse_scibasic", "muse_scipost", "muse_exp_align", "muse_exp_combine", "muse_standard",
    "combine_cubes", "zap", "field_grid", "muselet",
)

#: What an astronomer checks after aligning exposures: the correction found for each
#: exposure beside its header dither (~0 when the header pointings are right).
_OFFSETS = (
    "import matplotlib.pyplot as plt\n"
    "from musewise.products.offsets import offsets_against_headers, plot_offsets\n"
    "images = [p for p, t in sof if t in ('IMAGE_FOV', 'PIXTABLE_REDUCED')]\n"
    "for off in [o.path for o in result.outputs_of('OFFSET_LIST')] + "
    "[p for p, t in sof if t == 'OFFSET_LIST']:\n"
    "    table = offsets_against_headers(off, images)\n"
    "    table.pprint_all()  # arcsec: header dither (West, North) and correction found (East, North)\n"
    "    plot_offsets(table)\n    plt.show()\n")

#: Quick-look cell per recipe (the default shows master images).
_QUICKLOOK = {
    "muse_bias": "nb.quicklook(result, ['image'])  # master bias of the IFU, 1-99 percentile scale",
    "muse_dark": "nb.quicklook(result, ['image'])  # master dark",
    "muse_flat": "nb.quicklook(result, ['image'])  # master flat; the trace table is in the QC numbers",
    "muse_wavecal": "nb.quicklook(result, ['residuals'])  # residuals of the wavelength solution",
    "muse_lsf": "nb.quicklook(result, ['table'])  # line-spread-function profile",
    "muse_twilight": "nb.quicklook(result, ['cube'])  # white-light image of the twilight cube",
    "muse_scibasic": "nb.quicklook(result, ['pixtable'])  # pixel tables: see the QC numbers",
    "muse_scipost": "nb.quicklook(result, ['cube'])  # white-light image of the final cube and the field image",
    "muse_exp_align": _OFFSETS + "nb.quicklook(result, ['image'])  # the field's preview image",
    "muse_exp_combine": "nb.quicklook(result, ['cube'])  # white-light image of the combined cube\n"
                        "# the offsets applied to each exposure (OFFSET_LIST of muse_exp_align)\n" + _OFFSETS,
    "combine_cubes": "nb.quicklook(result, ['cube'])  # white-light image of the combined cube\n"
                     "from musewise.recipes.cubecombine import combination_summary\n"
                     "for o in result.outputs_of('DATACUBE_FINAL'):\n"
                     "    print(combination_summary(o.path))  # exposures kept per voxel, rejected fraction",
    "muse_standard": "nb.quicklook(result, ['table'])  # response curve",
    "zap": "nb.quicklook(result, ['cube'])  # white-light image of the cleaned cube",
    "field_grid": "from musewise.dpu import checks\n"
                  "fig = checks.plot_field_grid(result, sof)  # each exposure's IFUs on the grid",
    "muselet": "from musewise.products.catalog import read_sources\n"
               "for o in result.outputs_of('SOURCE_CATALOG'):\n"
               "    read_sources(o.path).pprint_all()  # ra, dec (deg), wavelength (A), flux, S/N of each source",
}

#: What an astronomer checks after the step (:mod:`musewise.dpu.checks`), per recipe.
_CHECKS = {
    "muse_standard": (
        "The standard star calibrated with the response found must match its reference flux table; "
        "the response itself should be close to the static one (a few per cent, outside telluric bands).",
        "from musewise.dpu import checks\n"
        "fig = checks.plot_response_check(result, sof, static=checks.static_response(archive))"),
    "muse_scipost": (
        "The sky spectrum subtracted, with the lines of the SKY_LINES table the sky model fitted: "
        "every strong line should be one of them.",
        "from musewise.dpu import checks\n"
        "fig = checks.plot_sky_subtracted(result, sof)"),
    "zap": (
        "The mean spectrum of the sky spaxels (the faint half of the white-light image) around the "
        "strong sky lines, before and after ZAP: the residuals must shrink, the continuum must not move.",
        "from musewise.dpu import checks\n"
        "before = next(p for p, t in sof if t == 'DATACUBE_FINAL')\n"
        "fig = checks.plot_sky_residuals(before, result.outputs_of('DATACUBE_ZAP')[0].path)"),
    "muselet": (
        "The sources over the cube's white-light image: every emission-line source should sit on something "
        "in its narrow band, none on the NaN edge; then each line source's spectrum with its line marked "
        "(a real line, not a sky-line residual) beside its narrow-band image.",
        "from musewise.dpu import checks\n"
        "cube = next(p for p, t in sof if t == 'DATACUBE_FINAL')\n"
        "catalog = result.outputs_of('SOURCE_CATALOG')[0].path\n"
        "fig = checks.plot_detections(catalog, cube)\n"
        "fig = checks.plot_source_spectra(catalog)"),
}

_TITLE = {
    "muse_bias": "Master bias", "muse_dark": "Master dark", "muse_flat": "Master flat and trace table",
    "muse_wavecal": "Wavelength calibration", "muse_lsf": "Line-spread function",
    "muse_twilight": "Twilight sky flat", "muse_scibasic": "Basic science reduction (pixel tables)",
    "muse_scipost": "Science post-processing (cube)", "muse_exp_combine": "Exposure combination",
    "muse_exp_align": "Offsets between exposures",
    "combine_cubes": "Combination of exposure cubes on one grid (sigma-clipped)",
    "muse_standard": "Flux calibration from a standard star",
    "zap": "Sky-residual cleaning with ZAP",
    "field_grid": "The grid of a field (OUTPUT_WCS) from its exposures' pointings",
    "muselet": "Emission-line (MUSELET) and continuum (photutils) sources of a cube",
}


def build_template(recipe: str | None = None) -> nbformat.NotebookNode:
    """The template notebook of ``recipe`` (None: the generic one for Python recipes)."""
    name = recipe or "generic"
    title = _TITLE.get(name, "Reduction run")
    cells = [
        new_markdown_cell(
            f"# {title} (`{name}`)\n\n"
            "Executed by `musewise.dpu` with papermill; the executed notebook is archived with the "
            "run. Everything below calls musewise functions, so the same reduction can be redone "
            "from Python. Inputs were chosen by the archive (reasons below)."),
        new_code_cell(
            f"recipe = {recipe!r}\n"
            "step = ''\n"
            "run_id = 0\n"
            "ifu = None\n"
            "night = ''\n"
            "sof = '[]'          # JSON: [[path, tag], ...]\n"
            "inputs = '[]'       # JSON: [{dataset_id, tag, reason, path}, ...]\n"
            "workdir = '.'\n"
            "params = '{}'       # JSON: recipe parameters\n"
            "archive = '{}'      # JSON: archive settings (no secrets)\n"
            "quicklook = '[\"image\"]'\n"
            "timeout = 0\n"
            "threads = 0         # OpenMP threads of the pipeline (0: its own default)",
            metadata={"tags": ["parameters"]}),
        new_code_cell(
            "import json\n"
            "%matplotlib inline\n"
            "from musewise import recipes\n"
            "from musewise.dpu import notebook as nb\n"
            "sof, inputs, params = json.loads(sof), json.loads(inputs), json.loads(params)\n"
            "archive, quicklook = json.loads(archive), json.loads(quicklook)\n"
            "recipes.configure(archive)  # the site's esorex and recipe descriptions\n"
            "print(f'run {run_id}: {recipe} night {night} IFU {ifu} parameters {params}')"),
        new_markdown_cell("## Inputs"),
        new_code_cell("nb.show_inputs(inputs)"),
        new_markdown_cell("## Run the recipe\n\nA failure stops the notebook here; the error "
                          "and the end of the pipeline log are shown below it."),
        new_code_cell(
            "result = nb.execute(recipe, sof, workdir, params, ifu=ifu,\n"
            "                    inputs=[i['dataset_id'] for i in inputs], timeout=timeout or None,\n"
            "                    threads=threads or None)"),
        new_markdown_cell("## Log"),
        new_code_cell("nb.show_log(result)"),
        new_markdown_cell("## Quick look"),
        new_code_cell(_QUICKLOOK.get(name, "nb.quicklook(result, quicklook)")),
        *([new_markdown_cell(f"## What to check\n\n{_CHECKS[name][0]}"), new_code_cell(_CHECKS[name][1])]
          if name in _CHECKS else []),
        new_markdown_cell("## QC parameters (ESO QC header keywords; also stored in the archive)"),
        new_code_cell("qc = nb.qc_table(result)"),
    ]
    nb = musewise_notebook(cells, name.replace('_', '-'))
    nb.metadata["musewise"] = {"template": name}
    return nb


def default_templates_dir() -> Path:
    """The ``templates/`` folder shipped with musewise (see :func:`musewise.resources.shared_folder`)."""
    from ..resources import shared_folder

    return shared_folder("templates")


def write_templates(folder: str | Path | None = None) -> list[Path]:
    """Write every template (and ``generic.ipynb``) into ``folder``; returns the files."""
    folder = Path(folder) if folder else default_templates_dir()
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in TEMPLATE_RECIPES + (None,):
        p = folder / f"{name or 'generic'}.ipynb"
        nbformat.write(build_template(name), p)
        out.append(p)
    return out


def template_for(recipe: str, folder: str | Path | None = None, scratch: str | Path | None = None) -> Path:
    """The template notebook file to execute for ``recipe``.

    Looks in ``folder`` (or the shipped ``templates/``) for ``<recipe>.ipynb`` then
    ``generic.ipynb``; writes the built template to ``scratch`` when neither exists
    (a site's own templates folder that has neither).
    """
    for d in [Path(folder)] if folder else [default_templates_dir()]:
        for n in (recipe, "generic"):
            p = d / f"{n}.ipynb"
            if p.exists():
                return p
    d = Path(scratch or ".") / "templates"
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"{recipe}.ipynb"
    nbformat.write(build_template(recipe if recipe in TEMPLATE_RECIPES else None), p)
    return p


if __name__ == "__main__":
    for path in write_templates(sys.argv[1] if len(sys.argv) > 1 else None):
        print(path)
