"""Autoencoders trained for lists (chapter 06): settings chosen on validation, then top-10 on the test folds.

    python benchmarks/topn.py              # the grid on u1's validation part, then u1..u5 (about 8 minutes on 2 cores)
    python benchmarks/topn.py --folds u1

Protocol (as benchmarks/ranking.py): relevance = a held-out rating of 4+ stars; candidates = the movies a
user did not rate in training, minus "unknown" titles; K = 10. The settings of each model are chosen on a
validation part of the *training* ratings (20 % of each user's, seed 0): the model is fitted on the rest and
its NDCG@10 on the validation part decides (for the autoencoders, the best epoch too). Then each chosen model
is fitted on all the training ratings and scored once on the test ratings. Bars: the best list
autoencoder NDCG@10 >= 0.40 and precision@10 >= 0.33 on u1, trained in <= 30 s. Writes benchmarks/results/topn.json.
"""

import argparse
import itertools
import json
import time
from pathlib import Path

import pandas as pd

from autorec_utils.evaluate import popularity_scores, ranking_metrics
from autorec_utils.fetch import fetch_movielens
from autorec_utils.load import load_movies, load_users
from autorec_utils.releases import SPLITS
from autorec_utils.splits import load_split, per_user_split
from autorec_utils.topn import LIST_RECIPES, train_list_model

RESULTS = Path(__file__).parent / "results"
GRIDS = {
    "ease": {"l2": [50.0, 100.0, 200.0, 300.0, 500.0, 1000.0]},
    "mult-dae": {"hidden": [200, 600], "dropout": [0.0, 0.2, 0.5], "lr": [1e-3], "epochs": [200]},
    "mult-vae": {"hidden": [200, 600], "dropout": [0.0, 0.2, 0.5], "beta": [0.2], "lr": [1e-3], "epochs": [200]},
}
BAR_NDCG, BAR_PRECISION, BAR_SECONDS = 0.40, 0.33, 30.0


def metrics(trained, train, test, unknown) -> dict:
    return ranking_metrics(trained.predictor.scores, train, test, trained.matrix.user_ids, trained.matrix.item_ids, k=10,
                           exclude_items=unknown)


def tune(train, ids, unknown) -> tuple[list[dict], dict]:
    fit_part, validation = per_user_split(train, test_fraction=0.2, seed=0)
    rows, chosen = [], {}
    for kind, grid in GRIDS.items():
        for values in itertools.product(*grid.values()):
            settings = dict(zip(grid, values, strict=True))
            trained = train_list_model(fit_part, kind, validation=None if kind == "ease" else validation, **ids, **settings)
            if kind != "ease":  # the best epoch, chosen on validation, becomes the epoch count
                settings["epochs"] = int(trained.history["validation NDCG@10"].idxmax())
            ndcg = metrics(trained, fit_part, validation, unknown)["NDCG@10"]
            rows.append({"model": kind, **settings, "validation NDCG@10": ndcg, "seconds": round(trained.seconds, 1)})
            print({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in rows[-1].items()}, flush=True)
        mine = pd.DataFrame([r for r in rows if r["model"] == kind])
        best = mine.loc[mine["validation NDCG@10"].idxmax()]
        chosen[kind] = {k: best[k].item() if hasattr(best[k], "item") else best[k] for k in grid if k in best}
        if kind != "ease":
            chosen[kind]["epochs"] = int(best["epochs"])
        print(f"{kind}: chosen on validation {chosen[kind]}", flush=True)
    return rows, chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", nargs="+", default=["u1", "u2", "u3", "u4", "u5"], choices=SPLITS)
    parser.add_argument("--no-tune", action="store_true", help="use LIST_RECIPES as they are")
    args = parser.parse_args()
    path = fetch_movielens(progress=False, verbose=False).path
    movies = load_movies(path)
    ids = {"user_ids": load_users(path).user_id, "item_ids": movies.item_id}
    unknown = movies.item_id[movies.title == "unknown"]
    first_train, _ = load_split(args.folds[0], path)
    grid, chosen = ([], LIST_RECIPES) if args.no_tune else tune(first_train, ids, unknown)
    rows = []
    for split in args.folds:
        train, test = load_split(split, path)
        counts = popularity_scores(train, ids["user_ids"], ids["item_ids"])
        popularity = ranking_metrics(counts, train, test, ids["user_ids"], ids["item_ids"], k=10, exclude_items=unknown)
        rows.append({"fold": split, "model": "popularity", **popularity, "seconds": 0.0})
        for kind, settings in chosen.items():
            started = time.perf_counter()
            trained = train_list_model(train, kind, **ids, **settings)
            rows.append({"fold": split, "model": kind, **metrics(trained, train, test, unknown),
                         "seconds": time.perf_counter() - started})
            print(f"  {split} {kind}: NDCG@10 {rows[-1]['NDCG@10']:.4f} in {rows[-1]['seconds']:.1f} s", flush=True)
    folds = pd.DataFrame(rows)
    pd.set_option("display.width", 150)
    first = folds[folds.fold == args.folds[0]].set_index("model").drop(columns=["fold", "users"])
    print(f"\nTop-10 on {args.folds[0]} (settings chosen on validation):")
    print(first.to_string(float_format=lambda v: f"{v:.4f}"))
    neural = first.loc[["mult-dae", "mult-vae"]]
    for label, name in (("bar, best neural list autoencoder", neural["NDCG@10"].idxmax()), ("beside it, EASE", "ease")):
        row = first.loc[name]
        ok = row["NDCG@10"] >= BAR_NDCG and row["precision@10"] >= BAR_PRECISION and row.seconds <= BAR_SECONDS
        print(f"{label} ({name}): NDCG@10 {row['NDCG@10']:.4f} >= {BAR_NDCG}, precision@10 {row['precision@10']:.4f} >= "
              f"{BAR_PRECISION}, {row.seconds:.1f} s <= {BAR_SECONDS:.0f} s -> {'PASS' if ok else 'FAIL'}; "
              f"{row['NDCG@10'] / first.loc['popularity', 'NDCG@10']:.2f}x popularity's NDCG@10")
    spread = folds.groupby("model", sort=False)[["precision@10", "NDCG@10"]].agg(["mean", "std"])
    print(f"\nOver folds {', '.join(args.folds)} (mean, std):")
    print(spread.to_string(float_format=lambda v: f"{v:.4f}"))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "topn.json").write_text(json.dumps({"grid": grid, "chosen": chosen, "folds": folds.to_dict("records")},
                                                  indent=1, default=float) + "\n")
    print(f"\nwrote {RESULTS / 'topn.json'}")


if __name__ == "__main__":
    main()
