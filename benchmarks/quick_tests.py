"""How long the tests take, against their bars, and where the time goes (the 15 slowest tests).

    python benchmarks/quick_tests.py            # the quick tier:  pytest -m "not notebooks"
    python benchmarks/quick_tests.py --full     # ... and the full suite, plain pytest (the README's test command)

Bars, on a 2-core CPU that multiplies 2048 x 2048 float32 matrices at 200 GFLOP/s and scaled by this machine's speed
(measured before and after; the slower reading counts, as in benchmarks/notebooks.py): the quick tier at least 200
tests within 2 minutes, the full suite at least 700 tests within 15 minutes. pytest runs as configured in
pyproject.toml (two xdist workers); the slowest tests are pytest's own --durations.
"""

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from notebooks import REFERENCE_GFLOPS, gflops  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TIERS = {  # name: (pytest arguments, bar in tests, bar in seconds on the reference machine)
    "quick tier (pytest -m \"not notebooks\")": (["-m", "not notebooks"], 200, 120.0),
    "full suite (pytest)": ([], 700, 900.0),
}
SLOWEST = 15


def run(arguments: list[str]) -> tuple[int, int, float, list[str]]:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--durations={SLOWEST}", *arguments]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    lines = done.stdout.strip().splitlines()
    summary = lines[-1] if lines else done.stderr
    passed = int(re.search(r"(\d+) passed", summary).group(1)) if "passed" in summary else 0
    failed = sum(int(n) for n in re.findall(r"(\d+) (?:failed|errors?)", summary))
    slowest = [line for line in lines if re.match(r"\s*\d+\.\d+s (call|setup|teardown) ", line)][:SLOWEST]
    return passed, failed, seconds, slowest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="also time the full suite (12-15 minutes at 200 GFLOP/s)")
    args = parser.parse_args()
    before = gflops()
    results = {name: run(arguments) for name, (arguments, _, _) in list(TIERS.items())[: 2 if args.full else 1]}
    speed = min(before, gflops())
    factor = REFERENCE_GFLOPS / speed
    print(f"this machine: {speed:.0f} GFLOP/s (2048² float32 matmul): speed factor {factor:.2f}")
    for name, (passed, failed, seconds, slowest) in results.items():
        _, bar_tests, bar_seconds = TIERS[name]
        ok = failed == 0 and passed >= bar_tests and seconds <= bar_seconds * factor
        print(f"\n{name}: {passed} passed, {failed} failed in {seconds:.0f} s ({seconds / 60:.1f} min); "
              f"bar >= {bar_tests} tests in <= {bar_seconds:.0f} s x {factor:.2f} = {bar_seconds * factor:.0f} s "
              f"-> {'PASS' if ok else 'FAIL'}")
        print(f"the {len(slowest)} slowest:")
        print("\n".join(slowest))


if __name__ == "__main__":
    main()
