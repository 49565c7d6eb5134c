"""Recommendations from a trained AutoRec (chapter 04): top-K for a known user, for a new person from a
few ratings (U-AutoRec reads a new rating vector without retraining), similar movies, embeddings.

Every function works through the predictor's interface (``user_scores``, ``codes``), so a model trained
on chapter 05's sparse path recommends exactly like a dense one.
"""

from __future__ import annotations

import difflib
import warnings

import numpy as np
import pandas as pd
import torch

from .evaluate import check_k
from .train import TrainedAutoRec

COLUMNS = ["rank", "item_id", "title", "year", "genres"]


def find_movie(movies: pd.DataFrame, query: int | str) -> int:
    """The MovieLens id of ``query``: an id, or a title searched case-insensitively (exact title first,
    then titles containing the text). Ambiguous or missing titles raise ``ValueError`` naming the
    candidates (chapter 04)."""
    if isinstance(query, (int, np.integer)) and not isinstance(query, bool):
        if int(query) not in set(movies.item_id):
            raise ValueError(f"there is no movie with id {query} (ids run {movies.item_id.min()}...{movies.item_id.max()}).")
        return int(query)
    if not isinstance(query, str) or not query.strip():
        raise ValueError(f"a movie is an id or a non-empty title, got {query!r}.")
    titles = movies.title.str.lower()
    wanted = query.strip().lower()
    found = movies[titles == wanted]
    if found.empty:
        found = movies[titles.str.contains(wanted, regex=False)]
    if len(found) == 1:
        return int(found.item_id.iloc[0])
    if found.empty:
        close = difflib.get_close_matches(query, movies.title.tolist(), n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(t) for t in close)}?" if close else ""
        raise ValueError(f"no movie title contains {query!r}.{hint}")
    listed = "; ".join(f"{t} (id {i})" for i, t in zip(found.item_id[:8], found.title[:8], strict=True))
    more = f" and {len(found) - 8} more" if len(found) > 8 else ""
    raise ValueError(f"{query!r} matches {len(found)} movies: {listed}{more}. Use a longer title or the id.")


def top_k(trained: TrainedAutoRec, user_id: int, movies: pd.DataFrame, k: int = 10,
          include_unknown: bool = False) -> pd.DataFrame:
    """The ``k`` movies with the highest predicted rating among those ``user_id`` has not rated in
    training, movies titled "unknown" skipped unless ``include_unknown`` (chapter 04)."""
    check_k(k)
    scores = trained.predictor.user_scores(user_id)
    rated = trained.matrix.rated_items(user_id)
    if not rated.any():
        fallback = "the bias baseline" if hasattr(trained.predictor.fallback, "predict") else "the mean training rating"
        warnings.warn(f"user {user_id} has no training ratings: the model has nothing to read, so every movie gets "
                      f"{fallback} and the list says nothing personal.", stacklevel=2)
    score_name = getattr(trained.predictor, "score_name", "predicted_rating")  # chapter 06's list models: "score"
    return rank_movies(scores, rated, trained.matrix.item_ids, movies, k, include_unknown, f"user {user_id}", score_name)


def recommend_for_new_user(trained: TrainedAutoRec, ratings: dict, movies: pd.DataFrame, k: int = 10,
                           include_unknown: bool = False) -> pd.DataFrame:
    """Top-``k`` for a person who is not in the data, from ``{movie id or title: rating}``.

    U-AutoRec reads the new rating vector exactly as it reads a training user's row -- no retraining
    (chapter 04). I-AutoRec cannot: a new person would be a new *input* dimension of every movie vector.
    """
    if trained.matrix.by != "user":
        raise ValueError("I-AutoRec reads movie vectors over the training users, so a new person needs retraining; "
                         "use a U-AutoRec model (rows are users) for fold-in recommendations.")
    if not isinstance(ratings, dict) or not ratings:
        raise ValueError("give at least one rating, as {movie id or title: rating from 1 to 5}.")
    chosen: dict[int, float] = {}
    for movie, rating in ratings.items():
        if isinstance(rating, bool) or not isinstance(rating, (int, float, np.number)) or not 1 <= rating <= 5:
            raise ValueError(f"the rating of {movie!r} is {rating!r}; ratings run from 1 to 5 stars.")
        item = find_movie(movies, movie)
        if item in chosen:
            raise ValueError(f"{movie!r} is movie {item}, which is already rated in this list; rate each movie once.")
        chosen[item] = float(rating)
    item_index = trained.matrix.item_index
    missing = [m for m in chosen if m not in item_index]
    if missing:
        raise ValueError(f"movie(s) {missing} are not among the model's {len(item_index)} movies.")
    items = np.array(list(chosen))
    values = np.array(list(chosen.values()))
    columns = np.array([item_index[m] for m in items])

    bias, predictor = trained.bias, trained.predictor
    user_bias = bias.user_bias_for(items, values)
    all_items = trained.matrix.item_ids
    baseline = torch.zeros(len(all_items))
    if trained.recipe.get("residual"):
        baseline = torch.as_tensor(bias.predict_new_user(user_bias, all_items), dtype=torch.float32)
    vector = torch.zeros(len(all_items))
    vector[columns] = torch.as_tensor(values, dtype=torch.float32) - baseline[columns]
    model = trained.model
    with torch.no_grad():
        scores = (model(vector[None].to(next(model.parameters()).device)).cpu()[0] + baseline).numpy().astype(np.float64)
    cold = ~predictor.known_items
    if hasattr(predictor.fallback, "predict"):  # the bias baseline, with this person's own b_u
        scores[cold] = bias.predict_new_user(user_bias, all_items[cold])
    else:
        scores[cold] = float(predictor.fallback)
    rated = np.zeros(len(all_items), dtype=bool)
    rated[columns] = True
    return rank_movies(scores, rated, all_items, movies, k, include_unknown, "this person")


