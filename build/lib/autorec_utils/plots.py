"""The figures the notebooks show more than once (matplotlib + seaborn, titled and labelled)."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import matplotlib.ticker as ticker
import numpy as np
import pandas as pd
import seaborn as sns
import torch

__all__ = ["load_results", "plot_autorec_diagram", "plot_learning_curves", "plot_long_tail", "plot_rating_matrix",
           "plot_scaling", "set_style"]


def set_style() -> None:
    """One look for every notebook (chapter 01)."""
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
    """A heatmap of ratings on the 1-5 scale; unrated cells (mask False) stay blank (chapter 01).

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
    """How many ratings each user and each movie has, sorted, on a log scale: the long tail (chapter 01)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, column, noun in ((axes[0], "user_id", "user"), (axes[1], "item_id", "movie")):
        counts = ratings.groupby(column).size().sort_values(ascending=False).to_numpy()
        ax.plot(np.arange(1, len(counts) + 1), counts, lw=2)
        ax.fill_between(np.arange(1, len(counts) + 1), counts, alpha=0.25)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))  # 1, 2, 5, 10, 20, 50 ...
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
    or a DataFrame with ratings, seconds, variant ("U"/"I") and path ("dense"/"sparse") (chapter 05)."""
    frame = pd.DataFrame(rows).dropna(subset=["seconds"])
    frame = frame.assign(model=frame.variant + "-AutoRec")
    ax = ax or plt.subplots(figsize=(7, 4.5))[1]
    paths = [path for path in ("sparse", "dense") if path in set(frame.path)]  # no legend entry without a line
    sns.lineplot(data=frame, x="ratings", y="seconds", hue="model", style="path", markers=True, dashes=True,
                 style_order=paths, ax=ax)
    ax.set(xscale="log", yscale="log", xlabel="ratings in the training matrix", ylabel="seconds per epoch", title=title)
    for axis, label in ((ax.xaxis, lambda v, _: f"{v / 1e6:g}M" if v >= 1e6 else f"{v / 1e3:g}k"),
                        (ax.yaxis, lambda v, _: f"{v:g}")):
        axis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))  # readable over a short range too
        axis.set_major_formatter(ticker.FuncFormatter(label))
        axis.set_minor_formatter(ticker.NullFormatter())
    sparse = frame[frame.path == "sparse"].sort_values("ratings")
    if len(sparse):
        start = sparse.iloc[0]
        span = np.array([sparse.ratings.min(), sparse.ratings.max()], dtype=float)
        ax.plot(span, start.seconds * span / start.ratings, ":", color="grey", label="∝ ratings (slope 1)")
    handles, labels = ax.get_legend_handles_labels()  # seaborn adds "model" and "path" as headers: drop them
    kept = [(h, label) for h, label in zip(handles, labels, strict=True) if label not in ("model", "path")]
    ax.legend(*zip(*kept, strict=True), fontsize="small")
    return ax


