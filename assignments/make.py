"""Make the student versions of the assignments from the solutions, and grade students' notebooks, with nbgrader.

    python assignments/make.py                # assignments/*.ipynb from solutions/ (nbgrader generate_assignment)
    python assignments/make.py course DIR     # DIR becomes an nbgrader course: the solutions as its source/, the
                                              # student versions in release/, a gradebook (never over one: --force)
    python assignments/make.py grade DIR      # autograde every notebook in DIR/submitted/ (--timeout S each, --jobs
                                              # N at once); the scores, printed and written to DIR/scores.csv

The solutions in solutions/ are the one source: their task cells hold the answer between nbgrader's solution
markers, their check cells are graded, and their exercise answers are solution cells too. ``nbgrader
generate_assignment`` blanks the marked regions (``# YOUR CODE HERE``, so that a blank cell runs and only the check
after it fails), clears the outputs and locks the check cells. The student versions in assignments/ are its output,
committed and never edited by hand (tests/test_assignments.py regenerates them and compares). Needs nbgrader.

``grade`` autogrades each submission in a scratch course of its own (a temporary folder: the course's config, its
gradebook without the students, which holds the released cells and their checksums but no solution, and the one
notebook): what the student's code deletes or writes stays there, and there is no source/ to read. A notebook past
--timeout is stopped and scores 0, one that cannot be graded gets a row saying why, nbgrader's warnings are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

# nbgrader reads notebooks with nbformat, whose jsonschema imports rfc3987_syntax for two IRI formats that no notebook
# schema uses; that import builds 35 parsers, about 1.4 s of every nbgrader process, one per graded notebook
# (python-jsonschema/jsonschema#1428). A None in sys.modules makes the import fail, and jsonschema skips those formats:
# here, and in each nbgrader process this script starts (NBGRADER).
sys.modules.setdefault("rfc3987_syntax", None)
NBGRADER = "import sys; sys.modules.setdefault('rfc3987_syntax', None); from nbgrader.apps.nbgraderapp import main; main()"

try:
    from nbgrader.api import Gradebook
    from nbgrader.apps import NbGraderAPI
    from traitlets.config import Config
except ImportError:  # said in one line by _tools
    Gradebook = NbGraderAPI = Config = None

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS, ASSIGNMENTS_DIR = ROOT / "solutions", ROOT / "assignments"
# One assignment per chapter whose code is the lesson; each holds one notebook of the same name.
ASSIGNMENTS = ("02_autorec_model", "03_masked_training", "04_recommendations", "06_top_n_autoencoders")
# What ``course`` writes: a folder holding any of these is a course, left alone without --force.
COURSE_FILES = ("nbgrader_config.py", "gradebook.db", "source", "release")
# Seconds one notebook may run when graded: chapter 04's trains chapter 03's models first when data/checkpoints/
# lacks them (about 4 minutes on 2 cores); with the checkpoints every notebook takes under a minute.
TIMEOUT = 600

# The course's nbgrader_config.py (written into every course this script sets up).
CONFIG = '''import os
import sys

c = get_config()  # noqa: F821 (nbgrader's config loader provides it)
c.CourseDirectory.course_id = "autorec"
# A blank must still run: the student version's cells then fail only at the graded checks.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
c.Execute.timeout = 600  # a cell's limit in nbgrader autograde run by hand (make.py grade: --timeout a notebook)
# nbgrader runs alembic (its gradebook's migrations) as a program: the one beside the Python that runs nbgrader, so
# that .venv/bin/nbgrader (or python -m nbgrader) works in this course without activating the environment.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
'''

# nbgrader's warnings while it autogrades, as the teacher reads them (None: nothing to report).
NBGRADER_WARNINGS = (
    (r"Attribute '(\w+)' for cell (\S+) has changed", "the locked cell {1} was edited ({0}): the original ran"),
    (r"Cell '(\S+)' does not exist in the database", "a cell claims the unknown id {0}: ignored"),
    (r"is ([\d.]+) seconds late", "submitted {0} s late"),
    (r"^(Removing|Updating) (existing|failed)", None),
)


class CourseError(Exception):
    """Something the teacher fixes (a wrong path, a missing tool): the command line prints it as one line."""


class Result:
    """One row of scores.csv: a student's assignment, graded or not (``reason`` says why not); ``checks``: {grade id
    of each check cell: (score, max score)}; ``warnings``: what the teacher should know (an edited check cell, ...)."""

    def __init__(self, student: str, assignment: str, max_score: float = 0.0, reason: str = "") -> None:
        self.student, self.assignment, self.max_score, self.reason = student, assignment, max_score, reason
        self.score, self.seconds, self.checks, self.warnings = 0.0, 0.0, {}, []


def _tools() -> None:
    """nbgrader importable, and alembic (a program nbgrader runs) found: else one line saying what to install."""
    if Gradebook is None:
        raise CourseError("nbgrader is not installed: pip install -e '.[test]' (or pip install nbgrader), then again.")
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # alembic's folder
    if shutil.which("alembic") is None:
        raise CourseError(f"nbgrader needs the program alembic, neither beside {sys.executable} nor on PATH: pip "
                          "install nbgrader (it brings alembic) in this environment.")
    warnings.filterwarnings("ignore", message="Object of type <")  # nbgrader 0.9's own, on SQLAlchemy 2


def _config(root: Path):
    """The course's config (its nbgrader_config.py, else ``CONFIG``), rooted at ``root``."""
    config, path = Config(), root / "nbgrader_config.py"
    exec(compile(path.read_text() if path.is_file() else CONFIG, str(path), "exec"), {"get_config": lambda: config})
    config.CourseDirectory.root = str(root)
    return config


