"""pip (pyproject.toml) and conda (environment.yml) users get the same dependencies."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONDA_NAMES = {"pytorch": "torch"}  # conda-forge name -> PyPI name


def split(requirement: str) -> tuple[str, str]:
    name, spec = re.match(r"\s*([A-Za-z0-9_.-]+)\s*(.*)", requirement).groups()
    return CONDA_NAMES.get(name.lower(), name.lower()), spec.replace(" ", "")


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_side = dict(split(r) for r in project["dependencies"] + project["optional-dependencies"]["test"])
    conda = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    conda_side = dict(split(d) for d in conda if isinstance(d, str) and not d.startswith(("python", "pip")))
    assert conda_side == pip_side
    assert {"pip": ["--editable ."]} in conda  # the conda env installs this package itself


def test_torch_is_a_floor_not_a_pin():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "torch>=2.4" in project["dependencies"]  # fused Adam on the CPU (the sparse path)


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    command = readme.split("**Run the tests**")[1].split("```bash\n")[1].split("\n```")[0].strip()
    assert command.endswith("python -m pytest") and "python3 -m venv .venv" in command
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()
