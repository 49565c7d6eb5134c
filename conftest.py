"""pytest's settings for the whole repository: which tests execute notebooks, and how nbval runs them.

Everything that executes a notebook (nbval over notebooks/ and solutions/, the papermill and JupyterLab
tests, the assignment checks) carries the ``notebooks`` marker, so ``pytest -m "not notebooks"`` is the
quick check after a change and plain ``pytest`` the full one.
"""

import os
from pathlib import Path

import pytest

NOTEBOOK_RUNNERS = {"test_notebook_parameters.py", "test_jupyterlab.py", "test_assignments.py", "test_book.py",
                    "test_anywhere.py"}
# The order the two workers take the files in (pyproject: --no-loadscope-reorder): chapter 03 first, since it saves
# the models that 04, 06 and the solutions load (run later, they find them instead of training them again); then
# the longest first (seconds per file in a clean clone's .ci/run, at about 210 GFLOP/s), so that no worker is left
# running a long file alone at the end. Files not named follow in pytest's order; a wrong guess costs time, not a
# result.
FIRST = [
    "notebooks/03_masked_training.ipynb",  # 95 s
    "tests/test_jupyterlab.py",  # 170 s
    "solutions/03_masked_training.ipynb",  # 175 s
    "solutions/06_top_n_autoencoders.ipynb",  # 120 s
    "tests/test_grading.py",  # 100 s
    "notebooks/05_scaling_up.ipynb",  # 100 s
    "tests/test_notebook_parameters.py",  # 95 s
    "tests/test_anywhere.py",  # 65 s
    "solutions/07_reading_a_leaderboard.ipynb",  # 60 s
    "solutions/05_scaling_up.ipynb",  # 55 s
    "solutions/05b_beyond_one_machine.ipynb",  # 50 s
    "tests/test_distributed.py",  # 50 s
    "tests/test_assignments.py",  # 50 s
    "solutions/00_quickstart.ipynb",  # 45 s
    "notebooks/06_top_n_autoencoders.ipynb",  # 30 s
    "tests/test_book.py",  # 27 s
    "notebooks/05b_beyond_one_machine.ipynb",  # 23 s
]


def pytest_configure(config):
    if getattr(config.option, "numprocesses", None):
        # Two workers on two cores: each worker and each kernel it starts computes on one thread, rather than
        # four threads contending for two cores.
        for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(variable, "1")
    # nbval collects the notebooks in testpaths; it compares outputs only in cells tagged nbval-check-output
    # (--nbval-lax), runs them in this environment's kernel, and gives a cell up to 15 minutes.
    if config.pluginmanager.hasplugin("nbval") and not config.option.nbval:
        config.option.nbval_lax = True
        config.option.nbval_current_env = True
        if config.option.nbval_cell_timeout == 2000:  # nbval's own default: not set on the command line
            config.option.nbval_cell_timeout = 900


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = Path(str(item.path))
        if path.suffix == ".ipynb" or path.name in NOTEBOOK_RUNNERS:
            item.add_marker(pytest.mark.notebooks)
    rank = {name: place for place, name in enumerate(FIRST)}
    # a stable sort: each file's tests (a notebook's cells) keep their order
    items.sort(key=lambda item: rank.get(Path(str(item.path)).relative_to(config.rootpath).as_posix(), len(rank)))