def setup_course(root: str | Path, assignments=ASSIGNMENTS, force: bool = False):
    """Make ``root`` an nbgrader course: nbgrader_config.py, the solutions as ``source/<id>/<id>.ipynb``, and the
    student versions made by ``nbgrader generate_assignment`` in ``release/<id>/<id>.ipynb``. Returns the API.
    A folder that already holds a course is left as it is (``CourseError``) unless ``force``."""
    root = Path(root).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise CourseError(f"{root} is a file: give the path of a folder for the course.")
    existing = [name for name in COURSE_FILES if (root / name).exists()]
    if existing and not force:
        raise CourseError(f"{root} already holds a course ({', '.join(existing)}); nothing was changed. Grade it with "
                          "'grade', or add --force to replace its nbgrader_config.py, source/ and release/ (the "
                          "gradebook and the submissions stay).")
    _tools()
    root.mkdir(parents=True, exist_ok=True)
    (root / "nbgrader_config.py").write_text(CONFIG)
    api = NbGraderAPI(config=_config(root))
    for assignment in assignments:
        folder = root / "source" / assignment
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SOLUTIONS / f"{assignment}.ipynb", folder / f"{assignment}.ipynb")
        result = api.generate_assignment(assignment, force=True)
        if not result["success"]:
            raise RuntimeError(f"nbgrader failed to generate {assignment}:\n{result.get('error')}\n{result.get('log')}")
    return api


def generate(target: str | Path = ASSIGNMENTS_DIR, assignments=ASSIGNMENTS) -> list[Path]:
    """The student versions of ``assignments`` from solutions/, written to ``target`` (assignments/)."""
    with tempfile.TemporaryDirectory() as course:
        setup_course(course, assignments)
        for assignment in assignments:
            shutil.copy(Path(course, "release", assignment, f"{assignment}.ipynb"), Path(target))
    return [Path(target, f"{assignment}.ipynb") for assignment in assignments]


def _grade_id(cell: dict) -> str:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")


def _grade_ids(path: Path) -> set[str] | None:
    """The nbgrader grade ids in the notebook at ``path``; None when it is not a notebook (nbformat JSON)."""
    try:
        return {_grade_id(cell) for cell in json.loads(path.read_text(errors="replace"))["cells"]} - {""}
    except (ValueError, KeyError, TypeError, AttributeError, OSError):
        return None


def _pick(folder: Path, name: str) -> tuple[Path | None, str]:
    """The notebook to grade in a submission folder (``name``, else the only notebook whatever its name), or why not."""
    notebooks = sorted(path for path in folder.glob("*.ipynb") if path.is_file() and not path.is_symlink())
    if (folder / name) in notebooks or len(notebooks) == 1:
        notebook = folder / name if (folder / name) in notebooks else notebooks[0]
        return notebook, "" if _grade_ids(notebook) is not None else f"{notebook.name} is not a notebook (not JSON)"
    if notebooks:
        return None, f"{len(notebooks)} notebooks and none named {name}: keep one"
    return None, f"no notebook in the folder (it holds: {', '.join(p.name for p in folder.iterdir()) or 'nothing'})"


