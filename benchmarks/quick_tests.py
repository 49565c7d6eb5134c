"""How long the quick tier of the tests takes: everything but the notebooks (bar: >= 200 tests in <= 2 minutes
on an idle 2-core CPU). The full suite is plain `pytest` (the README's test command).

    python benchmarks/quick_tests.py            # runs  pytest -m "not notebooks" -q  and prints one line
    python benchmarks/quick_tests.py --full     # the full suite too
"""

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BAR_TESTS, BAR_SECONDS = 200, 120.0


def run(marker: str | None) -> tuple[int, int, float]:
    command = [sys.executable, "-m", "pytest", "-q"] + (["-m", marker] if marker else [])
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
    passed = int(re.search(r"(\d+) passed", summary).group(1)) if "passed" in summary else 0
    failed = sum(int(n) for n in re.findall(r"(\d+) (?:failed|error)", summary))
    return passed, failed, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="also time the full suite (about 15 minutes)")
    args = parser.parse_args()
    passed, failed, seconds = run("not notebooks")
    ok = failed == 0 and passed >= BAR_TESTS and seconds <= BAR_SECONDS
    print(f"quick tier (pytest -m \"not notebooks\"): {passed} passed, {failed} failed in {seconds:.0f} s "
          f"(bar: >= {BAR_TESTS} tests in <= {BAR_SECONDS:.0f} s) -> {'PASS' if ok else 'FAIL'}")
    if args.full:
        passed, failed, seconds = run(None)
        print(f"full suite (pytest): {passed} passed, {failed} failed in {seconds:.0f} s")


if __name__ == "__main__":
    main()
