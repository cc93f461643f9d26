"""The notebooks show what an astronomer checks (real esorex), on the 2-night field.

Uses the session fixture ``field`` (``tests/fieldfixture.py``): its standard star
(IFUs 1-2, ``dpu.make('standard')``), its scipost runs and exp_align. The ZAP notebook
is checked in ``test_zap``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fieldfixture import made_by
from test_zap import _figures_after


def pipeline(test):
    """On the field the session reduces with the real pipeline (``tests/fieldfixture.py``): ``long``."""
    return pytest.mark.long(pytest.mark.pipeline(test))



def _notebook(arch, run) -> dict:
    return json.loads(Path(arch.path(run.notebook_id)).read_text())


@pipeline
def test_standard_notebook_shows_the_response_against_the_table_and_the_static_response(field):
    arch = field["arch"]
    (resp,) = made_by(arch, "STD_RESPONSE", "muse_standard")
    nb = _notebook(arch, arch.get_run(resp.run_id))
    assert _figures_after(nb, "checks.plot_response_check") == 1, "no response figure"
    text = json.dumps(nb)
    assert "static STD_RESPONSE not available" not in text  # the static response was found and drawn
    assert "no STD_RESPONSE made" not in text


@pipeline
def test_scipost_notebook_shows_the_sky_subtracted_with_the_sky_lines_marked(field):
    arch = field["arch"]
    run = arch.get_run(field["exposures"][0].run_id)
    assert run.recipe == "muse_scipost"
    nb = _notebook(arch, run)
    assert _figures_after(nb, "checks.plot_sky_subtracted") == 1, "no figure of the sky subtracted"
    assert "SKY_SPECTRUM" in json.dumps(nb)  # the spectrum drawn is the one scipost saved