def _strays(submitted: Path, assignments: dict) -> list[tuple[str, str, str]]:
    """(student, assignment whose check cells it holds, path) of each notebook not in a <student>/<assignment>/."""
    strays = []
    for path in sorted(submitted.rglob("*.ipynb")):
        parts = path.relative_to(submitted).parts
        if ".ipynb_checkpoints" not in parts and not (len(parts) == 3 and parts[1] in assignments):
            ids = _grade_ids(path) or set()
            guess = [name for name in assignments if ids & set(assignments[name]["cells"])]
            strays.append((parts[0] if len(parts) > 1 else "", (guess or [""])[0], f"submitted/{'/'.join(parts)}"))
    return strays


def _read_log(log: str) -> tuple[list[str], str]:
    """nbgrader's warnings in its log, each a sentence for the teacher, and its first error ("" if none)."""
    warned, errors = [], []
    for line in log.splitlines():
        level, _, message = line.partition("] ")
        if level == "[AutogradeApp | WARNING":
            sentence = next(((text and text.format(*match.groups())) for pattern, text in NBGRADER_WARNINGS
                             if (match := re.search(pattern, message))), message)
            warned += [sentence] if sentence else []
        elif level == "[AutogradeApp | ERROR" and not message.startswith(("There was an error", "Please see")):
            errors.append(message)
    return warned, errors[0] if errors else ""


