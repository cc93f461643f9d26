"""The standard star's notebook shows what an astronomer checks (real esorex, IFUs 1-2).

Reuses ``test_fluxcal``'s module fixture (a night with a standard star reduced through
``dpu.make('standard')``); the scipost and ZAP notebooks are checked in ``test_zap``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from test_fluxcal import std_cascade  # noqa: F401  (module fixture reused)
from test_zap import _figures_after


def pipeline(test):
    """A real-pipeline test that reduces a whole field or cascade of its own: ``long``, run by
    ``make test-long``, not by ``make test`` (CI's time limit)."""
    return pytest.mark.long(pytest.mark.pipeline(test))


@pipeline
def test_standard_notebook_shows_the_response_against_the_table_and_the_static_response(std_cascade):  # noqa: F811
    arch, made = std_cascade
    run = arch.get_run(made[0].run_id)
    nb = json.loads(Path(arch.path(run.notebook_id)).read_text())
    assert _figures_after(nb, "checks.plot_response_check") == 1, "no response figure"
    text = json.dumps(nb)
    assert "static STD_RESPONSE not available" not in text  # the static response was found and drawn
    assert "no STD_RESPONSE made" not in text
