"""Save a trained model -- an AutoRec or a list model -- with everything needed to use it again, and load it
safely (chapters 03-06).

A checkpoint holds plain tensors, numbers and strings only, so it loads with
``torch.load(weights_only=True)`` (no pickled code runs). It stores the recipe, the model's class and
configuration, the weights, the MovieLens ids of rows and columns, the bias baseline (rating models), the
training split's name, a fingerprint of the training ratings, the history and a checksum of it all --
but not the ratings themselves: loading re-reads them from the data folder (the MovieLens licence forbids
redistributing them, and checkpoints get shared). Loading checks every part (keys, types, shapes,
finite numbers, a recipe the package knows) and the checksum, so a hand-edited file is refused in one
line. A model trained on the sparse path (chapter 05) loads back as the sparse predictor.

The checksum guards against accidents (a truncated copy, a stray edit), not against forgery: anyone can
recompute it. What can be checked beyond it is: a rating model must reproduce, on its training ratings, the
error its history recorded (a re-signed file with a flipped ``residual`` flag does not). ``weights_only=True``
means no code runs; trust the rest of a checkpoint as you trust whoever made it.

Every family of models is saved and loaded by the same code: the recipe names its model class and
``recipes.FAMILIES`` how its predictor is made, so loading a list model or an ensemble imports its elective
module (chapters 06-07) then, and this module imports none.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
import torch

from . import __version__
from .evaluate import BiasBaseline
from .recipes import FAMILIES, Recipe, get_recipe
from .releases import SPLITS, data_root, display_path, written_atomically
from .splits import load_split
from .train import History, Trained, matrix_for

__all__ = [  # what the notebooks, the command line and users call
    "CheckpointError", "check_writable", "checkpoint_path", "fingerprint", "load_checkpoint", "load_or_train",
    "save_checkpoint",
]


VERSION = 3
FORMAT = f"autorec-checkpoint/{VERSION}"
_KEYS = {"format", "library_version", "recipe", "model", "state_dict", "by", "sparse", "row_ids", "col_ids",
         "n_train_ratings", "fingerprint", "split", "bias", "history", "seed", "seconds", "checksum"}
_BIAS_KEYS = {"mean", "user_ids", "user_bias", "item_ids", "item_bias"}
_HISTORY_KEYS = {"records", "best_epoch", "stopped_early", "watch", "mode"}


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, not a checkpoint of this package, or does not fit the data (chapter 03)."""


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


def save_checkpoint(trained: Trained, path: str | Path, split: str | None, train: pd.DataFrame | None = None) -> Path:
    """Write ``trained`` (a rating or a list model) to ``path`` atomically: a temporary file renamed into
    place when complete (chapter 03).

    ``split`` names the canonical split whose training ratings it was trained on ("u1" ... "ub", or "all"),
    so that loading can rebuild its input matrix; pass None for other training sets and give the same
    ``train=`` to ``load_checkpoint``. ``train`` (default: the ratings in the trained matrix) is fingerprinted.
    """
    if split is not None and split not in (*SPLITS, "all"):
        raise ValueError(f"split {split!r} is not one of {SPLITS} or 'all' (or None for a custom training set).")
    path = check_writable(path)
    bias, history = trained.bias, trained.history
    payload = {
        "format": FORMAT,
        "library_version": __version__,
        "recipe": {"class": type(trained.recipe).__name__, "settings": trained.recipe.settings()},
        "model": {"class": type(trained.model).__name__, "config": dict(cast(dict, trained.model.config))},
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in trained.model.state_dict().items()},
        "by": trained.matrix.by,
        "sparse": trained.matrix.sparse,
        "row_ids": torch.as_tensor(trained.matrix.row_ids, dtype=torch.int64),
        "col_ids": torch.as_tensor(trained.matrix.col_ids, dtype=torch.int64),
        "n_train_ratings": trained.matrix.n_observed,
        "fingerprint": fingerprint(trained.matrix.to_frame() if train is None else train),
        "split": split,
        "bias": None if bias is None else {
            "mean": float(bias.mean_), "user_ids": torch.as_tensor(bias.user_ids_), "user_bias": torch.as_tensor(bias.user_bias_),
            "item_ids": torch.as_tensor(bias.item_ids_), "item_bias": torch.as_tensor(bias.item_bias_)},
        "history": {"records": history.records, "best_epoch": history.best_epoch, "stopped_early": history.stopped_early,
                    "watch": history.watch, "mode": history.mode},
        "seed": int(trained.seed),
        "seconds": float(trained.seconds),
    }
    payload["checksum"] = _checksum(payload)
    path.parent.mkdir(parents=True, exist_ok=True)
    with written_atomically(path, prefix=f".{path.name}.") as out:
        torch.save(payload, out)
    return path


