"""Where the time of data-parallel training goes (chapter 05b, autorec_utils.ddp): seconds per epoch
of 1 and 2 processes (4 where the machine has the cores) on generated ratings of ML-1M's shape, split into
the forward and backward passes, the all-reduce of the gradients, Adam's update and the evaluation; the
bytes each step sends; and the same with DDP's gradient compression (bf16) and with larger batches.

    python benchmarks/distributed.py                   # about 5 minutes on 2 quiet cores
    python benchmarks/distributed.py --path dense --variants U

Every run trains --epochs epochs in fresh processes (1 process: what train_autorec does, with all the
cores; W processes: torchrun, each with cores / W threads) and reports the mean of the epochs after the
first (the first builds DDP's buckets). The all-reduce is timed by a DDP communication hook that waits for
its result: the time a process spends sending, receiving and waiting for the slower process, without
overlap with the backward pass. Adam's update is timed apart, after training. The CPU seconds of all the
processes together measure the work an epoch takes, which other work on the machine does not inflate as
it inflates the seconds on the clock. Threads wait passively
(OMP_WAIT_POLICY, unless set), so that other work on the machine does not turn a waiting thread into a
spinning one. The bytes are what one process puts into the all-reduce per step, one number per weight (4
bytes, 2 with bf16); a ring all-reduce sends 2 (W - 1) / W of that per process. Also printed for the
ML-20M shape (hidden 500), from the parameter counts. Writes benchmarks/results/distributed.json.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent
RECIPES = {"U": "U-AutoRec", "I": "I-AutoRec"}  # the plain ones (the residual U-AutoRec needs the dense path)


def parameter_bytes(variant: str, n_users: int, n_items: int, hidden: int, bytes_per_number: int = 4) -> int:
    """The gradient bytes of one step: one number per weight of the AutoRec that reads rows of this variant."""
    import torch

    from autorec_utils.model import AutoRec

    with torch.device("meta"):  # shapes only
        return AutoRec(n_items if variant == "U" else n_users, hidden).n_parameters * bytes_per_number


def ratings(shape: str):
    from autorec_utils.generate import generate_ratings
    from autorec_utils.releases import RELEASES

    return generate_ratings(*RELEASES[shape].shape)


def one_process(job: dict) -> dict:
    """What train_autorec does, in this process with all its threads, timed like the several processes."""
    import torch

    from autorec_utils.matrix import rating_matrix
    from autorec_utils.model import AutoRec
    from autorec_utils.recipes import get_recipe
    from autorec_utils.sparse import sparse_rating_matrix
    from autorec_utils.splits import validation_part
    from autorec_utils.train import autorec_problem, seed_everything

    recipe = get_recipe(RECIPES[job["variant"]], **settings(job, job["batch"]))
    matrix = (sparse_rating_matrix if job["path"] == "sparse" else rating_matrix)(ratings(job["shape"]), by=recipe.by)
    validation = validation_part(matrix, recipe.validation_fraction, 0)
    seed_everything(0)
    problem = autorec_problem(AutoRec(matrix.shape[1], recipe.hidden), matrix, validation, recipe.l2, recipe.batch_size,
                              device=torch.device("cpu"))
    return timed_fit(problem, recipe, [0.0])


def timed_fit(problem, recipe, waited: list[float]) -> dict:
    """fit(problem), and where its epochs went (means over the epochs after the first): the all-reduce (``waited``,
    kept by the hook), the evaluation, the optimiser's updates (timed apart, after training) and the rest: the
    forward and backward passes, and the small all-reduce of each step's loss."""
    from autorec_utils.train import fit

    spent, marks, evaluate = [0.0], [], problem.evaluate

    def timed_evaluate():
        started = time.perf_counter()
        result = evaluate()
        spent[0] += time.perf_counter() - started
        marks.append((spent[0], waited[0], time.process_time()))  # at each epoch's end
        return result

    problem.evaluate = timed_evaluate
    made = []
    optimizer = problem.optimizer
    problem.optimizer = lambda name, lr: made.append(optimizer(name, lr)) or made[0]
    history = fit(problem, recipe.epochs, recipe.lr, recipe.optimizer, recipe.patience, recipe.lr_decay, 0, False)
    epochs = len(history.records) - 1
    started = time.perf_counter()
    for _ in range(3):
        made[0].step()  # the update alone, on the last gradients: every process makes it over all the weights
    update = (time.perf_counter() - started) / 3 * problem.n_batches
    seconds = sum(r["seconds"] for r in history.records[1:]) / epochs
    evaluation, allreduce, cpu = ((marks[-1][i] - marks[0][i]) / epochs for i in (0, 1, 2))
    return {"seconds": seconds, "allreduce": allreduce, "update": update, "evaluate": evaluation,
            "compute": seconds - allreduce - update - evaluation, "cpu": cpu, "steps": problem.n_batches}


