"""The book: the README's command builds the site (Jupyter Book 1, from the notebooks' stored outputs, warnings as
errors), and headless Chromium reads it offline, the way a student would.

The site is built once, into a scratch folder, and served on 127.0.0.1; Chromium reaches nothing else (every other
host name resolves to nothing). On every page of the book -- the chapters 00-07, the README, the teaching guide,
the assignments, the glossary and the API reference -- every image has loaded, the math is typeset by the local
MathJax (no raw ``\\(``, ``$$``, ``\\begin`` or ``\\frac`` in the text a reader sees), and every link inside the
site leads to a page that exists and, with a ``#fragment``, to an element with that id. The search page finds
"early stopping", and the API page lists ``fit``, ``AutoRec`` and ``top_k`` under their chapters. Skipped, with the
reason, without Jupyter Book (``pip install -e ".[book]"``), the browser, or Debian's MathJax.
"""

import html.parser
import importlib.util
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
JUPYTER_BOOK = Path(sys.executable).parent / "jupyter-book"
# The README's command, as a reader runs it from the repository root (the test builds into a scratch folder).
COMMAND = (".venv/bin/jupyter-book build . --config book/_config.yml --toc book/_toc.yml --path-output book "
           "-W -n --keep-going")
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
PAGES = [f"notebooks/{name}.html" for name in NOTEBOOKS] + [
    "README.html", "TEACHING.html", "assignments/README.html", "GLOSSARY.html", "book/api.html"]
RAW_TEX = ["\\(", "\\)", "\\[", "$$", "\\begin", "\\frac", "\\lambda"]
SECONDS = 300  # the build takes about 17 s of CPU time; on a shared machine, minutes

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("jupyter_book") is None or not JUPYTER_BOOK.exists(),
                       reason='no Jupyter Book: pip install -e ".[book]" to build and check the book'),
]
browser = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                             reason="no browser: apt-get install chromium chromium-driver to check the built book")


def load_extension():
    sys.path.insert(0, str(ROOT / "book" / "_ext"))  # as Sphinx does for the book's local extensions
    spec = importlib.util.spec_from_file_location("autorec_book", ROOT / "book" / "_ext" / "autorec_book.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_gives_the_book_command():
    readme = (ROOT / "README.md").read_text()
    assert COMMAND in readme
    assert '-m pip install -e ".[book]"' in readme.split(COMMAND)[0].rsplit("```bash", 1)[1]


def test_launch_badges_come_from_the_repository_url_alone():
    extension = load_extension()
    buttons = {"colab_url": "https://colab.research.google.com", "binderhub_url": "https://mybinder.org"}

    def configured(url):
        config = SimpleNamespace(html_theme_options={"repository_url": url, "launch_buttons": dict(buttons)})
        extension.configure(SimpleNamespace(), config)
        return config.html_theme_options

    unset = configured("")
    assert unset["launch_buttons"] == {} and not unset.get("use_repository_button")
    published = configured("https://github.com/someone/autorec-tutorial")
    assert published["launch_buttons"] == buttons and published["use_repository_button"]
    assert "url: \"\"" in (ROOT / "book" / "_config.yml").read_text()  # no address made up in the repository


def test_every_module_of_the_package_is_in_the_api_reference():
    api = (ROOT / "book" / "api.md").read_text()
    modules = {p.stem for p in (ROOT / "autorec_utils").glob("*.py")} - {"__init__", "__main__"}
    assert modules == set(re.findall(r"automodule:: autorec_utils\.(\w+)", api))


def test_each_core_chapter_carries_its_slide_marks():
    """The cells a core chapter shows as slides are marked by one rule (book/_ext/notebook_setup.py): the title and
    every section heading, each equation, every figure; the rest skipped. A chapter edited since: run
    python book/_ext/notebook_setup.py --slides-only."""
    load_extension()
    import nbformat
    import notebook_setup

    for name in notebook_setup.SLIDE_CHAPTERS:
        notebook = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        marks = [cell.metadata.get("slideshow", {}).get("slide_type") for cell in notebook.cells]
        assert marks == [notebook_setup.slide_type(cell) for cell in notebook.cells], name


def test_every_chapter_starts_with_the_setup_cell():
    """The first code cell of every chapter is book/_ext/notebook_setup.py's SETUP_CELL, word for word, left out of
    the book's pages, and in a clone (the package installed) it prints nothing. A chapter without it, or with an old copy: run
    python book/_ext/notebook_setup.py, then re-run the chapter."""
    load_extension()
    import nbformat
    import notebook_setup

    for name in NOTEBOOKS:
        notebook = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        first_code = next(cell for cell in notebook.cells if cell.cell_type == "code")
        assert first_code.source == notebook_setup.SETUP_CELL, name
        assert first_code.metadata.get("tags") == ["remove-cell"], name  # the book's page leaves it out
        assert first_code.outputs == [], (name, first_code.outputs)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The README's command, run into a scratch folder: exit 0, no warning, the pages written."""
    out = tmp_path_factory.mktemp("book")
    command = COMMAND.replace(".venv/bin/jupyter-book", str(JUPYTER_BOOK)).replace("--path-output book",
                                                                                     f"--path-output {out}")
    start = time.monotonic()
    done = subprocess.run(command.split(), cwd=ROOT, capture_output=True, text=True, timeout=SECONDS)
    print(f"book built in {time.monotonic() - start:.1f} s")
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-5000:]
    assert "WARNING" not in log and "build succeeded" in log, log[-5000:]
    html = out / "_build" / "html"
    missing = [page for page in PAGES if not (html / page).is_file()]
    assert not missing
    return html


