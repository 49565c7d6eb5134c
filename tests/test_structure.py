"""The package's shape, held: the core (chapters 00-04) loads no elective, every module declares its public names
and imports only declared ones, no module is over 400 lines, no import cycle, and mypy finds no error."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import autorec_utils

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = [ROOT / "autorec_utils", ROOT / "autorec_assignments"]
CORE = ["model", "train", "evaluate", "recommend", "checkpoint", "matrix", "load", "splits", "recipes", "plots",
        "releases", "fetch", "mirror", "checks", "__main__"]
ELECTIVES = ["sparse", "generate", "ddp", "distributed", "topn", "variants", "ensemble", "leaderboard"]


def modules() -> dict[str, Path]:
    return {f"{folder.name}.{path.stem}": path for folder in PACKAGES for path in sorted(folder.glob("*.py"))}


def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def declared(path: Path) -> set[str] | None:
    for node in tree(path).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return set(ast.literal_eval(node.value))
    return None


def package_imports(name: str, path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) for each ``from <package module> import names`` at any depth (lazy imports included)."""
    package = name.split(".")[0]
    found = []
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                module = ".".join([package, *filter(None, [node.module])])
            elif node.module and node.module.split(".")[0] in ("autorec_utils", "autorec_assignments"):
                module = node.module
            else:
                continue
            found.append((module, [alias.name for alias in node.names]))
    return found


def test_the_chapter_map_names_every_module_as_core_or_elective():
    doc = autorec_utils.__doc__
    for name in CORE + ELECTIVES:
        if (ROOT / "autorec_utils" / f"{name}.py").exists():
            assert f"{name}.py" in doc, f"autorec_utils/__init__.py's chapter map does not name {name}.py"
    assert set(CORE) | set(ELECTIVES) >= {p.stem for p in (ROOT / "autorec_utils").glob("*.py")} - {"__init__"}


# One interpreter imports the libraries the package builds on, then forks a child per core module, which imports that
# module into a fresh copy of itself (no module of the package loaded yet) and says which electives came with it: a
# new interpreter per module, without paying for torch's import fifteen times. Without fork (Windows) the script is
# run once per module, and its own interpreter is the fresh one.
IMPORTS_PER_MODULE = """
import json, os, sys
import matplotlib.pyplot, numpy, pandas, torch  # the libraries, not the package: children start from here


def electives_after(core):
    __import__(f"autorec_utils.{core}")
    return [e for e in ELECTIVES if "autorec_utils." + e in sys.modules]


found = {}
for core in sys.argv[1:]:
    if not hasattr(os, "fork"):
        found[core] = electives_after(core)
        continue
    read, write = os.pipe()
    if (child := os.fork()) == 0:
        os.write(write, json.dumps(electives_after(core)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        found[core] = json.loads(pipe.read() or "null")  # null: the import failed (its traceback is on stderr)
    os.waitpid(child, 0)
print(json.dumps(found))
"""


@pytest.fixture(scope="module")
def electives_loaded_by() -> dict:
    found = {}
    for modules in [CORE] if hasattr(os, "fork") else [[core] for core in CORE]:
        done = subprocess.run([sys.executable, "-c", f"ELECTIVES = {ELECTIVES!r}\n{IMPORTS_PER_MODULE}", *modules],
                              capture_output=True, text=True, check=True)
        found.update(json.loads(done.stdout))
    return found


@pytest.mark.parametrize("core", CORE)
def test_importing_a_core_module_loads_no_elective(core, electives_loaded_by):
    loaded = electives_loaded_by[core]
    assert loaded == [], f"importing autorec_utils.{core} loaded the elective(s) {loaded}"


@pytest.mark.parametrize("name", sorted(modules()))
def test_every_module_declares_its_public_names(name):
    path = modules()[name]
    names = declared(path)
    assert names is not None, f"{name} has no __all__"
    defined = {node.name for node in tree(path).body if isinstance(node, ast.FunctionDef | ast.ClassDef)}
    assert names is None or not {n for n in names if not n.isupper()} - defined - set(dir(__import__(name, fromlist=["_"])))


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_module_imports_a_private_or_undeclared_name(name):
    public = {module: declared(path) for module, path in modules().items()}
    for module, names in package_imports(name, modules()[name]):
        if module not in public:  # a package's face: __init__ re-exports, checked by its own __all__
            continue
        for imported in names:
            assert not imported.startswith("_") or imported == "__version__", f"{name} imports {module}.{imported}"
            assert public[module] is None or imported in public[module], (
                f"{name} imports {imported} from {module}, whose __all__ does not declare it")


def test_no_module_is_longer_than_a_screenful_reader_can_hold():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > 400}
    assert not long, f"modules over 400 lines: {long}"


def test_the_imports_have_no_cycle():
    graph = {name: {module for module, _ in package_imports(name, path) if module in modules() and module != name}
             for name, path in modules().items() if not name.endswith("__init__")}
    visiting, done = set(), set()

    def visit(node, trail):
        if node in visiting:
            raise AssertionError(f"import cycle: {' -> '.join(trail[trail.index(node):] + [node])}")
        if node in done:
            return
        visiting.add(node)
        for neighbour in sorted(graph.get(node, ())):
            visit(neighbour, trail + [node])
        visiting.discard(node)
        done.add(node)

    for node in sorted(graph):
        visit(node, [])


def test_the_type_checker_finds_no_error():
    """The predictor interface (evaluate.Predictor) and every signature, checked by mypy, not only described."""
    result = subprocess.run([sys.executable, "-m", "mypy", "autorec_utils", "autorec_assignments", "--ignore-missing-imports",
                             "--no-incremental", "--cache-dir", os.devnull], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
