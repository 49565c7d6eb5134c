"""Choose the quick start's ReLU settings on validation, and compare ReLU with the sigmoid over seeds.

    python benchmarks/quickstart.py                 # about 30 minutes on 2 busy, shared cores
    python benchmarks/quickstart.py --note "..."    # a word on the machine, stored with the results
    python benchmarks/quickstart.py --reuse         # train only the runs results/quickstart.json lacks

The task asks for a U-AutoRec whose hidden layer is a ReLU and whose output is linear: notebook 00 trains
that by default. Its learning rate, λ and hidden width are chosen here *for ReLU*, with notebook 00's own loop
(full-batch Adam, at most 150 epochs, early stopping after 10 without a better validation RMSE), on u1's
training ratings, watching and choosing on the validation part that 00 draws
(``splits.validation_part(matrix, 0.05, seed=0)``). The loop is ``fit(DenseProblem(...))``, which chapter 03
shows gives 00's hand-written loop's numbers epoch by epoch. The test ratings are not read.

Then the chosen ReLU setting and the sigmoid's (the paper's activation, with the U-AutoRec recipe's λ = 100,
lr = 0.01, 500 units) are trained with three initialisation seeds each, on the same validation ratings: the
mean ± std of the best validation RMSE is what notebook 00 shows. Writes benchmarks/results/quickstart.json.

The runs are independent: ``--workers`` of them (default 2) run at a time, each on one CPU thread, so the
seconds are one thread's. The grid is small on purpose (up to a few minutes of CPU per run): learning
rates 3e-3 and 1e-2 (at 1e-3 a ReLU run was still improving near the 150th epoch, the quick start's cap),
λ from 30 to 1000, 50 to 500 units (a first grid of 200 and 500 units and λ from 100 chose its smallest
width and λ, so both were extended down).
"""

import argparse
import itertools
import json
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import torch

from autorec_utils.fetch import fetch_movielens
from autorec_utils.load import load_movies, load_users
from autorec_utils.matrix import rating_matrix
from autorec_utils.model import AutoRec
from autorec_utils.splits import load_split, validation_part
from autorec_utils.train import DenseProblem, fit, seed_everything

RESULTS = Path(__file__).parent / "results"
LOOP = {"epochs": 150, "patience": 10, "validation_fraction": 0.05, "validation_seed": 0, "split": "u1"}  # notebook 00's
GRID = {"lr": [3e-3, 1e-2], "l2": [30.0, 100.0, 300.0, 1000.0], "hidden": [50, 100, 200, 500]}  # for ReLU
SIGMOID = {"activation": "sigmoid", "lr": 0.01, "l2": 100.0, "hidden": 500}  # the U-AutoRec recipe's, 00's old default
SEEDS = [0, 1, 2]


def data():
    """u1's training ratings as notebook 00 builds them, and the validation ratings it draws."""
    path = fetch_movielens(progress=False, verbose=False).path
    train, _ = load_split(LOOP["split"], path)
    matrix = rating_matrix(train, user_ids=load_users(path).user_id, item_ids=load_movies(path).item_id)
    return matrix, validation_part(matrix, LOOP["validation_fraction"], seed=LOOP["validation_seed"])


def run(activation: str, lr: float, l2: float, hidden: int, seed: int = 0) -> dict:
    """Notebook 00's model and loop with these settings, on one thread: its best validation RMSE, best epoch, time."""
    torch.set_num_threads(1)
    matrix, validation = data()
    started = time.perf_counter()
    seed_everything(seed)
    model = AutoRec(n_inputs=matrix.shape[1], hidden=hidden, activation=activation)
    problem = DenseProblem(model, matrix, validation, l2=l2, device="cpu")
    history = fit(problem, epochs=LOOP["epochs"], lr=lr, patience=LOOP["patience"], seed=seed, progress=False)
    row = {"activation": activation, "lr": lr, "l2": l2, "hidden": hidden, "seed": seed,
           "validation RMSE": history.score, "training RMSE": history.best["train_rmse"],
           "best epoch": history.best_epoch, "epochs run": len(history.records),
           "stopped early": history.stopped_early, "seconds": round(time.perf_counter() - started, 1)}
    print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    return row


def run_all(pool, settings: list[dict], done: dict) -> list:
    """Every setting's run: from ``done`` (an earlier results file's runs, with ``--reuse``) or trained now."""
    futures = [done.get(key(setting)) or pool.submit(run, **setting) for setting in settings]
    return [future if isinstance(future, dict) else future.result() for future in futures]


