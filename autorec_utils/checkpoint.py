"""Save a trained AutoRec with everything needed to use it again, and load it safely (chapters 03-05).

A checkpoint holds plain tensors, numbers and strings only, so it loads with
``torch.load(weights_only=True)`` (no pickled code runs). It stores the recipe, the weights, the
MovieLens ids of rows and columns, the bias baseline, the training split's name, a fingerprint of the
training ratings and the library version -- but not the ratings themselves: loading re-reads them from
the data folder (the MovieLens licence forbids redistributing them, and checkpoints get shared). A model
trained on the sparse path (chapter 05) loads back as the sparse predictor, never building users x movies.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import __version__
from .evaluate import BiasBaseline
from .matrix import rating_matrix
from .model import AutoRec
from .releases import SPLITS, data_root, display_path, written_atomically
from .sparse import SparseRatingMatrix, sparse_rating_matrix
from .splits import load_split
from .train import History, TrainedAutoRec, predictor_for, resolve_recipe, train_autorec

__all__ = [  # what the notebooks, the command line and users call
    "CheckpointError", "checkpoint_path", "load_checkpoint", "load_or_train", "save_checkpoint",
]


FORMAT = "autorec-checkpoint/2"
_KEYS = {"format", "library_version", "recipe", "seed", "model_config", "state_dict", "by", "sparse", "row_ids", "col_ids",
         "n_train_ratings", "fingerprint", "split", "bias", "history", "best_epoch", "seconds"}


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, not an AutoRec checkpoint, or does not fit the data (chapter 03)."""


def checkpoint_path(name: str, data_dir: str | Path | None = None) -> Path:
    """Where the notebooks and the command line keep checkpoints: ``<data_dir>/checkpoints/<name>.pt`` (chapter 03)."""
    return data_root(data_dir) / "checkpoints" / f"{name}.pt"


def fingerprint(ratings: pd.DataFrame) -> str:
    """A short hash of the (user, movie, rating) triples, whatever their order: which ratings a model saw
    (chapter 03)."""
    triples = ratings[["user_id", "item_id", "rating"]].to_numpy(dtype=np.float64)
    triples = triples[np.lexsort((triples[:, 1], triples[:, 0]))]
    return hashlib.sha256(np.ascontiguousarray(triples).tobytes()).hexdigest()[:16]


def check_writable(path: str | Path) -> Path:
    """Fail now, with a clear message, if ``path`` cannot receive a checkpoint -- not after an hour of
    training (chapter 03, and the command line)."""
    path = Path(path).expanduser()
    if str(path) in ("", ".") or path.is_dir():
        raise ValueError(f"{display_path(path)!r} is a folder; give the checkpoint a file name, e.g. my_model.pt.")
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise PermissionError(f"cannot write {display_path(path)} (permission denied); choose another --checkpoint path.")
    return path


def save_checkpoint(trained: TrainedAutoRec, path: str | Path, split: str | None, train: pd.DataFrame | None = None) -> Path:
    """Write ``trained`` to ``path`` atomically (a temporary file renamed into place when complete) (chapter 03).

    ``split`` names the canonical split whose training ratings it was trained on ("u1" ... "ub", or "all"),
    so that loading can rebuild its input matrix; pass None for other training sets and give the same
    ``train=`` to ``load_checkpoint``. ``train`` (default: the ratings in the trained matrix) is fingerprinted.
    """
    if split is not None and split not in (*SPLITS, "all"):
        raise ValueError(f"split {split!r} is not one of {SPLITS} or 'all' (or None for a custom training set).")
    path = check_writable(path)
    bias = trained.bias
    payload = {
        "format": FORMAT,
        "library_version": __version__,
        "recipe": dict(trained.recipe),
        "seed": int(trained.seed),
        "model_config": dict(trained.model.config),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in trained.model.state_dict().items()},
        "by": trained.matrix.by,
        "sparse": isinstance(trained.matrix, SparseRatingMatrix),
        "row_ids": torch.as_tensor(trained.matrix.row_ids, dtype=torch.int64),
        "col_ids": torch.as_tensor(trained.matrix.col_ids, dtype=torch.int64),
        "n_train_ratings": trained.matrix.n_observed,
        "fingerprint": fingerprint(trained.matrix.to_frame() if train is None else train),
        "split": split,
        "bias": {"mean": float(bias.mean_), "user_ids": torch.as_tensor(bias.user_ids_), "user_bias": torch.as_tensor(bias.user_bias_),
                 "item_ids": torch.as_tensor(bias.item_ids_), "item_bias": torch.as_tensor(bias.item_bias_)},
        "history": trained.history.records,
        "best_epoch": trained.history.best_epoch,
        "seconds": float(trained.seconds),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with written_atomically(path, prefix=f".{path.name}.") as out:
        torch.save(payload, out)
    return path


