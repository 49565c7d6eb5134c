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
the input checked by all processes together before training, and what happens when a process dies, stops
answering or is interrupted (Ctrl-C, SIGTERM): every process stops within seconds, one line says why, nothing is saved.
"""

# ruff: noqa: E402 (Ctrl-C is handled before torch is imported: see the block after the first imports)
from __future__ import annotations

import os
import signal
import sys

LAUNCHED = "AUTOREC_DISTRIBUTED_LAUNCHER"  # set by launch() for its processes (its pid): it says why a run ended
_SAVING = [False]  # rank 0 is writing the checkpoint: a signal then undoes the write before the process leaves


def _speaks() -> bool:
    """Whether this process says the run's one-line errors: each machine's first (LOCAL_RANK 0), so all terminals do."""
    return os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")) == "0"


def _on_signal(signum: int, _frame=None) -> None:
    """SIGINT (Ctrl-C) or SIGTERM, in the launcher until torchrun takes them over, or in a process of a run (torchrun
    passes both on, and sends SIGTERM to the others when one fails): one line at most, and out at once, no traceback."""
    rank, name = os.environ.get("RANK"), signal.Signals(signum).name
    if rank is None:  # the launcher, before its processes started
        sys.stderr.write(f"error: interrupted ({name}); nothing was saved.\n")
    elif _speaks() and not os.environ.get(LAUNCHED):  # under torchrun itself
        how = "interrupted (SIGINT)" if signum == signal.SIGINT else (
            f"stopped ({name}: the run was interrupted, or another of its processes failed)")
        sys.stderr.write(f"error: process {rank} was {how}; nothing was saved.\n")
    sys.stderr.flush()
    if _SAVING[0]:
        raise SystemExit(128 + signum)  # the half-written checkpoint is removed on the way out
    os._exit(128 + signum)


if __name__ == "__main__":  # from here on, even while torch is imported (seconds, on a busy machine)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    if "RANK" in os.environ and os.environ.get(LAUNCHED) and sys.platform.startswith("linux"):
        import ctypes  # a process launch() started ends with the launcher, however that ends (killed, say)

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if str(os.getppid()) != os.environ[LAUNCHED]:  # gone already
            os._exit(128 + signal.SIGTERM)

import argparse
import errno
import logging
import re
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch.distributed as dist

from .checkpoint import check_writable, checkpoint_path, save_checkpoint
from .checks import positive_int_argument
from .ddp import TIMEOUT, agree, c_stderr_silenced, close, exit_worker, first_line, init, lost_peer, train_distributed
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
            if _speaks():  # the same mistake in every process: said once on each machine
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
    their one line and exit status, or one line that says which process was lost or that the run was
    interrupted (chapter 05)."""
    from torch.distributed import run as torchrun

    options, training = _launch_parser().parse_known_args(argv)
    parse_args(training)  # a mistake in the training options: said now, once, not by every process
    problem = _launch_problem(options)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    where = (["--standalone"] if options.rdzv_endpoint is None else
             ["--nnodes", str(options.nnodes), "--node-rank", str(options.node_rank), "--rdzv-endpoint", options.rdzv_endpoint,
              "--rdzv-conf", f"timeout={int(options.rdzv_timeout)}"])
    with _launching(options.nproc_per_node):
        try:
            torchrun.run(torchrun.parse_args(["--nproc-per-node", str(options.nproc_per_node), *where,
                                              "--module", "autorec_utils.distributed", *training]))
        except (Exception, KeyboardInterrupt) as error:  # torchrun raises SignalException on SIGINT and SIGTERM
            return _ended(error, options.rdzv_endpoint)
    return 0


