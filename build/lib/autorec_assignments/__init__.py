"""The checks of the assignments (chapters 02, 03, 04 and 06): a student writes a function, the check cell under it
calls one of these with that function. A package of its own beside ``autorec_utils``: the grader is not part
of the lesson, and the training loops it runs to recognise students' mistakes are not the package's loop.

Each check runs the student's function on two small examples made up here (the second never shown), compares the
result with the grader's own reference (which the tests hold equal to the package's ``AutoRec``,
``fit(DenseProblem(...))``, ``best_positions``, ``list_metrics``, ``multinomial_loss`` and ``EASE``: a task cell that
patches the package cannot move it) and, when they differ, raises ``AssertionError`` with one sentence that says what
is wrong, never a value the function must return. To find that sentence it compares the result with the mistakes
students make most (the mask ignored, lambda instead of lambda/2, ties broken the other way, ...): each check lists
them as a table of (test, sentence) pairs, tried in order, the first that holds giving the sentence. A function that
is still blank (it returns None or raises ``NotImplementedError``) gets ``NOT_WRITTEN``. A check that passes prints
one line saying what was checked; what the student's function prints or writes to stderr meanwhile is captured
(``common.call``), and a change it makes to its inputs fails.

One module per assignment, and one for what they share:

- ``chapter02``: ``check_forward_pass``, ``check_masked_objective``
- ``chapter03``: ``check_masked_rmse``, ``check_training_loop``
- ``chapter04``: ``check_top_k_unrated``, ``check_ndcg_at_k``
- ``chapter06``: ``check_multinomial_nll``, ``check_ease_weights``
- ``common``: ``NOT_WRITTEN``, calling the student's function, reading its result, walking a table of diagnoses

Every check is re-exported here, but a notebook's check cell reloads the chapter's module, so that a task cell that
replaced a check, or a helper of ``common`` (each chapter module reloads it in turn), changes nothing::

    import importlib
    import autorec_assignments.chapter03 as checks
    checks = importlib.reload(checks)  # the checks read anew from their file: a task cell cannot replace them
    checks.check_training_loop(training_loop)

The examples are tiny and seeded, so a check takes milliseconds and always says the same. The student versions
in ``assignments/`` are generated from ``solutions/`` (``python assignments/make.py``); nbgrader grades a check
cell by whether it raises, and without nbgrader the sentence is the feedback.
"""

from .chapter02 import check_forward_pass, check_masked_objective
from .chapter03 import check_masked_rmse, check_training_loop
from .chapter04 import check_ndcg_at_k, check_top_k_unrated
from .chapter06 import check_ease_weights, check_multinomial_nll
from .common import NOT_WRITTEN

__all__ = ["NOT_WRITTEN", "check_ease_weights", "check_forward_pass", "check_masked_objective", "check_masked_rmse",
           "check_multinomial_nll", "check_ndcg_at_k", "check_top_k_unrated", "check_training_loop"]
