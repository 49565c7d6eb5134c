"""Seconds each notebook takes from a fresh kernel, top to bottom (bar: 60 s each on an idle 2-core CPU).

    python benchmarks/notebooks.py                 # notebooks/ and solutions/, outputs not saved
    python benchmarks/notebooks.py --save          # ... and write the outputs back (refreshes the stored ones)
    python benchmarks/notebooks.py notebooks/03_masked_training.ipynb

Run it after notebook 01 has fetched the data (and in order: chapter 04 loads chapter 03's checkpoints).
"""

import argparse
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
BAR_SECONDS = 60.0


def run(path: Path, save: bool) -> float:
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}},
                            store_widget_state=True)
    started = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - started
    if save:
        nbformat.write(notebook, path)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", type=Path)
    parser.add_argument("--save", action="store_true", help="write the executed outputs back into the notebooks")
    args = parser.parse_args()
    paths = args.paths or sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "solutions").glob("*.ipynb"))
    total = 0.0
    for path in paths:
        seconds = run(path.resolve(), args.save)
        total += seconds
        verdict = "" if path.parent.name == "solutions" else ("  PASS" if seconds <= BAR_SECONDS else "  OVER 60 s")
        print(f"{path.parent.name}/{path.name:<32} {seconds:6.1f} s{verdict}", flush=True)
    print(f"{'total':<43} {total:6.1f} s")


if __name__ == "__main__":
    main()
