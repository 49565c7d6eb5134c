"""Beyond one machine (chapter 05b, an elective): data-parallel training with PyTorch's own engine, ``torchrun``
and ``DistributedDataParallel`` (DDP), for every AutoRec recipe that ``train.train_autorec`` trains -- U- and
I-AutoRec, the residual one, chapter 07's deep ones -- on the dense or the sparse path. This module is the lesson;
``distributed.py`` beside it is the command line that runs it (launcher, one-line errors, a lost process).

    torchrun --standalone --nproc-per-node=2 -m autorec_utils.distributed --split u1

The lesson in five steps, each a function or method below:

1. **Join** (``init``): every process meets the others in a process group -- gloo on the CPU, NCCL on CUDA.
2. **Deal out the rows** (``shard_rows``, ``shard_problem``): every process builds what ``train_autorec``
   builds (``train.autorec_setup``: the matrix, the validation ratings, the bias baseline, the model with the
   same seed) and keeps row i if i % W is its rank -- users for U-AutoRec, movies for I-AutoRec.
3. **Wrap in DDP** (``DistributedProblem.optimizer``): the weights the optimiser updates go into a
   ``DistributedDataParallel`` module, which averages their gradients over the W processes after every backward.
4. **Scale the loss** (``DistributedProblem.batch_loss``): a process's loss is the squared error of its rows plus
   1/W of the step's penalty (the local problem's ``penalty_share``), so the W losses add up to the single
   process's; it backpropagates W times that, so DDP's *average* is the gradient of the *sum*. Every process
   draws the single process's batches and takes the rows it holds, so step k is the single process's step k.
5. **All-reduce the metrics** (``DistributedProblem.evaluate``): the RMSEs come from all processes' sums of
   squared errors and counts, so every process sees the same numbers and stops at the same epoch.

``train.fit`` trains the ``DistributedProblem`` -- still one training loop -- and every process ends with the
same weights, equal (to rounding) to one process's. Rank 0 writes the checkpoint in ``checkpoint.py``'s one
format, so chapter 04 loads it in a single process.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn, cast

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel

from .checkpoint import fingerprint
from .evaluate import BiasBaseline
from .matrix import MatrixAxes, RatingMatrix, fits_dense
from .recipes import AutoRecRecipe, get_recipe
from .sparse import SparseProblem, SparseRatingMatrix, csr_rows
from .train import DenseProblem, Trained, autorec_problem, autorec_setup, fit, predictor_for

__all__ = [  # what chapter 05b, the command line and users call
    "COMM_HOOKS", "TIMEOUT", "DistributedProblem", "Shard", "agree", "c_stderr_silenced", "close", "exit_worker",
    "first_line", "init", "lost_peer", "say", "shard_problem", "shard_rows", "train_distributed",
]

TIMEOUT = 30  # seconds a process waits in a collective for the others: a dead or stuck peer ends the run
COMM_HOOKS = {"bf16": default_hooks.bf16_compress_hook, "fp16": default_hooks.fp16_compress_hook}  # DDP's, by name


# ---------------------------------------------------------------- 1. join, and leave

def init(timeout: float = TIMEOUT) -> torch.device:
    """Join the other processes (torchrun sets RANK, WORLD_SIZE, MASTER_ADDR/PORT) with gloo on the CPU or
    NCCL on CUDA, each process on its own GPU; returns this process's device (chapter 05b). ``timeout``
    bounds every wait for the others, so a process that dies or hangs ends the run instead of freezing it."""
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=timeout))
    return device


def close() -> None:
    """Leave the process group ``init`` joined, once this process is done with it (chapter 05b)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def exit_worker(code: int = 0) -> NoReturn:
    """End a process of a run with exit status ``code``: ``close``, then leave without Python's own teardown.
    gloo's threads can outlive ``destroy_process_group`` and abort the process while the interpreter shuts
    down ("terminate called without an active exception", SIGABRT): torch 2.13 did in 8 of 157 two-process
    runs here, this way in none of 100 (chapter 05b)."""
    close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# ---------------------------------------------------------------- when a process cannot go on: the one line it says

def lost_peer(error: RuntimeError) -> bool:
    """Whether ``error`` comes from a collective that lost its peers (gloo raises plain RuntimeErrors)."""
    return isinstance(error, dist.DistError) or bool(re.search(
        r"gloo|nccl|connection (closed|reset|refused)|closed by peer|broken pipe|timed? ?out", str(error), re.IGNORECASE))


