"""The exercises of every assignment run where they are: they name only what the assignment defines or imports.

For each student version in assignments/ (made by assignments/make.py), the test fills the task cells with the
solution's code (``make.fill_tasks``) and every exercise code cell with the solution's answer (matched by grade id),
puts one cell before the first exercise that looks up every name the exercise prompts use in their ``code`` (a
function they call, a name they read an attribute or an item of, a setting in capitals), and runs the whole
notebook in one kernel with errors allowed. No cell may raise a ``NameError``: neither an answer, nor that look-up
(a prompt that says "set ``PATIENCE = 3``" or "call ``similar_movies``" where the assignment has no such name).

Each assignment runs once, top to bottom (chapter 03's and 06's exercises train models: a few minutes in all);
it carries the ``notebooks`` marker, so ``pytest -m "not notebooks"`` leaves it out.
"""

import copy
import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.notebooks  # executes notebooks: not in the quick tier (conftest.py)


def _make():
    spec = importlib.util.spec_from_file_location("assignments_make", ROOT / "assignments" / "make.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make = _make()

STRING = re.compile(r"\"[^\"]*\"|'[^']*'")
CALLED_OR_READ = re.compile(r"(?<![\w.])([A-Za-z_]\w*)(?=[(.\[])")  # f(...), x.attribute, x[...]
BARE = re.compile(r"\s*([A-Za-z_]\w*)\s*")  # a span that is one name: `recommend_for_new_user`
SETTING = re.compile(r"(?<![\w.])([A-Z][A-Z0-9_]+)\b")  # PATIENCE, I_AUTOREC, ...
ASSIGNED = re.compile(r"(?<![\w.])([a-z_]\w*)\s*=(?!=)")  # a name the prompt has the student make (x = ...)


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def _grade_id(cell: dict) -> str:
    return cell["metadata"].get("nbgrader", {}).get("grade_id", "")


def exercise_prompts(notebook: dict) -> list[str]:
    """The markdown of the exercises section that the student reads: its introduction and every exercise's prompt
    (not the answer cells, which are blanks in the student version)."""
    cells = notebook["cells"]
    start = next(index for index, cell in enumerate(cells)
                 if cell["cell_type"] == "markdown" and _source(cell).startswith("## Exercises"))
    return [_source(cell) for cell in cells[start:] if cell["cell_type"] == "markdown" and not _grade_id(cell)]


def names_in_prompts(prompts: list[str]) -> set[str]:
    """The names the prompts' inline code uses: called, dotted or indexed, a span that is one name, and the settings
    in capitals; a lower-case
    name the prompt itself assigns (``toy_model, ... = train_toy()``'s left side is not among them) is left out."""
    names, assigned = set(), set()
    for prompt in prompts:
        for span in re.findall(r"`([^`]+)`", prompt):
            code = STRING.sub('""', span)
            names |= set(CALLED_OR_READ.findall(code)) | set(SETTING.findall(code)) | set(BARE.fullmatch(code).groups()
                                                                                        if BARE.fullmatch(code) else ())
            assigned |= set(ASSIGNED.findall(code))
    return names - assigned


def _look_up_cell(names: set[str]) -> dict:
    source = (
        "import builtins as _builtins\n"
        f"_missing = sorted(name for name in {sorted(names)!r} if name not in globals() and not hasattr(_builtins, name))\n"
        "if _missing:\n"
        "    raise NameError(f\"the exercises name {', '.join(_missing)}: the assignment neither defines nor imports it\")\n"
    )
    return {"cell_type": "code", "execution_count": None, "id": "exercise-names", "metadata": {}, "outputs": [],
            "source": source}


def answered(student: dict, solution: dict) -> dict:
    """The student version with the solution's tasks and exercise answers in its blanks, and the look-up of the
    prompts' names before the first exercise."""
    notebook = make.fill_tasks(student, solution)
    answers = {_grade_id(cell): cell["source"] for cell in solution["cells"]
               if cell["cell_type"] == "code" and _grade_id(cell).startswith("exercise_")}
    blanks = [cell for cell in notebook["cells"] if cell["cell_type"] == "code" and _grade_id(cell).startswith("exercise_")]
    assert blanks and sorted(_grade_id(cell) for cell in blanks) == sorted(answers), "the exercises differ from the solution's"
    for cell in blanks:
        cell["source"] = copy.deepcopy(answers[_grade_id(cell)])
    first = next(index for index, cell in enumerate(notebook["cells"])
                 if cell["cell_type"] == "markdown" and _source(cell).startswith("### 1."))
    notebook["cells"].insert(first, _look_up_cell(names_in_prompts(exercise_prompts(notebook))))
    return notebook


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_the_look_up_finds_the_names_of_the_prompts():
    prompts = ['Set `PATIENCE = 3` and call `similar_movies(models["U-AutoRec"], SIMILAR_TO, movies)`, then '
               '`toy_model, reconstruction, _ = train_toy()`; read `raw`, `.history.score`, `"u3"` and `x = f(y)`.']
    assert names_in_prompts(prompts) == {"PATIENCE", "similar_movies", "models", "SIMILAR_TO", "train_toy", "f", "raw"}
    for assignment in make.ASSIGNMENTS:  # every assignment's prompts name something: the look-up is no empty check
        assert names_in_prompts(exercise_prompts(_read(ROOT / "assignments" / f"{assignment}.ipynb"))), assignment


@pytest.mark.parametrize("assignment", make.ASSIGNMENTS)
def test_exercises_name_only_what_the_assignment_has(assignment):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    student = _read(ROOT / "assignments" / f"{assignment}.ipynb")
    solution = _read(ROOT / "solutions" / f"{assignment}.ipynb")
    notebook = nbformat.reads(json.dumps(answered(student, solution)), as_version=4)  # sources as strings
    # up to 30 minutes a cell: chapter 06's exercise 2 trains four list models, slow on a shared 2-core CPU
    client = nbclient.NotebookClient(notebook, timeout=1800, kernel_name="python3", allow_errors=True,
                                     resources={"metadata": {"path": str(ROOT / "assignments")}})
    client.execute()
    failures = []
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error" and output.get("ename") == "NameError":
                where = _grade_id(cell) or cell.get("id", "")
                failures.append(f"cell {index} ({where}): NameError: {output['evalue']}")
    assert not failures, f"assignments/{assignment}.ipynb:\n" + "\n".join(failures)
