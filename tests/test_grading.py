"""The teacher's loop with assignments/make.py: set up a course, collect a class's notebooks, grade them in one run.

- ``course`` and ``grade`` on a wrong path, an existing course or without alembic say so in one line and change
  nothing; nbgrader's own commands work in a course without the environment activated (quick: no notebook runs);
- ``grade`` on a class of every kind of submission (a correct one, one with a known mistake, one that patches its
  checks, one that copies a printed value, a misnamed file, one that writes to stderr, one whose kernel dies, one
  that attacks the course, a file that is not a notebook, a notebook in the wrong folder) ends with exit code 0 and
  a scores.csv row for each, with the expected score and reason, and the course intact;
- an endless loop is stopped at ``--timeout`` and the run goes on: graded in a run of its own with a short timeout
  (in the class's run, with a timeout a correct notebook meets on a slow machine, it would hold a job for minutes).
"""

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from assignments_make import MAKE, make

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "02_autorec_model"  # the quickest notebook to run: the class is graded on it
TIMEOUT = 240  # seconds a notebook may run in the class below: a correct one takes 10-60 s on 2 busy cores
LOOP_TIMEOUT = 10  # seconds for the endless loop's own run: it has nothing else to finish (nbgrader and its kernel start in ~3)


def _cli(*args, env=None, cwd=ROOT, timeout=None):
    return subprocess.run([sys.executable, str(MAKE), *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)


def _one_line_error(result):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("make.py"), result.stderr
    return lines[0]


def _snapshot(root: Path, *folders) -> dict:
    """{path: (sha256, mtime)} of every file under ``folders`` of ``root`` (all of it when none given)."""
    paths = [path for folder in folders or [""] for path in sorted((root / folder).rglob("*")) if path.is_file()]
    paths += [root / name for name in folders if (root / name).is_file()]
    return {str(path.relative_to(root)): (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
            for path in paths}


@pytest.fixture(scope="module")
def small_course(tmp_path_factory):
    """A course with one assignment, nothing submitted."""
    pytest.importorskip("nbgrader", reason="nbgrader is in the test extra: pip install -e '.[test]'")
    root = tmp_path_factory.mktemp("small") / "course"
    make.setup_course(root, (ASSIGNMENT,))
    return root


# ---------------------------------------------------------------- one line, nothing changed

def test_course_on_a_file_or_under_one_is_one_line(tmp_path):
    afile = tmp_path / "notes.txt"
    afile.write_text("not a folder")
    assert "is a file" in _one_line_error(_cli("course", afile))
    assert _one_line_error(_cli("course", afile / "course"))
    assert afile.read_text() == "not a folder"


def test_grade_outside_a_course_is_one_line(tmp_path):
    assert "not a course" in _one_line_error(_cli("grade", tmp_path / "nowhere"))
    (tmp_path / "submitted").mkdir()
    assert "not a course" in _one_line_error(_cli("grade", tmp_path))  # a folder without gradebook.db or source/


def test_course_over_a_course_changes_nothing_without_force(small_course):
    (small_course / "nbgrader_config.py").write_text(
        (small_course / "nbgrader_config.py").read_text() + "# the teacher's own line\n")
    before = _snapshot(small_course)
    message = _one_line_error(_cli("course", small_course))
    assert "already holds a course" in message and "--force" in message
    assert _snapshot(small_course) == before


def test_a_missing_alembic_is_one_line(tmp_path, monkeypatch, capsys):
    pytest.importorskip("nbgrader")
    monkeypatch.setattr(make.shutil, "which", lambda name, *args, **kwargs: None)
    with pytest.raises(SystemExit) as stop:
        make.main(["course", str(tmp_path / "course")])
    assert "alembic" in str(stop.value) and "\n" not in str(stop.value)
    assert not (tmp_path / "course").exists()


def test_nbgrader_works_in_the_course_without_the_environment_activated(small_course):
    """The course's nbgrader_config.py puts the folder of the Python running nbgrader (where alembic is) on PATH."""
    env = {key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "PATH")}
    env["PATH"] = os.pathsep.join(["/usr/bin", "/bin"])
    result = subprocess.run([sys.executable, "-m", "nbgrader", "db", "upgrade"], cwd=small_course, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


# ---------------------------------------------------------------- a class, graded in one run

def _cell(notebook: dict, grade_id: str) -> dict:
    return next(cell for cell in notebook["cells"] if cell["metadata"].get("nbgrader", {}).get("grade_id") == grade_id)


def _with(notebook: dict, **sources) -> dict:
    """A copy of ``notebook`` with the cells of these grade ids holding these sources (None: the cell deleted)."""
    changed = json.loads(json.dumps(notebook))
    for grade_id, source in sources.items():
        if source is None:
            changed["cells"].remove(_cell(changed, grade_id))
        else:
            _cell(changed, grade_id)["source"] = source
    return changed


def _copied_forward_pass(solution: dict) -> str:
    """A forward_pass that returns, as constants, the results a student saw on the check's first example (one per
    activation): right there, wrong on any other example (the check's second, never shown)."""
    import torch

    from autorec_assignments import check_forward_pass

    namespace = {"torch": torch}
    exec("".join(_cell(solution, "task_forward_pass")["source"]), namespace)
    seen = {}

    def spy(r, V, mu, W, b, g=torch.sigmoid):
        result = namespace["forward_pass"](r, V, mu, W, b, g)
        seen.setdefault(g.__name__, result.detach().tolist())
        return result

    check_forward_pass(spy)
    return (f"COPIED = {seen!r}\n\n\ndef forward_pass(r, V, mu, W, b, g=torch.sigmoid):\n"
            f"    return torch.tensor(COPIED[g.__name__], dtype=torch.float64)\n")


def _intruder(course: Path, key: str) -> str:
    """A task cell that tries, from where a notebook used to be graded (course/autograded/<student>/<assignment>/),
    to delete the course's files, write outside the course and find the answer key; and says what it managed."""
    return f'''import os, pathlib
up = pathlib.Path("../../..")  # the course, when graded inside it
for name in ("nbgrader_config.py", "release/{ASSIGNMENT}/{ASSIGNMENT}.ipynb", "source/{ASSIGNMENT}/{ASSIGNMENT}.ipynb"):
    try:
        (up / name).unlink()
        print("deleted", name)
    except OSError as error:
        print("could not delete", name, error)
(up / ".." / "escaped.txt").write_text("written outside the course")
key = bytes.fromhex("{key.encode().hex()}").decode()
found = [str(path) for path in up.rglob("*") if path.is_file() and key in path.read_bytes().decode(errors="ignore")]
print("ANSWER KEY FOUND" if found else "no answer key in reach", found)
print("the course in the environment:", [name for name, value in os.environ.items() if {str(course)!r} in value])
'''


def _class(root: Path) -> dict:
    """{(student, folder, file name): notebook (JSON, or text)}: each student's hand-in, where they put it."""
    released = json.loads((root / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text())
    solution = json.loads((ROOT / "solutions" / f"{ASSIGNMENT}.ipynb").read_text())
    solved = make.fill_tasks(released, solution)
    answer = {grade_id: "".join(_cell(solution, grade_id)["source"]) for grade_id in
              ("task_forward_pass", "task_masked_objective")}
    no_g = answer["task_forward_pass"].replace("code = g(r @ V.T + mu)", "code = r @ V.T + mu")
    l2_not_halved = answer["task_masked_objective"].replace("l2 / 2 * penalty", "l2 * penalty")
    assert no_g != answer["task_forward_pass"] and l2_not_halved != answer["task_masked_objective"]
    patch = ("import autorec_assignments\nimport autorec_assignments.chapter02\n\n\ndef _passes(function):\n"
             "    print('Correct: patched')\n\n\nautorec_assignments.check_forward_pass = _passes\n"
             "autorec_assignments.chapter02.check_forward_pass = _passes\n")
    noise = "import sys\nimport warnings\n\nprint('debugging', file=sys.stderr)\nwarnings.warn('a warning')\n"
    noisy = {grade_id: noise + source.replace('"""\n', '"""\n    print("called", file=sys.stderr)\n', 1)
             for grade_id, source in answer.items()}
    key = answer["task_masked_objective"].splitlines()[3].strip()  # a line of the answer key, not in the release
    right = (ASSIGNMENT, f"{ASSIGNMENT}.ipynb")
    return {
        ("correct", *right): solved,
        ("mistake", *right): _with(solved, task_masked_objective=l2_not_halved),
        ("patched", *right): _with(solved, task_forward_pass=patch + "\n\n" + no_g,
                                   task_masked_objective=l2_not_halved,
                                   check_masked_objective="print('Correct: trust me')"),
        ("copied", *right): _with(solved, task_forward_pass=_copied_forward_pass(solution)),
        ("misnamed", ASSIGNMENT, f"{ASSIGNMENT} (1).ipynb"): solved,
        ("stderr", *right): _with(solved, **noisy),
        ("crash", *right): _with(solved, task_masked_objective="import os\n\nos._exit(1)"),
        ("intruder", *right): _with(solved, task_masked_objective="# YOUR CODE HERE", check_masked_objective=None,
                                    task_forward_pass=f"{_intruder(root, key)}\n\n{answer['task_forward_pass']}"),
        ("garbled", *right): "{ this is not a notebook",
        ("stray", "02_autorec", "mine.ipynb"): solved,
    }


def _graded(root: Path, submissions, timeout: float):
    """``make.py grade`` run once on a new course at ``root`` holding ``submissions(root)``: (result, rows, snapshot
    of the course before)."""
    make.setup_course(root, (ASSIGNMENT,))
    handed_in = submissions(root)
    for (student, folder, name), notebook in handed_in.items():
        path = root / "submitted" / student / folder / name
        path.parent.mkdir(parents=True)
        path.write_text(notebook if isinstance(notebook, str) else json.dumps(notebook, indent=1))
    before = _snapshot(root, "nbgrader_config.py", "source", "release", "submitted")
    started = time.monotonic()
    # make.py stops each notebook after `timeout` s: a run as long as every notebook taking that long has failed it
    result = _cli("grade", root, "--timeout", timeout, "--jobs", 2, timeout=timeout * len(handed_in) + 300)
    seconds = time.monotonic() - started
    print(f"\nmake.py grade: {seconds:.0f} s on {os.cpu_count()} cores\n{result.stdout}{result.stderr}")
    return result, {row["student"]: row for row in _read_csv(root / "scores.csv")}, before


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory):
    """A course, a class of every kind of submission, and ``make.py grade`` run once on it."""
    pytest.importorskip("nbgrader", reason="nbgrader is in the test extra: pip install -e '.[test]'")
    root = tmp_path_factory.mktemp("class") / "course"
    result, rows, before = _graded(root, _class, TIMEOUT)
    return root, result, rows, before


@pytest.fixture(scope="module")
def graded_loop(tmp_path_factory):
    """A course holding an endless loop and a file that is not a notebook, graded with a short timeout."""
    pytest.importorskip("nbgrader", reason="nbgrader is in the test extra: pip install -e '.[test]'")

    def submissions(root: Path) -> dict:
        released = json.loads((root / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text())
        right = (ASSIGNMENT, f"{ASSIGNMENT}.ipynb")
        return {("loop", *right): _with(released, task_forward_pass="while True:\n    pass"),
                ("garbled", *right): "{ this is not a notebook"}

    result, rows, _ = _graded(tmp_path_factory.mktemp("loop") / "course", submissions, LOOP_TIMEOUT)
    return result, rows


def _read_csv(path: Path) -> list[dict]:
    import csv

    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def _checks(row: dict) -> dict:
    return {cell: part.split("/")[0] for cell, part in (item.split(" ") for item in row["checks"].split("; ") if item)}


@pytest.mark.notebooks
def test_grade_finishes_with_a_row_for_every_student(graded_class):
    _, result, rows, _ = graded_class
    assert result.returncode == 0, result.stderr
    assert sorted(rows) == sorted(["correct", "mistake", "patched", "copied", "misnamed", "stderr", "crash",
                                   "intruder", "garbled", "stray"])
    assert all(row["assignment"] == ASSIGNMENT and row["max_score"] == "4" for row in rows.values())


@pytest.mark.notebooks
def test_an_endless_loop_is_stopped_and_the_run_goes_on(graded_loop):
    result, rows = graded_loop
    assert result.returncode == 0, result.stderr
    assert sorted(rows) == ["garbled", "loop"]
    assert rows["loop"]["score"] == "0" and f"stopped after {LOOP_TIMEOUT} s" in rows["loop"]["reason"]
    assert "is not a notebook" in rows["garbled"]["reason"]
    assert f"stopped after {LOOP_TIMEOUT} s" in result.stdout  # printed for the teacher too


@pytest.mark.notebooks
@pytest.mark.parametrize(("student", "score", "checks"), [
    ("correct", "4", {"check_forward_pass": "2", "check_masked_objective": "2"}),
    ("misnamed", "4", {"check_forward_pass": "2", "check_masked_objective": "2"}),
    ("stderr", "4", {"check_forward_pass": "2", "check_masked_objective": "2"}),  # the checks capture its stderr
    ("mistake", "2", {"check_forward_pass": "2", "check_masked_objective": "0"}),
    ("patched", "0", {"check_forward_pass": "0", "check_masked_objective": "0"}),  # a patched module, an edited cell
    ("copied", "2", {"check_forward_pass": "0", "check_masked_objective": "2"}),  # caught by the second example
    ("intruder", "2", {"check_forward_pass": "2", "check_masked_objective": "0"}),  # its check cell deleted
])
def test_each_graded_submission_gets_its_score(graded_class, student, score, checks):
    _, _, rows, _ = graded_class
    assert (rows[student]["score"], _checks(rows[student])) == (score, checks), rows[student]


@pytest.mark.notebooks
@pytest.mark.parametrize(("student", "reason"), [
    ("crash", "Kernel died"),
    ("garbled", "is not a notebook"),
    ("stray", f"submitted/stray/02_autorec/mine.ipynb is not in a submitted/<student>/<assignment>/ folder: move it "
              f"to submitted/stray/{ASSIGNMENT}/"),
    ("misnamed", f"graded {ASSIGNMENT} (1).ipynb"),
    ("patched", "the locked cell check_masked_objective was edited"),
    ("intruder", "the check cell check_masked_objective was deleted"),
])
def test_each_row_says_why(graded_class, student, reason):
    _, result, rows, _ = graded_class
    assert reason in rows[student]["reason"]
    assert rows[student]["score"] == "0" or student in ("misnamed", "patched", "intruder")
    assert reason in result.stdout  # printed for the teacher too


@pytest.mark.notebooks
def test_student_code_cannot_reach_the_course(graded_class):
    root, _, _, before = graded_class
    assert _snapshot(root, "nbgrader_config.py", "source", "release", "submitted") == before
    assert not (root.parent / "escaped.txt").exists()
    ran = json.loads((root / "autograded" / "intruder" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text())
    output = "".join(text for cell in ran["cells"] for out in cell.get("outputs", []) for text in out.get("text", ""))
    assert "deleted nbgrader_config.py" in output  # the scratch course's copy: the course's own is unchanged
    assert "could not delete source" in output and "could not delete release" in output  # not in the scratch
    assert "no answer key in reach" in output and "ANSWER KEY FOUND" not in output
    assert "the course in the environment: []" in output


@pytest.mark.notebooks
def test_the_course_gradebook_and_autograded_notebooks_hold_the_grades(graded_class):
    root, _, rows, _ = graded_class
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", "autorec") as gradebook:
        scores = {row["student"]: row["score"] for row in gradebook.submission_dicts(ASSIGNMENT)}
    graded = {student: row["score"] for student, row in rows.items() if student not in ("garbled", "stray")}
    assert {student: f"{score:g}" for student, score in scores.items()} == graded
    for student in ("correct", "mistake", "copied", "misnamed", "stderr", "intruder", "patched"):
        assert (root / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").is_file(), student


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