@contextmanager
def c_stderr_silenced() -> Iterator[None]:
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


def first_line(error: BaseException) -> str:
    """The error's kind and first sentence, without the C++ source location gloo puts first."""
    text = re.sub(r"^\[[^\]]*\]\s*", "", str(error).strip())
    text = re.split(r"(?<=\.)\s", text.splitlines()[0] if text else "", maxsplit=1)[0]
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__


# ---------------------------------------------------------------- 2. deal out the rows

def shard_rows(n_rows: int, rank: int, world: int) -> torch.Tensor:
    """The rows process ``rank`` of ``world`` holds: every world-th row, from row ``rank`` (chapter 05b).
    Dealt out like cards, the shards differ by one row at most, and busy and quiet rows mix."""
    return torch.arange(rank, n_rows, world)


def rows_of(matrix: MatrixAxes, validation: torch.Tensor, rows: torch.Tensor) -> tuple[MatrixAxes, torch.Tensor]:
    """Some ``rows`` (ascending) of a dense or sparse rating matrix, as a matrix of the same kind, and the
    validation flags of their ratings (``validation``: one per rating of ``matrix``, row-major)."""
    if isinstance(matrix, SparseRatingMatrix):
        part, index = csr_rows(matrix.crow, matrix.col, matrix.value, rows, matrix.shape[1])  # index: their entries
        return SparseRatingMatrix(part.crow_indices(), part.col_indices(), part.values(), matrix.row_ids[rows.numpy()],
                                  matrix.col_ids, matrix.by), validation[index]
    assert isinstance(matrix, RatingMatrix)
    number = torch.zeros(matrix.shape, dtype=torch.long)  # each rating's place in row-major order
    number[matrix.mask] = torch.arange(matrix.n_observed)
    return (RatingMatrix(matrix.values[rows], matrix.mask[rows], matrix.row_ids[rows.numpy()], matrix.col_ids, matrix.by),
            validation[number[rows][matrix.mask[rows]]])


# ---------------------------------------------------------------- 3-5. the problem fit trains

class _StepLoss(nn.Module):
    """A step's loss on this process's rows, as the module DDP wraps. Its parameters are exactly what the
    optimiser updates (on the sparse path V^T, the view of V that ``encode`` reads), so DDP all-reduces
    their gradients and nothing else; the model is kept out of the module's parameters on purpose."""

    def __init__(self, problem: DenseProblem | SparseProblem, parameters: list[torch.Tensor]):
        super().__init__()
        self.weights = nn.ParameterList(parameters)
        self.problem = [problem]  # a list, not an attribute nn.Module would register

    def forward(self, rows) -> torch.Tensor:
        return self.problem[0].batch_loss(rows)