def _launch_problem(options: argparse.Namespace) -> str | None:
    """Why the launcher cannot start, found before it starts anything: the options; on machine 0, its port taken
    by another program; on the others, machine 0 not answering within --rdzv-timeout."""
    endpoint = options.rdzv_endpoint
    if endpoint is None:
        return "several machines (--nnodes) meet at --rdzv-endpoint HOST:PORT (machine 0's address)." if options.nnodes > 1 else None
    if options.node_rank not in range(options.nnodes):
        return f"--node-rank {options.node_rank} is not one of 0 ... {options.nnodes - 1} (--nnodes {options.nnodes})."
    host, _, port = endpoint.rpartition(":")
    if not host or not port.isdigit():
        return f"--rdzv-endpoint {endpoint!r} is not HOST:PORT (machine 0's address and a free port there)."
    if options.node_rank == 0:  # machine 0 hosts the rendezvous: is the port free, if the host is this machine?
        try:
            socket.create_server((host.strip("[]"), int(port))).close()  # with SO_REUSEADDR, as the rendezvous' own
        except OSError as error:
            return _busy_line(host, port) if error.errno == errno.EADDRINUSE else None  # else: another machine's
        return None
    deadline, problem = time.monotonic() + options.rdzv_timeout, "no answer"  # the others wait for machine 0
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=min(5.0, options.rdzv_timeout)).close()
            return None
        except OSError as error:
            problem = error.strerror or type(error).__name__
            time.sleep(0.5)
    return (f"cannot reach the rendezvous at {endpoint} within {options.rdzv_timeout:g} s ({problem}); start machine 0 "
            "(--node-rank 0) first, and check the address, the port and the firewall.")


def _busy_line(host: str, port: str) -> str:
    return (f"port {port} on {host} is busy (another program holds it): pick another with --rdzv-endpoint "
            f"{host}:OTHER_PORT, the same on every machine.")


@contextmanager
def _launching(nproc: int):
    """While torchrun runs this machine's processes: each has its share of the cores (torchrun would give each one
    thread, and say so in a warning), they leave their one-line errors to the launcher (LAUNCHED) and end with it,
    one that does not stop within 5 s of a signal is killed, and torchrun's own logs are quiet."""
    environment, disabled = os.environ.copy(), logging.root.manager.disable
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    os.environ.setdefault("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", "5")  # torchrun's default: 30 s
    os.environ[LAUNCHED] = str(os.getpid())
    logging.disable(logging.CRITICAL)  # the workers and this function say what happened, in one line
    try:
        yield
    finally:
        logging.disable(disabled)
        os.environ.clear()
        os.environ.update(environment)


