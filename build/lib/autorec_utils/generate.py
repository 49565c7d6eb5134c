"""Made-up ratings shaped like MovieLens, for trying things at a scale you cannot download (chapter 05)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .checks import check_positive_int

__all__ = ["generate_ratings"]


def generate_ratings(n_users: int, n_items: int, n_ratings: int, seed: int = 0, rank: int = 8) -> pd.DataFrame:
    """Ratings with MovieLens' long tails (a few very active users, a few very popular movies, drawn from
    Pareto weights) and whole stars from a hidden low-rank taste model, mu + b_u + b_i + p_u . q_i + noise,
    so that there is something to learn. Columns user_id, item_id, rating (ids from 1), in random order.
    ``generate_ratings(*RELEASES["ml-20m"].shape)`` makes an ML-20M-shaped set (chapter 05)."""
    for name, value in (("n_users", n_users), ("n_items", n_items), ("n_ratings", n_ratings)):
        check_positive_int(name, value)
    if n_ratings > n_users * n_items:
        raise ValueError(f"{n_ratings:,} ratings do not fit in {n_users:,} users x {n_items:,} movies.")
    rng = np.random.default_rng(seed)
    user_weight, item_weight = rng.pareto(1.5, n_users) + 1, rng.pareto(1.2, n_items) + 1
    keys = np.empty(0, dtype=np.int64)
    while len(keys) < n_ratings:  # draw (user, movie) pairs, drop repeats, top up
        draw = int((n_ratings - len(keys)) * 1.3) + 1000
        users = rng.choice(n_users, draw, p=user_weight / user_weight.sum())
        items = rng.choice(n_items, draw, p=item_weight / item_weight.sum())
        keys = np.sort(np.concatenate([keys, users.astype(np.int64) * n_items + items]))
        keys = keys[np.r_[True, keys[1:] != keys[:-1]]]  # drop repeats: np.unique's result, several times faster here
    keys = rng.permutation(keys)[:n_ratings]
    users, items = keys // n_items, keys % n_items
    del keys
    user_bias, item_bias = rng.normal(0, 0.4, n_users), rng.normal(0, 0.5, n_items)
    user_taste = rng.normal(0, 0.8 / rank**0.25, (n_users, rank)).astype(np.float32)
    item_taste = rng.normal(0, 0.8 / rank**0.25, (n_items, rank)).astype(np.float32)
    ratings = np.empty(n_ratings, dtype=np.float32)
    for chunk in np.array_split(np.arange(n_ratings), max(1, n_ratings // 2_000_000)):  # bounded memory
        u, i = users[chunk], items[chunk]
        score = 3.5 + user_bias[u] + item_bias[i] + np.einsum("ij,ij->i", user_taste[u], item_taste[i])
        ratings[chunk] = np.clip(np.rint(score + rng.normal(0, 0.6, len(chunk))), 1, 5)
    return pd.DataFrame({"user_id": users + 1, "item_id": items + 1, "rating": ratings})