def load_checkpoint(path: str | Path, data_path: str | Path | None = None, train: pd.DataFrame | None = None,
                    device: str | torch.device | None = None) -> Trained:
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
    recipe = _check_payload(payload, where)
    if train is None:
        if payload["split"] is None:
            raise CheckpointError(f"{where} was trained on a custom training set: pass the same ratings as train=.")
        train = load_split(payload["split"], data_path)[0]
    if fingerprint(train) != payload["fingerprint"]:
        raise CheckpointError(f"{where} was trained on other ratings than the ones given ({len(train):,} ratings, "
                              f"split {payload['split']!r}); retrain it on this data, or give the ratings it was trained on.")
    row_ids, col_ids = payload["row_ids"].numpy(), payload["col_ids"].numpy()
    users, items = (row_ids, col_ids) if payload["by"] == "user" else (col_ids, row_ids)
    matrix = matrix_for(train, by=payload["by"], user_ids=users, item_ids=items, sparse=payload["sparse"])

    model = recipe.model_class()(**payload["model"]["config"])
    model.load_state_dict(payload["state_dict"])
    model.to(device or "cpu").eval()
    stored, bias = payload["bias"], None
    if stored is not None:
        bias = BiasBaseline()
        bias.mean_ = stored["mean"]
        bias.user_ids_, bias.user_bias_ = stored["user_ids"].numpy(), stored["user_bias"].numpy()
        bias.item_ids_, bias.item_bias_ = stored["item_ids"].numpy(), stored["item_bias"].numpy()
    predictor = FAMILIES[recipe.family].make_predictor(model, matrix, bias, recipe)
    history = History(**payload["history"])
    _check_reproduces_its_history(predictor, train, history, recipe, where)
    return Trained(model, matrix, predictor, recipe, history, payload["seconds"], payload["seed"], payload["split"], bias)


def load_or_train(path: str | Path, train: pd.DataFrame, recipe: str | Recipe, split: str | None, seed: int = 0,
                  data_path: str | Path | None = None, retrain: bool = False, progress: bool = False, user_ids=None,
                  item_ids=None, **changes) -> tuple[Trained, str]:
    """The model at ``path`` if it was trained with this recipe, these settings and seed on ``train``;
    else (or with ``retrain``) train it now -- a rating or a list recipe -- and save it there (chapter 04,
    and the command line). Returns the model and a line that says which happened and why."""
    wanted = get_recipe(recipe, **changes)
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
            old, new = loaded.recipe.settings(), wanted.settings()
            changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
            if type(loaded.recipe) is not type(wanted):
                changed = [f"a {type(loaded.recipe).__name__}"]
            reason = f"{name} was trained with other settings ({', '.join(changed) or f'seed {loaded.seed}'})"
        reason = f"{reason}; trained again"
    else:
        reason = f"trained (no {name} yet)"
    try:
        check_writable(path)  # before any training: a model that cannot be saved is found out now
    except PermissionError as error:
        if reason.endswith("trained again"):  # say both: why it was not used, and why it cannot be replaced
            raise PermissionError(f"{reason.removesuffix('; trained again')}, and {error}") from None
        raise
    trained = FAMILIES[wanted.family].train(train, wanted, seed=seed, progress=progress, user_ids=user_ids,
                                            item_ids=item_ids)
    trained.split = split
    try:
        save_checkpoint(trained, path, split=split, train=train)
    except OSError as error:  # the model is still good: say so and go on
        warnings.warn(f"the model could not be saved to {name} ({error}); it is used anyway, but not kept.", stacklevel=2)
        return trained, f"{reason} in {trained.seconds:.0f} s (not saved)"
    return trained, f"{reason} in {trained.seconds:.0f} s and saved to {name}"


# ---------------------------------------------------------------- checks on load

