"""A chapter starts anywhere: notebook 00, copied alone into an empty folder, runs top to bottom in an environment
that has PyTorch, nbconvert and ipykernel but not ``autorec_utils`` -- as in Colab, on a JupyterHub, or on a
student's machine with only the notebook. Its setup cell (book/_ext/notebook_setup.py) installs the package from
``AUTOREC_PACKAGE_SOURCE``, here a wheel of this repository (``pip wheel --no-deps .``), and says so; the data come
from ``AUTOREC_DATA_DIR``.

Slow (a fresh virtual environment, the package's dependencies from the package index, the whole chapter): it runs
with the notebooks, and skips with its reason where pip cannot install into a fresh environment.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "00_quickstart.ipynb"
KERNEL = "autorec-anywhere"  # a kernel of the fresh environment, so the notebook cannot see this one's packages
# pip installs without compiling to bytecode (Python compiles what is imported): half of pip's time for torch.
# This is pip's environment spelling of --no-compile: a "no-" option is turned on by a false value.
NO_BYTECODE = {"PIP_NO_COMPILE": "0"}


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, command))}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def bare_environment(tmp_path_factory) -> Path:
    """A virtual environment with torch (the CPU wheel this project pins in CI), nbconvert and ipykernel only."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    torch = f"torch=={__import__('torch').__version__.split('+')[0]}"  # the build already here: no CUDA download
    installed = subprocess.run([str(python), "-m", "pip", "install", "--quiet", torch, "nbconvert", "ipykernel"],
                               capture_output=True, text=True, timeout=900, env={**os.environ, **NO_BYTECODE})
    if installed.returncode != 0:
        pytest.skip(f"pip cannot install into a fresh environment here: {installed.stderr.strip()[-300:]}")
    run([str(python), "-m", "ipykernel", "install", "--sys-prefix", "--name", KERNEL])
    found = subprocess.run([str(python), "-c", "import autorec_utils"], capture_output=True, text=True,
                           cwd=venv.parent)  # not the repository's root, whose folder would be importable
    assert found.returncode != 0, "the bare environment must not have autorec_utils"
    return venv


def test_notebook_00_copied_alone_installs_the_package_and_runs(bare_environment, tmp_path, scratch_data):
    source, wheels = tmp_path / "source", tmp_path / "wheels"  # a copy: building in the repository would leave build/
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source)
    for package in ("autorec_utils", "autorec_assignments"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    # built by this environment's setuptools (no build environment downloaded): the wheel is the same either way
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir",
         str(wheels), str(source)], timeout=600)
    (wheel,) = wheels.glob("autorec*.whl")

    folder = tmp_path / "copied"
    folder.mkdir()
    shutil.copy(NOTEBOOK, folder)
    environment = {key: value for key, value in os.environ.items() if key not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    environment.update(PATH=f"{bare_environment / 'bin'}{os.pathsep}{environment.get('PATH', '')}",
                       AUTOREC_PACKAGE_SOURCE=str(wheel), AUTOREC_DATA_DIR=str(scratch_data),
                       PYTHONNOUSERSITE="1", **NO_BYTECODE)
    run([str(bare_environment / "bin" / "jupyter"), "nbconvert", "--to", "notebook", "--execute", "--inplace",
         f"--ExecutePreprocessor.kernel_name={KERNEL}", "--ExecutePreprocessor.timeout=900", NOTEBOOK.name],
        cwd=folder, env=environment, timeout=1800)

    cells = json.loads((folder / NOTEBOOK.name).read_text())["cells"]
    outputs = [output for cell in cells if cell["cell_type"] == "code" for output in cell["outputs"]]
    text = "".join("".join(output.get("text", "")) for output in outputs)
    assert f"installed autorec_utils from {wheel}" in text
    assert not [output for output in outputs if output["output_type"] == "error"]
    # every cell ran, and every cell that shows something in the stored chapter showed something here too
    code = [cell for cell in cells if cell["cell_type"] == "code"]
    stored = [cell for cell in json.loads(NOTEBOOK.read_text())["cells"] if cell["cell_type"] == "code"]
    assert all(cell["execution_count"] for cell in code)
    assert [bool(cell["outputs"]) for cell in code[1:]] == [bool(cell["outputs"]) for cell in stored[1:]]
    assert not (folder / "data").exists(), "the data came from AUTOREC_DATA_DIR, not a download into the folder"
