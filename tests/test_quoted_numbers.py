"""No stored number drifts: every figure that a notebook, a solution or the README quotes from a benchmark's
results file (``benchmarks/results/*.json``) appears there exactly as the current file formats it.

``FIGURES`` is the register: (document, what, results file, where in it, format). A document's text is its
prose and its stored outputs (not its code: a figure typed into a code cell would not follow the file). A
re-run benchmark that changes a registered figure makes this test fail until the notebook is re-executed or the
prose updated; ``test_a_changed_result_fails_the_check`` shows that it does. No notebook is executed here.

Also held here, for chapter 03: each section heading carries its minutes, and the class fits 90 minutes.
"""

import copy
import json
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
NB03, NB07, SOL07, README = ("notebooks/03_masked_training.ipynb", "notebooks/07_reading_a_leaderboard.ipynb",
                            "solutions/07_reading_a_leaderboard.ipynb", "README.md")


def load(name: str) -> dict:
    """A results file as the benchmark wrote it (NaN where a model has no such number)."""
    return json.loads((RESULTS / name).read_text())


def row(rows: list[dict], **where) -> dict:
    found = [r for r in rows if all(r.get(key) == value for key, value in where.items())]
    if len(found) != 1:
        raise LookupError(f"{len(found)} rows with {where}")
    return found[0]


def spread(model: str, column: str) -> Callable[[dict], float]:
    """rmse.json's noise table (notebook 03, section 5): one model's number."""
    return lambda results: row(results["spread"], model=model)[column]


def fold(model: str, column: str, fold: str = "u1", seed: int = 0) -> Callable[[dict], float]:
    """rmse.json's run of ``model`` on ``fold`` with ``seed``: its test RMSE, validation RMSE, seconds ..."""
    return lambda results: row(results["folds"], model=model, fold=fold, seed=seed)[column]


def change(recipe: str, name: str = "none (the chosen recipe)") -> Callable[[dict], float]:
    """tuning.json: the validation RMSE of one change to a chosen recipe (notebook 03, section 7)."""
    return lambda results: row(results["changes"], recipe=recipe, change=name)["validation RMSE"]


def gap_over_folds(results: dict) -> tuple[float, float, float]:
    """I-AutoRec minus the residual U-AutoRec, test RMSE fold by fold: mean, std, largest (notebook 03, section 7)."""
    gaps = [fold("I-AutoRec", "RMSE", name)(results) - fold("U-AutoRec (residual)", "RMSE", name)(results)
            for name in sorted({r["fold"] for r in results["folds"]})]
    mean = sum(gaps) / len(gaps)
    return mean, math.sqrt(sum((g - mean) ** 2 for g in gaps) / (len(gaps) - 1)), max(gaps)


class Figure(NamedTuple):
    document: str  # a path from the repository root
    what: str
    file: str  # in benchmarks/results/
    value: Callable[[dict], Any]  # the number (or a tuple of numbers) from the loaded file
    format: str  # how the document writes it, str.format style


