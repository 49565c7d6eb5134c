"""Held-out RMSE of AutoRec and the baselines on MovieLens-100K's canonical folds; prints tables.

    python benchmarks/rmse.py            # u1 in detail, then mean ± std over u1..u5 (about 5 minutes on 2 cores)
    python benchmarks/rmse.py --folds u1 # u1 only

Bars: on u1, the best U-AutoRec <= 0.925 and I-AutoRec <= 0.900, each trained in <= 30 s.
Seconds are wall-clock training time including the baseline fit and any refit; this machine's load
changes them, so run it on an idle machine.
"""

import argparse

import pandas as pd
import torch

from autorec_utils.evaluate import BiasBaseline, GlobalMean, score
from autorec_utils.fetch import fetch_movielens
from autorec_utils.load import load_movies, load_users
from autorec_utils.releases import SPLITS
from autorec_utils.splits import load_split
from autorec_utils.train import RECIPES, train_autorec

BARS = {"U-AutoRec (best)": 0.925, "I-AutoRec": 0.900}
MAX_SECONDS = 30.0


def run_fold(split: str, path) -> list[dict]:
    train, test = load_split(split, path)
    users, movies = load_users(path).user_id, load_movies(path).item_id
    rows = []
    for name, baseline in (("global mean", GlobalMean()), ("bias baseline (mu + b_u + b_i)", BiasBaseline())):
        rows.append({"fold": split, "model": name, **score(baseline.fit(train), test), "seconds": float("nan"), "epochs": 0})
    for name in RECIPES:
        trained = train_autorec(train, name, user_ids=users, item_ids=movies, progress=False)
        rows.append({"fold": split, "model": name, **score(trained.predictor, test),
                     "seconds": trained.seconds, "epochs": trained.history.best_epoch})
        print(f"  {split} {name}: RMSE {rows[-1]['RMSE']:.4f} in {trained.seconds:.1f} s", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", nargs="+", default=["u1", "u2", "u3", "u4", "u5"], choices=SPLITS)
    args = parser.parse_args()
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    path = fetch_movielens(progress=False, verbose=False).path
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device: CPU")

    results = pd.DataFrame([row for split in args.folds for row in run_fold(split, path)])
    first = results[results.fold == args.folds[0]].set_index("model").drop(columns="fold")
    pd.set_option("display.width", 120)
    print(f"\nHeld-out test on {args.folds[0]} (20,000 ratings; early stopping on 5% of the training ratings):")
    print(first.to_string(formatters={"RMSE": "{:.4f}".format, "MAE": "{:.4f}".format, "seconds": "{:.1f}".format}))
    if args.folds[0] == "u1":
        for name, bar in BARS.items():
            row = first.loc[name]
            ok = row.RMSE <= bar and row.seconds <= MAX_SECONDS
            print(f"bar {name}: RMSE {row.RMSE:.4f} <= {bar} and {row.seconds:.1f} s <= {MAX_SECONDS:.0f} s -> {'PASS' if ok else 'FAIL'}")
    if len(args.folds) > 1:
        summary = results.groupby("model", sort=False).RMSE.agg(["mean", "std"])
        print(f"\nRMSE over folds {', '.join(args.folds)} (mean ± std):")
        for name, row in summary.iterrows():
            print(f"  {name:<32} {row['mean']:.4f} ± {row['std']:.4f}")


if __name__ == "__main__":
    main()
