"""Seconds each notebook takes from a fresh kernel, top to bottom, against its bar: 60 s on a 2-core CPU that
multiplies 2048 x 2048 float32 matrices at 200 GFLOP/s, scaled by this machine's speed.

    python benchmarks/notebooks.py                 # notebooks/ and solutions/, outputs not saved
    python benchmarks/notebooks.py --save          # ... and write the outputs back (refreshes the stored ones)
    python benchmarks/notebooks.py notebooks/03_masked_training.ipynb

The speed is measured before and after the notebooks (the best of a few products each time; on a machine
shared with other jobs the slower of the two measurements sets the bar) and printed with the speed factor,
200 GFLOP/s / measured: a notebook passes when it takes at most 60 s x that factor.
Run it after notebook 01 has fetched the data (and in order: chapter 04 loads chapter 03's checkpoints).
"""

import argparse
import time
from pathlib import Path

import nbformat
import torch
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
BAR_SECONDS = 60.0  # on the reference machine ...
REFERENCE_GFLOPS = 200.0  # ... a 2-core CPU at this speed in a 2048² float32 matrix product


def gflops(size: int = 2048, repeats: int = 5) -> float:
    """This machine's speed: GFLOP/s of a size x size float32 matrix product with torch, the best of ``repeats``."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


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
    before = gflops()
    print(f"this machine: {before:.0f} GFLOP/s (2048² float32 matmul, torch {torch.get_num_threads()} threads); "
          f"speed factor {REFERENCE_GFLOPS / before:.2f} -> bar {BAR_SECONDS * REFERENCE_GFLOPS / before:.0f} s",
          flush=True)
    times = {path: run(path.resolve(), args.save) for path in paths}
    after = gflops()
    speed = min(before, after)  # the slower reading: the load of a shared machine changes while the notebooks run
    factor = REFERENCE_GFLOPS / speed
    bar = BAR_SECONDS * factor
    print(f"this machine: {after:.0f} GFLOP/s after the notebooks; speed factor {factor:.2f} "
          f"(200 GFLOP/s / {speed:.0f}): bar {BAR_SECONDS:.0f} s x {factor:.2f} = {bar:.0f} s")
    for path, seconds in times.items():
        verdict = "" if path.parent.name == "solutions" else (
            f"  PASS (bar {bar:.0f} s)" if seconds <= bar else f"  OVER the bar of {bar:.0f} s")
        print(f"{path.parent.name}/{path.name:<32} {seconds:6.1f} s{verdict}")
    print(f"{'total':<43} {sum(times.values()):6.1f} s")


if __name__ == "__main__":
    main()
