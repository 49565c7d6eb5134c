"""Make the student versions of the assignments from the solutions, and grade students' notebooks, with nbgrader.

    python assignments/make.py                # assignments/*.ipynb from solutions/ (nbgrader generate_assignment)
    python assignments/make.py course DIR     # DIR becomes an nbgrader course: the solutions as its source/,
                                              # the student versions in release/, a gradebook
    python assignments/make.py grade DIR      # nbgrader autograde every notebook in DIR/submitted/, then the scores
                                              # (printed, and written to DIR/scores.csv)

The solutions in solutions/ are the one source: their task cells hold the answer between nbgrader's solution
markers, their check cells are graded, and their exercise answers are solution cells too. ``nbgrader
generate_assignment`` blanks the marked regions (``# YOUR CODE HERE``, so that a blank cell runs and only the check
after it fails), clears the outputs and locks the check cells. The student versions in assignments/ are its output,
committed and never edited by hand (tests/test_assignments.py regenerates them and compares). Needs nbgrader
(``pip install -e ".[test]"``, or ``pip install nbgrader``).
"""

from __future__ import annotations

import argparse
import copy
import csv
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS, ASSIGNMENTS_DIR = ROOT / "solutions", ROOT / "assignments"
# One assignment per chapter whose code is the lesson; each holds one notebook of the same name.
ASSIGNMENTS = ("02_autorec_model", "03_masked_training", "04_recommendations", "06_top_n_autoencoders")

# The course's nbgrader_config.py (written into every course this script sets up).
CONFIG = '''c = get_config()  # noqa: F821 (nbgrader's config loader provides it)
c.CourseDirectory.course_id = "autorec"
# A blank must still run: the student version's cells then fail only at the graded checks.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
# Autograding runs a whole notebook; chapter 04's may train chapter 03's models first (about a minute).
c.Execute.timeout = 900
'''


def _api(root: Path):
    """nbgrader's Python API on the course at ``root``, with the course's config."""
    try:
        from nbgrader.apps import NbGraderAPI
        from traitlets.config import Config
    except ImportError:
        sys.exit("nbgrader is not installed: pip install -e '.[test]' (or pip install nbgrader), then run this again.")
    # nbgrader 0.9 on SQLAlchemy 2 warns about its own session handling while it records grades: not ours to fix
    warnings.filterwarnings("ignore", message="Object of type <Submitted", module="nbgrader")
    # nbgrader runs alembic (for its gradebook) as a program: the one next to this Python.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    config = Config()
    exec(CONFIG, {"get_config": lambda: config})
    config.CourseDirectory.root = str(root)
    return NbGraderAPI(config=config)


def _check(result: dict, doing: str) -> None:
    if not result["success"]:
        raise RuntimeError(f"nbgrader failed to {doing}:\n{result.get('error') or ''}\n{result.get('log') or ''}")


def setup_course(root: str | Path, assignments=ASSIGNMENTS):
    """Make ``root`` an nbgrader course: nbgrader_config.py, the solutions as ``source/<id>/<id>.ipynb``, and the
    student versions made by ``nbgrader generate_assignment`` in ``release/<id>/<id>.ipynb``. Returns the API."""
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    (root / "nbgrader_config.py").write_text(CONFIG)
    api = _api(root)
    for assignment in assignments:
        folder = root / "source" / assignment
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SOLUTIONS / f"{assignment}.ipynb", folder / f"{assignment}.ipynb")
        _check(api.generate_assignment(assignment, force=True), f"generate the assignment {assignment}")
    return api


def generate(target: str | Path = ASSIGNMENTS_DIR, assignments=ASSIGNMENTS) -> list[Path]:
    """The student versions of ``assignments`` from solutions/, written to ``target`` (assignments/)."""
    target = Path(target)
    written = []
    with tempfile.TemporaryDirectory() as course:
        setup_course(course, assignments)
        for assignment in assignments:
            path = target / f"{assignment}.ipynb"
            shutil.copyfile(Path(course) / "release" / assignment / f"{assignment}.ipynb", path)
            written.append(path)
    return written


def autograde(root: str | Path) -> dict[tuple[str, str], tuple[float, float]]:
    """``nbgrader autograde`` every submission in ``root/submitted/<student>/<assignment>/`` of a course made by
    ``setup_course``; writes ``root/scores.csv`` and returns {(student, assignment): (score, max score)}."""
    root = Path(root).resolve()
    api = _api(root)
    scores = {}
    for assignment in sorted(path.name for path in (root / "source").iterdir() if path.is_dir()):
        for submission in sorted((root / "submitted").glob(f"*/{assignment}")):
            student = submission.parent.name
            _check(api.autograde(assignment, student, force=True, create=True), f"autograde {student}'s {assignment}")
        for row in api.get_submissions(assignment):
            if row["autograded"]:
                scores[(row["student"], assignment)] = (row["score"], row["max_score"])
    with open(root / "scores.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["student", "assignment", "score", "max_score"])
        writer.writerows([student, assignment, score, top] for (student, assignment), (score, top) in sorted(scores.items()))
    return scores


def fill_tasks(student: dict, solution: dict) -> dict:
    """A copy of the ``student`` notebook (nbformat JSON) with every task cell (grade id ``task_...``) holding the
    solution's code: what a student who wrote the model answer hands in (the tests autograde it)."""
    answers = {cell["metadata"]["nbgrader"]["grade_id"]: cell["source"] for cell in solution["cells"]
               if cell["metadata"].get("nbgrader", {}).get("grade_id", "").startswith("task_")}
    filled = copy.deepcopy(student)
    for cell in filled["cells"]:
        grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id", "")
        if grade_id in answers:
            cell["source"] = answers[grade_id]
    return filled


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    commands = parser.add_subparsers(dest="command")
    course = commands.add_parser("course", help="set up an nbgrader course in DIR from the solutions")
    course.add_argument("dir", type=Path)
    grade = commands.add_parser("grade", help="autograde DIR/submitted/<student>/<assignment>/<assignment>.ipynb")
    grade.add_argument("dir", type=Path)
    args = parser.parse_args(argv)
    if args.command is None:
        for path in generate():
            print(f"wrote {path.relative_to(ROOT)}")
    elif args.command == "course":
        setup_course(args.dir)
        print(f"{args.dir}: an nbgrader course with {', '.join(ASSIGNMENTS)}; the student versions are in "
              f"{args.dir / 'release'}. Put each student's notebook in {args.dir / 'submitted'}/<student>/<assignment>/, "
              f"then: python {Path(__file__).relative_to(ROOT)} grade {args.dir}")
    else:
        if not (args.dir / "submitted").is_dir():
            sys.exit(f"{args.dir / 'submitted'} does not exist: put each notebook in submitted/<student>/<assignment>/ "
                     "of a course made by the 'course' command.")
        scores = autograde(args.dir)
        for (student, assignment), (score, top) in sorted(scores.items()):
            print(f"{student:20} {assignment:24} {score:g} / {top:g}")
        print(f"wrote {args.dir / 'scores.csv'}")


if __name__ == "__main__":
    main()
