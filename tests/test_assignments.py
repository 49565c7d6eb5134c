"""The assignments (assignments/, generated from solutions/ by assignments/make.py with nbgrader):

1. assignments/ is what ``nbgrader generate_assignment`` makes of solutions/ today;
2. each student notebook, run as generated, fails exactly at its graded check cells, each with "not written yet",
   and nowhere else;
3. the same notebook with the solutions' code in its blanks gets full marks from ``nbgrader autograde``.

They build one nbgrader course in a temporary folder and autograde two submissions per assignment: the student
version as generated, and that version with the solution code filled in. The checks themselves are tested, fast,
in tests/test_assignment_checks.py; grading a class (every kind of submission, the course kept safe) in
tests/test_grading.py.
"""

import json
import sys
from pathlib import Path

import pytest
from assignments_make import make

ROOT = Path(__file__).resolve().parent.parent
NOT_WRITTEN = "not written yet"


# ---------------------------------------------------------------- the notebooks (nbgrader)



@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A course made from solutions/, with two submissions of each assignment autograded: the student version as
    generated ("as-generated"), and the same with the solution code in its task cells ("solved")."""
    pytest.importorskip("nbgrader", reason="nbgrader is in the test extra: pip install -e '.[test]'")
    root = tmp_path_factory.mktemp("course")
    make.setup_course(root)
    for assignment in make.ASSIGNMENTS:
        released = json.loads((root / "release" / assignment / f"{assignment}.ipynb").read_text())
        source = json.loads((ROOT / "solutions" / f"{assignment}.ipynb").read_text())
        solved = make.fill_tasks(released, source)
        for student, notebook in (("as-generated", released), ("solved", solved)):
            folder = root / "submitted" / student / assignment
            folder.mkdir(parents=True)
            (folder / f"{assignment}.ipynb").write_text(json.dumps(notebook, indent=1))
    scores = make.autograde(root)
    return root, scores


def _cells(notebook: dict) -> list:
    return [(cell["cell_type"], "".join(cell["source"]), cell["metadata"].get("nbgrader")) for cell in notebook["cells"]]


def test_assignments_are_generated_from_the_solutions(course):
    root, _ = course
    for assignment in make.ASSIGNMENTS:
        generated = json.loads((root / "release" / assignment / f"{assignment}.ipynb").read_text())
        committed = json.loads((ROOT / "assignments" / f"{assignment}.ipynb").read_text())
        assert _cells(committed) == _cells(generated), (
            f"assignments/{assignment}.ipynb is out of date with solutions/: run  python assignments/make.py")
    assert sorted(path.stem for path in (ROOT / "assignments").glob("*.ipynb")) == sorted(make.ASSIGNMENTS)


@pytest.mark.parametrize("assignment", make.ASSIGNMENTS)
def test_student_version_fails_exactly_at_its_checks(course, assignment):
    root, scores = course
    ran = json.loads((root / "autograded" / "as-generated" / assignment / f"{assignment}.ipynb").read_text())
    graded, failed = [], []
    for index, cell in enumerate(ran["cells"]):
        if cell["cell_type"] == "code" and cell["metadata"].get("nbgrader", {}).get("grade"):
            graded.append(index)
        errors = [output for output in cell.get("outputs", []) if output["output_type"] == "error"]
        if errors:
            failed.append(index)
            error = errors[0]
            assert error["ename"] == "AssertionError" and NOT_WRITTEN in error["evalue"], (
                f"cell {index} of the student version fails for another reason: {error['ename']}: {error['evalue']}")
    assert graded and failed == graded, f"graded cells {graded}, failing cells {failed}"
    assert scores[("as-generated", assignment)].score == 0


@pytest.mark.parametrize("assignment", make.ASSIGNMENTS)
def test_solution_code_gets_full_marks(course, assignment):
    root, scores = course
    result = scores[("solved", assignment)]
    assert not result.reason and not result.warnings, (result.reason, result.warnings)
    score, max_score = result.score, result.max_score
    ran = json.loads((root / "autograded" / "solved" / assignment / f"{assignment}.ipynb").read_text())
    errors = [f"{output['ename']}: {output['evalue']}" for cell in ran["cells"] for output in cell.get("outputs", [])
              if output["output_type"] == "error"]
    assert not errors
    assert max_score > 0 and score == max_score


def test_every_solution_carries_the_markup():
    for assignment in make.ASSIGNMENTS:
        cells = json.loads((ROOT / "solutions" / f"{assignment}.ipynb").read_text())["cells"]
        tags = [cell["metadata"].get("nbgrader", {}) for cell in cells if cell["cell_type"] == "code"]
        tasks = [tag["grade_id"] for tag in tags if tag.get("solution") and tag["grade_id"].startswith("task_")]
        checked = [tag["grade_id"] for tag in tags if tag.get("grade")]
        assert len(tasks) >= 2 and checked == [f"check_{task.removeprefix('task_')}" for task in tasks], assignment


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
