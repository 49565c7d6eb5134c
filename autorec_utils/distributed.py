"""The command line of chapter 05b's data-parallel training (an elective): ``python -m autorec_utils.distributed``
starts the processes, each trains its rows with ``ddp.train_distributed`` (the lesson, in ``ddp.py``), and rank 0
saves the checkpoint; every fault ends in one line.

    torchrun --standalone --nproc-per-node=2 -m autorec_utils.distributed --split u1
    python -m autorec_utils.distributed --nproc-per-node=2 --split u1      # the same, with one-line errors
    # two machines: the same command on each, with --nnodes=2 --node-rank=0 (or 1) --rdzv-endpoint=HOST:29400

``--variant`` takes the letters of ``python -m autorec_utils`` (``recipes.VARIANTS``): I is I-AutoRec (the
default), U the residual U-AutoRec; L (EASE) is a list model, which this command does not train. ``--recipe``
names any rating recipe, e.g. ``--recipe U-AutoRec`` or ``--recipe "U-AutoRec (deep)"``.

Here, beside the lesson: the launcher (PyTorch's torchrun engine, with a bounded wait for the other machines),
the input checked by all processes together before training, and what happens when a process dies or stops
answering (the others stop within seconds, say so in one line, and nothing is saved).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch.distributed as dist

from .checkpoint import check_writable, checkpoint_path, save_checkpoint
from .checks import positive_int_argument
from .ddp import TIMEOUT, agree, close, exit_worker, init, say, train_distributed
from .evaluate import score
from .fetch import fetch_movielens
from .load import load_movies, load_users
from .recipes import RECIPES, VARIANTS, get_recipe
from .releases import DATA_DIR_ENV, SPLITS, display_path
from .splits import load_split
from .train import Trained

__all__ = ["launch", "main", "parse_args", "work"]  # the command line; the lesson is autorec_utils.ddp's

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
    """A --variant letter (``recipes.VARIANTS``, as ``python -m autorec_utils`` reads it) or a recipe's name, as the
    name of a rating recipe; a list model's is refused with the reason."""
    name = VARIANTS.get(text.upper(), text)
    known = {known.lower(): known for known in RECIPES}
    if name.lower() in known and known[name.lower()] not in RATING_RECIPES:
        found = known[name.lower()]
        raise argparse.ArgumentTypeError(f"{text!r} is {found}, a {RECIPES[found].family[:-1]} model: distributed "
                                         f"training takes rating recipes (I, U, {', '.join(RATING_RECIPES)})")
    if name.lower() not in known:
        raise argparse.ArgumentTypeError(f"{text!r} is not I, U or a rating recipe ({', '.join(RATING_RECIPES)})")
    return known[name.lower()]


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
                        help="I (I-AutoRec, the default), U (the residual U-AutoRec; the letters of python -m autorec_utils) "
                             "or a rating recipe's name, e.g. U-AutoRec")
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
        meeting = f"the rendezvous at {options.rdzv_endpoint}" if options.rdzv_endpoint else "the processes' rendezvous"
        print(f"error: {meeting} failed ({_first_line(error)}); start the same command on every machine, each with its "
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
        say(f"error: process {dist.get_rank()} was stopped: another process of the run failed; nothing was saved.")
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