class DistributedProblem:
    """What ``train.fit`` trains in each process (chapter 05b): ``local``, the dense or sparse problem of this
    process's rows (``shard_rows``), trained with the other processes as one problem over all the rows.

    ``local`` carries 1/W of the penalty (``penalty_share=1 / W``) and the single process's number of steps per
    epoch (``n_batches``); ``validation`` flags its ratings held back. ``batches`` gives the single process's
    batches of the rows this process holds, ``batch_loss`` this process's share of the step's objective (its
    value is the whole objective, the same on every process), and ``evaluate`` the RMSEs of all the ratings.
    ``comm_hook``: "bf16" or "fp16" sends the gradients in 16 bits (DDP's compression hooks), or a hook of your
    own; None sends them as they are (32 bits).
    """

    def __init__(self, local: DenseProblem | SparseProblem, validation: torch.Tensor, comm_hook: str | Callable | None = None):
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        if local.penalty_share != 1 / self.world:
            raise ValueError(f"the local problem carries {local.penalty_share:g} of the penalty; with {self.world} processes "
                             f"each carries 1/{self.world}: build it with penalty_share=1 / {self.world}.")
        if comm_hook is not None and not callable(comm_hook) and comm_hook not in COMM_HOOKS:
            raise ValueError(f"comm_hook={comm_hook!r} is not one of {list(COMM_HOOKS)}, a DDP hook, or None.")
        self.local, self.model, self.device = local, local.model, local.device
        self.mode, self.n_batches, self.comm_hook = local.mode, local.n_batches, comm_hook
        self.ddp: DistributedDataParallel | None = None
        # this process's numbers of fitted and of validation ratings, and all processes' rows
        self.counts = torch.tensor([(~validation).sum(), validation.sum()], dtype=torch.float64, device=self.device)
        totals = torch.cat([self.counts, torch.tensor([local.n_rows], dtype=torch.float64, device=self.device)])
        dist.all_reduce(totals)
        self.n_rows = int(totals[2])
        self.watch = "val_rmse" if totals[1] > 0 else "train_rmse"
        self._seeded = False

    def optimizer(self, name: str, lr: float) -> torch.optim.Optimizer:
        """The local problem's optimiser; the weights it updates are wrapped in DDP, which averages their gradients."""
        optimizer = self.local.optimizer(name, lr)
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        cuda = self.device.type == "cuda"
        self.ddp = DistributedDataParallel(_StepLoss(self.local, parameters), device_ids=[self.device.index] if cuda else None,
                                           gradient_as_bucket_view=True)
        if self.comm_hook is not None:
            hook = COMM_HOOKS[self.comm_hook] if isinstance(self.comm_hook, str) else self.comm_hook
            self.ddp.register_comm_hook(dist.group.WORLD, hook)
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
        assert self.ddp is not None, "call optimizer() first: it wraps the weights in DDP"
        share = self.ddp(rows)  # this process's rows' squared error + 1/W of the step's penalty
        total = share.detach().clone()
        dist.all_reduce(total)  # the W shares: the single process's loss, the same on every process
        scaled = share * self.world  # DDP averages the W gradients: the average of W x the shares is their sum's
        return total + (scaled - scaled.detach())  # the value: exactly the total; the gradient: the scaled share's

    def evaluate(self) -> dict[str, float]:
        """The RMSEs of all processes' ratings, from their sums of squared errors and counts."""
        rmse, counts = self.local.evaluate(), self.counts.tolist()
        # a process's RMSE squared, times its number of ratings, is its sum of squared errors
        squares = [rmse[key] ** 2 * count if count else 0.0
                   for key, count in zip(("train_rmse", "val_rmse"), counts, strict=True)]
        totals = torch.cat([torch.tensor(squares, dtype=torch.float64, device=self.device), self.counts])
        dist.all_reduce(totals)
        sums, counts = totals[:2].tolist(), totals[2:].tolist()
        train_rmse, val_rmse = ((s / c) ** 0.5 if c else float("nan") for s, c in zip(sums, counts, strict=True))
        return {"train_rmse": train_rmse, "val_rmse": val_rmse}


# ---------------------------------------------------------------- a whole recipe, in every process

@dataclass
class Shard:
    """This process's part of a run (chapter 05b): the ``problem`` that ``fit`` trains (this process's rows),
    and what the predictor needs afterwards: ``matrix``, all the ratings, and the bias baseline of those
    outside validation."""

    problem: DistributedProblem
    matrix: MatrixAxes
    bias: BiasBaseline


