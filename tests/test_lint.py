"""The code and the notebooks pass ruff (configured in pyproject.toml); the suite's own order names real files."""

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_is_clean():
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(ROOT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_files_run_first_exist():
    """conftest.py's FIRST (the order the workers take the longest files in) still names files that are there: a
    renamed notebook would otherwise drop to the end of the run without a word."""
    spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    missing = [name for name in conftest.FIRST if not (ROOT / name).is_file()]
    assert not missing and len(set(conftest.FIRST)) == len(conftest.FIRST), missing