def similar_movies(trained: TrainedAutoRec, movie: int | str, movies: pd.DataFrame, k: int = 10,
                   min_ratings: int = 10) -> pd.DataFrame:
    """Movies whose learned vectors are closest (cosine) to ``movie``'s: U-AutoRec's decoder rows, or
    I-AutoRec's hidden codes (chapter 04). Movies with fewer than ``min_ratings`` training ratings are
    left out (their vectors are mostly noise), and so are "unknown" titles."""
    check_k(k)
    if isinstance(min_ratings, bool) or not isinstance(min_ratings, (int, np.integer)) or min_ratings < 0:
        raise ValueError(f"min_ratings must be a whole number >= 0, got {min_ratings!r}.")
    target = find_movie(movies, movie)
    if target not in trained.matrix.item_index:
        raise ValueError(f"movie {target} is not among the model's {len(trained.matrix.item_ids)} movies.")
    vectors = movie_embeddings(trained)
    item_ids = trained.matrix.item_ids
    position = trained.matrix.item_index[target]
    normed = vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-12)
    similarity = normed @ normed[position]
    counts = trained.matrix.rating_counts()[1]
    unknown = np.isin(item_ids, movies.item_id[movies.title == "unknown"])
    keep = (counts >= min_ratings) & ~unknown & (item_ids != target)
    order = np.argsort(-np.where(keep, similarity, -np.inf), kind="stable")[: min(k, int(keep.sum()))]
    found = pd.DataFrame({"item_id": item_ids[order], "similarity": similarity[order]})
    return _with_titles(found, movies)


def movie_embeddings(trained: TrainedAutoRec) -> np.ndarray:
    """One vector per movie (rows in ``trained.matrix.item_ids`` order): U-AutoRec's decoder rows, or
    I-AutoRec's hidden codes (chapter 04)."""
    if trained.matrix.by == "user":
        return trained.model.decoder.weight.detach().cpu().numpy().copy()
    return trained.predictor.codes.cpu().numpy()


def user_embeddings(trained: TrainedAutoRec) -> np.ndarray:
    """One vector per user (rows in ``trained.matrix.user_ids`` order): U-AutoRec's hidden codes
    g(V r + mu), from the input the model reads (residuals, for a residual recipe), or I-AutoRec's
    decoder rows (chapter 04)."""
    if trained.matrix.by == "user":
        return trained.predictor.codes.cpu().numpy()
    return trained.model.decoder.weight.detach().cpu().numpy().copy()


def project_2d(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PCA: the 2-D coordinates of ``vectors`` and the share of variance each axis explains (chapter 04)."""
    centred = vectors - vectors.mean(axis=0)
    _, singular, components = np.linalg.svd(centred, full_matrices=False)
    return centred @ components[:2].T, singular[:2] ** 2 / (singular**2).sum()


def rank_movies(scores: np.ndarray, rated: np.ndarray, item_ids: np.ndarray, movies: pd.DataFrame, k: int,
                include_unknown: bool, who: str, score_name: str = "predicted_rating") -> pd.DataFrame:
    """The top-``k`` unrated candidates by score, with titles; says so when fewer than ``k`` exist. A
    predicted rating is shown clipped to 1-5 stars; another score (chapter 06) as it is (chapter 04)."""
    check_k(k)
    candidates = ~rated
    if not include_unknown:
        candidates &= ~np.isin(item_ids, movies.item_id[movies.title == "unknown"])
    n_candidates = int(candidates.sum())
    if n_candidates < k:
        message = (f"{who} has rated every movie: there is nothing left to recommend." if n_candidates == 0 else
                   f"only {n_candidates} movies are left that {who} has not rated; returning all of them, not {k}.")
        warnings.warn(message, stacklevel=3)
    order = np.argsort(-np.where(candidates, scores, -np.inf), kind="stable")[: min(k, n_candidates)]
    shown = np.clip(scores[order], 1, 5) if score_name == "predicted_rating" else scores[order]
    return _with_titles(pd.DataFrame({"item_id": item_ids[order], score_name: shown}), movies)


def _with_titles(found: pd.DataFrame, movies: pd.DataFrame) -> pd.DataFrame:
    found = found.merge(movies[["item_id", "title", "year", "genres"]], on="item_id", how="left")
    found.insert(0, "rank", np.arange(1, len(found) + 1))
    return found[COLUMNS + [c for c in found.columns if c not in COLUMNS]]
