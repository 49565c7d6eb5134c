"""pytest's settings for the whole repository: which tests execute notebooks, and how nbval runs them.

Everything that executes a notebook (nbval over notebooks/ and solutions/, the papermill and JupyterLab
tests, the assignment checks) carries the ``notebooks`` marker, so ``pytest -m "not notebooks"`` is the
quick check after a change and plain ``pytest`` the full one.
"""

from pathlib import Path

import pytest

NOTEBOOK_RUNNERS = {"test_notebook_parameters.py", "test_jupyterlab.py", "test_assignments.py", "test_book.py"}


def pytest_configure(config):
    # nbval collects the notebooks in testpaths; it compares outputs only in cells tagged nbval-check-output
    # (--nbval-lax), runs them in this environment's kernel, and gives a cell up to 15 minutes.
    if config.pluginmanager.hasplugin("nbval") and not config.option.nbval:
        config.option.nbval_lax = True
        config.option.nbval_current_env = True
        if config.option.nbval_cell_timeout == 2000:  # nbval's own default: not set on the command line
            config.option.nbval_cell_timeout = 900


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.path)).suffix == ".ipynb" or Path(str(item.path)).name in NOTEBOOK_RUNNERS:
            item.add_marker(pytest.mark.notebooks)
