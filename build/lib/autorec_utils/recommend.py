"""Recommendations from a trained model (chapter 04): top-K for a known user, for a new person from a few
ratings (U-AutoRec reads a new rating vector without retraining) or liked movies (chapter 06's list
models), similar movies, embeddings.

Every function is written against the predictor interface (``evaluate.Predictor``) and nothing else, so a
rating model, a model trained on chapter 05's sparse path and a list model of chapter 06 recommend
through the same code; where an idea does not apply to a model, the function says what to use instead.
"""

from __future__ import annotations

import difflib
import warnings

import numpy as np
import pandas as pd

from .checks import is_whole
from .evaluate import RATING_RANGE, HasPredictor, Predictor, check_k, top_k_columns

__all__ = [  # what the notebooks, the command line and users call
    "COLUMNS", "SCORE_COLUMN", "Model", "best_positions", "find_movie", "model_name", "movie_embeddings", "predictor_of",
    "project_2d", "rank_movies", "recommend_for_new_user", "recommend_from_liked", "similar_movies", "top_k",
    "user_embeddings",
]

COLUMNS = ["rank", "item_id", "title", "year", "genres"]
Model = Predictor | HasPredictor  # what chapter 04's functions take: a trained model (train.Trained) or its predictor


def find_movie(movies: pd.DataFrame, query: int | str) -> int:
    """The MovieLens id of ``query``: an id, or a title searched case-insensitively (exact title first,
    then titles containing the text). Ambiguous or missing titles raise ``ValueError`` naming the
    candidates (chapter 04)."""
    if is_whole(query):
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


def top_k(trained: Model, user_id: int, movies: pd.DataFrame, k: int = 10, include_unknown: bool = False) -> pd.DataFrame:
    """The ``k`` movies with the highest score among those ``user_id`` has not rated in training, movies
    titled "unknown" skipped unless ``include_unknown`` (chapter 04). ``trained``: any trained model of the
    package (or its predictor): a rating model lists predicted stars, a list model (chapter 06) its scores."""
    check_k(k)
    predictor = predictor_of(trained)
    scores = predictor.user_scores(user_id)
    rated = predictor.matrix.rated_items(user_id)
    if not rated.any():
        warnings.warn(f"user {user_id} has no training ratings: the model has nothing to read, so every movie gets "
                      f"{predictor.cold_start} and the list says nothing personal.", stacklevel=2)
    return rank_movies(scores, rated, predictor, movies, k, include_unknown, f"user {user_id}")


def recommend_for_new_user(trained: Model, ratings: dict, movies: pd.DataFrame, k: int = 10,
                           include_unknown: bool = False) -> pd.DataFrame:
    """Top-``k`` for a person who is not in the data, from ``{movie id or title: rating}``.

    U-AutoRec reads the new rating vector exactly as it reads a training user's row -- no retraining
    (chapter 04). I-AutoRec cannot (a new person would be a new *input* of every movie vector), and a list
    model reads picks, not stars (``recommend_from_liked``).
    """
    predictor = predictor_of(trained)
    if not predictor.rates:
        raise ValueError(f"{model_name(predictor)} ranks picks, it does not read stars: use "
                         "recommend_from_liked(model, [the movies you liked], movies).")
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
    columns = _columns_of(predictor, list(chosen))
    scores = predictor.fold_in(columns, np.array(list(chosen.values())))
    return rank_movies(scores, _marked(len(scores), columns), predictor, movies, k, include_unknown, "this person")


def recommend_from_liked(trained: Model, liked, movies: pd.DataFrame, k: int = 10, include_unknown: bool = False) -> pd.DataFrame:
    """Top-``k`` for a new person from the movies they liked (ids or titles; one alone is a list of one), with
    no retraining: a list model reads their 0/1 vector as it reads a training user's (chapter 06). A rating
    model reads stars instead (``recommend_for_new_user``)."""
    check_k(k)
    predictor = predictor_of(trained)
    if predictor.rates:
        try:  # can it read a new person's stars? (I-AutoRec and ensembles cannot, and say what to use instead)
            predictor.fold_in(np.zeros(0, dtype=np.int64), np.zeros(0))
        except ValueError as cannot:
            raise ValueError(f"{model_name(predictor)} reads stars, not picks, and no new person's stars either: {cannot}") from None
        raise ValueError(f"{model_name(predictor)} reads stars, not picks: use recommend_for_new_user(model, "
                         "{movie: rating from 1 to 5}, movies).")
    if isinstance(liked, (str, int, np.integer)):
        liked = [liked]  # one movie is a list of one
    if not isinstance(liked, (list, tuple, set, np.ndarray, pd.Series)) or len(liked) == 0:
        raise ValueError("give at least one movie, as a list of ids or titles, e.g. ['Star Wars (1977)', 1].")
    items = []
    for movie in liked:
        item = find_movie(movies, movie)
        if item in items:
            raise ValueError(f"{movie!r} is movie {item}, which is already in the list; name each movie once.")
        items.append(item)
    columns = _columns_of(predictor, items)
    scores = predictor.fold_in(columns, np.ones(len(columns)))
    return rank_movies(scores, _marked(len(scores), columns), predictor, movies, k, include_unknown, "this person")


