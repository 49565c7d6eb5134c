"""Seconds per epoch and peak memory of the dense and the sparse training path, side by side, on the
real ML-100K and on generated data with the shape and sparsity of ML-1M, ML-10M and ML-20M.

    python benchmarks/scaling.py                          # all four shapes (about 10 minutes, 4 GB)
    python benchmarks/scaling.py --shapes ml-100k ml-1m   # a quick look

Each measurement runs in a fresh process, so that its peak resident memory is its own, and trains two
epochs, so that the peak includes everything training keeps (weights, gradients, Adam's two moments
and the copy of the best weights); seconds per epoch is their mean. The dense path is skipped where
its matrix would not fit in --dense-limit-gb. Bars (2-core CPU): an ML-20M-shaped epoch of U- and
I-AutoRec (hidden 500) in <= 60 s with peak memory <= 4 GB, and a cost that grows roughly linearly with
the number of ratings. Writes benchmarks/results/scaling.json and scaling.png (the curve notebook 05 shows).

Then a checkpoint round trip at 30,000 users x 10,000 movies (3 million generated ratings): the peak
memory of training a sparse U- and I-AutoRec and saving it, against the peak of loading it back in a
fresh process and recommending from it (bar: loading <= 1.5 x training).
"""

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from autorec_utils.releases import RELEASES

RESULTS = Path(__file__).parent / "results"
SHAPES = ("ml-100k", "ml-1m", "ml-10m", "ml-20m")  # the real ML-100K, then generated data of each shape
ROUND_TRIP_SHAPE = (30_000, 10_000, 3_000_000)  # users, movies, ratings


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


def measure(shape: str, variant: str, path: str, ratings_file: str, hidden: int, batch_size: int) -> dict:
    """Two epochs in this process, on the ratings in ``ratings_file`` (.npz); prints a JSON line."""
    from autorec_utils.matrix import rating_matrix
    from autorec_utils.model import AutoRec
    from autorec_utils.sparse import sparse_rating_matrix
    from autorec_utils.splits import validation_entries
    from autorec_utils.train import autorec_problem, fit

    torch.manual_seed(0)
    ratings = read_ratings(ratings_file)
    by = "user" if variant == "U" else "item"
    matrix = (sparse_rating_matrix if path == "sparse" else rating_matrix)(ratings, by=by)
    del ratings
    model = AutoRec(matrix.shape[1], hidden=hidden)

    def two_epochs():
        problem = autorec_problem(model, matrix, validation_entries(matrix.n_observed, 0.01, 0), l2=100.0, batch_size=batch_size)
        return fit(problem, epochs=2, lr=1e-3, patience=2, progress=False)

    history, peak_gb = peak_rss_during(two_epochs)
    seconds = history.to_frame().seconds.mean()
    return {"shape": shape, "variant": variant, "path": path, "ratings": matrix.n_observed,
            "seconds": round(float(seconds), 2), "peak_gb": round(peak_gb, 2)}


def read_ratings(ratings_file: str):
    import pandas as pd

    with np.load(ratings_file) as columns:  # as a user would load prepared ratings
        return pd.DataFrame({name: columns[name] for name in ("user_id", "item_id", "rating")})


def round_trip(step: str, variant: str, ratings_file: str, checkpoint: str, hidden: int, batch_size: int) -> dict:
    """``train``: two sparse epochs, then save; ``load``: load the checkpoint and recommend for ten users."""
    from autorec_utils.checkpoint import load_checkpoint, save_checkpoint
    from autorec_utils.train import train_autorec

    ratings = read_ratings(ratings_file)
    recipe = "I-AutoRec" if variant == "I" else "U-AutoRec"
    if step == "train":
        def work():
            trained = train_autorec(ratings, recipe, sparse=True, epochs=2, hidden=hidden, batch_size=batch_size,
                                    progress=False)
            save_checkpoint(trained, checkpoint, split=None, train=ratings)
            return type(trained.predictor).__name__
    else:
        def work():
            loaded = load_checkpoint(checkpoint, train=ratings)
            for user in loaded.matrix.user_ids[:10]:
                loaded.predictor.user_scores(user)
            return type(loaded.predictor).__name__
    predictor, peak_gb = peak_rss_during(work)
    return {"step": step, "variant": variant, "predictor": predictor, "peak_gb": round(peak_gb, 2)}


def ratings_of(shape: str):
    """The real ML-100K's u1 training ratings, or generated ratings of a larger release's shape."""
    from autorec_utils.fetch import fetch_movielens
    from autorec_utils.generate import generate_ratings
    from autorec_utils.splits import load_split

    if shape == "ml-100k":
        return load_split("u1", fetch_movielens(progress=False, verbose=False).path)[0]
    return generate_ratings(*RELEASES[shape].shape)


def save_ratings(ratings, ratings_file: Path) -> None:
    np.savez(ratings_file, **{name: ratings[name].to_numpy() for name in ("user_id", "item_id", "rating")})