def plot_autorec_diagram(ratings, names, hidden: int, ax: plt.Axes | None = None) -> plt.Axes:
    """One rating vector through an AutoRec (chapter 02): the inputs (grey = unknown, fed as 0), ``hidden``
    units, and the outputs (orange = predictions for the blanks). An unknown input's encoder weights are
    drawn dotted: multiplied by 0, they contribute nothing."""
    from matplotlib.lines import Line2D

    ax = ax or plt.subplots(figsize=(12, 5.5))[1]
    n = len(ratings)
    y_io, y_hidden = np.linspace(1, 0, n), np.linspace(0.8, 0.2, hidden)
    known = [r > 0 for r in ratings]
    for y, seen in zip(y_io, known, strict=True):
        for yh in y_hidden:
            ax.plot([0, 1], [y, yh], color="C0" if seen else "0.75", ls="-" if seen else ":", lw=1, zorder=1)
            ax.plot([1, 2], [yh, y], color="0.6", lw=1, zorder=1)  # the decoder gives every output a value
    node: dict[str, Any] = {"s": 1100, "zorder": 2, "edgecolors": "black", "linewidths": 1}
    ax.scatter([0] * n, y_io, c=["C0" if s else "0.85" for s in known], **node)
    ax.scatter([1] * hidden, y_hidden, c="C2", **node)
    ax.scatter([2] * n, y_io, c=["C0" if s else "C1" for s in known], **node)
    for y, r, seen, name in zip(y_io, ratings, known, names, strict=True):
        ax.text(0, y, f"{r:.0f}" if seen else "0", ha="center", va="center", color="white" if seen else "black")
        ax.text(-0.15, y, f"{name}: {'rated' if seen else 'unknown'}", ha="right", va="center")
        ax.text(2, y, "ĥ", ha="center", va="center", color="white")
        ax.text(2.15, y, f"{name}: " + (f"compared with {r:.0f}" if seen else "prediction"), ha="left", va="center")
    layers = {0: f"input $\\mathbf{{r}}$\n(d = {n} movies)", 1: f"hidden code\n$g(V\\mathbf{{r}} + \\mu)$, k = {hidden}",
              2: "output $h(\\mathbf{r})$\n$f(W\\cdot\\mathrm{code} + \\mathbf{b})$"}
    for x, label in layers.items():
        ax.text(x, 1.12, label, ha="center", va="bottom", fontsize=11)
    for x0, label in ((0.1, "encoder  $V, \\mu$"), (1.1, "decoder  $W, \\mathbf{b}$")):
        ax.annotate("", xy=(x0 + 0.8, -0.14), xytext=(x0, -0.14), arrowprops={"arrowstyle": "-|>", "lw": 1.5, "color": "black"})
        ax.text(x0 + 0.4, -0.2, label, ha="center", va="top", fontsize=11)
    legend = (("C0", "observed rating"), ("0.85", "unknown (fed as 0)"), ("C2", "hidden unit"), ("C1", "prediction for a blank"))
    ax.legend(handles=[Line2D([], [], marker="o", ls="", ms=10, mfc=c, mec="black", label=label) for c, label in legend],
              loc="lower center", bbox_to_anchor=(0.5, -0.12), ncols=4, frameon=False)
    ax.set(xlim=(-1.1, 3.4), ylim=(-0.35, 1.3))
    ax.axis("off")
    return ax


def plot_learning_curves(curves: dict, title: str = "Learning curves", ax: plt.Axes | None = None,
                         ylim: tuple[float, float] | None = None) -> plt.Axes:
    """RMSE per epoch of one or more runs (chapter 03): ``curves`` maps a run's name to a frame with
    ``train_rmse`` and ``val_rmse`` by epoch. Each run has one colour: training solid, validation dashed,
    and a dot at its lowest validation RMSE."""
    ax = ax or plt.subplots(figsize=(8, 4))[1]
    for color, (name, frame) in zip(sns.color_palette(n_colors=max(len(curves), 1)), curves.items(), strict=False):
        ax.plot(frame.index, frame.train_rmse, color=color, lw=2, label=f"{name}: training")
        if frame.val_rmse.notna().any():
            ax.plot(frame.index, frame.val_rmse, color=color, lw=2, ls="--", label=f"{name}: validation")
            best = frame.val_rmse.idxmin()
            ax.plot([best], [frame.val_rmse[best]], "o", color=color, ms=7)
    ax.set(title=title, xlabel="epoch", ylabel="RMSE (stars)")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.legend(fontsize="small")
    return ax


def load_results(name: str) -> dict | None:
    """A results file written by a script in ``benchmarks/`` (chapters 03 and 05), its tables as
    DataFrames; None when it has not been run."""
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / name
    if not path.is_file():
        return None
    raw = json.loads(path.read_text())
    tables = {key: pd.DataFrame(value) for key, value in raw.items() if isinstance(value, list)}
    if "spread" in tables:
        tables["spread"] = tables["spread"].set_index("model")
    return {**raw, **tables}