def _check_reproduces_its_history(predictor, train: pd.DataFrame, history: History, recipe: Recipe, where: str) -> None:
    """A rating model's RMSE on its training ratings must be close to the one recorded at its best epoch (the fitted
    and the validation ratings' RMSEs, weighted by the validation share). 0.1 stars of slack: the model now also
    reads the validation ratings; an edited setting (a flipped residual flag) misses by far more."""
    if not predictor.rates or not history.records or "train_rmse" not in history.best:
        return
    best = history.best
    recorded = [best["train_rmse"] ** 2] + ([best["val_rmse"] ** 2] if np.isfinite(best.get("val_rmse", np.nan)) else [])
    share = getattr(recipe, "validation_fraction", 0.0)
    expected = float(np.sqrt(np.average(recorded, weights=[1 - share, share][: len(recorded)])))
    now = float(np.sqrt(np.mean((predictor.predict(train.user_id.to_numpy(), train.item_id.to_numpy())
                                 - train.rating.to_numpy()) ** 2)))
    if not abs(now - expected) <= 0.1:
        raise CheckpointError(f"{where} does not predict as it did when it was saved (RMSE {now:.3f} on its training "
                              f"ratings, {expected:.3f} then): a setting was edited after training. Train it again.")


def _checksum(payload: dict) -> str:
    """SHA-256 over every part of the payload but the checksum itself, in a fixed order."""
    digest = hashlib.sha256()

    def feed(value) -> None:
        if isinstance(value, dict):
            for key in sorted(value, key=str):
                if key != "checksum":
                    digest.update(f"<{key!r}>".encode())
                    feed(value[key])
        elif isinstance(value, (list, tuple)):
            digest.update(b"[")
            for item in value:
                feed(item)
            digest.update(b"]")
        elif isinstance(value, torch.Tensor):
            digest.update(f"{value.dtype}{tuple(value.shape)}".encode())
            digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            digest.update(f"{type(value).__name__}:{value!r}".encode())

    feed(payload)
    return digest.hexdigest()


def _check_payload(payload, where: str) -> Recipe:
    """Every part there, of the right kind and shape, the numbers finite, the recipe one the package knows,
    and the checksum right. Returns the recipe."""
    again = "Save the model again (or delete the file and train it anew)."

    def refuse(problem: str) -> CheckpointError:
        return CheckpointError(f"{where} {problem}. {again}")

    _check_format(payload, where)
    missing, extra = sorted(_KEYS - set(payload)), sorted(set(payload) - _KEYS)
    if missing or extra:
        raise refuse("has been altered: " + "; ".join(
            part for part in (f"missing {missing}" if missing else "", f"unexpected {extra}" if extra else "") if part))
    recipe = _stored_recipe(payload["recipe"], refuse)
    _check_weights(payload, recipe, where, refuse)
    _check_layout(payload, payload["model"], recipe, refuse)
    _check_bias(payload["bias"], recipe, refuse)
    _check_history(payload["history"], refuse)
    if payload["checksum"] != _checksum(payload):
        raise refuse("has been altered since it was saved (its contents do not match its checksum)")
    return recipe


def _check_format(payload, where: str) -> None:
    """A checkpoint of this package, in the format this version reads."""
    if not isinstance(payload, dict) or not str(payload.get("format", "")).startswith("autorec-checkpoint/"):
        raise CheckpointError(f"{where} is not an AutoRec checkpoint.")
    version = re.fullmatch(r"autorec-checkpoint/(\d+)", payload["format"])
    if version is None or int(version[1]) < VERSION:
        raise CheckpointError(f"{where} is a checkpoint of an older format ({payload['format']}; this version reads "
                              f"{FORMAT}); train and save the model again.")
    if int(version[1]) > VERSION:
        raise CheckpointError(f"{where} was written by a newer version of autorec_utils ({payload['format']}; this one "
                              f"reads {FORMAT}); upgrade the package (git pull, then pip install -e .), or save it again "
                              "with this version.")