def _ended(error: BaseException, endpoint: str | None) -> int:
    """The exit status of a run torchrun ended with ``error``, after one line on stderr unless a process said why."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    if isinstance(error, ChildFailedError):
        return _failed(error.failures)
    if isinstance(error, (SignalException, KeyboardInterrupt)):  # Ctrl-C, or SIGTERM, here: torchrun passed it on
        signum = error.sigval if isinstance(error, SignalException) else signal.SIGINT
        print(f"error: interrupted ({signal.Signals(signum).name}); nothing was saved.", file=sys.stderr)
        return 128 + signum
    host, _, port = (endpoint or "").rpartition(":")
    if host and "failed to listen" in str(error):  # the port was taken after _launch_problem looked
        print(f"error: {_busy_line(host, port)}", file=sys.stderr)
        return 2
    meeting = f"the rendezvous at {endpoint}" if endpoint else "the processes' rendezvous"
    print(f"error: {meeting} failed ({first_line(error)}); start the same command on every machine, each with its "
          "--node-rank, within --rdzv-timeout seconds of each other.", file=sys.stderr)
    return 2


def _failed(failures: dict) -> int:
    """The exit status of a run whose processes ``failures`` (rank: torchrun's ProcessFailure) failed, after one line
    unless the process that failed first said why. torchrun stops the others with SIGTERM and dates failures to the
    second, so the first is found by kind: killed, interrupted, ended with its own line, then stopped."""
    def kind(code: int) -> int:  # 0 killed, 1 interrupted, 2 ended with its own line, 3 stopped
        if code in (128 + signal.SIGTERM, -signal.SIGTERM):
            return 3
        return 1 if code in (128 + signal.SIGINT, -signal.SIGINT) else 0 if code < 0 else 2

    rank, failure = min(failures.items(), key=lambda item: (kind(item[1].exitcode), item[1].timestamp, item[0]))
    if kind(failure.exitcode) in (1, 3):  # stopped by a signal (the processes leave it to the launcher to say)
        signum = signal.SIGINT if kind(failure.exitcode) == 1 else signal.SIGTERM
        stopped = sum(kind(other.exitcode) == 3 for other in failures.values())
        which = f"process {rank} (pid {failure.pid})" if stopped < 2 else "one of the processes"
        print(f"error: {which} was interrupted ({signum.name}); the run was stopped and nothing was saved.", file=sys.stderr)
        return 128 + signum
    if failure.exitcode > 0:
        return failure.exitcode  # the process said why, in one line
    print(f"error: process {rank} (pid {failure.pid}) died ({failure.signal_name()}); the run was stopped and "
          "nothing was saved.", file=sys.stderr)
    return 1


def work(argv: list[str]) -> int:
    """One process of the run: join the others, check the input together, train, and (rank 0) save and report."""
    args = parse_args(argv)
    rank = int(os.environ["RANK"])
    launching = sorted({a.split("=")[0] for a in argv} & LAUNCH_OPTIONS)
    if launching:
        if _speaks():
            verb = "belongs" if len(launching) == 1 else "belong"
            print(f"error: {', '.join(launching)} {verb} to torchrun here: put {'it' if len(launching) == 1 else 'them'} "
                  "before -m autorec_utils.distributed.", file=sys.stderr)
        return 2
    joined = not dist.is_initialized()  # a process group the caller made is the caller's to end
    before = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}  # Ctrl-C: one line
    try:
        with c_stderr_silenced():  # c10d's C++ logs a stack per failed try; the line below says what happened
            init(args.timeout)
    except Exception as error:  # the rendezvous: every process says why it could not join
        where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
        print(f"error: process {rank} cannot reach the rendezvous at {where} within {args.timeout:g} s "
              f"({first_line(error)}); start process 0 first, and check MASTER_ADDR, MASTER_PORT and the firewall.",
              file=sys.stderr)
        return 2
    try:
        return _work(args, rank)
    finally:  # on every way out (the group is gone before the interpreter is)
        if joined:
            close()
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _said_why() -> None:  # this process said why it stops: a signal now (torchrun stopping the others) adds no line
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


def _work(args, rank: int) -> int:
    first = rank == 0
    try:
        recipe: Any = get_recipe(args.recipe, **{k: v for k, v in (("epochs", args.epochs), ("patience", args.patience)) if v})
        if args.batch_size is not None:  # per process here; the recipe counts the rows of a whole step
            recipe = recipe.replace(batch_size=args.batch_size * dist.get_world_size())
        name = re.sub(r"[^a-z0-9]+", "_", args.recipe.lower()).strip("_")
        path = args.checkpoint or checkpoint_path(f"{name}_{args.split}_ddp", args.data_dir)
        train, test, users, movies = agree(lambda: _read(args, path if first else None))
        trained = train_distributed(train, recipe, user_ids=users, item_ids=movies, seed=args.seed,
                                    progress=not args.quiet, sparse=True if args.sparse else None)
    except (ValueError, OSError, FloatingPointError) as error:  # bad input, found by all processes together, or the
        _said_why()  # loss diverged (all-reduced: in every process alike): said once on each machine
        diverged = isinstance(error, FloatingPointError)
        if _speaks():
            print(f"error: {error}{' Nothing was saved.' if diverged else ''}", file=sys.stderr)
        return 1 if diverged else 2
    except RuntimeError as error:
        _said_why()  # one line per process, not two
        if not lost_peer(error):
            raise  # not the collectives': a bug or the machine (out of memory, say), with its traceback
        if os.environ.get(LAUNCHED):  # one of this machine's: torchrun stops this one soon, and the launcher names it
            time.sleep(3)
        print(f"error: process {rank} lost the other processes during training ({first_line(error)}): one of them died "
              "or stopped answering (its own message says why); nothing was saved.", file=sys.stderr)
        return 1
    return _save(trained, test, path, args) if first else 0


def _save(trained: Trained, test, path: Path, args) -> int:
    """Rank 0, after training: the test RMSE, the checkpoint and the line that says so; a signal while it saves
    removes the half-written file (``checkpoint.save_checkpoint`` writes atomically)."""
    trained.split = args.split
    tested = f"; test RMSE on {args.split}: {score(trained.predictor, test)['RMSE']:.4f}" if len(test) else ""
    _SAVING[0] = True
    try:
        save_checkpoint(trained, path, split=args.split)
    except OSError as error:
        print(f"error: the model could not be saved to {display_path(path)} ({error}){tested}.", file=sys.stderr)
        return 2
    except SystemExit as stopped:  # SIGINT or SIGTERM, said by _on_signal
        return int(stopped.code or 1)
    finally:
        _SAVING[0] = False
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


if __name__ == "__main__":  # a process of a run, or the launcher: out without Python's teardown, where gloo's threads
    exit_worker(main())  # may abort a process and torchrun's rendezvous store keeps an interrupted launcher seconds
