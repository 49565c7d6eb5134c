"""The figures the notebooks show more than once (matplotlib + seaborn, titled and labelled)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import matplotlib.ticker as ticker
import numpy as np
import pandas as pd
import seaborn as sns
import torch


def set_style() -> None:
    """One look for every notebook."""
    sns.set_theme(style="whitegrid", context="notebook", palette="deep")
    plt.rcParams.update({"figure.figsize": (8, 4), "figure.dpi": 100, "axes.titleweight": "bold"})


def plot_rating_matrix(
    values: torch.Tensor | np.ndarray,
    mask: torch.Tensor | np.ndarray | None = None,
    row_labels=None,
    col_labels=None,
    title: str = "Rating matrix",
    xlabel: str = "movie",
    ylabel: str = "user",
    annotate: bool | None = None,
    ax: plt.Axes | None = None,
) -> plt.Axes:
    """A heatmap of ratings on the 1-5 scale; unrated cells (mask False) stay blank.

    Small matrices get their numbers written in the cells.
    """
    values = np.asarray(values, dtype=float)
    mask = values > 0 if mask is None else np.asarray(mask, dtype=bool)
    if annotate is None:
        annotate = values.size <= 100
    ax = ax or plt.gca()
    sns.heatmap(
        pd.DataFrame(values, index=row_labels, columns=col_labels),
        mask=~mask, vmin=1, vmax=5, cmap="viridis", annot=annotate, fmt=".1f" if annotate else "",
        linewidths=0.5 if annotate else 0, linecolor="white", cbar_kws={"label": "rating (stars)"},
        xticklabels=col_labels is not None, yticklabels=row_labels is not None, ax=ax,
    )
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(False)
    ax.set_facecolor("#f2f2f2")  # blank (unrated) cells show as light grey
    return ax


def plot_long_tail(ratings: pd.DataFrame) -> plt.Figure:
    """How many ratings each user and each movie has, sorted, on a log scale: the long tail."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, column, noun in ((axes[0], "user_id", "user"), (axes[1], "item_id", "movie")):
        counts = ratings.groupby(column).size().sort_values(ascending=False).to_numpy()
        ax.plot(np.arange(1, len(counts) + 1), counts, lw=2)
        ax.fill_between(np.arange(1, len(counts) + 1), counts, alpha=0.25)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        ax.axhline(np.median(counts), color="grey", ls="--", lw=1, label=f"median = {np.median(counts):.0f}")
        ax.set(title=f"Ratings per {noun}", xlabel=f"{noun}s, most active first (rank)", ylabel="number of ratings (log scale)")
        ax.legend()
    fig.tight_layout()
    return fig


def plot_scaling(rows, title: str = "Training cost against the number of ratings", ax: plt.Axes | None = None) -> plt.Axes:
    """Seconds per epoch against ratings (log-log), one line per model and path, with a dotted line of
    slope 1 (cost proportional to the ratings) through the smallest sparse measurement. ``rows``: dicts
    or a DataFrame with ratings, seconds, variant ("U"/"I") and path ("dense"/"sparse")."""
    frame = pd.DataFrame(rows).dropna(subset=["seconds"])
    frame = frame.assign(model=frame.variant + "-AutoRec")
    ax = ax or plt.subplots(figsize=(7, 4.5))[1]
    sns.lineplot(data=frame, x="ratings", y="seconds", hue="model", style="path", markers=True, dashes=True,
                 style_order=["sparse", "dense"], ax=ax)
    ax.set(xscale="log", yscale="log", xlabel="ratings in the training matrix", ylabel="seconds per epoch", title=title)
    sparse = frame[frame.path == "sparse"].sort_values("ratings")
    if len(sparse):
        start = sparse.iloc[0]
        span = np.array([sparse.ratings.min(), sparse.ratings.max()], dtype=float)
        ax.plot(span, start.seconds * span / start.ratings, ":", color="grey", label="∝ ratings (slope 1)")
    ax.legend(fontsize="small")
    return ax
