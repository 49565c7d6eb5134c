"""Beyond one machine (chapter 05): data-parallel training with PyTorch's own engine, torchrun and
DistributedDataParallel (DDP), for the same AutoRec on the dense or the sparse path.

    torchrun --standalone --nproc-per-node=2 -m autorec_utils.distributed --split u1
    python -m autorec_utils.distributed --nproc-per-node=2 --split u1      # the same, with one-line errors
    # two machines: the same command on each, with --nnodes=2 --node-rank=0 (or 1) --rdzv-endpoint=HOST:29400

The rows (users for U-AutoRec, movies for I-AutoRec) are dealt out like cards: row i belongs to process
i % W of the W processes, which builds its matrix, its validation ratings and its copy on the device from
its own rows only. Each process runs the one training loop, ``train.fit``, on a ``DistributedProblem``,
and the run trains what one process trains with the whole batch -- the same objective, step by step:

- the same validation ratings: drawn once over all the ratings, as ``train_autorec`` draws them; each
  process keeps its rows' share;
- the same batches: every process draws the permutation of *all* rows that ``fit`` draws in one process
  (same seed), splits it into the same batches, and takes the rows it holds: step k covers the rows of
  the single process's step k (a batch of W x b rows, about b of them on each process);
- the same objective: a process's loss is the squared error of its ratings plus 1/W of the step's share of
  the penalty, so the W losses add up to the single process's. DDP averages the W gradients, so each
  process backpropagates W times its loss: the average is then the gradient of the sum. On the sparse
  path Adam adds the penalty's gradient itself (its weight decay) after the all-reduce, identically on
  every process: the whole share, once;
- the same metric: the RMSEs come from all processes' sums of squared errors and counts, so every process
  sees the same numbers, keeps the same best epoch and stops at the same one.

gloo carries the gradients on the CPU, NCCL on CUDA (chosen by ``init``; ``close`` leaves). Rank 0 writes the checkpoint,
in the one format of ``checkpoint.py``, so ``load_checkpoint`` and chapter 04 use it in a single process.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import logging
import os
import re
import signal
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel

from .checkpoint import check_writable, checkpoint_path, fingerprint, save_checkpoint
from .checks import positive_int_argument
from .evaluate import BiasBaseline, score
from .fetch import fetch_movielens
from .load import load_movies, load_users
from .matrix import fits_dense
from .model import AutoRec
from .recipes import RECIPES, AutoRecRecipe, get_recipe
from .releases import DATA_DIR_ENV, SPLITS, display_path
from .sparse import SparseProblem, SparseRatingMatrix, csr_rows, sparse_rating_matrix
from .splits import load_split, validation_part
from .train import Trained, autorec_problem, fit, predictor_for, seed_everything

__all__ = [  # what chapter 05, the command line and users call
    "DistributedProblem", "Shard", "close", "exit_worker", "init", "main", "shard_problem", "shard_rows", "train_distributed",
]

TIMEOUT = 30  # seconds a process waits in a collective for the others: a dead or stuck peer ends the run
COMM_HOOKS = ("bf16", "fp16")  # DDP's gradient compression hooks, by name


def init(timeout: float = TIMEOUT) -> torch.device:
    """Join the other processes (torchrun sets RANK, WORLD_SIZE, MASTER_ADDR/PORT) with gloo on the CPU or
    NCCL on CUDA, each process on its own GPU; returns this process's device (chapter 05). ``timeout``
    bounds every wait for the others, so a process that dies or hangs ends the run instead of freezing it."""
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=timeout))
    return device


def close() -> None:
    """Leave the process group ``init`` joined, once this process is done with it (chapter 05)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def exit_worker(code: int = 0) -> NoReturn:
    """End a process of a run with exit status ``code``: ``close``, then leave without Python's own teardown.
    gloo's threads can outlive ``destroy_process_group`` and abort the process while the interpreter shuts
    down ("terminate called without an active exception", SIGABRT): torch 2.13 did in 8 of 157 two-process
    runs here, this way in none of 100."""
    close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def shard_rows(n_rows: int, rank: int, world: int) -> torch.Tensor:
    """The rows process ``rank`` of ``world`` holds: every world-th row, from row ``rank`` (chapter 05).
    Dealt out like cards, the shards differ by one row at most, and busy and quiet rows mix."""
    return torch.arange(rank, n_rows, world)


