"""The first code cell of every chapter, and the cells each core chapter shows as slides -- written here, once.

    python book/_ext/notebook_setup.py                 # stamp the setup cell and the slide marks into notebooks/
    python book/_ext/notebook_setup.py --slides-only   # the slide marks alone

**The setup cell** makes a notebook start anywhere. Where ``autorec_utils`` is importable (a clone with
``pip install -e .``) it does nothing. Elsewhere (Colab, a JupyterHub, a notebook copied on its own) it installs the
package with ``%pip`` from ``AUTOREC_PACKAGE_SOURCE`` (a wheel, a folder or a git URL) or, when that is unset, from
``PACKAGE_SOURCE``: ``git+`` the repository's address, read from ``repository.url`` in book/_config.yml (the one
place to write it, which also turns on the book's launch badges). While both are empty the cell says what to set.
tests/test_book.py holds every notebook to this template.

**The slides** (chapters 00-04; the book command builds them with nbconvert's reveal.js exporter): the title and
every section heading, each equation, and every figure -- the idea, the math, the key plot; everything else is
skipped. The marks are cell metadata (``slideshow.slide_type``) that JupyterLab's property inspector shows too.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[2]
# The repository's address is written once, as repository.url in book/_config.yml: it turns on the book's launch
# badges and is where a setup cell installs the package from (after editing it, run this script again).
REPOSITORY_URL = (yaml.safe_load((ROOT / "book" / "_config.yml").read_text()).get("repository") or {}).get("url") or ""
PACKAGE_SOURCE = f"git+{REPOSITORY_URL}" if REPOSITORY_URL else ""
SLIDE_CHAPTERS = ("00_quickstart", "01_data_loading", "02_autorec_model", "03_masked_training", "04_recommendations")

SETUP_CELL = f'''# Setup: nothing to do where autorec_utils is installed (a clone, after pip install -e .). Elsewhere -- Colab,
# a JupyterHub, this notebook copied on its own -- it installs the package first, from $AUTOREC_PACKAGE_SOURCE.
import importlib.util
import os

if importlib.util.find_spec("autorec_utils") is None:
    source = os.environ.get("AUTOREC_PACKAGE_SOURCE") or "{PACKAGE_SOURCE}"
    if not source:
        raise ModuleNotFoundError("autorec_utils is not installed: set AUTOREC_PACKAGE_SOURCE to a wheel, a folder "
                                  "or a git URL of the tutorial's repository, or run pip install -e . in a clone.")
    %pip install --quiet {{source}}
    importlib.invalidate_caches()
    print(f"installed autorec_utils from {{source}}")'''


def is_setup_cell(cell) -> bool:
    return cell["cell_type"] == "code" and "".join(cell["source"]).startswith("# Setup: nothing to do where autorec_utils")


def slide_type(cell) -> str:
    """What a cell is in the chapter's deck: a new slide (a heading, an equation), a figure on its own, or skipped."""
    text = "".join(cell["source"])
    if cell["cell_type"] == "markdown":
        return "slide" if text.lstrip().startswith("#") or "$$" in text else "skip"
    figures = any("image/png" in output.get("data", {}) for output in cell.get("outputs", []))
    return "slide" if figures else "skip"


def stamp(path: Path, setup_cell: bool = True) -> bool:
    """Write the setup cell (first code cell) and, for the core chapters, the slide marks; True if changed.
    ``setup_cell=False`` writes the slide marks only (metadata: the stored outputs stay valid without a re-run)."""
    notebook = nbformat.read(path, as_version=4)
    before = nbformat.writes(notebook)
    cells = notebook.cells
    if setup_cell:
        setup = next((cell for cell in cells if is_setup_cell(cell)), None)
        if setup is None:
            first_code = next(index for index, cell in enumerate(cells) if cell.cell_type == "code")
            setup = nbformat.v4.new_code_cell(id=f"setup-{path.stem.split('_')[0]}")
            cells.insert(first_code, setup)
        setup.source = SETUP_CELL
        setup.metadata["tags"] = ["remove-cell"]  # the book's pages leave it out: a reader of the site installs nothing
    if path.stem in SLIDE_CHAPTERS:
        for cell in cells:
            cell.metadata["slideshow"] = {"slide_type": slide_type(cell)}
    changed = nbformat.writes(notebook) != before
    if changed:
        nbformat.write(notebook, path)
    return changed


if __name__ == "__main__":
    slides_only = "--slides-only" in sys.argv[1:]  # the marks alone: no chapter needs re-running
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        if stamp(notebook, setup_cell=not slides_only):
            print(f"stamped {notebook.relative_to(ROOT)}", file=sys.stderr)
