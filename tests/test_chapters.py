"""Each chapter as a class reads it: every section heading says how long it takes, every chapter links its terms
to the glossary, and no stored output shows an object's repr where a table belongs. Reads the notebooks only."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def cells(path: Path) -> list:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_section_heading_carries_its_minutes(path):
    headings = [line for cell in cells(path) if cell["cell_type"] == "markdown"
                for line in "".join(cell["source"]).splitlines() if line.startswith("## ")]
    assert headings and not [h for h in headings if not re.search(r"\d+ min\b[^)]*\)", h)], path.stem


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_links_to_the_glossary(path):
    prose = "".join("".join(cell["source"]) for cell in cells(path) if cell["cell_type"] == "markdown")
    anchors = re.findall(r"\]\(\.\./GLOSSARY\.md#([\w-]+)\)", prose)
    glossary = {re.sub(r"[^\w\- ]", "", line[4:].strip().lower()).replace(" ", "-")
                for line in (ROOT / "GLOSSARY.md").read_text().splitlines() if line.startswith("### ")}
    assert anchors and set(anchors) <= glossary, (path.stem, set(anchors) - glossary)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_no_stored_output_is_a_styler_object(path):
    assert "pandas.io.formats.style.Styler" not in json.dumps([cell.get("outputs", []) for cell in cells(path)])
