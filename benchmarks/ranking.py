"""Top-K quality of AutoRec and the baselines on a canonical split; prints tables.

    python benchmarks/ranking.py             # u1, K = 10 (about a minute on 2 cores)
    python benchmarks/ranking.py --split u2 -k 20

Relevance = a held-out rating of 4+ stars; candidates = the movies a user did not rate in training,
minus "unknown" titles. The models are trained here with their recipes (seed 0), not loaded: the rating
models of chapter 03 and the list models of chapter 06 (their settings chosen on validation by
benchmarks/topn.py). A second table gives NDCG for K = 5, 10, 20 and relevance from 4 or 5 stars.
"""

import argparse

import pandas as pd

from autorec_utils.evaluate import BiasBaseline, popularity_scores, random_scores, ranking_metrics, score
from autorec_utils.fetch import fetch_movielens
from autorec_utils.load import load_movies, load_users
from autorec_utils.recipes import RECIPES
from autorec_utils.releases import SPLITS
from autorec_utils.splits import load_split
from autorec_utils.topn import train_list_model
from autorec_utils.train import train_autorec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="u1", choices=SPLITS)
    parser.add_argument("-k", type=int, default=10)
    args = parser.parse_args()
    path = fetch_movielens(progress=False, verbose=False).path
    train, test = load_split(args.split, path)
    users, movies = load_users(path).user_id, load_movies(path)
    families = {family: [name for name, recipe in RECIPES.items() if recipe.family == family] for family in ("ratings", "lists")}
    trained = {name: train_autorec(train, name, user_ids=users, item_ids=movies.item_id, progress=False)
               for name in families["ratings"]}
    bias = BiasBaseline().fit(train)
    matrix = trained["U-AutoRec"].matrix
    lists = {name: train_list_model(train, name, user_ids=users, item_ids=movies.item_id, progress=False)
             for name in families["lists"]}
    scorers = {**{name: t.predictor.scores for name, t in trained.items()},
               **{name: t.predictor.scores for name, t in lists.items()},
               "bias baseline": bias.predict_matrix(matrix).numpy(),
               "popularity": popularity_scores(train, matrix.user_ids, matrix.item_ids),
               "random": random_scores(matrix.user_ids, matrix.item_ids, seed=0)}
    rmse = {**{name: score(t.predictor, test)["RMSE"] for name, t in trained.items()}, "bias baseline": score(bias, test)["RMSE"]}
    unknown = movies.item_id[movies.title == "unknown"]

    def metrics(k: int, threshold: float) -> pd.DataFrame:
        return pd.DataFrame({name: ranking_metrics(scores, train, test, matrix.user_ids, matrix.item_ids, k=k,
                                                   threshold=threshold, exclude_items=unknown)
                             for name, scores in scorers.items()}).T

    table = metrics(args.k, 4.0)
    table.insert(0, "test RMSE", [rmse.get(name, float("nan")) for name in table.index])
    print(f"Top-{args.k} on {args.split}: {int(table.users.iloc[0])} users with a held-out rating of 4+ stars")
    print(table.drop(columns="users").to_string(float_format=lambda v: f"{v:.4f}"))
    ndcg = pd.DataFrame({(f"relevant from {t:g}", f"K = {k}"): metrics(k, t)[f"NDCG@{k}"] for t in (4.0, 5.0) for k in (5, 10, 20)})
    print("\nNDCG@K by list length and relevance threshold (the best of each column is marked *):")
    print(ndcg.apply(lambda column: [f"{v:.3f}{'*' if v == column.max() else ' '}" for v in column]).to_string())


if __name__ == "__main__":
    main()