def _run(course: Path, student: str, assignment: str, timeout: float, env: dict) -> tuple[int | None, str]:
    """``nbgrader autograde`` of one submission in the scratch ``course``: (exit code, None if stopped; its log). Then
    it ends nbgrader's process group and each process marked in its environment (the kernel, the student's)."""
    mark = f"AUTOREC_GRADING={os.urandom(16).hex()}"
    command = [sys.executable, "-c", NBGRADER, "autograde", assignment, "--student", student, "--force",
               f"--CourseDirectory.root={course}", f"--CourseDirectory.db_url=sqlite:///{course / 'gradebook.db'}",
               f"--Execute.timeout={int(timeout)}"]
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(command, cwd=course, env={**env, "PWD": str(course), **dict([mark.split("=")])},
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        with contextlib.suppress(OSError):
            os.killpg(process.pid, signal.SIGKILL)
        for environ in Path("/proc").glob("[0-9]*/environ"):
            with contextlib.suppress(OSError, ValueError):
                if mark.encode() in environ.read_bytes().split(b"\0"):
                    os.kill(int(environ.parent.name), signal.SIGKILL)
        process.wait()
        log.seek(0)
        return code, log.read()


def _grade_one(root: Path, job: dict, result: Result, notebook: Path) -> dict:
    """Autograde one submission in a scratch course: fills ``result``, copies the autograded notebook into
    ``root/autograded/`` and returns its grades, {grade id: (auto score, max score, needs a manual grade)}."""
    student, assignment, name = result.student, result.assignment, job["notebook"]
    started, grades = time.monotonic(), {}
    with tempfile.TemporaryDirectory(prefix="autorec-grading-") as scratch:
        course = Path(scratch, "a", "b", "c", "course")  # so that ../../../../x from the notebook stays in scratch
        submission = course / "submitted" / student / assignment
        submission.mkdir(parents=True)
        (course / "nbgrader_config.py").write_text(job["config"])
        shutil.copyfile(job["gradebook"], course / "gradebook.db")
        for path in notebook.parent.iterdir():  # the student's other files (and nbgrader's timestamp.txt)
            if path.is_file() and not path.is_symlink() and path.suffix != ".ipynb":
                shutil.copyfile(path, submission / path.name)
        shutil.copyfile(notebook, submission / f"{name}.ipynb")
        code, log = _run(course, student, assignment, job["timeout"], job["env"])
        warned, error = _read_log(log)
        result.warnings += warned
        graded, target = course / "autograded" / student / assignment / f"{name}.ipynb", root / "autograded" / student
        shutil.rmtree(target / assignment, ignore_errors=True)
        if code is None:
            result.reason = f"stopped after {job['timeout']:g} s (an endless loop? make.py grade --timeout SECONDS)"
        elif code != 0 or graded.is_symlink() or not graded.is_file():
            result.reason = f"nbgrader could not grade it: {error or f'it exited with code {code}'}"
        else:
            with Gradebook(f"sqlite:///{course / 'gradebook.db'}", job["course_id"]) as gradebook:
                grades = {grade.name: (grade.auto_score or 0.0, grade.max_score, grade.needs_manual_grade) for part
                          in gradebook.find_submission(assignment, student).notebooks for grade in part.grades}
            (target / assignment).mkdir(parents=True)
            shutil.copyfile(graded, target / assignment / graded.name)
    result.checks = {cell: (grades[cell][0] if cell in grades else 0.0, top) for cell, top in job["cells"].items()}
    result.score, result.seconds = sum(score for score, _ in result.checks.values()), time.monotonic() - started
    return grades


def _record(root: Path, course_id: str, result: Result, grades: dict) -> None:
    """Write a result's grades into the course's gradebook (0 for every cell of one that could not be graded)."""
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", course_id) as gradebook:
        gradebook.update_or_create_student(result.student)
        submission = gradebook.update_or_create_submission(result.assignment, result.student)
        for grade in (grade for notebook in submission.notebooks for grade in notebook.grades):
            grade.auto_score, _, grade.needs_manual_grade = grades.get(grade.name, (0.0, 0.0, False))
        gradebook.db.commit()


def _blank_gradebook(root: Path, course_id: str, target: Path) -> dict:
    """The course's gradebook, its students removed, at ``target``; returns {assignment: {"notebook", "cells"}}."""
    shutil.copyfile(root / "gradebook.db", target)
    with Gradebook(f"sqlite:///{target}", course_id) as gradebook:
        for student in list(gradebook.students):
            gradebook.remove_student(student.id)
        return {assignment.name: {"notebook": assignment.notebooks[0].name,
                                  "cells": {cell.name: cell.max_score for cell in assignment.notebooks[0].grade_cells
                                            if cell.max_score > 0}}
                for assignment in gradebook.assignments if len(assignment.notebooks) == 1}


def _todo(root: Path, assignments: dict, say=print) -> tuple[list, dict]:
    """The submissions to grade, [(Result, notebook)], and the rows of those that cannot be, {(student, assignment)}."""
    todo, rows = [], {}
    for folder in sorted(path for path in root.glob("submitted/*/*") if path.is_dir() and path.name in assignments):
        student, assignment = folder.parent.name, folder.name
        name, cells = f"{assignments[assignment]['notebook']}.ipynb", assignments[assignment]["cells"]
        result = Result(student, assignment, max_score=sum(cells.values()))
        notebook, why = _pick(folder, name)
        if why:
            result.reason = f"not graded: {why}"
            rows[(student, assignment)] = result
            continue
        ids = _grade_ids(notebook) or set()
        result.warnings += [f"graded {notebook.name}, the one notebook in its folder"] if notebook.name != name else []
        result.warnings += [f"not graded (a second notebook): {path.name}" for path in folder.glob("*.ipynb")
                            if path != notebook]
        result.warnings += [f"the check cell {cell} was deleted: it scores 0" for cell in cells if cell not in ids]
        todo.append((result, notebook))
    for student, assignment, where in _strays(root / "submitted", assignments):
        key = (student, assignment or "?")
        message = (f"{where} is not in a submitted/<student>/<assignment>/ folder: move it to "
                   f"submitted/{student or '<student>'}/{assignment or '<assignment>'}/")
        if student and key not in rows and key not in {(result.student, result.assignment) for result, _ in todo}:
            top = sum(assignments.get(assignment, {}).get("cells", {}).values())
            rows[key] = Result(student, key[1], max_score=top, reason=f"not graded: {message}")
        else:
            say(f"note: {message}")
    return todo, rows


def autograde(root: str | Path, timeout: float = TIMEOUT, jobs: int | None = None,
              say=print) -> dict[tuple[str, str], Result]:
    """Autograde every submission in ``root/submitted/<student>/<assignment>/`` of a course made by ``setup_course``,
    each in a scratch course, ``jobs`` at once, each stopped after ``timeout`` seconds; writes the autograded
    notebooks, the grades into the gradebook and ``root/scores.csv``. Returns {(student, assignment): Result}."""
    root = Path(root).expanduser().resolve()
    if not (root / "gradebook.db").is_file():
        raise CourseError(f"{root} is not a course made by 'make.py course' (it has no gradebook.db)")
    if not (root / "submitted").is_dir():
        raise CourseError(f"{root / 'submitted'} does not exist: put each notebook in submitted/<student>/<assignment>")
    _tools()
    course_id, jobs = _config(root).CourseDirectory.course_id, max(1, jobs or os.cpu_count() or 1)
    # the graders' environment: nothing that names the course, and torch's threads shared among the jobs
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
           **{key: value for key, value in os.environ.items() if str(root) not in value and key != "OLDPWD"}}
    with tempfile.TemporaryDirectory(prefix="autorec-gradebook-") as folder:
        gradebook = Path(folder, "gradebook.db")
        assignments = _blank_gradebook(root, course_id, gradebook)
        todo, results = _todo(root, assignments, say)
        config = root / "nbgrader_config.py"
        job = {"config": config.read_text() if config.is_file() else CONFIG, "gradebook": gradebook,
               "course_id": course_id, "timeout": timeout, "env": env}
        with ThreadPoolExecutor(jobs) as pool:
            running = {pool.submit(_grade_one, root, job | assignments[result.assignment], result, notebook): result
                       for result, notebook in todo}
            for done, future in enumerate(as_completed(running), 1):
                result = running[future]
                try:
                    _record(root, course_id, result, future.result())
                except Exception as error:  # (one submission's failure is its row, not the class's)
                    result.reason = f"not graded: {type(error).__name__}: {error}"
                results[(result.student, result.assignment)] = result
                say(f"[{done}/{len(todo)}] {result.student} {result.assignment}: "
                    f"{result.reason or f'{result.score:g} / {result.max_score:g}'} ({result.seconds:.0f} s)")
    with open(root / "scores.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["student", "assignment", "score", "max_score", "checks", "reason"])
        for (student, assignment), result in sorted(results.items()):
            checks = "; ".join(f"{cell} {score:g}/{top:g}" for cell, (score, top) in result.checks.items())
            writer.writerow([student, assignment, f"{result.score:g}", f"{result.max_score:g}", checks,
                             result.reason or "; ".join(result.warnings)])
    return results


def fill_tasks(student: dict, solution: dict) -> dict:
    """A copy of the ``student`` notebook (nbformat JSON) with every task cell (grade id ``task_...``) holding the
    solution's code: what a student who wrote the model answer hands in (the tests autograde it)."""
    answers = {_grade_id(cell): cell["source"] for cell in solution["cells"] if _grade_id(cell).startswith("task_")}
    filled = copy.deepcopy(student)
    for cell in filled["cells"]:
        cell["source"] = answers.get(_grade_id(cell), cell["source"])
    return filled


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command")
    course = commands.add_parser("course", help="set up an nbgrader course in DIR from the solutions")
    course.add_argument("dir", type=Path)
    course.add_argument("--force", action="store_true", help="replace an existing course's config, source/, release/")
    grade = commands.add_parser("grade", help="autograde DIR/submitted/<student>/<assignment>/<assignment>.ipynb")
    grade.add_argument("dir", type=Path)
    grade.add_argument("--timeout", type=float, default=TIMEOUT, help=f"seconds a notebook may run (default {TIMEOUT})")
    grade.add_argument("--jobs", type=int, default=None, help="notebooks graded at once (default: one per core)")
    args = parser.parse_args(argv)
    try:
        if args.command is None:
            for path in generate():
                print(f"wrote {path.relative_to(ROOT)}")
        elif args.command == "course":
            setup_course(args.dir, force=args.force)
            print(f"{args.dir}: an nbgrader course with {', '.join(ASSIGNMENTS)}; the student versions are in "
                  f"{args.dir / 'release'}. Put each student's notebook in {args.dir / 'submitted'}/<student>/"
                  f"<assignment>/, then: python {Path(__file__).relative_to(ROOT)} grade {args.dir}")
        else:
            results = autograde(args.dir, timeout=args.timeout, jobs=args.jobs)
            for (student, assignment), result in sorted(results.items()):
                print(f"{student:20} {assignment:24} {result.score:g} / {result.max_score:g}  {result.reason}".rstrip())
                for warning in result.warnings:
                    print(f"{'':22}! {warning}")
            print(f"wrote {args.dir / 'scores.csv'}")
    except CourseError as error:
        sys.exit(f"make.py {args.command}: {error}")
    except OSError as error:  # a path that cannot be read or written
        sys.exit(f"make.py {args.command}: {error.filename or getattr(args, 'dir', '')}: {error.strerror or error}")


if __name__ == "__main__":
    main()