def similar_movies(trained: Model, movie: int | str, movies: pd.DataFrame, k: int = 10, min_ratings: int = 10) -> pd.DataFrame:
    """Movies whose learned vectors are closest (cosine) to ``movie``'s (chapter 04): the predictor's
    ``movie_vectors`` -- U-AutoRec's and the list autoencoders' decoder rows, I-AutoRec's hidden codes,
    EASE's rows of its item-item matrix. Movies with fewer than ``min_ratings`` training ratings are left
    out (their vectors are mostly noise), and so are "unknown" titles."""
    check_k(k)
    if not is_whole(min_ratings) or min_ratings < 0:
        raise ValueError(f"min_ratings must be a whole number >= 0, got {min_ratings!r}.")
    predictor = predictor_of(trained)
    target = find_movie(movies, movie)
    position = _columns_of(predictor, [target])[0]
    vectors = predictor.movie_vectors()
    normed = vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-12)
    similarity = normed @ normed[position]
    item_ids = predictor.matrix.item_ids
    counts = predictor.matrix.rating_counts()[1]
    keep = (counts >= min_ratings) & ~_unknown(item_ids, movies) & (item_ids != target)
    order = best_positions(similarity, keep, k)
    found = pd.DataFrame({"item_id": item_ids[order], "similarity": similarity[order]})
    return _with_titles(found, movies)


def movie_embeddings(trained: Model) -> np.ndarray:
    """One vector per movie (rows in ``matrix.item_ids`` order): the predictor's ``movie_vectors`` (chapter 04)."""
    return predictor_of(trained).movie_vectors()


def user_embeddings(trained: Model) -> np.ndarray:
    """One vector per user (rows in ``matrix.user_ids`` order): the predictor's ``user_vectors`` -- U-AutoRec's
    hidden codes g(V r + mu), from the input the model reads (residuals, for a residual recipe), or
    I-AutoRec's decoder rows (chapter 04)."""
    return predictor_of(trained).user_vectors()


def project_2d(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PCA: the 2-D coordinates of ``vectors`` and the share of variance each axis explains (chapter 04)."""
    centred = vectors - vectors.mean(axis=0)
    _, singular, components = np.linalg.svd(centred, full_matrices=False)
    return centred @ components[:2].T, singular[:2] ** 2 / (singular**2).sum()


def rank_movies(scores: np.ndarray, rated: np.ndarray, predictor: Predictor, movies: pd.DataFrame, k: int,
                include_unknown: bool, who: str) -> pd.DataFrame:
    """The top-``k`` unrated candidates by score, with titles; says so when fewer than ``k`` exist. A rated
    movie is never a candidate, and scores that are not numbers are an error, not a silently wrong list.
    A predicted rating is shown clipped to 1-5 stars; a list model's score as it is (chapter 04)."""
    check_k(k)
    if not np.isfinite(scores).all():
        raise ValueError(f"{model_name(predictor)} gave scores that are not numbers (NaN or infinite) for {who}: the model "
                         "diverged or was built with a bad setting; train it again (a lower learning rate, a finite lambda).")
    item_ids = predictor.matrix.item_ids
    candidates = ~rated
    if not include_unknown:
        candidates &= ~_unknown(item_ids, movies)
    n_candidates = int(candidates.sum())
    if n_candidates < k:
        message = (f"{who} has rated every movie: there is nothing left to recommend." if n_candidates == 0 else
                   f"only {n_candidates} movies are left that {who} has not rated; returning all of them, not {k}.")
        warnings.warn(message, stacklevel=3)
    order = best_positions(scores, candidates, k)
    shown = np.clip(scores[order], *RATING_RANGE) if predictor.rates else scores[order]
    return _with_titles(pd.DataFrame({"item_id": item_ids[order], SCORE_COLUMN[predictor.rates]: shown}), movies)


SCORE_COLUMN = {True: "predicted_rating", False: "score"}


def predictor_of(trained: Model) -> Predictor:
    """The predictor of a trained model (``train.Trained``), or ``trained`` itself when it is one."""
    return trained.predictor if isinstance(trained, HasPredictor) else trained


def model_name(predictor: Predictor) -> str:
    """The model's name for messages: U-AutoRec, I-AutoRec, MultDAE, MultVAE, EASE."""
    name = type(predictor.model).__name__
    return f"{'U' if predictor.matrix.by == 'user' else 'I'}-{name}" if name in ("AutoRec", "DeepAutoRec") else name


def best_positions(scores: np.ndarray, keep: np.ndarray, k: int) -> np.ndarray:
    """The positions of the ``k`` highest scores among those ``keep`` allows, best first (ties: lower position):
    what every list of chapter 04 is made of (chapter 04)."""
    allowed = np.flatnonzero(keep)
    if allowed.size == 0:
        return allowed
    return allowed[top_k_columns(scores[allowed], min(k, allowed.size))[0]]


def _columns_of(predictor: Predictor, items: list[int]) -> np.ndarray:
    columns = predictor.matrix.item_positions(items)
    missing = [item for item, column in zip(items, columns, strict=True) if column < 0]
    if missing:
        raise ValueError(f"movie(s) {missing} are not among the model's {len(predictor.matrix.item_ids)} movies.")
    return columns


def _marked(length: int, columns: np.ndarray) -> np.ndarray:
    marked = np.zeros(length, dtype=bool)
    marked[columns] = True
    return marked


def _unknown(item_ids: np.ndarray, movies: pd.DataFrame) -> np.ndarray:
    return np.isin(item_ids, movies.item_id[movies.title == "unknown"])


def _with_titles(found: pd.DataFrame, movies: pd.DataFrame) -> pd.DataFrame:
    found = found.merge(movies[["item_id", "title", "year", "genres"]], on="item_id", how="left")
    found.insert(0, "rank", np.arange(1, len(found) + 1))
    return found[COLUMNS + [c for c in found.columns if c not in COLUMNS]]
