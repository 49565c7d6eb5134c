"""Checkpoints: round trip, atomic save, and every bad file."""

import numpy as np
import pytest
import torch

from autorec_utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from autorec_utils.load import load_movies, load_users
from autorec_utils.splits import load_split
from autorec_utils.train import train_autorec

QUICK = {"epochs": 5, "hidden": 4}


@pytest.fixture
def trained(ml_folder):
    train, _ = load_split("u1", ml_folder)
    users, movies = load_users(ml_folder).user_id, load_movies(ml_folder).item_id
    return train_autorec(train, "U-AutoRec (residual)", user_ids=users, item_ids=movies, progress=False, **QUICK)


def predictions(trained, ratings):
    return trained.predictor.predict(ratings.user_id.to_numpy(), ratings.item_id.to_numpy())


@pytest.mark.parametrize("recipe", ["U-AutoRec (residual)", "I-AutoRec"])
def test_round_trip_gives_identical_predictions(ml_folder, tmp_path, recipe):
    train, test = load_split("u1", ml_folder)
    users, movies = load_users(ml_folder).user_id, load_movies(ml_folder).item_id
    original = train_autorec(train, recipe, user_ids=users, item_ids=movies, progress=False, **QUICK)
    path = save_checkpoint(original, tmp_path / "models" / "autorec.pt", split="u1")
    assert [p.name for p in path.parent.iterdir()] == ["autorec.pt"]  # no temporary file left
    loaded = load_checkpoint(path, data_path=ml_folder)
    assert np.array_equal(predictions(loaded, test), predictions(original, test))
    assert loaded.recipe == original.recipe and loaded.matrix.by == original.matrix.by
    assert loaded.history.best_epoch == original.history.best_epoch
    assert torch.load(path, weights_only=True)["library_version"]  # loads without unpickling code


def test_custom_training_set_needs_train(trained, ml_folder, tmp_path):
    path = save_checkpoint(trained, tmp_path / "a.pt", split=None)
    with pytest.raises(CheckpointError, match="custom training set: pass the same ratings as train="):
        load_checkpoint(path)
    train, test = load_split("u1", ml_folder)
    assert np.array_equal(predictions(load_checkpoint(path, train=train), test), predictions(trained, test))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.pt does not exist\. Train and save a model first"):
        load_checkpoint(tmp_path / "nope.pt")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_or_truncated_file_is_a_clear_error(trained, tmp_path, damage):
    path = save_checkpoint(trained, tmp_path / "a.pt", split="u1")
    blob = path.read_bytes()
    path.write_bytes({"truncate": blob[: len(blob) // 2], "garbage": b"not a checkpoint at all", "empty": b""}[damage])
    with pytest.raises(CheckpointError, match=r"a\.pt is not a readable checkpoint \(truncated or corrupt"):
        load_checkpoint(path)


def test_other_torch_file_is_refused(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an AutoRec checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_mismatched_data_or_weights(trained, ml_folder, tmp_path):
    path = save_checkpoint(trained, tmp_path / "a.pt", split="u1")
    train, _ = load_split("u2", ml_folder)
    with pytest.raises(CheckpointError, match=r"was trained on other ratings than the ones given \([0-9,]+ ratings"):
        load_checkpoint(path, train=train)  # u2's training ratings, where it was trained on u1's
    payload = torch.load(path, weights_only=True)
    payload["model"]["config"]["hidden"] = 7
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="has weights that do not match the stored model configuration"):
        load_checkpoint(path, data_path=ml_folder)


def test_unknown_split_name(trained, tmp_path):
    with pytest.raises(ValueError, match="split 'u9' is not one of"):
        save_checkpoint(trained, tmp_path / "a.pt", split="u9")


@pytest.mark.parametrize("recipe, settings", [("EASE", {"l2": 10.0}), ("Mult-DAE", {"hidden": 4, "epochs": 3, "batch_size": 4}),
                                              ("Mult-VAE", {"hidden": 4, "epochs": 3, "batch_size": 4})])
def test_a_list_model_round_trips_with_the_same_checks(ml_folder, tmp_path, recipe, settings):
    from autorec_utils.checkpoint import load_or_train
    from autorec_utils.topn import train_list_model

    train, _ = load_split("u1", ml_folder)
    ids = {"user_ids": load_users(ml_folder).user_id, "item_ids": load_movies(ml_folder).item_id}
    original = train_list_model(train, recipe, progress=False, **ids, **settings)
    path = save_checkpoint(original, tmp_path / "lists.pt", split="u1")
    loaded = load_checkpoint(path, data_path=ml_folder)
    assert type(loaded.model) is type(original.model) and loaded.recipe == original.recipe
    assert np.array_equal(loaded.predictor.scores, original.predictor.scores)
    assert loaded.history.records == original.history.records and loaded.bias is None
    again, how = load_or_train(path, train, recipe, split="u1", data_path=ml_folder, **ids, **settings)
    assert how.startswith("loaded ") and np.array_equal(again.predictor.scores, original.predictor.scores)
    payload = torch.load(path, weights_only=True)
    payload["model"]["config"]["n_items"] = 5
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="has weights that do not match the stored model configuration"):
        load_checkpoint(path, data_path=ml_folder)


@pytest.mark.parametrize("recipe", ["I-AutoRec", "U-AutoRec (residual)"])
def test_a_re_signed_edit_that_changes_the_predictions_is_refused(ml_folder, tmp_path, recipe):
    """The checksum can be recomputed (it guards against accidents, not forgery); a rating model must also reproduce
    the training error its history recorded, which a flipped residual flag does not."""
    from autorec_utils.checkpoint import _checksum

    train, _ = load_split("u1", ml_folder)
    path = save_checkpoint(train_autorec(train, recipe, hidden=8, epochs=30, progress=False), tmp_path / "m.pt", "u1")
    load_checkpoint(path, data_path=ml_folder)  # as saved: loads
    payload = torch.load(path, weights_only=True)
    payload["recipe"]["settings"]["residual"] = not payload["recipe"]["settings"]["residual"]
    payload["checksum"] = _checksum(payload)  # re-signed: the checksum alone no longer sees the edit
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"does not predict as it did when it was saved \(RMSE .* then\): a setting "
                                              r"was edited after training"):
        load_checkpoint(path, data_path=ml_folder)
