"""Students change the parameters cell and press Run All: every notebook must run to the end under other
reasonable values too (other activations, small hidden sizes, another split and user, few epochs, a
lambda list without 100). papermill injects each set; nbval (over notebooks/) runs the defaults. Each notebook's
first set runs in JupyterLab instead (tests/test_jupyterlab.py, which also fails on anything written to stderr),
and here only where there is no browser to run that test.

The runs write their checkpoints into a scratch data folder, never over the real ones.
"""

import importlib.util
import shutil
from pathlib import Path

import pytest

from notebook_parameters import PARAMETER_SETS

papermill = pytest.importorskip("papermill")

ROOT = Path(__file__).resolve().parent.parent
BROWSER = bool(shutil.which("chromium") and shutil.which("chromedriver") and importlib.util.find_spec("selenium"))
CASES = [(name, i, parameters) for name, sets in PARAMETER_SETS.items() for i, parameters in enumerate(sets)]


@pytest.mark.parametrize("name, index, parameters", CASES, ids=[f"{name}-{i}" for name, i, _ in CASES])
def test_notebook_runs_to_the_end_with_other_parameters(name, index, parameters, scratch_data, tmp_path):
    if index == 0 and BROWSER:
        pytest.skip("this set runs in JupyterLab: tests/test_jupyterlab.py")
    papermill.execute_notebook(ROOT / "notebooks" / f"{name}.ipynb", tmp_path / f"{name}.ipynb",
                               parameters={"DATA_DIR": str(scratch_data), **parameters}, cwd=str(ROOT / "notebooks"),
                               kernel_name="python3", progress_bar=False, execution_timeout=600)


def test_every_notebook_has_parameter_sets():
    assert {p.stem for p in (ROOT / "notebooks").glob("*.ipynb")} == set(PARAMETER_SETS)
    assert all(len(sets) >= 2 for sets in PARAMETER_SETS.values())
