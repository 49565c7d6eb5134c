"""assignments/make.py -- a script, not a package -- loaded once as a module, for the tests that make courses with it
(tests/test_assignments.py, tests/test_assignment_exercises.py, tests/test_grading.py)."""

import importlib.util
from pathlib import Path

MAKE = Path(__file__).resolve().parent.parent / "assignments" / "make.py"
_spec = importlib.util.spec_from_file_location("assignments_make", MAKE)
make = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make)
