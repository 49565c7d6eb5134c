"""Other parameter values for every notebook, as a student might set them: papermill injects each set
(tests/test_notebook_parameters.py), and the JupyterLab test runs every chapter with its first set
(tests/test_jupyterlab.py), which papermill then leaves to it.
"""

SMALL_MODELS = {  # notebook 04's three models, small and quick
    "U-AutoRec": {"hidden": 20, "activation": "relu", "l2": 10.0, "lr": 0.01, "epochs": 4},
    "U-AutoRec (residual)": {"hidden": 10, "activation": "elu", "l2": 1.0, "lr": 0.003, "epochs": 3},
    "I-AutoRec": {"hidden": 16, "activation": "identity", "l2": 1000.0, "lr": 0.001, "epochs": 3},
}
PARAMETER_SETS = {
    "00_quickstart": [
        {"ACTIVATION": "relu", "HIDDEN": 20, "EPOCHS": 5, "USER_ID": 42},
        {"SPLIT": "u3", "USER_ID": 1, "K": 5, "L2": 0.0, "EPOCHS": 12, "PATIENCE": 2, "LR": 0.003, "SEED": 1,
         "VALIDATION_FRACTION": 0.1},
    ],
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
    "05b_beyond_one_machine": [
        {"PROCESSES": 3, "EPOCHS": 3, "BATCH_SIZE": 128, "HIDDEN": 100},
        {"RECIPE": "U-AutoRec (residual)", "SPLIT": "u2", "EPOCHS": 2, "SEED": 3},
    ],
    "06_top_n_autoencoders": [
        {"HIDDEN": 16, "DROPOUTS": [0.2], "EPOCHS": 5, "EASE_L2": [10.0, 1000.0], "K": 5, "LIKED": [1, "Fargo"],
         "I_AUTOREC": SMALL_MODELS["I-AutoRec"]},
        {"SPLIT": "u3", "RELEVANT_FROM": 5, "EPOCHS": 6, "PATIENCE": 2, "BATCH_SIZE": 512, "LR": 0.01, "DROPOUTS": [0.0, 0.8],
         "VALIDATION_FRACTION": 0.3, "EASE_L2": [300.0], "SEED": 4, "I_AUTOREC": SMALL_MODELS["I-AutoRec"]},
    ],
    "07_reading_a_leaderboard": [
        {"TOY_EPOCHS": 10, "TOY_NOISE": 0.01, "TOY_TRIALS": 200, "SEED": 3},
        {"SPLIT": "u2", "RECIPE": "U-AutoRec (residual)", "RECIPE_CHANGES": {"patience": 30, "epochs": 40}, "TOY_MEAN": 0.95,
         "TOY_EPOCHS": 500, "TOY_NOISE": 0.0005},
    ],
    "05_scaling_up": [
        {"HIDDEN": 100, "LARGE_EPOCHS": 5, "BATCH_SIZE": 256, "CURVE_FRACTIONS": [1 / 256, 1 / 128]},
        {"HIDDEN": 50, "LARGE_SHAPE": "ml-100k", "LARGE_EPOCHS": 3, "BATCH_SIZE": 4096, "CURVE_FRACTIONS": [1 / 512]},
    ],
}