def load_checkpoint(path: str | Path, data_path: str | Path | None = None, train: pd.DataFrame | None = None,
                    device: str | torch.device | None = None) -> TrainedAutoRec:
    """Load a checkpoint written by ``save_checkpoint`` and rebuild its model, matrix and predictor (chapter 04).

    The training ratings come from the checkpoint's split in ``data_path`` (default: the usual data
    folder), or from ``train`` for a custom training set; they must be the ratings it was trained on.
    """
    path = Path(path).expanduser()
    where = display_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{where} does not exist. Train and save a model first (notebook 03, or "
                                "train_autorec + save_checkpoint).")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError as error:
        raise CheckpointError(f"{where} is not readable (permission denied); ask its owner or copy it.") from error
    except Exception as error:  # torch raises many kinds here: all mean "not a readable checkpoint"
        raise CheckpointError(f"{where} is not a readable checkpoint (truncated or corrupt: {type(error).__name__}). "
                              "Delete it and save it again.") from error
    _check_payload(payload, where)
    if train is None:
        if payload["split"] is None:
            raise CheckpointError(f"{where} was trained on a custom training set: pass the same ratings as train=.")
        train = load_split(payload["split"], data_path)[0]
    if fingerprint(train) != payload["fingerprint"]:
        raise CheckpointError(f"{where} was trained on other ratings than the ones given ({len(train):,} ratings, "
                              f"split {payload['split']!r}); retrain it on this data, or give the ratings it was trained on.")
    row_ids, col_ids = payload["row_ids"].numpy(), payload["col_ids"].numpy()
    users, items = (row_ids, col_ids) if payload["by"] == "user" else (col_ids, row_ids)
    build = sparse_rating_matrix if payload["sparse"] else rating_matrix
    matrix = build(train, by=payload["by"], user_ids=users, item_ids=items)

    model = AutoRec(**payload["model_config"])
    model.load_state_dict(payload["state_dict"])
    model.to(device or "cpu").eval()
    bias = BiasBaseline()
    stored = payload["bias"]
    bias.mean_ = stored["mean"]
    bias.user_ids_, bias.user_bias_ = stored["user_ids"].numpy(), stored["user_bias"].numpy()
    bias.item_ids_, bias.item_bias_ = stored["item_ids"].numpy(), stored["item_bias"].numpy()
    recipe = payload["recipe"]
    history = History(records=payload["history"], best_epoch=payload["best_epoch"])
    return TrainedAutoRec(model, matrix, predictor_for(model, matrix, bias, recipe), bias, history, recipe,
                          payload["seconds"], payload["seed"], payload["split"])


def load_or_train(path: str | Path, train: pd.DataFrame, recipe: str | dict, split: str | None, seed: int = 0,
                  data_path: str | Path | None = None, retrain: bool = False, progress: bool = False, user_ids=None,
                  item_ids=None, **overrides) -> tuple[TrainedAutoRec, str]:
    """The model at ``path`` if it was trained with this recipe, these settings and seed on ``train``;
    else (or with ``retrain``) train it now and save it there (chapter 04, and the command line). Returns
    the model and a line that says which happened and why."""
    wanted = resolve_recipe(recipe, overrides)
    name = display_path(path)
    if retrain:
        reason = "trained (as asked)"
    elif Path(path).expanduser().is_file():
        try:
            loaded = load_checkpoint(path, data_path=data_path, train=train)
        except CheckpointError as error:
            reason = str(error).split(";")[0]
        else:
            if loaded.recipe == wanted and loaded.seed == seed:
                return loaded, f"loaded {name}"
            changed = sorted(k for k in wanted.keys() | loaded.recipe.keys() if wanted.get(k) != loaded.recipe.get(k))
            reason = f"{name} was trained with other settings ({', '.join(changed) or f'seed {loaded.seed}'})"
        reason = f"{reason}; trained again"
    else:
        reason = f"trained (no {name} yet)"
    check_writable(path)  # before any training: a model that cannot be saved is found out now
    trained = train_autorec(train, wanted, seed=seed, progress=progress, user_ids=user_ids, item_ids=item_ids)
    trained.split = split
    try:
        save_checkpoint(trained, path, split=split, train=train)
    except OSError as error:  # the model is still good: say so and go on
        warnings.warn(f"the model could not be saved to {name} ({error}); it is used anyway, but not kept.", stacklevel=2)
        return trained, f"{reason} in {trained.seconds:.0f} s (not saved)"
    return trained, f"{reason} in {trained.seconds:.0f} s and saved to {name}"


def _check_payload(payload, where: str) -> None:
    """Every key there, of the right kind, the weights finite and shaped as the model configuration says."""
    if not isinstance(payload, dict) or not str(payload.get("format", "")).startswith("autorec-checkpoint/"):
        raise CheckpointError(f"{where} is not an AutoRec checkpoint.")
    if payload["format"] != FORMAT:
        raise CheckpointError(f"{where} is an AutoRec checkpoint of an older format ({payload['format']}); train and "
                              "save the model again.")
    missing, extra = sorted(_KEYS - set(payload)), sorted(set(payload) - _KEYS)
    if missing or extra:
        raise CheckpointError(f"{where} has been altered: " + "; ".join(
            part for part in (f"missing {missing}" if missing else "", f"unexpected {extra}" if extra else "") if part)
            + ". Save the model again.")
    try:
        with torch.device("meta"):  # shapes only: no memory, no random weights
            expected = AutoRec(**payload["model_config"]).state_dict()
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{where} has an invalid model configuration ({error}). Save the model again.") from error
    weights = payload["state_dict"]
    if not isinstance(weights, dict) or set(weights) != set(expected) or any(
            not isinstance(weights[k], torch.Tensor) or weights[k].shape != v.shape for k, v in expected.items()):
        raise CheckpointError(f"{where}: the weights do not match the stored model configuration. Save the model again.")
    if not all(torch.isfinite(w).all() for w in weights.values()):
        raise CheckpointError(f"{where} holds weights that are not finite numbers (NaN or infinity): the model diverged "
                              "or the file was altered. Train it again.")
    n_rows, n_cols = len(payload["row_ids"]), len(payload["col_ids"])
    if payload["by"] not in ("user", "item") or n_cols != payload["model_config"]["n_inputs"]:
        raise CheckpointError(f"{where}: its matrix layout does not fit its model. Save the model again.")
    if n_rows == 0:
        raise CheckpointError(f"{where} has no rows. Save the model again.")
