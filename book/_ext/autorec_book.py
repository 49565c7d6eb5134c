"""The AutoRec book's own Sphinx settings, loaded by book/_config.yml (``sphinx: local_extensions``).

1. **Math offline.** With a local MathJax 2 -- Debian's ``libjs-mathjax`` (/usr/share/javascript/mathjax), or
   the folder named by ``AUTOREC_MATHJAX_DIR`` -- the files the pages need are copied into the site's
   ``_static/mathjax/`` and the pages load them from there, so the built folder typesets its math alone, with
   no network. Without one, the pages load MathJax 3 from its CDN (Sphinx's default), and a note says so.
2. **Launch badges from one setting.** The Colab and Binder badges (and the repository button) appear on the
   chapter pages only when ``repository.url`` is set in book/_config.yml; while it is empty, none is made.
3. **Slides.** Each core chapter (00-04) also becomes a reveal.js deck in the site's ``slides/`` folder, made by
   nbconvert from the cells the chapter marks as slides (book/_ext/notebook_setup.py writes the marks).
4. **Mermaid offline, where it can be.** With npm's ``mermaid`` under book/_vendor (``npm install --prefix
   book/_vendor mermaid@11``) the diagrams are drawn from a copy in the site; otherwise from its CDN.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from notebook_setup import SLIDE_CHAPTERS  # beside this file: the chapters that become decks, and their marks
from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.util import logging

logger = logging.getLogger(__name__)

BOOK = Path(__file__).resolve().parent.parent
MATHJAX_DIRS = [os.environ.get("AUTOREC_MATHJAX_DIR", ""), "/usr/share/javascript/mathjax", "/usr/share/nodejs/mathjax"]
# MathJax 2's combined configuration for TeX input and HTML output, and what it loads: not the 50 MB package.
MATHJAX_CONFIG = "TeX-AMS_CHTML"
MATHJAX_PARTS = ["MathJax.js", f"config/{MATHJAX_CONFIG}.js", "extensions", "jax/input/TeX", "jax/element",
                 "jax/output/CommonHTML", "fonts/HTML-CSS/TeX/woff", "localization/en"]
MATHJAX_CLASSES = "tex2jax_process|mathjax_process|math|output_area"  # what MyST marks as math (as for MathJax 3)
MERMAID = BOOK / "_vendor" / "node_modules" / "mermaid" / "dist"


def local_mathjax() -> Path | None:
    for folder in MATHJAX_DIRS:
        if folder and (Path(folder) / "MathJax.js").is_file() and (Path(folder) / "config" / f"{MATHJAX_CONFIG}.js").is_file():
            return Path(folder)
    return None


def configure(app: Sphinx, config: Config) -> None:
    options = config.html_theme_options
    if not options.get("repository_url"):  # no repository: no badge, no button, no address made up
        options["launch_buttons"] = {}
        options["repository_url"] = ""
    else:
        options["use_repository_button"] = True

    mathjax = local_mathjax()
    if mathjax is not None:
        config.mathjax_path = f"mathjax/MathJax.js?config={MATHJAX_CONFIG}"
        config.mathjax3_config = None
        config.mathjax2_config = {"tex2jax": {"processClass": MATHJAX_CLASSES, "ignoreClass": "tex2jax_ignore|mathjax_ignore"},
                                  "showMathMenu": False, "messageStyle": "none"}
        config.myst_update_mathjax = False
    else:
        logger.info("autorec_book: no local MathJax (apt-get install libjs-mathjax): the math loads from a CDN")
    app.autorec_mathjax = mathjax

    if (MERMAID / "mermaid.esm.min.mjs").is_file():
        config.mermaid_use_local = "mermaid/mermaid.esm.min.mjs"


def build_slides(app: Sphinx, exception: Exception | None) -> None:
    """The core chapters as slide decks, from their stored outputs (nbconvert's reveal.js exporter; the figures are
    embedded in each page, reveal.js itself loads from its CDN)."""
    if exception is not None or app.builder.format != "html":
        return
    from nbconvert import SlidesExporter

    exporter = SlidesExporter(exclude_input_prompt=True, exclude_output_prompt=True)
    folder = Path(app.outdir) / "slides"
    folder.mkdir(parents=True, exist_ok=True)
    for chapter in SLIDE_CHAPTERS:
        body, _ = exporter.from_filename(str(BOOK.parent / "notebooks" / f"{chapter}.ipynb"))
        (folder / f"{chapter}.slides.html").write_text(body, encoding="utf-8")


def copy_assets(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    static = Path(app.outdir) / "_static"
    mathjax = app.autorec_mathjax
    if mathjax is not None:
        for part in MATHJAX_PARTS:
            source, target = mathjax / part, static / "mathjax" / part
            if source.is_dir():
                shutil.copytree(source, target, dirs_exist_ok=True)
            elif source.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
    if app.config.mermaid_use_local:
        (static / "mermaid").mkdir(parents=True, exist_ok=True)
        shutil.copy2(MERMAID / "mermaid.esm.min.mjs", static / "mermaid" / "mermaid.esm.min.mjs")
        shutil.copytree(MERMAID / "chunks" / "mermaid.esm.min", static / "mermaid" / "chunks" / "mermaid.esm.min",
                        dirs_exist_ok=True)


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", configure, priority=900)  # after JB1 and MyST have set theirs
    app.connect("build-finished", copy_assets)
    app.connect("build-finished", build_slides)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
