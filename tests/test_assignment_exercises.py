"""The exercises of every assignment work where they are: they name only what the assignment defines or imports.

For each student version in assignments/ (made by assignments/make.py), the test fills the task cells with the
solution's code (``make.fill_tasks``) and every exercise code cell with the solution's answer (matched by grade id),
then reads the notebook's code without running it (the solutions' own run, under nbval, shows that the code runs):
no cell may use a name that no cell defines or imports (ruff's undefined-name rule, F821, over the whole notebook),
and every name the exercise prompts use in their ``code`` (a function they call, a name they read an attribute or an
item of, a setting in capitals) must be one the notebook binds at the top level of a cell. A prompt that says "set
``PATIENCE = 3``" or "call ``similar_movies``" where the assignment has no such name fails, and so does an answer
that uses a name only the solution's hidden cells defined.
"""

import ast
import builtins
import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from assignments_make import make

ROOT = Path(__file__).resolve().parent.parent



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


def answered(student: dict, solution: dict) -> dict:
    """The student version with the solution's tasks and exercise answers in its blanks."""
    notebook = make.fill_tasks(student, solution)
    answers = {_grade_id(cell): cell["source"] for cell in solution["cells"]
               if cell["cell_type"] == "code" and _grade_id(cell).startswith("exercise_")}
    blanks = [cell for cell in notebook["cells"] if cell["cell_type"] == "code" and _grade_id(cell).startswith("exercise_")]
    assert blanks and sorted(_grade_id(cell) for cell in blanks) == sorted(answers), "the exercises differ from the solution's"
    for cell in blanks:
        cell["source"] = copy.deepcopy(answers[_grade_id(cell)])
    return notebook


class _TopLevelNames(ast.NodeVisitor):
    """The names a cell binds where the next cells can read them: assigned, imported, defined, a loop's or a with's
    target -- not the names inside a function, a class or a comprehension."""

    def __init__(self):
        self.names: set[str] = set()

    def visit_Name(self, node):
        if isinstance(node.ctx, ast.Store):
            self.names.add(node.id)

    def visit_Import(self, node):
        self.names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}

    def visit_FunctionDef(self, node):
        self.names.add(node.name)

    visit_ImportFrom = visit_Import
    visit_AsyncFunctionDef = visit_ClassDef = visit_FunctionDef

    def visit_Lambda(self, node):
        pass

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = visit_Lambda


def bound_names(notebook: dict) -> set[str]:
    from IPython.core.inputtransformer2 import TransformerManager  # %magics and !commands, as the kernel reads them

    visitor = _TopLevelNames()
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            visitor.visit(ast.parse(TransformerManager().transform_cell(_source(cell))))
    return visitor.names


def undefined_names(notebook: dict, folder: Path) -> list[str]:
    """ruff's undefined names (F821) in the notebook's code, one line each."""
    path = folder / "answered.ipynb"
    path.write_text(json.dumps(notebook))
    found = subprocess.run([sys.executable, "-m", "ruff", "check", "--isolated", "--no-cache", "--select", "F821",
                            "--output-format", "concise", str(path)], capture_output=True, text=True)
    assert found.returncode in (0, 1), found.stderr
    return [line for line in found.stdout.splitlines() if "F821" in line]


def missing_names(notebook: dict) -> set[str]:
    """The names the exercise prompts use that the notebook never binds (nor Python has built in)."""
    return names_in_prompts(exercise_prompts(notebook)) - bound_names(notebook) - set(dir(builtins))


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_the_look_up_finds_the_names_of_the_prompts():
    prompts = ['Set `PATIENCE = 3` and call `similar_movies(models["U-AutoRec"], SIMILAR_TO, movies)`, then '
               '`toy_model, reconstruction, _ = train_toy()`; read `raw`, `.history.score`, `"u3"` and `x = f(y)`.']
    assert names_in_prompts(prompts) == {"PATIENCE", "similar_movies", "models", "SIMILAR_TO", "train_toy", "f", "raw"}
    for assignment in make.ASSIGNMENTS:  # every assignment's prompts name something: the look-up is no empty check
        assert names_in_prompts(exercise_prompts(_read(ROOT / "assignments" / f"{assignment}.ipynb"))), assignment


@pytest.mark.parametrize("assignment", make.ASSIGNMENTS)
def test_exercises_name_only_what_the_assignment_has(assignment, tmp_path):
    notebook = answered(_read(ROOT / "assignments" / f"{assignment}.ipynb"), _read(ROOT / "solutions" / f"{assignment}.ipynb"))
    assert not undefined_names(notebook, tmp_path), f"assignments/{assignment}.ipynb uses names nothing defines"
    assert not missing_names(notebook), f"the exercises of assignments/{assignment}.ipynb name what it does not have"


def test_the_check_fails_where_a_name_is_missing(tmp_path):
    """Proof the check can fail: the filled 03 assignment without its first import cell, and a prompt that asks for a
    setting nobody defines."""
    assignment = "03_masked_training"
    notebook = answered(_read(ROOT / "assignments" / f"{assignment}.ipynb"), _read(ROOT / "solutions" / f"{assignment}.ipynb"))
    without_imports = copy.deepcopy(notebook)
    first_import = next(index for index, cell in enumerate(without_imports["cells"])
                        if cell["cell_type"] == "code" and re.search(r"^(from|import) ", _source(cell), re.M))
    del without_imports["cells"][first_import]
    assert undefined_names(without_imports, tmp_path)
    asks_more = copy.deepcopy(notebook)
    prompt = next(cell for cell in asks_more["cells"] if cell["cell_type"] == "markdown" and _source(cell).startswith("### 1."))
    prompt["source"] = _source(prompt) + "\nThen set `NO_SUCH_SETTING = 3` and call `no_such_function(model)`."
    assert missing_names(asks_more) == {"NO_SUCH_SETTING", "no_such_function"}