def shard_problem(train: pd.DataFrame, recipe: AutoRecRecipe, user_ids=None, item_ids=None, seed: int = 0,
                  device: str | torch.device | None = None, sparse: bool | None = None,
                  comm_hook: str | Callable | None = None, progress: bool = False) -> Shard:
    """This process's ``Shard`` of training ``recipe`` on ``train`` with the other processes (chapter 05b):
    every process gives the same ``train`` and settings (checked: their fingerprints must agree), builds what
    ``train.autorec_setup`` builds for one process (so the same validation ratings and initial weights) and keeps
    the rows it holds (``shard_rows``). ``progress``: a line saying what it holds."""
    rank, world = dist.get_rank(), dist.get_world_size()
    users = np.unique(np.asarray(train.user_id if user_ids is None else user_ids))
    items = np.unique(np.asarray(train.item_id if item_ids is None else item_ids))
    sparse = not fits_dense(len(users), len(items)) if sparse is None else sparse

    def signature() -> str:  # what must be the same in every process: the ratings, the id lists, the settings
        ids = hashlib.sha256(users.astype(np.int64).tobytes() + b"|" + items.astype(np.int64).tobytes()).hexdigest()[:16]
        return json.dumps({"ratings": len(train), "fingerprint": fingerprint(train), "ids": ids, "users": len(users),
                           "movies": len(items), "recipe": [type(recipe).__name__, recipe.settings()], "seed": seed,
                           "sparse": sparse}, sort_keys=True)

    agree(signature, same=True)
    n_rows, what = (len(users), "users") if recipe.by == "user" else (len(items), "movies")
    if world > n_rows:
        raise ValueError(f"{world} processes for {n_rows} {what if n_rows > 1 else what[:-1]}: each process needs a row "
                         f"of its own; run at most {n_rows} (--nproc-per-node x --nnodes).")
    matrix, validation, bias, model, baseline = agree(lambda: autorec_setup(train, recipe, users, items, seed, sparse=sparse))
    rows = shard_rows(n_rows, rank, world)
    mine, held_back = rows_of(matrix, validation, rows)
    if progress:
        say(f"process {rank}/{world} (pid {os.getpid()}, {dist.get_backend()}): {len(rows):,} of {n_rows:,} "
            f"{what}, {mine.n_observed:,} of {matrix.n_observed:,} ratings")
    steps = 1 if recipe.batch_size is None else -(-n_rows // recipe.batch_size)  # the single process's
    local = autorec_problem(model, mine, held_back, recipe.l2, recipe.batch_size, None if baseline is None else baseline[rows],
                            device if device is not None else _device(), penalty_share=1 / world, n_batches=steps)
    return Shard(DistributedProblem(local, held_back, comm_hook), matrix, bias)


def train_distributed(train: pd.DataFrame, recipe: str | AutoRecRecipe = "I-AutoRec", user_ids=None, item_ids=None,
                      seed: int = 0, device: str | torch.device | None = None, progress: bool = True,
                      sparse: bool | None = None, comm_hook: str | Callable | None = None, **changes) -> Trained:
    """``train.train_autorec``, run by every process of a process group (``init``), each given the same
    ``train`` (chapter 05b). Each process trains its rows (``shard_problem``) with the others and returns the
    same ``Trained``: the same weights and history everywhere, equal (to rounding) to what ``train_autorec``
    trains in one process with this recipe. ``recipe.batch_size`` counts the rows of a whole step, as in one
    process: each process takes about batch_size / W of them. ``progress``: a line per process saying what it
    holds, and rank 0's progress bar. ``comm_hook``: see ``DistributedProblem``.
    """
    started = time.perf_counter()
    recipe = cast(AutoRecRecipe, get_recipe(recipe, family="ratings", **changes))  # or its DeepAutoRecRecipe
    shard = shard_problem(train, recipe, user_ids, item_ids, seed, device, sparse, comm_hook, progress)
    model = shard.problem.model
    history = fit(shard.problem, recipe.epochs, recipe.lr, recipe.optimizer, recipe.patience, recipe.lr_decay, seed,
                  progress and dist.get_rank() == 0)
    model.zero_grad(set_to_none=True)  # the gradients lived in DDP's buckets
    return Trained(model, shard.matrix, predictor_for(model, shard.matrix, shard.bias, recipe), recipe, history,
                   time.perf_counter() - started, seed, bias=shard.bias)


def _device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def agree(work: Callable[[], Any], same: bool = False) -> Any:
    """Run ``work()`` in every process; if it fails in any (bad input), every process raises the same
    ValueError, so that all stop before training and none waits for the others. ``same``: the answers (short
    strings) must also be the same everywhere (chapter 05b). Returns this process's answer."""
    try:
        answer, problem = work(), None
    except (ValueError, OSError) as error:
        answer, problem = None, str(error)
    answers: list[Any] = [None] * dist.get_world_size()
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
        mine, others = json.loads(ours), json.loads(theirs)
        differ = ", ".join(f"{key} {others[key]} instead of {mine[key]}" for key in mine if mine[key] != others.get(key))
    except (TypeError, ValueError, KeyError):
        differ = f"{theirs!r} instead of {ours!r}"
    return (f"process {rank} was given other data or settings than process 0 ({differ[:300]}); every process must "
            "read the same ratings with the same options (check --split, --data-dir and the data files on every machine).")


def say(line: str) -> None:
    """Write ``line`` to stderr in one write, so that the lines of several processes do not interleave."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