def one_of_several(job: dict) -> dict | None:
    """This process's part of a torchrun run: fit on a DistributedProblem, its all-reduce timed by a hook."""
    import torch.distributed as dist
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

    from autorec_utils.ddp import init, shard_problem
    from autorec_utils.recipes import get_recipe

    init()
    waited = [0.0]
    send = {"fp32": default_hooks.allreduce_hook, "bf16": default_hooks.bf16_compress_hook}[job["hook"]]

    def timed(group, bucket):
        started = time.perf_counter()
        future = send(group, bucket)
        future.wait()
        waited[0] += time.perf_counter() - started
        return future

    recipe = get_recipe(RECIPES[job["variant"]], **settings(job, job["batch"]))
    problem = shard_problem(ratings(job["shape"]), recipe, sparse=job["path"] == "sparse", comm_hook=timed).problem
    mine = timed_fit(problem, recipe, waited)
    everyone, rank = [None] * dist.get_world_size(), dist.get_rank()
    dist.all_gather_object(everyone, mine)  # the last collective: main ends this process with exit_worker
    if rank != 0:
        return None
    mean = {key: sum(each[key] for each in everyone) / len(everyone) for key in mine}  # the processes' mean
    return {**mean, "cpu": sum(each["cpu"] for each in everyone), "steps": mine["steps"]}  # CPU: all processes'



def settings(job: dict, batch: int) -> dict:
    return {"hidden": job["hidden"], "epochs": job["epochs"], "patience": job["epochs"], "batch_size": batch,
            "validation_fraction": 0.01}