def child(arguments: list[str], args) -> dict:
    """One measurement in a fresh process: its own peak memory, nothing left over from the others."""
    command = [sys.executable, str(Path(__file__)), *arguments, "--hidden", str(args.hidden), "--batch-size", str(args.batch_size)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1][:100]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="*", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--variants", nargs="+", default=["U", "I"], choices=["U", "I"])
    parser.add_argument("--hidden", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--dense-limit-gb", type=float, default=4.0, help="skip the dense path above this matrix size")
    parser.add_argument("--no-round-trip", action="store_true", help="skip the checkpoint round trip")
    parser.add_argument("--update", action="store_true",
                        help="measure only --shapes/--variants and replace those rows in the saved results (a noisy run, say)")
    parser.add_argument("--one", nargs=4, metavar=("SHAPE", "VARIANT", "PATH", "RATINGS"), help=argparse.SUPPRESS)
    parser.add_argument("--trip", nargs=4, metavar=("STEP", "VARIANT", "RATINGS", "CHECKPOINT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # a child process: one measurement
        print(json.dumps(measure(*args.one, hidden=args.hidden, batch_size=args.batch_size)))
        return
    if args.trip:
        print(json.dumps(round_trip(*args.trip, hidden=args.hidden, batch_size=args.batch_size)))
        return

    rows, folder = [], tempfile.TemporaryDirectory(prefix="autorec-scaling-")
    for shape in args.shapes:
        users, items, n_ratings = RELEASES[shape].shape
        # The ratings are made (or read) once per shape, here, so that no measurement carries the
        # memory that making them leaves behind in a process.
        ratings_file = Path(folder.name) / f"{shape}.npz"
        save_ratings(ratings_of(shape), ratings_file)
        for variant in args.variants:
            for path in ("dense", "sparse"):
                row = {"shape": shape, "variant": variant, "path": path, "ratings": n_ratings, "seconds": None, "peak_gb": None}
                dense_gb = users * items * 4 * 3 / 1e9  # values, mask and the batch outputs, roughly
                if path == "dense" and dense_gb > args.dense_limit_gb:
                    rows.append({**row, "note": f"skipped: ~{dense_gb:.0f} GB dense"})
                else:
                    result = child(["--one", shape, variant, path, str(ratings_file)], args)
                    rows.append({**row, "note": result["error"]} if "error" in result else result)
                print(f"  {rows[-1]}", flush=True)
    if rows and args.update and (RESULTS / "scaling.json").is_file():
        measured = {(r["shape"], r["variant"], r["path"]): r for r in rows}
        saved = json.loads((RESULTS / "scaling.json").read_text())["rows"]
        rows = [measured.pop((r["shape"], r["variant"], r["path"]), r) for r in saved] + list(measured.values())
    if rows:
        print_table(rows, args)
        save(rows, args)
    if not args.no_round_trip:
        trips = checkpoint_round_trips(Path(folder.name), args)
        print("\nCheckpoint round trip at 30,000 users x 10,000 movies, 3,000,000 ratings (peak resident memory):")
        for variant in args.variants:
            train, load = trips[(variant, "train")], trips[(variant, "load")]
            ratio = load["peak_gb"] / train["peak_gb"]
            print(f"  {variant}-AutoRec: train + save {train['peak_gb']:.2f} GB, load + recommend {load['peak_gb']:.2f} GB "
                  f"({load['predictor']}), ratio {ratio:.2f} (bar <= 1.5: {'PASS' if ratio <= 1.5 else 'FAIL'})")
    folder.cleanup()


def checkpoint_round_trips(folder: Path, args) -> dict:
    from autorec_utils.generate import generate_ratings

    ratings_file = folder / "round-trip.npz"
    save_ratings(generate_ratings(*ROUND_TRIP_SHAPE), ratings_file)
    trips = {}
    for variant in args.variants:
        checkpoint = folder / f"{variant}.pt"
        for step in ("train", "load"):
            trips[(variant, step)] = child(["--trip", step, variant, str(ratings_file), str(checkpoint)], args)
            print(f"  {trips[(variant, step)]}", flush=True)
    return trips


def print_table(rows: list[dict], args) -> None:
    print(f"\nSeconds per epoch (mean of 2), hidden {args.hidden}, batch {args.batch_size} rows, "
          f"{torch.get_num_threads()} threads:")
    print(f"{'shape':<8} {'model':<10} {'path':<7} {'ratings':>11} {'s/epoch':>8} {'peak GB':>8} {'µs/rating':>10}")
    for row in rows:
        seconds = row["seconds"]
        per_rating = f"{seconds / row['ratings'] * 1e6:.2f}" if seconds else "-"
        print(f"{row['shape']:<8} {row['variant'] + '-AutoRec':<10} {row['path']:<7} {row['ratings']:>11,} "
              f"{seconds if seconds is not None else '-':>8} {row['peak_gb'] if row['peak_gb'] is not None else '-':>8} "
              f"{per_rating:>10}  {row.get('note', '')}")


def save(rows: list[dict], args) -> None:
    """The figures as JSON, and the curve: seconds per epoch against the number of ratings."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from autorec_utils.plots import plot_scaling

    RESULTS.mkdir(exist_ok=True)
    settings = {"hidden": args.hidden, "batch_size": args.batch_size, "threads": torch.get_num_threads()}
    (RESULTS / "scaling.json").write_text(json.dumps({"settings": settings, "rows": rows}, indent=1) + "\n")
    plot_scaling(rows)
    plt.savefig(RESULTS / "scaling.png", dpi=120, bbox_inches="tight")
    print(f"\nwrote {RESULTS / 'scaling.json'} and {RESULTS / 'scaling.png'}")


if __name__ == "__main__":
    main()