ENSEMBLE, I_AUTOREC, RESIDUAL = "AutoRec ensemble", "I-AutoRec", "U-AutoRec (residual)"
FIGURES = [
    # chapter 03: the noise table (section 5), the gap under the ladder's chart and the tuning table (section 7)
    Figure(NB03, "AutoRec ensemble, u1 test RMSE", "rmse.json", spread(ENSEMBLE, "u1 test RMSE"), "{:.4f}"),
    Figure(NB03, "AutoRec ensemble, u1-u5 mean", "rmse.json", spread(ENSEMBLE, "mean over folds"), "{:.4f}"),
    Figure(NB03, "AutoRec ensemble, u1-u5 std", "rmse.json", spread(ENSEMBLE, "std over folds"), "{:.4f}"),
    Figure(NB03, "I-AutoRec, u1 validation RMSE", "rmse.json", fold(I_AUTOREC, "validation RMSE"), "{:.4f}"),
    Figure(NB03, "I-AutoRec, chosen recipe's validation RMSE", "tuning.json", change(I_AUTOREC), "{:.4f}"),
    Figure(NB03, "I-AutoRec minus residual U-AutoRec over the folds", "rmse.json", gap_over_folds,
           "{:+.4f} ± {:.4f} (largest {:+.4f})"),
    *[Figure(NB03, f"noise table: {model}, {column}", "rmse.json", spread(model, column), "{:.4f}")
      for model in ("global mean", "bias baseline", "U-AutoRec", RESIDUAL, I_AUTOREC, ENSEMBLE)
      for column in ("u1 test RMSE", "mean over folds", "std over folds", "std over seeds (u1)",
                     "minus bias baseline: mean", "minus bias baseline: std")],
    *[Figure(NB03, f"tuning table: {recipe}, {name}", "tuning.json", change(recipe, name), "{:.4f}")
      for recipe in ("U-AutoRec", RESIDUAL, I_AUTOREC)
      for name in ("none (the chosen recipe)", "activation relu", "activation elu", "activation identity",
                   "hidden dropout 0.2", "input dropout 0.2", "mini-batches of 128 rows",
                   "residuals of the bias baseline")
      if recipe != RESIDUAL or name != "residuals of the bias baseline"],  # the residual recipe has them already
    # chapter 07's table of the folds and its solution's comparison with GLocal-K
    Figure(NB07, "AutoRec ensemble, u1 test RMSE", "rmse.json", spread(ENSEMBLE, "u1 test RMSE"), "{:.4f}"),
    Figure(NB07, "AutoRec ensemble, u1-u5 mean and std", "rmse.json",
           lambda r: (spread(ENSEMBLE, "mean over folds")(r), spread(ENSEMBLE, "std over folds")(r)), "{:.4f} {:.4f}"),
    Figure(SOL07, "AutoRec ensemble, u1 test RMSE", "rmse.json", spread(ENSEMBLE, "u1 test RMSE"),
           "AutoRec ensemble on u1: {:.4f}"),
    # the README's results table
    Figure(README, "AutoRec ensemble, u1 test RMSE", "rmse.json", spread(ENSEMBLE, "u1 test RMSE"), "**{:.4f}**"),
    Figure(README, "AutoRec ensemble, u1-u5 mean ± std", "rmse.json",
           lambda r: (spread(ENSEMBLE, "mean over folds")(r), spread(ENSEMBLE, "std over folds")(r)),
           "**{:.4f} ± {:.4f}**"),
    Figure(README, "AutoRec ensemble, u1 seconds", "rmse.json", fold(ENSEMBLE, "seconds"), "| {:.0f} s |"),
]


def document_text(document: str) -> str:
    """The prose and the stored outputs of a notebook (or a Markdown file), with − written as -."""
    path = ROOT / document
    if path.suffix != ".ipynb":
        return path.read_text(encoding="utf-8").replace("−", "-")
    parts = []
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] == "markdown":
            parts.append("".join(cell["source"]))
        for output in cell.get("outputs", []):
            parts.append("".join(output.get("text", "")))
            for kind in ("text/plain", "text/html", "text/markdown"):
                parts.append("".join(output.get("data", {}).get(kind, "")))
    return "\n".join(parts).replace("−", "-")


def code_text(document: str) -> str:
    path = ROOT / document
    if path.suffix != ".ipynb":
        return ""
    return "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")


def formatted(figure: Figure, results: dict) -> str | None:
    """The figure as the document should write it; None when the file holds no number there (NaN)."""
    value = figure.value(results)
    values = value if isinstance(value, tuple) else (value,)
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
        return None
    return figure.format.format(*values)


def quoted(text: str, expected: str) -> bool:
    """Whether ``expected`` is in ``text`` as a whole number (0.8929 is not in 0.89291 or 10.8929)."""
    return re.search(r"(?<![\d.])" + re.escape(expected) + r"(?![\d])", text) is not None


def mismatches(figures: list[Figure]) -> list[str]:
    """One sentence per registered figure that its document does not quote as the current file has it."""
    texts, loaded, found = {}, {}, []
    for figure in figures:
        texts.setdefault(figure.document, document_text(figure.document))
        loaded.setdefault(figure.file, load(figure.file))
        expected = formatted(figure, loaded[figure.file])
        if expected is not None and not quoted(texts[figure.document], expected):
            found.append(f"{figure.document} does not show {figure.what} as benchmarks/results/{figure.file} has it, "
                         f"{expected!r}: re-execute it (python benchmarks/notebooks.py --save {figure.document}) or "
                         "update its prose")
    return found


@pytest.mark.parametrize("figure", FIGURES, ids=[f"{Path(f.document).stem}: {f.what}" for f in FIGURES])
def test_every_quoted_figure_matches_its_results_file(figure):
    assert not mismatches([figure]), mismatches([figure])[0]


