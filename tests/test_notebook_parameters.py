"""Students change the parameters cell and press Run All: every notebook must run to the end under other
reasonable values too (other activations, small hidden sizes, another split and user, few epochs, a
lambda list without 100). papermill injects each set; nbval (over notebooks/) runs the defaults.

The runs write their checkpoints into a scratch data folder, never over the real ones.
"""

import os
from pathlib import Path

import pytest

papermill = pytest.importorskip("papermill")

ROOT = Path(__file__).resolve().parent.parent
SMALL_MODELS = {  # notebook 04's three models, small and quick
    "U-AutoRec": {"hidden": 20, "activation": "relu", "l2": 10.0, "lr": 0.01, "epochs": 4},
    "U-AutoRec (residual)": {"hidden": 10, "activation": "elu", "l2": 1.0, "lr": 0.003, "epochs": 3},
    "I-AutoRec": {"hidden": 16, "activation": "identity", "l2": 1000.0, "lr": 0.001, "epochs": 3},
}
PARAMETER_SETS = {
    "01_data_loading": [
        {"SPLIT": "ua", "EXAMPLE_USER": 42, "SEED": 3, "HEATMAP_USERS": 10, "HEATMAP_MOVIES": 15},
        {"SPLIT": "u5", "EXAMPLE_USER": 943, "HEATMAP_USERS": 80, "HEATMAP_MOVIES": 5},
    ],
    "02_autorec_model": [
        {"ACTIVATION": "identity", "TOY_HIDDEN": 1, "HIDDEN": 20, "SEED": 5},
        {"ACTIVATION": "relu", "TOY_HIDDEN": 10, "L2": 0.0, "TOY_EPOCHS": 20, "TOY_LR": 0.1, "SPLIT": "u4"},
    ],
    "03_masked_training": [
        {"ACTIVATION": "relu", "HIDDEN": 20, "EPOCHS": 5, "PRINT_EVERY": 2, "MAX_EPOCHS": 8, "SWEEP_L2": [1.0, 10.0],
         "I_AUTOREC": {"hidden": 20, "activation": "relu", "l2": 10.0, "lr": 0.01}, "SEED": 2},
        {"VARIANT": "I", "SPLIT": "u2", "ACTIVATION": "elu", "HIDDEN": 30, "L2": 1.0, "LR": 0.003, "EPOCHS": 3,
         "MAX_EPOCHS": 5, "SWEEP_L2": [1000.0], "VALIDATION_FRACTION": 0.1},
    ],
    "04_recommendations": [
        {"SPLIT": "u2", "USER_ID": 42, "K": 5, "RELEVANT_FROM": 5, "RECOMMENDER": "U-AutoRec", "MODELS": SMALL_MODELS},
        {"RECOMMENDER": "U-AutoRec (residual)", "K": 20, "MY_RATINGS": {"Toy Story": 5}, "SIMILAR_TO": 1,
         "USER_ID": 1, "MODELS": SMALL_MODELS, "SEED": 1},
    ],
    "06_top_n_autoencoders": [
        {"HIDDEN": 16, "DROPOUTS": [0.2], "EPOCHS": 5, "EASE_L2": [10.0, 1000.0], "K": 5, "LIKED": [1, "Fargo"]},
        {"SPLIT": "u3", "RELEVANT_FROM": 5, "EPOCHS": 6, "BATCH_SIZE": 512, "LR": 0.01, "DROPOUTS": [0.0, 0.8],
         "VALIDATION_SHARE": 0.3, "EASE_L2": [300.0], "SEED": 4},
    ],
    "05_scaling_up": [
        {"HIDDEN": 100, "LARGE_EPOCHS": 5, "BATCH_SIZE": 256, "CURVE_FRACTIONS": [1 / 256, 1 / 128]},
        {"HIDDEN": 50, "LARGE_SHAPE": "ml-100k", "LARGE_EPOCHS": 3, "BATCH_SIZE": 4096, "CURVE_FRACTIONS": [1 / 512]},
    ],
}
CASES = [(name, i, parameters) for name, sets in PARAMETER_SETS.items() for i, parameters in enumerate(sets)]


@pytest.fixture(scope="module")
def scratch_data(tmp_path_factory):
    """A data folder whose raw/ is the real one (fetched once) and whose checkpoints/ is empty."""
    from autorec_utils.fetch import fetch_movielens

    real = fetch_movielens(progress=False, verbose=False).path
    folder = tmp_path_factory.mktemp("data")
    (folder / "raw").mkdir()
    os.symlink(real, folder / "raw" / "ml-100k")
    return folder


@pytest.mark.parametrize("name, index, parameters", CASES, ids=[f"{name}-{i}" for name, i, _ in CASES])
def test_notebook_runs_to_the_end_with_other_parameters(name, index, parameters, scratch_data, tmp_path):
    papermill.execute_notebook(ROOT / "notebooks" / f"{name}.ipynb", tmp_path / f"{name}.ipynb",
                               parameters={"DATA_DIR": str(scratch_data), **parameters}, cwd=str(ROOT / "notebooks"),
                               kernel_name="python3", progress_bar=False, execution_timeout=600)


def test_every_notebook_has_parameter_sets():
    assert {p.stem for p in (ROOT / "notebooks").glob("*.ipynb")} == set(PARAMETER_SETS)
    assert all(len(sets) >= 2 for sets in PARAMETER_SETS.values())