def run(job: dict, folder: Path) -> dict:
    """One measurement in fresh processes; its result, or the last line of its error."""
    out = folder / "result.json"
    out.unlink(missing_ok=True)
    cores = os.cpu_count() or 1
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, cores // job["processes"])), "GLOO_SOCKET_IFNAME": "lo"}
    # Waiting threads sleep instead of spinning: on a busy machine two spinning threads made one process's epoch
    # 4-8x slower than one thread's (measured here), which would be the load's doing, not DDP's.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    script = [str(Path(__file__).resolve()), "--job", json.dumps(job), "--out", str(out)]
    if job["processes"] == 1:
        command = [sys.executable, *script]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                   str(job["processes"]), *script]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0 or not out.is_file():
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        return {"error": lines[-1][:160] if lines else f"exit {done.returncode}"}
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="ml-1m")
    parser.add_argument("--variants", nargs="+", default=["U", "I"], choices=list(RECIPES))
    parser.add_argument("--path", default="sparse", choices=["sparse", "dense"])
    parser.add_argument("--hidden", type=int, default=500)
    parser.add_argument("--batch", type=int, default=512, help="rows per step, all processes together")
    parser.add_argument("--larger-batch", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:  # one process of a measurement
        job = json.loads(args.job)
        result = one_process(job) if job["processes"] == 1 else one_of_several(job)
        if result is not None:
            Path(args.out).write_text(json.dumps(result))
        if job["processes"] > 1:
            from autorec_utils.ddp import exit_worker

            exit_worker(0)  # one of several processes: see exit_worker
        return

    from autorec_utils.releases import RELEASES

    cores = os.cpu_count() or 1
    counts = [n for n in (1, 2, 4) if n <= cores] or [1]
    n_users, n_items, n_ratings = RELEASES[args.shape].shape
    load = os.getloadavg()[0]  # other work on the machine distorts every figure: say how busy it was
    print(f"{args.shape}-shaped ratings ({n_users:,} users x {n_items:,} movies, {n_ratings:,} ratings), hidden {args.hidden}, "
          f"{args.path} path, {args.epochs} epochs per run, {cores} cores (load {load:.1f} before starting); processes: {counts}"
          + ("" if 4 in counts else f" (4 needs 4 cores: skipped on {cores})"), flush=True)
    plan = []
    for variant in args.variants:
        for batch in (args.batch, args.larger_batch):
            plan += [(variant, n, batch, "fp32") for n in counts]
        plan += [(variant, n, args.batch, "bf16") for n in counts if n > 1]
    rows, started = [], time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="autorec-ddp-") as folder:
        for variant, processes, batch, hook in plan:
            job = {"shape": args.shape, "variant": variant, "path": args.path, "hidden": args.hidden, "epochs": args.epochs,
                   "processes": processes, "batch": batch, "hook": hook}
            result = run(job, Path(folder))
            numbers = 2 if hook == "bf16" else 4
            row = {**{k: job[k] for k in ("variant", "processes", "batch", "hook")}, **result,
                   "mb_per_step": parameter_bytes(variant, n_users, n_items, args.hidden, numbers) / 1e6 if processes > 1 else 0.0}
            rows.append(row)
            print(f"  {row}", flush=True)
    print_table(rows, args)
    big = {variant: parameter_bytes(variant, *RELEASES["ml-20m"].shape[:2], 500) / 1e6 for variant in RECIPES}
    print(f"\nGradients per step at the ML-20M shape, hidden 500 (fp32): U-AutoRec {big['U']:.1f} MB, "
          f"I-AutoRec {big['I']:.1f} MB (bf16: half).")
    (RESULTS / "distributed.json").write_text(json.dumps({
        "settings": {"shape": args.shape, "path": args.path, "hidden": args.hidden, "epochs": args.epochs, "cores": cores,
                     "processes": counts, "minutes": round((time.perf_counter() - started) / 60, 1),
                     "load_before": round(load, 1), "load_after": round(os.getloadavg()[0], 1)},
        "rows": rows, "ml20m_mb_per_step": big}, indent=1) + "\n")


def print_table(rows: list[dict], args) -> None:
    print(f"\nSeconds per epoch, and where they went (each process's mean): forward + backward, all-reduce of the "
          f"gradients, Adam's update, evaluation; CPU: the\nCPU seconds of all processes together per epoch (the work "
          f"done, whatever else runs on the machine)\n{'variant':9} {'procs':>5} {'batch':>6} {'grads':>5} {'steps':>5} "
          f"{'s/epoch':>8} {'fwd+bwd':>8} {'all-red.':>8} {'update':>7} {'eval':>6} {'all-red.%':>9} {'MB/step':>8} "
          f"{'CPU s':>6} {'speed-up':>8}")
    single = {(r["variant"], r["batch"]): r.get("seconds") for r in rows if r["processes"] == 1}
    for r in rows:
        name = f"{r['variant']}-AutoRec"
        if "error" in r:
            print(f"{name:9} {r['processes']:>5} {r['batch']:>6} {r['hook']:>5}  failed: {r['error']}")
            continue
        base = single.get((r["variant"], r["batch"]))
        print(f"{name:9} {r['processes']:>5} {r['batch']:>6} {r['hook']:>5} {r['steps']:>5} {r['seconds']:>8.2f} "
              f"{r['compute']:>8.2f} {r['allreduce']:>8.2f} {r['update']:>7.2f} {r['evaluate']:>6.2f} "
              f"{r['allreduce'] / r['seconds']:>9.0%} {r['mb_per_step']:>8.1f} {r['cpu']:>6.2f} "
              f"{(base / r['seconds'] if base else float('nan')):>7.2f}x")


if __name__ == "__main__":
    main()