@pytest.mark.parametrize("document", sorted({f.document for f in FIGURES if f.document.endswith(".ipynb")}))
def test_a_notebook_reads_its_figures_instead_of_typing_them(document):
    """A figure written into a notebook's code would be shown whatever the file says: the code must read it."""
    code = code_text(document)
    typed = [f.what for f in FIGURES if f.document == document and f.format == "{:.4f}"
             and (expected := formatted(f, load(f.file))) and expected.strip("-0.") and quoted(code, expected)]
    assert not typed, f"{document}'s code types these figures from benchmarks/results instead of reading them: {typed}"


def test_tuning_and_rmse_agree_on_the_chosen_runs():
    """tune.py and rmse.py train each chosen recipe on u1 with the same validation draw: the same validation RMSE."""
    tuning, rmse = load("tuning.json"), load("rmse.json")
    for recipe in ("U-AutoRec", RESIDUAL, I_AUTOREC):
        chosen = row(tuning["changes"], recipe=recipe, change="none (the chosen recipe)")
        fold_run = fold(recipe, "validation RMSE")(rmse)
        assert f"{chosen['validation RMSE']:.4f}" == f"{fold_run:.4f}", (
            f"{recipe}: tuning.json's chosen run validates at {chosen['validation RMSE']:.4f}, rmse.json's u1 run at "
            f"{fold_run:.4f}; one of them predates the other's validation draw: re-run python benchmarks/tune.py")


@pytest.mark.parametrize(("file", "figure_what", "path"), [
    ("rmse.json", "AutoRec ensemble, u1 test RMSE", ("spread", ENSEMBLE, "u1 test RMSE")),
    ("tuning.json", "I-AutoRec, chosen recipe's validation RMSE", ("changes", I_AUTOREC, "validation RMSE")),
])
def test_a_changed_result_fails_the_check(monkeypatch, file, figure_what, path):
    """A re-run benchmark that moves a figure by 0.001 (a copy of its file, through the loader) fails the check."""
    table, name, column = path
    changed = copy.deepcopy(load(file))
    for r in changed[table]:
        if name in (r.get("model"), r.get("recipe")) and r.get("change", "none (the chosen recipe)").startswith("none"):
            r[column] += 0.001
    real = load
    figures = [f for f in FIGURES if f.file == file and f.what == figure_what]
    assert figures
    monkeypatch.setattr(sys.modules[__name__], "load", lambda wanted: changed if wanted == file else real(wanted))
    found = mismatches(figures)
    assert found and all(figure_what in sentence for sentence in found), found


HEADING = re.compile(r"^(#{2,3}) (.*)$", re.M)
MINUTES = re.compile(r"\((?:reading at home, |at home, )?(\d+)(?:[–-]\d+)? min(?: each)?\)\s*$")


def test_chapter_03_fits_a_class():
    """Every section heading of chapter 03 carries its minutes; the class sections add up to at most 90, and the
    sections read at home say so."""
    cells = json.loads((ROOT / NB03).read_text())["cells"]
    headings = [h for c in cells if c["cell_type"] == "markdown" for _, h in HEADING.findall("".join(c["source"]))]
    without = [h for h in headings if not MINUTES.search(h)]
    assert not without, f"section headings without their minutes: {without}"
    in_class = sum(int(MINUTES.search(h).group(1)) for h in headings if "at home" not in h)
    assert in_class <= 90, f"chapter 03's class sections add up to {in_class} minutes"
    assert any("(reading at home" in h for h in headings)


def test_chapter_03_links_the_glossary():
    """Chapter 03 links its terms to GLOSSARY.md, and every link lands on a heading there."""
    glossary = (ROOT / "GLOSSARY.md").read_text(encoding="utf-8")
    anchors = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in re.findall(r"^### (.*)$", glossary, re.M)}
    prose = "\n".join("".join(c["source"]) for c in json.loads((ROOT / NB03).read_text())["cells"]
                      if c["cell_type"] == "markdown")
    links = re.findall(r"\]\(\.\./GLOSSARY\.md#([^)]+)\)", prose)
    assert len(links) >= 10, f"chapter 03 links {len(links)} terms to the glossary"
    assert set(links) <= anchors, f"links to no heading of GLOSSARY.md: {sorted(set(links) - anchors)}"
    assert len(links) == len(set(links)), "a term is linked more than once: link it on first use only"
