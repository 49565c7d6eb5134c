"""Seconds per epoch and peak memory of the dense and the sparse training path, side by side, on the
real ML-100K and on generated data with the shape and sparsity of ML-1M, ML-10M and ML-20M.

    python benchmarks/scaling.py                      # ml-100k, ml-1m, ml-10m shapes (a few minutes)
    python benchmarks/scaling.py --shapes ml-20m      # the big one (minutes, several GB)

Each measurement runs in a fresh process, so that its peak resident memory is its own; the dense path
is skipped where its matrix alone would exceed --dense-limit-gb. Bars (issue 5, 2-core CPU): an
ML-20M-shaped epoch of U- and I-AutoRec (hidden 500) in <= 60 s with peak memory <= 4 GB, and a cost
that grows roughly linearly with the number of ratings.
"""

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

SHAPES = {  # users, movies, ratings (the real releases' sizes)
    "ml-100k": (943, 1_682, 100_000),
    "ml-1m": (6_040, 3_706, 1_000_209),
    "ml-10m": (69_878, 10_677, 10_000_054),
    "ml-20m": (138_493, 26_744, 20_000_263),
}


def peak_rss_during(work):
    """Run ``work()`` and return (its result, the peak resident memory in GB seen while it ran)."""
    page = 4096
    peak, running = [0], [True]

    def sample():
        while running[0]:
            with open("/proc/self/statm") as f:
                peak[0] = max(peak[0], int(f.read().split()[1]) * page)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = work()
    finally:
        running[0] = False
        sampler.join()
    return result, peak[0] / 1e9


def generated(n_users: int, n_items: int, n_ratings: int, seed: int = 0):
    """Ratings with MovieLens-like long tails (a few very active users, a few very popular movies)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    user_weight = rng.pareto(1.5, n_users) + 1
    item_weight = rng.pareto(1.2, n_items) + 1
    keys = np.empty(0, dtype=np.int64)
    while len(keys) < n_ratings:  # draw, drop repeated (user, movie) pairs, top up
        draw = int((n_ratings - len(keys)) * 1.3) + 1000
        users = rng.choice(n_users, draw, p=user_weight / user_weight.sum())
        items = rng.choice(n_items, draw, p=item_weight / item_weight.sum())
        keys = np.unique(np.concatenate([keys, users.astype(np.int64) * n_items + items]))
    keys = rng.permutation(keys)[:n_ratings]
    return pd.DataFrame({"user_id": keys // n_items + 1, "item_id": keys % n_items + 1,
                         "rating": rng.integers(1, 11, n_ratings) / 2})


def measure(shape: str, variant: str, path: str, hidden: int, batch_size: int) -> dict:
    """One epoch (after a warm-up batch) in this process; prints a JSON line."""
    import torch

    from autorec_utils import data
    from autorec_utils.model import AutoRec
    from autorec_utils.train import fit

    torch.manual_seed(0)
    if shape == "ml-100k":
        ratings = data.load_split("u1", data.fetch_movielens(progress=False, verbose=False).path)[0]
    else:
        ratings = generated(*SHAPES[shape])
    by = "user" if variant == "U" else "item"
    matrix = data.sparse_rating_matrix(ratings, by=by) if path == "sparse" else data.rating_matrix(ratings, by=by)
    del ratings
    model = AutoRec(matrix.shape[1], hidden=hidden)

    def one_epoch():
        started = time.perf_counter()
        fit(model, matrix, epochs=1, lr=1e-3, l2=100.0, batch_size=batch_size, validation_fraction=0.01,
            sparse=path == "sparse", progress=False)
        return time.perf_counter() - started

    seconds, peak_gb = peak_rss_during(one_epoch)
    return {"shape": shape, "variant": variant, "path": path, "ratings": matrix.n_observed,
            "seconds": round(seconds, 2), "peak_gb": round(peak_gb, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=["ml-100k", "ml-1m", "ml-10m"], choices=list(SHAPES))
    parser.add_argument("--variants", nargs="+", default=["U", "I"], choices=["U", "I"])
    parser.add_argument("--hidden", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--dense-limit-gb", type=float, default=4.0, help="skip the dense path above this matrix size")
    parser.add_argument("--one", nargs=3, metavar=("SHAPE", "VARIANT", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # a child process: one measurement
        print(json.dumps(measure(*args.one, hidden=args.hidden, batch_size=args.batch_size)))
        return

    rows = []
    for shape in args.shapes:
        users, items, n_ratings = SHAPES[shape]
        for variant in args.variants:
            for path in ("dense", "sparse"):
                dense_gb = users * items * 4 * 3 / 1e9  # values, mask and the batch outputs, roughly
                if path == "dense" and dense_gb > args.dense_limit_gb:
                    rows.append({"shape": shape, "variant": variant, "path": path, "ratings": n_ratings,
                                 "seconds": None, "peak_gb": None, "note": f"skipped: ~{dense_gb:.0f} GB dense"})
                    continue
                command = [sys.executable, str(Path(__file__)), "--one", shape, variant, path,
                           "--hidden", str(args.hidden), "--batch-size", str(args.batch_size)]
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode != 0:
                    rows.append({"shape": shape, "variant": variant, "path": path, "ratings": n_ratings,
                                 "seconds": None, "peak_gb": None, "note": done.stderr.strip().splitlines()[-1][:80]})
                else:
                    rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(f"  {rows[-1]}", flush=True)

    print(f"\nOne epoch, hidden {args.hidden}, batch {args.batch_size} rows, "
          f"{__import__('torch').get_num_threads()} threads:")
    print(f"{'shape':<8} {'model':<10} {'path':<7} {'ratings':>11} {'s/epoch':>8} {'peak GB':>8} {'µs/rating':>10}")
    for row in rows:
        seconds = row["seconds"]
        per_rating = f"{seconds / row['ratings'] * 1e6:.2f}" if seconds else "-"
        print(f"{row['shape']:<8} {row['variant'] + '-AutoRec':<10} {row['path']:<7} {row['ratings']:>11,} "
              f"{seconds if seconds is not None else '-':>8} {row['peak_gb'] if row['peak_gb'] is not None else '-':>8} "
              f"{per_rating:>10}  {row.get('note', '')}")


if __name__ == "__main__":
    main()