def test_each_core_chapter_is_also_a_slide_deck_with_its_figures(site):
    load_extension()
    import notebook_setup

    for name in notebook_setup.SLIDE_CHAPTERS:
        deck = (site / "slides" / f"{name}.slides.html").read_text()
        slides = deck.count("<section")
        assert slides >= 8 and "data:image/png;base64" in deck and "reveal" in deck.lower(), (name, slides)


def test_the_book_has_a_page_per_chapter_and_no_launch_badge(site):
    assert len(NOTEBOOKS) == 9 and all((site / "notebooks" / f"{name}.html").is_file() for name in NOTEBOOKS)
    text = "".join(p.read_text() for p in site.rglob("*.html"))
    assert "colab.research.google.com" not in text and "mybinder.org" not in text  # repository.url is unset
    assert "nothing to do where autorec_utils" not in text  # the setup cell is for running a chapter, not reading it
    assert (site / "_static" / "mathjax" / "MathJax.js").is_file() or not load_extension().local_mathjax()


class Ids(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids = set()

    def handle_starttag(self, tag, attrs):
        self.ids.update(value for name, value in attrs if name in ("id", "name") and value)


def ids_of(path: Path, cache={}) -> set:  # noqa: B006 (a cache over one run)
    if path not in cache:
        parser = Ids()
        parser.feed(path.read_text())
        cache[path] = parser.ids
    return cache[path]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def served(site):
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def chromium():
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,900", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


TYPESET = """
const done = arguments[arguments.length - 1];
if (!document.querySelector(".math")) { done("no math"); return; }
if (!window.MathJax || !MathJax.Hub) { done("no MathJax 2 on the page"); return; }
const typeset = () => MathJax.isReady ? MathJax.Hub.Queue(() => done("typeset")) : setTimeout(typeset, 50);
typeset();  // once MathJax has started, its queue runs this after the page's typesetting
"""
PAGE_STATE = """
const hide = document.createElement("style");  // code is code: only the prose and the outputs' tables count
hide.textContent = "pre, code, .highlight { display: none !important; }";
document.head.appendChild(hide);
const text = document.body.innerText;
hide.remove();
const math = Array.from(document.querySelectorAll(".math"));
return {
  text: text,
  broken_images: Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
  images: document.images.length,
  math: math.length,
  untypeset: math.filter(m => !m.querySelector(".MathJax_CHTML, .MathJax, mjx-container")).map(m => m.textContent.slice(0, 80)),
  errors: document.querySelectorAll(".MathJax_Error, merror, .mjx-merror").length,
  links: Array.from(document.querySelectorAll("a[href]")).map(a => a.href),
};
"""


@browser
@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_offline(site, served, chromium, page):
    chromium.get(served + page)
    assert chromium.execute_async_script(TYPESET) in ("typeset", "no math")
    state = chromium.execute_script(PAGE_STATE)
    deadline = time.monotonic() + 120  # a loaded machine may still be typesetting: wait on what the page shows
    while state["untypeset"] and time.monotonic() < deadline:
        time.sleep(0.5)
        state = chromium.execute_script(PAGE_STATE)
    assert not state["broken_images"], state["broken_images"]
    assert not [raw for raw in RAW_TEX if raw in state["text"]], "raw TeX in the visible text"
    assert not state["untypeset"] and not state["errors"]
    if page.startswith("notebooks/"):
        assert state["images"] > 0, "no figure: is the notebook stored without its outputs?"
        assert state["math"] > 0  # every chapter has equations
    broken = []
    for link in state["links"]:
        if not link.startswith(served):
            continue
        parts = urlsplit(link)
        target = site / unquote(parts.path.removeprefix(urlsplit(served).path))
        if parts.path.endswith("/"):
            target = target / "index.html"
        if not target.is_file():
            broken.append(link)
        elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in ids_of(target):
            broken.append(link)
    assert not broken, broken


@browser
def test_search_finds_early_stopping(served, chromium):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    chromium.get(served + "search.html?q=early+stopping")
    WebDriverWait(chromium, 30).until(  # Sphinx's search lists its results one by one, then sums them up
        expected_conditions.text_to_be_present_in_element((By.CSS_SELECTOR, "#search-results .search-summary"), "found"))
    results = chromium.find_elements(By.CSS_SELECTOR, "#search-results ul.search li a")
    hrefs = [r.get_attribute("href") for r in results]
    assert any("03_masked_training" in href for href in hrefs), hrefs


CHAPTER_OF = """
const dt = document.getElementById(arguments[0]);
if (!dt) return null;
let section = dt.closest("section");
while (section && !section.querySelector(":scope > h2")) section = section.parentElement.closest("section");
return section ? section.querySelector(":scope > h2").textContent : null;
"""


@browser
@pytest.mark.parametrize("name, chapter", [("autorec_utils.train.fit", "03"), ("autorec_utils.model.AutoRec", "02"),
                                           ("autorec_utils.recommend.top_k", "04")])
def test_the_api_page_lists_each_function_under_its_chapter(served, chromium, name, chapter):
    if not chromium.current_url.endswith("book/api.html"):
        chromium.get(served + "book/api.html")
    heading = chromium.execute_script(CHAPTER_OF, name)
    assert heading is not None, f"{name} is not on the API page"
    assert heading.startswith(chapter), heading