def key(row: dict) -> tuple:
    return (row["activation"], float(row["lr"]), float(row["l2"]), int(row["hidden"]), int(row.get("seed", 0)))


def earlier_runs() -> dict:
    """The runs of the results file already written, by settings, when it used the same loop: a run with the
    same settings and seed gives the same numbers, so ``--reuse`` trains only what is new."""
    path = RESULTS / "quickstart.json"
    if not path.is_file():
        return {}
    earlier = json.loads(path.read_text())
    if earlier.get("loop") != LOOP:
        return {}
    return {key(row): {k: v for k, v in row.items() if k != "setting"} for row in earlier["grid"] + earlier["seeds"]}


def setting_name(row) -> str:
    return f"{row['activation']}, lr {row['lr']:g}, λ {row['l2']:g}, {row['hidden']} units"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--note", default="", help="the machine, and whether it was busy (stored with the results)")
    parser.add_argument("--workers", type=int, default=2, help="runs at a time, one thread each")
    parser.add_argument("--reuse", action="store_true", help="take the runs that results/quickstart.json already holds")
    args = parser.parse_args()
    done = earlier_runs() if args.reuse else {}
    data()  # fetch the data once, before the workers read it
    grid_settings = [{"activation": "relu", **dict(zip(GRID, values, strict=True))} for values in itertools.product(*GRID.values())]
    sigmoid_settings = [{**SIGMOID, "seed": seed} for seed in SEEDS]
    with ProcessPoolExecutor(args.workers) as pool:
        rows = run_all(pool, grid_settings + sigmoid_settings, done)  # the sigmoid's runs need no choice: alongside
        grid_rows, sigmoid_rows = rows[:len(grid_settings)], rows[len(grid_settings):]
        grid = pd.DataFrame(grid_rows)
        best = grid.loc[grid["validation RMSE"].idxmin()]
        chosen = {"activation": "relu", "lr": float(best["lr"]), "l2": float(best["l2"]), "hidden": int(best["hidden"])}
        print(f"ReLU: chosen on validation {chosen}", flush=True)
        relu_rows = [grid_rows[int(grid["validation RMSE"].idxmin())]]  # seed 0: the grid's run
        relu_rows += run_all(pool, [{**chosen, "seed": seed} for seed in SEEDS[1:]], done)
    seeds = pd.DataFrame(relu_rows + sigmoid_rows)
    seeds["setting"] = seeds.apply(setting_name, axis=1)
    summary = (seeds.groupby(["activation", "setting"], sort=False)
               .agg(**{"validation RMSE mean": ("validation RMSE", "mean"), "validation RMSE std": ("validation RMSE", "std"),
                       "best epoch mean": ("best epoch", "mean"), "seconds mean": ("seconds", "mean"),
                       "seeds": ("seed", "count")})
               .reset_index())

    pd.set_option("display.width", 160)
    print("\nReLU grid (notebook 00's loop; chosen by validation RMSE):")
    print(grid.sort_values("validation RMSE").to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"\nchosen: {setting_name(chosen)}")
    print(f"\nReLU (chosen) against sigmoid (the recipe's), {len(SEEDS)} initialisation seeds, the same validation ratings:")
    print(seeds[["setting", "seed", "validation RMSE", "best epoch", "epochs run", "seconds"]]
          .to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    for row in summary.itertuples(index=False):
        print(f"{row.setting:<40} validation RMSE {row[2]:.4f} ± {row[3]:.4f}   best epoch {row[4]:.0f}   {row[5]:.1f} s")
    RESULTS.mkdir(exist_ok=True)
    result = {"what": "notebook 00's U-AutoRec loop: ReLU's lr/λ/width chosen on the validation ratings; then ReLU "
                      "(chosen) and sigmoid (the recipe's settings) over initialisation seeds on the same validation ratings",
              "loop": LOOP, "grid_values": GRID, "chosen": chosen, "sigmoid": SIGMOID, "seed_values": SEEDS,
              "machine": {"note": args.note, "workers": args.workers, "threads_per_run": 1, "torch": torch.__version__,
                          "python": platform.python_version()},
              "grid": grid_rows, "seeds": seeds.to_dict("records"), "summary": summary.to_dict("records")}
    (RESULTS / "quickstart.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {RESULTS / 'quickstart.json'}")


if __name__ == "__main__":
    main()
