"""Save a trained AutoRec with everything needed to use it again, and load it safely.

A checkpoint holds plain tensors, numbers and strings only, so it loads with
``torch.load(weights_only=True)`` (no pickled code runs). It stores the recipe, the weights, the
MovieLens ids of rows and columns, the bias baseline, the training split's name and the library
version -- but not the ratings themselves: loading re-reads the training split from the data folder
(the MovieLens licence forbids redistributing them, and checkpoints get shared).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd
import torch

from . import __version__, data
from .evaluate import BiasBaseline
from .model import AutoRec
from .train import History, TrainedAutoRec, predictor_for

FORMAT = "autorec-checkpoint/1"


def checkpoint_path(name: str, data_dir: str | Path | None = None) -> Path:
    """Where notebooks keep checkpoints: ``<data_dir>/checkpoints/<name>.pt`` (never committed)."""
    return Path(data_dir if data_dir is not None else data.default_data_dir()) / "checkpoints" / f"{name}.pt"


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, not an AutoRec checkpoint, or does not fit the data."""


def save_checkpoint(trained: TrainedAutoRec, path: str | Path, split: str | None) -> Path:
    """Write ``trained`` to ``path`` atomically (a temporary file renamed into place when complete).

    ``split`` names the canonical split whose ``.base`` ratings it was trained on (e.g. "u1"), so that
    loading can rebuild its input matrix; pass None for other training sets and give ``train=`` to
    ``load_checkpoint``.
    """
    if split is not None and split not in data.SPLITS:
        raise ValueError(f"split {split!r} is not one of {data.SPLITS} (or None for a custom training set).")
    bias = trained.bias
    payload = {
        "format": FORMAT,
        "library_version": __version__,
        "recipe": dict(trained.recipe),
        "model_config": dict(trained.model.config),
        "state_dict": {k: v.detach().cpu() for k, v in trained.model.state_dict().items()},
        "by": trained.matrix.by,
        "row_ids": torch.as_tensor(trained.matrix.row_ids, dtype=torch.int64),
        "col_ids": torch.as_tensor(trained.matrix.col_ids, dtype=torch.int64),
        "n_train_ratings": trained.matrix.n_observed,
        "split": split,
        "bias": {"mean": float(bias.mean_), "user_ids": torch.as_tensor(bias.user_ids_), "user_bias": torch.as_tensor(bias.user_bias_),
                 "item_ids": torch.as_tensor(bias.item_ids_), "item_bias": torch.as_tensor(bias.item_bias_)},
        "history": trained.history.records,
        "best_epoch": trained.history.best_epoch,
        "seconds": float(trained.seconds),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            torch.save(payload, out)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path, data_path: str | Path | None = None,
                    train: pd.DataFrame | None = None, device: str | torch.device | None = None) -> TrainedAutoRec:
    """Load a checkpoint written by ``save_checkpoint`` and rebuild its model, matrix and predictor.

    The training ratings come from the checkpoint's split in ``data_path`` (default: the usual data
    folder), or from ``train`` for a custom training set.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{data.display_path(path)} does not exist. Train and save a model first "
                                "(notebook 03, or train_autorec + save_checkpoint).")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds here: all mean "not a readable checkpoint"
        raise CheckpointError(f"{data.display_path(path)} is not a readable checkpoint (truncated or corrupt: "
                              f"{type(error).__name__}). Delete it and save it again.") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{data.display_path(path)} is not an AutoRec checkpoint of format {FORMAT}.")

    if train is None:
        if payload["split"] is None:
            raise CheckpointError("this checkpoint was trained on a custom training set: pass it as train=.")
        train = data.load_split(payload["split"], data_path)[0]
    row_ids, col_ids = payload["row_ids"].numpy(), payload["col_ids"].numpy()
    users, items = (row_ids, col_ids) if payload["by"] == "user" else (col_ids, row_ids)
    try:
        matrix = data.rating_matrix(train, by=payload["by"], user_ids=users, item_ids=items)
    except ValueError as error:
        raise CheckpointError(f"the training ratings do not fit this checkpoint: {error}") from error
    if matrix.n_observed != payload["n_train_ratings"]:
        raise CheckpointError(f"the checkpoint was trained on {payload['n_train_ratings']:,} ratings but the training "
                              f"set given has {matrix.n_observed:,}: not the data it was trained on.")

    model = AutoRec(**payload["model_config"])
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as error:
        raise CheckpointError(f"{data.display_path(path)}: the weights do not match the stored model configuration.") from error
    model.to(device or "cpu").eval()

    bias = BiasBaseline()
    stored = payload["bias"]
    bias.mean_ = stored["mean"]
    bias.user_ids_, bias.user_bias_ = stored["user_ids"].numpy(), stored["user_bias"].numpy()
    bias.item_ids_, bias.item_bias_ = stored["item_ids"].numpy(), stored["item_bias"].numpy()
    recipe = payload["recipe"]
    history = History(records=payload["history"], best_epoch=payload["best_epoch"])
    return TrainedAutoRec(model, matrix, predictor_for(model, matrix, bias, recipe), bias, history, recipe, payload["seconds"])