def _check_weights(payload, recipe: Recipe, where: str, refuse) -> None:
    """The model class the recipe trains, a configuration it accepts, and finite weights of the shapes it makes."""
    model, model_class = payload["model"], recipe.model_class()
    if not isinstance(model, dict) or set(model) != {"class", "config"} or not isinstance(model["config"], dict):
        raise refuse("has been altered: its model is not a stored model")
    if model["class"] != model_class.__name__:
        raise refuse(f"pairs a {model['class']} with a {type(recipe).__name__} (which trains a {model_class.__name__})")
    try:
        with torch.device("meta"):  # shapes only: no memory, no random weights
            expected = model_class(**model["config"]).state_dict()
    except (TypeError, ValueError) as error:
        raise refuse(f"has an invalid model configuration ({error})") from error
    weights = payload["state_dict"]
    if not isinstance(weights, dict) or set(weights) != set(expected) or any(
            not isinstance(weights[k], torch.Tensor) or weights[k].shape != v.shape for k, v in expected.items()):
        raise refuse("has weights that do not match the stored model configuration")
    if not all(torch.isfinite(w).all() for w in weights.values()):
        raise CheckpointError(f"{where} holds weights that are not finite numbers (NaN or infinity): the model diverged "
                              "or the file was altered. Train it again.")


def _stored_recipe(stored, refuse) -> Recipe:
    if not isinstance(stored, dict) or set(stored) != {"class", "settings"} or not isinstance(stored["settings"], dict):
        raise refuse("has been altered: its recipe is not a stored recipe")
    try:
        recipe = Recipe.from_settings(stored["class"], stored["settings"])
    except (TypeError, ValueError) as error:
        raise refuse(f"stores a recipe this package does not know ({error})") from error
    if set(stored["settings"]) != set(recipe.settings()):
        raise refuse(f"stores an incomplete recipe (missing {sorted(set(recipe.settings()) - set(stored['settings']))})")
    return recipe


def _check_layout(payload, model, recipe, refuse) -> None:
    row_ids, col_ids = payload["row_ids"], payload["col_ids"]
    n_inputs = model["config"].get("n_inputs", model["config"].get("n_items"))
    if not all(isinstance(ids, torch.Tensor) and ids.dim() == 1 and not ids.is_floating_point() for ids in (row_ids, col_ids)):
        raise refuse("has been altered: its row and column ids are not lists of whole numbers")
    if payload["by"] not in ("user", "item") or len(col_ids) != n_inputs or (recipe.family != "ratings" and payload["by"] != "user"):
        raise refuse("has a matrix layout that does not fit its model")
    if len(row_ids) == 0:
        raise refuse("has no rows")
    if not isinstance(payload["sparse"], bool) or payload["split"] not in (*SPLITS, "all", None) \
            or not isinstance(payload["fingerprint"], str) or not isinstance(payload["seed"], int) \
            or not isinstance(payload["seconds"], float) or not isinstance(payload["n_train_ratings"], int):
        raise refuse("has been altered: a stored setting has the wrong kind of value")


def _check_bias(bias, recipe, refuse) -> None:
    if recipe.family == "lists":
        if bias is not None:
            raise refuse("has been altered: a list model has no bias baseline")
        return
    if not isinstance(bias, dict) or set(bias) != _BIAS_KEYS:
        raise refuse(f"has been altered: its bias baseline needs exactly {sorted(_BIAS_KEYS)}")
    arrays = [bias[k] for k in ("user_ids", "user_bias", "item_ids", "item_bias")]
    if not isinstance(bias["mean"], float) or not all(isinstance(a, torch.Tensor) and a.dim() == 1 for a in arrays):
        raise refuse("has been altered: its bias baseline is not a number and four lists")
    if len(arrays[0]) != len(arrays[1]) or len(arrays[2]) != len(arrays[3]) or not (len(arrays[0]) and len(arrays[2])):
        raise refuse("has been altered: its bias baseline has ids and biases of different lengths")
    if not np.isfinite(bias["mean"]) or not all(torch.isfinite(a.double()).all() for a in arrays):
        raise refuse("has a bias baseline with numbers that are not finite (NaN or infinity)")
    if any(bool((ids.diff() <= 0).any()) for ids in (arrays[0], arrays[2])):
        raise refuse("has been altered: its bias baseline's ids are not sorted and unique")


def _check_history(history, refuse) -> None:
    if not isinstance(history, dict) or set(history) != _HISTORY_KEYS or not isinstance(history["records"], list) \
            or not isinstance(history["best_epoch"], int) or not 0 <= history["best_epoch"] <= len(history["records"]) \
            or history["mode"] not in ("min", "max") or not isinstance(history["watch"], str):
        raise refuse("has been altered: its training history is not one this package writes")