# ---------------------------------------------------------------- the problem fit trains

class _StepLoss(nn.Module):
    """A step's loss on this process's rows, as the module DDP wraps. Its parameters are exactly what the
    optimiser updates (on the sparse path V^T, the view of V that ``encode`` reads), so DDP all-reduces
    their gradients and nothing else; the model is kept out of the module's parameters on purpose."""

    def __init__(self, problem, parameters: list[torch.Tensor]):
        super().__init__()
        self.weights = nn.ParameterList(parameters)
        self.problem = [problem]  # a list, not an attribute nn.Module would register

    def forward(self, rows) -> torch.Tensor:
        return self.problem[0].batch_loss(rows)


class DistributedProblem:
    """What ``train.fit`` trains in each process (chapter 05): ``local``, the dense or sparse problem of this
    process's rows (``shard_rows``), trained with the other processes as one problem over all the rows.

    ``batches`` gives the single process's batches of the rows this process holds, ``batch_loss`` this
    process's share of the step's objective (its value is the whole objective, the same on every process),
    and ``evaluate`` the RMSEs of all the ratings. ``comm_hook``: "bf16" or "fp16" sends the gradients in
    16 bits (DDP's compression hooks), or a hook of your own; None sends them as they are (32 bits).
    """

    def __init__(self, local, validation: torch.Tensor, batch_size: int | None = None, comm_hook=None):
        self.local, self.model, self.mode, self.device = local, local.model, local.mode, local.device
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.l2, self.comm_hook, self.ddp = local.l2, comm_hook, None
        if comm_hook is not None and not callable(comm_hook) and comm_hook not in COMM_HOOKS:
            raise ValueError(f"comm_hook={comm_hook!r} is not one of {list(COMM_HOOKS)}, a DDP hook, or None.")
        # this process's numbers of fitted and of validation ratings, and all processes' rows
        self.counts = torch.tensor([(~validation).sum(), validation.sum()], dtype=torch.float64, device=self.device)
        totals = torch.cat([self.counts, torch.tensor([local.n_rows], dtype=torch.float64, device=self.device)])
        dist.all_reduce(totals)
        self.n_rows = int(totals[2])
        self.watch = "val_rmse" if totals[1] > 0 else "train_rmse"
        # the single process's batches: every process has the same number of steps, each carrying 1/n of the penalty
        self.n_batches = local.n_batches = 1 if batch_size is None else -(-self.n_rows // batch_size)
        if isinstance(local, SparseProblem):  # its V^T, a Parameter now, so that DDP can hold it
            local.encoder_t = nn.Parameter(local.encoder_t.detach())
        self._seeded = False

    def optimizer(self, name: str, lr: float) -> torch.optim.Optimizer:
        """The local problem's optimiser; its parameters are wrapped in DDP, which all-reduces their gradients."""
        self.local.l2 = self.l2  # the whole lambda for the sparse path's Adam: its weight decay acts after the all-reduce
        optimizer = self.local.optimizer(name, lr)
        self.local.l2 = self.l2 / self.world  # each loss carries 1/W of the penalty: the W losses carry it once
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        cuda = self.device.type == "cuda"
        self.ddp = DistributedDataParallel(_StepLoss(self.local, parameters), device_ids=[self.device.index] if cuda else None,
                                           gradient_as_bucket_view=True)
        if self.comm_hook is not None:
            self.ddp.register_comm_hook(dist.group.WORLD, _named_hook(self.comm_hook))
        return optimizer

    def batches(self, generator: torch.Generator) -> list:
        if not self._seeded:  # dropout: each process its own masks (rank 0 keeps the single process's)
            torch.manual_seed(torch.initial_seed() + self.rank)
            self._seeded = True
        if self.n_batches == 1:
            return self.local.batches(generator)  # every row, in order (no permutation drawn, as in one process)
        order = torch.randperm(self.n_rows, generator=generator)  # all rows: the same draw in every process
        return [(rows[rows % self.world == self.rank] // self.world).to(self.device)
                for rows in order.tensor_split(self.n_batches)]

    def batch_loss(self, rows) -> torch.Tensor:
        """W x this process's share (for the gradient DDP averages), with the value of the whole step's objective."""
        share = self.ddp(rows)
        total = share.detach().clone()
        dist.all_reduce(total)  # the W shares: the single process's loss, the same on every process
        scaled = share * self.world
        return scaled + (total - scaled).detach()

    def evaluate(self) -> dict[str, float]:
        """The RMSEs of all processes' ratings, from their sums of squared errors and counts."""
        rmse, counts = self.local.evaluate(), self.counts.tolist()
        # a process's RMSE squared, times its number of ratings, is its sum of squared errors
        squares = [rmse["train_rmse"] ** 2 * counts[0] if counts[0] else 0.0, rmse["val_rmse"] ** 2 * counts[1] if counts[1] else 0.0]
        totals = torch.cat([torch.tensor(squares, dtype=torch.float64, device=self.device), self.counts])
        dist.all_reduce(totals)
        sums, counts = totals[:2].tolist(), totals[2:].tolist()
        train_rmse, val_rmse = ((s / c) ** 0.5 if c else float("nan") for s, c in zip(sums, counts, strict=True))
        return {"train_rmse": train_rmse, "val_rmse": val_rmse}


def _named_hook(hook):
    return {"bf16": default_hooks.bf16_compress_hook, "fp16": default_hooks.fp16_compress_hook}.get(hook, hook)


# ---------------------------------------------------------------- a whole recipe, in every process

@dataclass
class Shard:
    """This process's part of a run (chapter 05): the ``problem`` that ``fit`` trains (this process's rows),
    ``ratings``, all the ratings as a CSR index (what the shards are cut from, 12 bytes a rating), the bias
    baseline of the ratings outside validation, and the path (``sparse``)."""

    problem: DistributedProblem
    ratings: SparseRatingMatrix
    bias: BiasBaseline
    sparse: bool


def shard_problem(train: pd.DataFrame, recipe: AutoRecRecipe, user_ids=None, item_ids=None, seed: int = 0,
                  device: str | torch.device | None = None, sparse: bool | None = None, comm_hook=None,
                  progress: bool = False) -> Shard:
    """This process's ``Shard`` of training ``recipe`` on ``train`` with the other processes (chapter 05):
    every process gives the same ``train`` and settings (checked: their fingerprints must agree), and keeps
    the ratings of its rows (``shard_rows``), the validation ratings among them (drawn over all ratings, as
    ``train_autorec`` draws them) and the same initial weights. ``progress``: a line saying what it holds."""
    rank, world = dist.get_rank(), dist.get_world_size()
    users = np.unique(np.asarray(train.user_id if user_ids is None else user_ids))
    items = np.unique(np.asarray(train.item_id if item_ids is None else item_ids))
    if sparse is None:
        sparse = not fits_dense(len(users), len(items))

    def signature() -> str:  # what must be the same in every process: the ratings, the id lists, the settings
        if type(recipe) is not AutoRecRecipe:
            raise ValueError(f"distributed training takes AutoRec's recipes (U- and I-AutoRec), not a {type(recipe).__name__}.")
        if sparse and recipe.residual:
            raise ValueError("a residual recipe needs the bias baseline as a dense users x movies matrix, which the "
                             "sparse path avoids; use 'I-AutoRec' or 'U-AutoRec', or sparse=False.")
        ids = hashlib.sha256(users.astype(np.int64).tobytes() + b"|" + items.astype(np.int64).tobytes()).hexdigest()[:16]
        return json.dumps({"ratings": len(train), "fingerprint": fingerprint(train), "ids": ids, "users": len(users),
                           "movies": len(items), "recipe": recipe.settings(), "seed": seed, "sparse": sparse}, sort_keys=True)

    agree(signature, same=True)
    ratings = sparse_rating_matrix(train, by=recipe.by, user_ids=users, item_ids=items)
    what = "users" if recipe.by == "user" else "movies"
    if world > ratings.shape[0]:
        count = f"{ratings.shape[0]} {what if ratings.shape[0] > 1 else what[:-1]}"
        raise ValueError(f"{world} processes for {count}: each process needs a row of its own; run at most "
                         f"{ratings.shape[0]} (--nproc-per-node x --nnodes).")
    validation = validation_part(ratings, recipe.validation_fraction, seed)  # train_autorec's draw
    bias = BiasBaseline().fit(ratings.to_frame(keep=~validation))  # never the validation ratings
    rows = shard_rows(ratings.shape[0], rank, world)
    mine, index = csr_rows(ratings.crow, ratings.col, ratings.value, rows, ratings.shape[1])  # index: their entries
    shard = SparseRatingMatrix(mine.crow_indices(), mine.col_indices(), mine.values(), ratings.row_ids[rows.numpy()],
                               ratings.col_ids, ratings.by)
    matrix = shard if sparse else shard.to_dense()
    if progress:
        _say(f"process {rank}/{world} (pid {os.getpid()}, {dist.get_backend()}): {len(rows):,} of {ratings.shape[0]:,} "
             f"{what}, {shard.n_observed:,} of {ratings.n_observed:,} ratings")
    seed_everything(seed)  # the same initial weights in every process (DDP also copies rank 0's)
    model = AutoRec(ratings.shape[1], recipe.hidden, recipe.activation, recipe.dropout, recipe.input_dropout)
    baseline = bias.predict_matrix(matrix) if recipe.residual else None
    local = autorec_problem(model, matrix, validation[index], recipe.l2, recipe.batch_size, baseline,
                            device if device is not None else _device())
    return Shard(DistributedProblem(local, validation[index], recipe.batch_size, comm_hook), ratings, bias, sparse)


def train_distributed(train: pd.DataFrame, recipe: str | AutoRecRecipe = "I-AutoRec", user_ids=None, item_ids=None,
                      seed: int = 0, device: str | torch.device | None = None, progress: bool = True,
                      sparse: bool | None = None, comm_hook=None, **changes) -> Trained:
    """``train.train_autorec``, run by every process of a process group (``init``), each given the same
    ``train`` (chapter 05). Each process trains its rows (``shard_problem``) with the others and returns the
    same ``Trained``: the same weights and history everywhere, equal (to rounding) to what ``train_autorec``
    trains in one process with this recipe. ``recipe.batch_size`` counts the rows of a whole step, as in one
    process: each process takes about batch_size / W of them.

    During training a process holds only its rows' matrix (and their copy on the device); afterwards it
    builds the matrix of all the ratings, for the predictor and the checkpoint. ``progress``: a line per
    process saying what it holds, and rank 0's progress bar. ``comm_hook``: see ``DistributedProblem``.
    """
    started = time.perf_counter()
    recipe = get_recipe(recipe, family="ratings", **changes)
    shard = shard_problem(train, recipe, user_ids, item_ids, seed, device, sparse, comm_hook, progress)
    model = shard.problem.model
    history = fit(shard.problem, recipe.epochs, recipe.lr, recipe.optimizer, recipe.patience, recipe.lr_decay, seed,
                  progress and dist.get_rank() == 0)
    model.zero_grad(set_to_none=True)  # the gradients lived in DDP's buckets
    ratings, bias, sparse = shard.ratings, shard.bias, shard.sparse
    del shard  # this process's training state goes before the matrix of all the ratings comes
    matrix = ratings if sparse else ratings.to_dense()
    return Trained(model, matrix, predictor_for(model, matrix, bias, recipe), recipe, history,
                   time.perf_counter() - started, seed, bias=bias)


def _device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def agree(work, same: bool = False):
    """Run ``work()`` in every process; if it fails in any (bad input), every process raises the same
    ValueError, so that all stop before training and none waits for the others. ``same``: the answers (short
    strings) must also be the same everywhere (chapter 05). Returns this process's answer."""
    try:
        answer, problem = work(), None
    except (ValueError, OSError) as error:
        answer, problem = None, str(error)
    answers = [None] * dist.get_world_size()
    dist.all_gather_object(answers, (problem, answer if same else None))
    for rank, (problem, _) in enumerate(answers):
        if problem is not None:
            raise ValueError(problem if rank == 0 else f"process {rank}: {problem}")
    for rank, (_, other) in enumerate(answers):
        if other != answers[0][1]:
            raise ValueError(_mismatch(answers[0][1], other, rank))
    return answer


def _mismatch(ours: str, theirs: str, rank: int) -> str:
    try:
        ours, theirs = json.loads(ours), json.loads(theirs)
        differ = ", ".join(f"{key} {theirs[key]} instead of {ours[key]}" for key in ours if ours[key] != theirs.get(key))
    except (TypeError, ValueError, KeyError):
        differ = f"{theirs!r} instead of {ours!r}"
    return (f"process {rank} was given other data or settings than process 0 ({differ[:300]}); every process must "
            "read the same ratings with the same options (check --split, --data-dir and the data files on every machine).")


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")  # one write: the lines of several processes do not interleave
    sys.stderr.flush()


# ---------------------------------------------------------------- the command line

VARIANTS = {"I": "I-AutoRec", "U": "U-AutoRec"}
LAUNCH_OPTIONS = {"--nproc-per-node", "--nnodes", "--node-rank", "--rdzv-endpoint", "--rdzv-timeout"}
RATING_RECIPES = [name for name, recipe in RECIPES.items() if recipe.family == "ratings"]


def _one_line_parser(prog: str, **kwargs) -> argparse.ArgumentParser:
    class OneLine(argparse.ArgumentParser):
        def error(self, message: str):
            if os.environ.get("RANK", "0") == "0":  # the same mistake in every process: said once
                self.exit(2, f"{self.prog}: error: {message} (see --help)\n")
            self.exit(2)

    return OneLine(prog=prog, **kwargs)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number of seconds")
    return value


def _recipe_name(text: str) -> str:
    names = {name.lower(): name for name in RATING_RECIPES} | {k.lower(): v for k, v in VARIANTS.items()}
    if text.lower() not in names:
        raise argparse.ArgumentTypeError(f"{text!r} is not I, U or a rating recipe ({', '.join(RATING_RECIPES)})")
    return names[text.lower()]


def _launch_parser(add_help: bool = False) -> argparse.ArgumentParser:
    parser = _one_line_parser("python -m autorec_utils.distributed", add_help=add_help)
    launch = parser.add_argument_group("launching (only without torchrun; torchrun takes the same options itself)")
    launch.add_argument("--nproc-per-node", type=positive_int_argument, default=1, help="processes on this machine (default 1)")
    launch.add_argument("--nnodes", type=positive_int_argument, default=1, help="machines (default 1)")
    launch.add_argument("--node-rank", type=int, default=0, help="this machine's number, 0 ... nnodes - 1 (default 0)")
    launch.add_argument("--rdzv-endpoint", default=None, help="HOST:PORT of machine 0, where the processes meet (several machines)")
    launch.add_argument("--rdzv-timeout", type=_seconds, default=60.0, help="seconds to wait for the other machines (default 60)")
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = _launch_parser(add_help=True)
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("--recipe", "--variant", dest="recipe", type=_recipe_name, default="I-AutoRec",
                        help="I (I-AutoRec, the default), U (U-AutoRec) or a rating recipe's name")
    parser.add_argument("--split", choices=("all", *SPLITS), default="all",
                        help="train on all ratings (default) or on a canonical split's training part (then the test RMSE is printed)")
    parser.add_argument("--batch-size", type=positive_int_argument, default=None,
                        help="rows per step in each process (default: the recipe's, all rows); a step of W processes "
                             "is the single process's step with W x this batch")
    parser.add_argument("--epochs", type=positive_int_argument, default=None, help="most epochs (default: the recipe's, with early stopping)")
    parser.add_argument("--patience", type=positive_int_argument, default=None, help="epochs without a better validation RMSE before stopping")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0): the same seed gives the same weights")
    parser.add_argument("--sparse", action="store_true", help="train on chapter 05's sparse path (default: by size)")
    parser.add_argument("--checkpoint", type=lambda text: Path(text).expanduser(), default=None,
                        help="where rank 0 writes the model (default data/checkpoints/<recipe>_<split>_ddp.pt)")
    parser.add_argument("--data-dir", type=lambda text: Path(text).expanduser(), default=None,
                        help=f"data folder (default: ${DATA_DIR_ENV} or the repo's data/)")
    parser.add_argument("--timeout", type=_seconds, default=TIMEOUT,
                        help=f"seconds a process waits for the others before giving up (default {TIMEOUT})")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, no notes")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """``python -m autorec_utils.distributed``: a worker under torchrun (RANK is set), else the launcher."""
    argv = sys.argv[1:] if argv is None else argv
    return work(argv) if "RANK" in os.environ else launch(argv)


def launch(argv: list[str]) -> int:
    """Start this machine's processes with PyTorch's launcher (torchrun's engine) and end as they end: with
    their one line and exit status, or one line that says which process was lost (chapter 05)."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    options, training = _launch_parser().parse_known_args(argv)
    parse_args(training)  # a mistake in the training options: said now, once, not by every process
    if options.rdzv_endpoint is None and options.nnodes > 1:
        print("error: several machines (--nnodes) meet at --rdzv-endpoint HOST:PORT (machine 0's address).", file=sys.stderr)
        return 2
    if options.node_rank not in range(options.nnodes):
        print(f"error: --node-rank {options.node_rank} is not one of 0 ... {options.nnodes - 1} (--nnodes {options.nnodes}).", file=sys.stderr)
        return 2
    if options.node_rank > 0:  # the others wait for machine 0 -- for a bounded time
        problem = _wait_for(options.rdzv_endpoint, options.rdzv_timeout)
        if problem:
            print(f"error: cannot reach the rendezvous at {options.rdzv_endpoint} within {options.rdzv_timeout:g} s "
                  f"({problem}); start machine 0 (--node-rank 0) first, and check the address, the port and the firewall.",
                  file=sys.stderr)
            return 2
    where = (["--standalone"] if options.rdzv_endpoint is None else
             ["--nnodes", str(options.nnodes), "--node-rank", str(options.node_rank), "--rdzv-endpoint", options.rdzv_endpoint,
              "--rdzv-conf", f"timeout={int(options.rdzv_timeout)}"])
    # each process its share of the cores (torchrun would give each one thread, and say so in a warning)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // options.nproc_per_node)))
    logs = logging.getLogger("torch.distributed")
    level = logs.level
    logs.setLevel(logging.CRITICAL)  # the workers and this function say what happened, in one line
    try:
        torchrun.run(torchrun.parse_args(["--nproc-per-node", str(options.nproc_per_node), *where,
                                          "--module", "autorec_utils.distributed", *training]))
    except ChildFailedError as failed:
        rank, failure = failed.get_first_failure()
        if failure.exitcode > 0:
            return failure.exitcode  # the process said why, in one line
        print(f"error: process {rank} (pid {failure.pid}) died ({failure.signal_name()}); the run was stopped and "
              "nothing was saved.", file=sys.stderr)
        return 1
    except Exception as error:  # the launcher's own failures: the rendezvous, mostly
        where = f"the rendezvous at {options.rdzv_endpoint}" if options.rdzv_endpoint else "the processes' rendezvous"
        print(f"error: {where} failed ({_first_line(error)}); start the same command on every machine, each with its "
              "--node-rank, within --rdzv-timeout seconds of each other.", file=sys.stderr)
        return 2
    finally:
        logs.setLevel(level)
    return 0


def _wait_for(endpoint: str, timeout: float) -> str | None:
    """None once HOST:PORT accepts a connection within ``timeout`` seconds, else why not."""
    host, _, port = endpoint.rpartition(":")
    if not host or not port.isdigit():
        return f"{endpoint!r} is not HOST:PORT"
    deadline, problem = time.monotonic() + timeout, "no answer"
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=min(5.0, timeout)).close()
            return None
        except OSError as error:
            problem = error.strerror or type(error).__name__
            time.sleep(0.5)
    return problem


def work(argv: list[str]) -> int:
    """One process of the run: join the others, check the input together, train, and (rank 0) save and report."""
    args = parse_args(argv)
    rank = int(os.environ["RANK"])
    launching = sorted({a.split("=")[0] for a in argv} & LAUNCH_OPTIONS)
    if launching:
        if rank == 0:
            verb = "belongs" if len(launching) == 1 else "belong"
            print(f"error: {', '.join(launching)} {verb} to torchrun here: put {'it' if len(launching) == 1 else 'them'} "
                  "before -m autorec_utils.distributed.", file=sys.stderr)
        return 2
    joined = not dist.is_initialized()  # a process group the caller made is the caller's to end
    try:
        with _c_stderr_silenced():  # c10d's C++ logs a stack per failed try; the line below says what happened
            init(args.timeout)
    except Exception as error:  # the rendezvous: every process says why it could not join
        where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
        print(f"error: process {rank} cannot reach the rendezvous at {where} within {args.timeout:g} s "
              f"({_first_line(error)}); start process 0 first, and check MASTER_ADDR, MASTER_PORT and the firewall.",
              file=sys.stderr)
        return 2
    try:
        return _work(args, rank)
    finally:  # on every way out (the group is gone before the interpreter is)
        if joined:
            close()


def _work(args, rank: int) -> int:
    first = rank == 0
    try:
        recipe = get_recipe(args.recipe, **{k: v for k, v in (("epochs", args.epochs), ("patience", args.patience)) if v})
        if args.batch_size is not None:  # per process here; the recipe counts the rows of a whole step
            recipe = recipe.replace(batch_size=args.batch_size * dist.get_world_size())
        name = re.sub(r"[^a-z0-9]+", "_", args.recipe.lower()).strip("_")
        path = args.checkpoint or checkpoint_path(f"{name}_{args.split}_ddp", args.data_dir)
        train, test, users, movies = agree(lambda: _read(args, path if first else None))
        trained = _train(train, recipe, users, movies, args)
    except (ValueError, OSError) as error:  # bad input, found by all processes together: said once
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if first:
            print(f"error: {error}", file=sys.stderr)
        return 2
    except FloatingPointError as error:  # the loss diverged: in every process alike (it is all-reduced)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if first:
            print(f"error: {error} Nothing was saved.", file=sys.stderr)
        return 1
    except RuntimeError as error:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # one line per process, not two
        if not _lost_peer(error):
            raise  # not the collectives': a bug or the machine (out of memory, say), with its traceback
        print(f"error: process {rank} lost the other processes during training ({_first_line(error)}): one of them died "
              "or stopped answering (its own message says why); nothing was saved.", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if not first:
        return 0
    trained.split = args.split
    tested = f"; test RMSE on {args.split}: {score(trained.predictor, test)['RMSE']:.4f}" if len(test) else ""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stopped while saving: the temporary file is removed
    try:
        save_checkpoint(trained, path, split=args.split)
    except OSError as error:
        print(f"error: the model could not be saved to {display_path(path)} ({error}){tested}.", file=sys.stderr)
        return 2
    history = trained.history
    print(f"{args.recipe} trained by {dist.get_world_size()} processes ({dist.get_backend()}): {len(history.records)} "
          f"epochs (best {history.best_epoch}) in {trained.seconds:.1f} s{tested}; saved to {display_path(path)}")
    return 0


def _read(args, checkpoint: Path | None):
    """The split's training and test ratings and the full id lists; rank 0 also checks it can write ``checkpoint``."""
    folder = fetch_movielens(args.data_dir, progress=False, verbose=False).path
    train, test = load_split(args.split, folder)
    if checkpoint is not None:
        _check_can_write(checkpoint)
    return train, test, load_users(folder).user_id.to_numpy(), load_movies(folder).item_id.to_numpy()


def _check_can_write(path: Path) -> None:
    """``checkpoint.check_writable``, then a real try: a folder that is a file, or a read-only file system,
    is found out now, not after training (root passes every permission check)."""
    check_writable(path)
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    try:
        if not folder.is_dir():
            raise NotADirectoryError(f"{display_path(folder)} is a file")
        probe = folder / f".{path.name}.{os.getpid()}.probe"
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise PermissionError(f"cannot write {display_path(path)} ({error.strerror or error}); choose another --checkpoint path.") from None


def _train(train, recipe, users, movies, args) -> Trained:
    def stopped(*_):  # nothing is being written while training: saying so and leaving at once is safe
        _say(f"error: process {dist.get_rank()} was stopped: another process of the run failed; nothing was saved.")
        os._exit(1)

    signal.signal(signal.SIGTERM, stopped)  # torchrun stops the others when one dies: say so, in one line
    return train_distributed(train, recipe, user_ids=users, item_ids=movies, seed=args.seed, progress=not args.quiet,
                             sparse=True if args.sparse else None)


def _lost_peer(error: RuntimeError) -> bool:
    """Whether ``error`` comes from a collective that lost its peers (gloo raises plain RuntimeErrors)."""
    return isinstance(error, dist.DistError) or bool(re.search(
        r"gloo|nccl|connection (closed|reset|refused)|closed by peer|broken pipe|timed? ?out", str(error), re.IGNORECASE))


@contextmanager
def _c_stderr_silenced():
    """Nothing written to file descriptor 2 (where C++ logs go) while the block runs."""
    sys.stderr.flush()
    saved, nothing = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(nothing, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(nothing)


def _first_line(error: BaseException) -> str:
    """The error's kind and first sentence, without the C++ source location gloo puts first."""
    text = re.sub(r"^\[[^\]]*\]\s*", "", str(error).strip())
    text = re.split(r"(?<=\.)\s", text.splitlines()[0] if text else "", maxsplit=1)[0]
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__


if __name__ == "__main__":
    status = main()
    if "RANK" in os.environ:  # a process of a run
        exit_worker(status)
    sys.exit(status)
