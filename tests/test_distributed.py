"""Data-parallel training (chapter 05b: the lesson autorec_utils.ddp, the command line autorec_utils.distributed):
two real processes on 127.0.0.1 with gloo.

One DDP step with batch b in each process is one single-process step with batch 2b, on the dense and the
sparse path; training leaves the same weights in both processes and matches the single process, for a deep
(L-BFGS, full-batch) recipe too; the command line trains a checkpoint that one process loads and reads --variant
as python -m autorec_utils does; bad input ends before training in one line with exit 2 (on every machine of the
run), a busy rendezvous port in one line that says so, a killed process ends the run within a bounded time with
nothing saved, and Ctrl-C or SIGTERM ends every process within seconds in one line, without a traceback.
"""

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from autorec_utils import __main__ as single_command
from autorec_utils import ddp, distributed
from autorec_utils.checkpoint import load_checkpoint
from autorec_utils.evaluate import score
from autorec_utils.generate import generate_ratings
from autorec_utils.load import load_movies, load_users
from autorec_utils.matrix import rating_matrix
from autorec_utils.model import AutoRec
from autorec_utils.recipes import VARIANTS, get_recipe
from autorec_utils.sparse import sparse_rating_matrix
from autorec_utils.splits import load_split, validation_part
from autorec_utils.train import autorec_problem, seed_everything, train_autorec

from conftest import make_movielens

ROOT = Path(__file__).resolve().parent.parent
LOCAL = {"GLOO_SOCKET_IFNAME": "lo", "MASTER_ADDR": "127.0.0.1", "OMP_NUM_THREADS": "1"}  # 127.0.0.1 only
RATINGS = {"n_users": 40, "n_items": 25, "n_ratings": 400, "seed": 3}
STEP = {"hidden": 6, "lr": 0.01, "l2": 5.0, "validation_fraction": 0.1}  # batch 16: about 8 rows per process and step
PATHS = {"dense": "U-AutoRec", "sparse": "I-AutoRec"}  # both orientations too
TRAINING = {"epochs": 4, "patience": 4, "hidden": 6, "lr": 0.01, "batch_size": 16}
# chapter 07's two-layer U-AutoRec: with Adam in mini-batches, and with its own L-BFGS on all rows
DEEP = {"adam": {"optimizer": "adam", "lr": 0.01, "batch_size": 16, "epochs": 3, "patience": 3, "hidden": 6},
        "lbfgs": {"epochs": 3, "patience": 3, "hidden": 6}}

# What each of the two processes runs (under torchrun): one step and a short training on each path, then the
# faults the library and the command line must refuse before training. Results go to <out>/rank<r>.*.
WORKER = textwrap.dedent("""
    import json, shutil, sys
    from pathlib import Path
    import torch, torch.distributed as dist
    from autorec_utils import ddp, distributed
    from autorec_utils.generate import generate_ratings
    from autorec_utils.recipes import get_recipe

    out, data_dir = Path(sys.argv[1]), Path(sys.argv[2])
    settings = json.loads(sys.argv[3])
    ddp.init(timeout=20)
    rank = dist.get_rank()
    ratings = generate_ratings(**settings["ratings"])
    found = {}
    for path, name in settings["paths"].items():
        recipe = get_recipe(name, batch_size=16, **settings["step"])  # 16 rows a step: 8 in each process
        problem = ddp.shard_problem(ratings, recipe, seed=5, sparse=path == "sparse").problem
        optimizer = problem.optimizer("adam", recipe.lr)
        generator = torch.Generator().manual_seed(5)
        torch.manual_seed(5)
        rows = problem.batches(generator)[0]
        optimizer.zero_grad()
        loss = problem.batch_loss(rows)
        loss.backward()
        optimizer.step()
        found[path] = {"loss": loss.item(), "rows": len(rows), "n_batches": problem.n_batches}
        torch.save(problem.model.state_dict(), out / f"rank{rank}.{path}.step.pt")
        trained = ddp.train_distributed(ratings, name, seed=5, progress=False, sparse=path == "sparse",
                                                **settings["training"])
        torch.save(trained.model.state_dict(), out / f"rank{rank}.{path}.trained.pt")
        found[path]["history"] = trained.history.records
        again = ddp.train_distributed(ratings, name, seed=5, progress=False, sparse=path == "sparse",
                                              **settings["training"])
        found[path]["same_seed_same_weights"] = all(torch.equal(a, b) for a, b in zip(
            trained.model.state_dict().values(), again.model.state_dict().values()))
    for how, changes in settings["deep"].items():
        trained = ddp.train_distributed(ratings, "U-AutoRec (deep)", seed=5, progress=False, **changes)
        torch.save(trained.model.state_dict(), out / f"rank{rank}.deep_{how}.trained.pt")
        found[f"deep_{how}"] = {"history": trained.history.records, "model": type(trained.model).__name__}

    def refused(work):
        try:
            work()
        except ValueError as error:
            return str(error)
        return None

    one_row = ratings[ratings.user_id == 1]
    found["too_many_processes"] = refused(lambda: ddp.train_distributed(one_row, "U-AutoRec", user_ids=[1], epochs=1, progress=False))
    other = ratings.assign(rating=ratings.rating.where(ratings.index != 7, 6 - ratings.rating)) if rank == 1 else ratings
    found["mismatch"] = refused(lambda: ddp.train_distributed(other, "U-AutoRec", epochs=1, progress=False))
    # the command line, in these same two processes: a checkpoint rank 0 cannot write, then other data in process 1
    common = ["--split", "u1", "--epochs", "2", "--quiet"]
    (out / "a_file").write_text("not a folder")
    found["cli_unwritable"] = distributed.work(["--data-dir", str(data_dir), "--checkpoint", str(out / "a_file" / "m.pt"), *common])
    copy = out / f"copy{rank}"
    shutil.copytree(data_dir, copy)
    if rank == 1:
        base = copy / "raw" / "ml-100k" / "u1.base"
        user, item, stars, when = base.read_text().split("\\n", 1)[0].split("\\t")
        first = "\\t".join([user, item, str(6 - int(stars) if stars != "3" else 4), when])
        base.write_text(first + "\\n" + base.read_text().split("\\n", 1)[1])  # one rating changed
    found["cli_mismatch"] = distributed.work(["--data-dir", str(copy), "--checkpoint", str(out / "m.pt"), *common])
    (out / f"rank{rank}.json").write_text(json.dumps(found))
    ddp.exit_worker(0)
""")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


STARTED: list[subprocess.Popen] = []


def start(args: list[str], **env) -> subprocess.Popen:
    """A command in its own process group (so that nothing outlives the test), talking over 127.0.0.1."""
    process = subprocess.Popen([sys.executable, *args], cwd=ROOT, env={**os.environ, **LOCAL, **env}, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    STARTED.append(process)
    return process


def finish(process: subprocess.Popen, timeout: float) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        stop(process)
    return process.returncode, out, err


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)  # the launcher and its workers: one process group
        process.communicate()


@pytest.fixture(autouse=True)
def nothing_left_behind():
    yield
    while STARTED:
        stop(STARTED.pop())


def torchrun(*args: str) -> list[str]:
    return ["-m", "torch.distributed.run", "--nproc-per-node", "2", "--rdzv-backend", "c10d",
            "--rdzv-endpoint", f"127.0.0.1:{free_port()}", *args]


def single_step(ratings, name: str, sparse: bool) -> dict:
    """One step of one process with the whole batch of 16 rows, as fit takes it."""
    recipe = get_recipe(name, batch_size=16, **STEP)
    matrix = (sparse_rating_matrix if sparse else rating_matrix)(ratings, by=recipe.by)
    validation = validation_part(matrix, recipe.validation_fraction, 5)
    seed_everything(5)
    model = AutoRec(matrix.shape[1], recipe.hidden)
    problem = autorec_problem(model, matrix, validation, recipe.l2, recipe.batch_size, device="cpu")
    optimizer = problem.optimizer("adam", recipe.lr)
    generator = torch.Generator().manual_seed(5)
    torch.manual_seed(5)
    rows = problem.batches(generator)[0]
    optimizer.zero_grad()
    loss = problem.batch_loss(rows)
    loss.backward()
    optimizer.step()
    return {"loss": loss.item(), "rows": len(rows), "state": model.state_dict()}


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """Run WORKER in two processes once; what each found, and where its files are."""
    out = tmp_path_factory.mktemp("ddp")
    data_dir = out / "data"
    make_movielens(data_dir / "raw" / "ml-100k")
    (out / "worker.py").write_text(WORKER)
    settings = {"ratings": RATINGS, "paths": PATHS, "step": STEP, "training": TRAINING, "deep": DEEP}
    code, stdout, stderr = finish(start(torchrun(str(out / "worker.py"), str(out), str(data_dir), json.dumps(settings))), 240)
    assert code == 0, stderr[-3000:]
    found = [json.loads((out / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    return out, found, stderr


@pytest.mark.parametrize("path", PATHS)
def test_one_ddp_step_with_batch_b_is_one_step_with_batch_2b(two_processes, path):
    out, found, _ = two_processes
    single = single_step(generate_ratings(**RATINGS), PATHS[path], sparse=path == "sparse")
    assert found[0][path]["n_batches"] > 1  # a real mini-batch, not the whole matrix
    assert found[0][path]["rows"] + found[1][path]["rows"] == single["rows"]  # the step's rows, split between them
    for rank in (0, 1):
        assert found[rank][path]["loss"] == pytest.approx(single["loss"], rel=1e-6)  # the whole objective, once
        state = torch.load(out / f"rank{rank}.{path}.step.pt", weights_only=True)
        for name, tensor in single["state"].items():
            torch.testing.assert_close(state[name], tensor, atol=1e-6, rtol=0, msg=f"{path}: {name} after one step")


@pytest.mark.parametrize("path", PATHS)
def test_training_gives_the_same_weights_in_both_processes_on_every_run_and_matches_one_process(two_processes, path):
    out, found, _ = two_processes
    states = [torch.load(out / f"rank{rank}.{path}.trained.pt", weights_only=True) for rank in (0, 1)]
    for name in states[0]:
        assert torch.equal(states[0][name], states[1][name]), name
    assert found[0][path]["same_seed_same_weights"] and found[1][path]["same_seed_same_weights"]  # trained twice
    histories = [[{k: v for k, v in record.items() if k != "seconds"} for record in found[rank][path]["history"]] for rank in (0, 1)]
    assert histories[0] == histories[1]  # the same loss and metrics in both, so the same best and last epoch
    single = train_autorec(generate_ratings(**RATINGS), PATHS[path], seed=5, progress=False, sparse=path == "sparse", **TRAINING)
    for name, tensor in single.model.state_dict().items():
        torch.testing.assert_close(states[0][name], tensor, atol=1e-5, rtol=1e-4)
    ours = [(r["epoch"], r["val_rmse"]) for r in found[0][path]["history"]]
    theirs = [(r["epoch"], r["val_rmse"]) for r in single.history.records]
    assert np.allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("how", DEEP)
def test_a_deep_recipe_trains_on_two_processes_as_on_one(two_processes, how):
    """shard_problem builds on train.autorec_setup, so chapter 07's DeepAutoRec trains too: with Adam, the weights of
    one process; with L-BFGS, the same objective (its first loss), but its line search, which reads the loss to the
    last bit, may take other steps than one process's (adding the two shares rounds otherwise)."""
    out, found, _ = two_processes
    states = [torch.load(out / f"rank{rank}.deep_{how}.trained.pt", weights_only=True) for rank in (0, 1)]
    histories = [[{k: v for k, v in record.items() if k != "seconds"} for record in found[rank][f"deep_{how}"]["history"]]
                 for rank in (0, 1)]
    assert found[0][f"deep_{how}"]["model"] == "DeepAutoRec" and histories[0] == histories[1]
    for name in states[0]:
        assert torch.equal(states[0][name], states[1][name]), name
    single = train_autorec(generate_ratings(**RATINGS), "U-AutoRec (deep)", seed=5, progress=False, **DEEP[how])
    assert len(single.history.records) == len(histories[0])
    assert histories[0][0]["loss"] == pytest.approx(single.history.records[0]["loss"], rel=1e-6)
    if how == "adam":
        for name, tensor in single.model.state_dict().items():
            torch.testing.assert_close(states[0][name], tensor, atol=1e-5, rtol=1e-4, msg=name)
        assert np.allclose([r["val_rmse"] for r in histories[0]], [r["val_rmse"] for r in single.history.records], atol=1e-5)


def test_a_problem_takes_its_share_of_the_penalty_and_the_run_s_steps_as_arguments():
    """What a process's local problem carries (chapter 05b), given to it, not written into it afterwards."""
    ratings = generate_ratings(**RATINGS)
    for build in (rating_matrix, sparse_rating_matrix):
        matrix = build(ratings, by="item")
        losses = []
        for share, steps in ((1.0, None), (0.5, 3)):
            seed_everything(5)
            problem = autorec_problem(AutoRec(matrix.shape[1], 6), matrix, l2=5.0, batch_size=16, device="cpu",
                                      penalty_share=share, n_batches=steps)
            assert problem.n_batches == (steps or -(-matrix.shape[0] // 16))
            rows = torch.arange(matrix.shape[0])
            penalty = 0.5 * 5.0 * share / problem.n_batches * problem.model.weight_norm().item()
            losses.append(problem.batch_loss(rows).item() - penalty)
        assert losses[0] == pytest.approx(losses[1], rel=1e-5)  # the same squared error: only the penalty differs


def test_the_command_lines_read_variant_letters_alike(capsys):
    """--variant U is the residual U-AutoRec in python -m autorec_utils and in python -m autorec_utils.distributed."""
    for letter in ("I", "U", "u"):
        assert distributed.parse_args(["--variant", letter]).recipe == VARIANTS[single_command.parse_args(["--variant", letter]).variant]
    assert distributed.parse_args(["--variant", "U"]).recipe == "U-AutoRec (residual)"
    assert distributed.parse_args(["--recipe", "u-autorec"]).recipe == "U-AutoRec"  # the plain one, by name
    assert distributed.parse_args(["--recipe", "U-AutoRec (deep)"]).recipe == "U-AutoRec (deep)"
    with pytest.raises(SystemExit) as refused:
        distributed.parse_args(["--variant", "L"])
    error = capsys.readouterr().err
    assert refused.value.code == 2 and error.count("\n") == 1, error
    assert "'L' is EASE, a list model: distributed training takes rating recipes" in error


def test_bad_input_stops_every_process_before_training_in_one_line(two_processes):
    _, found, stderr = two_processes
    for rank in (0, 1):
        assert found[rank]["too_many_processes"] == ("2 processes for 1 user: each process needs a row of its own; run at "
                                                     "most 1 (--nproc-per-node x --nnodes).")
        assert found[rank]["mismatch"].startswith("process 1 was given other data or settings than process 0 (fingerprint ")
        assert found[rank]["cli_unwritable"] == found[rank]["cli_mismatch"] == 2
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2, stderr  # once each, by rank 0
    assert errors[0].startswith("error: cannot write ") and "a_file" in errors[0] and "choose another --checkpoint path" in errors[0]
    assert errors[1].startswith("error: process 1 was given other data or settings than process 0 (fingerprint ")


def test_two_machines_train_a_checkpoint_that_one_process_loads(ml_folder, tmp_path):
    """The launcher (python -m autorec_utils.distributed) as on two machines: --nnodes, --node-rank, --rdzv-endpoint."""
    data_dir, checkpoint = ml_folder.parent.parent, tmp_path / "ddp" / "i_autorec.pt"
    endpoint = f"127.0.0.1:{free_port()}"
    nodes = [start(["-m", "autorec_utils.distributed", "--nnodes", "2", "--node-rank", str(rank), "--rdzv-endpoint", endpoint,
                    "--data-dir", str(data_dir), "--split", "u1", "--epochs", "30", "--batch-size", "8",
                    "--checkpoint", str(checkpoint), "--quiet"]) for rank in (0, 1)]
    results = [finish(node, 180) for node in nodes]
    assert [code for code, _, _ in results] == [0, 0], [err[-2000:] for _, _, err in results]
    assert "I-AutoRec trained by 2 processes (gloo)" in results[0][1] and results[1][1] == ""
    trained = load_checkpoint(checkpoint, data_path=ml_folder)
    train, test = load_split("u1", ml_folder)
    single = train_autorec(train, "I-AutoRec", user_ids=load_users(ml_folder).user_id, item_ids=load_movies(ml_folder).item_id,
                           progress=False, epochs=30, batch_size=16)
    assert trained.recipe == single.recipe and trained.split == "u1"
    assert score(trained.predictor, test)["RMSE"] == pytest.approx(score(single.predictor, test)["RMSE"], abs=1e-4)


def test_a_killed_process_ends_the_run_soon_and_nothing_is_saved(ml_folder, tmp_path):
    checkpoint = tmp_path / "out" / "model.pt"
    checkpoint.parent.mkdir()
    run = start(torchrun("-m", "autorec_utils.distributed", "--data-dir", str(ml_folder.parent.parent), "--split", "u1",
                         "--epochs", "1000000", "--patience", "1000000", "--checkpoint", str(checkpoint)))
    victim = None
    try:
        for line in run.stderr:  # each process says who it is before it trains
            if line.startswith("process 1/2 (pid "):
                victim = int(line.split("(pid ")[1].split(",")[0])
                break
        assert victim is not None
        time.sleep(1.0)  # well into training
        killed = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        code, _, stderr = finish(run, 60)
    finally:
        stop(run)
    assert code != 0 and time.monotonic() - killed < 60
    assert "error: process 0 " in stderr and "nothing was saved" in stderr  # the survivor says what happened
    assert f"exitcode  : -9 (pid: {victim})" in stderr  # and torchrun names the one that died
    assert list(checkpoint.parent.iterdir()) == []  # no checkpoint, no half-written temporary file


def running(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie, dead but not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc here
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def read_lines(stream) -> queue.Queue:
    """The lines of ``stream`` as they come (None at its end), read by a thread, so that a test waits with a deadline."""
    lines: queue.Queue = queue.Queue()

    def read():
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


def rest(lines: queue.Queue, timeout: float) -> list[str]:
    """The lines still to come, up to the stream's end (within ``timeout`` seconds)."""
    found, deadline = [], time.monotonic() + timeout
    while (line := lines.get(timeout=max(0.0, deadline - time.monotonic()))) is not None:
        found.append(line)
    return found


INTERRUPTED = {"ctrl-c": "error: interrupted (SIGINT); nothing was saved.",
               "sigterm": "error: interrupted (SIGTERM); nothing was saved.",
               "ctrl-c-to-a-process": "error: process 1 (pid {pid}) was interrupted (SIGINT); the run was stopped and "
                                      "nothing was saved."}


@pytest.mark.parametrize("how", INTERRUPTED)
def test_ctrl_c_or_sigterm_ends_every_process_within_seconds_in_one_line(ml_folder, tmp_path, how):
    """Ctrl-C at the terminal (SIGINT to the launcher and its processes), SIGTERM to the launcher (torchrun passes it
    on), or Ctrl-C to one process: every process gone within 10 s, exit 128 + the signal, no checkpoint, and stderr
    holds the two processes' notes and one line, no traceback."""
    checkpoint = tmp_path / "out" / "model.pt"
    checkpoint.parent.mkdir()
    run = start(["-m", "autorec_utils.distributed", "--nproc-per-node", "2", "--data-dir", str(ml_folder.parent.parent),
                 "--split", "u1", "--epochs", "1000000", "--patience", "1000000", "--checkpoint", str(checkpoint)])
    lines, seen, pids = read_lines(run.stderr), [], {}
    deadline = time.monotonic() + 180  # a busy machine: importing torch alone may take seconds per process
    while len(pids) < 2:  # each process says who it is just before it trains
        line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        assert line is not None, "".join(seen)
        seen.append(line)
        if found := re.match(r"process (\d)/2 \(pid (\d+),", line):
            pids[int(found[1])] = int(found[2])
    signalled = time.monotonic()
    if how == "ctrl-c":
        os.killpg(run.pid, signal.SIGINT)  # what the terminal does: the launcher and its processes
    elif how == "sigterm":
        os.kill(run.pid, signal.SIGTERM)  # the launcher alone
    else:
        os.kill(pids[1], signal.SIGINT)
    code = run.wait(timeout=60)
    while any(running(pid) for pid in pids.values()) and time.monotonic() - signalled < 60:
        time.sleep(0.05)
    took = time.monotonic() - signalled
    stderr = "".join(seen + rest(lines, 60))
    assert took < 10, f"{took:.1f} s"
    assert not any(running(pid) for pid in pids.values())
    assert code == 128 + (signal.SIGTERM if how == "sigterm" else signal.SIGINT), stderr
    assert list(checkpoint.parent.iterdir()) == []  # no checkpoint, no half-written temporary file
    assert "Traceback" not in stderr and len(stderr.splitlines()) <= 3, stderr
    assert stderr.splitlines()[-1] == INTERRUPTED[how].format(pid=pids[1]), stderr
    assert run.stdout.read() == ""


def test_a_busy_rendezvous_port_is_named_in_one_line(ml_folder):
    """Machine 0 hosts the rendezvous at --rdzv-endpoint: another program holding the port is found before anything
    starts, and said so, with the way out."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code, out, err = finish(start(["-m", "autorec_utils.distributed", "--nnodes", "1", "--rdzv-endpoint", f"127.0.0.1:{port}",
                                       "--data-dir", str(ml_folder.parent.parent), "--split", "u1"]), 120)
    assert (code, out) == (2, ""), err
    assert err == (f"error: port {port} on 127.0.0.1 is busy (another program holds it): pick another with --rdzv-endpoint "
                   "127.0.0.1:OTHER_PORT, the same on every machine.\n")


def test_two_machines_given_other_data_both_say_why(ml_folder, tmp_path):
    """Each machine's terminal shows why the run ended: its first process says it, not only rank 0's machine."""
    data = [ml_folder.parent.parent, tmp_path / "other"]
    shutil.copytree(data[0], data[1])
    base = data[1] / "raw" / "ml-100k" / "u1.base"
    first, others = base.read_text().split("\n", 1)
    user, item, stars, when = first.split("\t")
    base.write_text("\t".join([user, item, "4" if stars == "3" else str(6 - int(stars)), when]) + "\n" + others)  # one rating
    endpoint = f"127.0.0.1:{free_port()}"
    nodes = [start(["-m", "autorec_utils.distributed", "--nnodes", "2", "--node-rank", str(rank), "--rdzv-endpoint", endpoint,
                    "--data-dir", str(data[rank]), "--split", "u1", "--quiet"]) for rank in (0, 1)]
    results = [finish(node, 180) for node in nodes]
    for code, out, err in results:
        assert (code, out) == (2, "") and err.count("\n") == 1, err
        assert err.startswith("error: process 1 was given other data or settings than process 0 (fingerprint "), err
        assert "check --split, --data-dir and the data files on every machine" in err


def test_an_unreachable_rendezvous_ends_in_one_line_with_exit_2(ml_folder):
    """Both ways in: the launcher waiting for machine 0, and a process started by hand (env://)."""
    closed = free_port()  # nothing listens there
    common = ["-m", "autorec_utils.distributed", "--data-dir", str(ml_folder.parent.parent), "--split", "u1"]
    launcher = start([*common, "--nnodes", "2", "--node-rank", "1", "--rdzv-endpoint", f"127.0.0.1:{closed}", "--rdzv-timeout", "2"])
    worker = start([*common, "--timeout", "2"], RANK="1", WORLD_SIZE="2", LOCAL_RANK="0", MASTER_PORT=str(closed))
    (code, out, err), (worker_code, worker_out, worker_err) = finish(launcher, 60), finish(worker, 60)
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert err.startswith(f"error: cannot reach the rendezvous at 127.0.0.1:{closed} within 2 s (")
    assert (worker_code, worker_out) == (2, "") and worker_err.count("\n") == 1, worker_err
    assert worker_err.startswith(f"error: process 1 cannot reach the rendezvous at 127.0.0.1:{closed} within 2 s (")


def test_the_launcher_ends_as_its_processes_end(monkeypatch, capsys):
    """Exit status and message of ``python -m autorec_utils.distributed`` when a process fails (no processes started)."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    def failing(exitcode):
        def run(args):
            raise ChildFailedError("autorec_utils.distributed", {1: ProcessFailure(1, 4242, exitcode, "<N/A>")})
        return run

    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))  # launch sets it: undone after the test
    monkeypatch.setattr(torchrun, "run", failing(2))  # bad input: the process said why; the same status, nothing more
    assert distributed.launch(["--nproc-per-node", "2", "--split", "u1"]) == 2
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(torchrun, "run", failing(-signal.SIGKILL))
    assert distributed.launch(["--nproc-per-node", "2"]) == 1
    assert capsys.readouterr().err == "error: process 1 (pid 4242) died (SIGKILL); the run was stopped and nothing was saved.\n"
    with pytest.raises(SystemExit) as stopped:  # a bad option: found before anything starts, as argparse does
        distributed.launch(["--nproc-per-node", "2", "--batch-size", "0"])
    assert stopped.value.code == 2 and "argument --batch-size: 0 is not positive" in capsys.readouterr().err


def test_the_launcher_names_the_process_that_failed_first_or_the_interrupt(monkeypatch, capsys):
    """torchrun stops the other processes with SIGTERM and dates failures to the second: the cause is the process that
    was killed, interrupted or said why, not one it stopped; a signal to the launcher is said as such."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    def raising(error):
        def run(args):
            raise error
        return run

    def failed(codes):
        return ChildFailedError("autorec_utils.distributed", {rank: ProcessFailure(rank, 4200 + rank, code, "<N/A>")
                                                              for rank, code in codes.items()})

    stopped = 128 + signal.SIGTERM
    cases = [(failed({0: stopped, 1: 128 + signal.SIGINT}), 130,
              "error: process 1 (pid 4201) was interrupted (SIGINT); the run was stopped and nothing was saved.\n"),
             (failed({0: stopped, 1: -signal.SIGKILL}), 1,
              "error: process 1 (pid 4201) died (SIGKILL); the run was stopped and nothing was saved.\n"),
             (failed({0: stopped, 1: 2}), 2, ""),  # process 1 said why
             (failed({0: stopped, 1: stopped}), stopped,
              "error: one of the processes was interrupted (SIGTERM); the run was stopped and nothing was saved.\n"),
             (SignalException("Process 1 got signal: 15", sigval=signal.SIGTERM), stopped,
              "error: interrupted (SIGTERM); nothing was saved.\n"),
             (KeyboardInterrupt(), 130, "error: interrupted (SIGINT); nothing was saved.\n")]
    for error, code, said in cases:
        monkeypatch.setattr(torchrun, "run", raising(error))
        assert distributed.launch(["--nproc-per-node", "2"]) == code, error
        assert capsys.readouterr().err == said
    port = free_port()  # free when the launcher looks, taken when torchrun listens
    monkeypatch.setattr(torchrun, "run", raising(RuntimeError("The server socket has failed to listen on any local network "
                                                              "address. port: 29400, useIpv6: false, code: -98")))
    assert distributed.launch(["--rdzv-endpoint", f"127.0.0.1:{port}"]) == 2
    assert capsys.readouterr().err == (f"error: port {port} on 127.0.0.1 is busy (another program holds it): pick another "
                                       f"with --rdzv-endpoint 127.0.0.1:OTHER_PORT, the same on every machine.\n")
    assert distributed.LAUNCHED not in os.environ  # what launch sets for its processes is undone


def test_a_signal_while_rank_0_saves_leaves_no_file(monkeypatch, tmp_path, capsys):
    """Ctrl-C while the checkpoint is written: the half-written file is removed, and the process ends with 130."""
    from types import SimpleNamespace

    def save(trained, path, split):
        path.with_name(".model.pt.part").write_text("half")  # as written_atomically would, then removes
        try:
            distributed._on_signal(signal.SIGINT)  # as the signal would arrive
        finally:
            path.with_name(".model.pt.part").unlink()

    monkeypatch.setattr(distributed, "save_checkpoint", save)
    args = SimpleNamespace(split="u1", recipe="I-AutoRec")
    assert distributed._save(SimpleNamespace(split=None), [], tmp_path / "model.pt", args) == 128 + signal.SIGINT
    assert list(tmp_path.iterdir()) == [] and distributed._SAVING == [False]
    assert capsys.readouterr().err == "error: interrupted (SIGINT); nothing was saved.\n"


def test_a_process_of_a_run_ends_with_its_status_and_all_its_output():
    """exit_worker skips Python's teardown (where gloo's threads may abort the process), not what was printed."""
    script = ("import sys; from autorec_utils import ddp\nddp.init(timeout=10)\nprint('trained', end='')\n"
              "sys.stderr.write('a note')\nddp.exit_worker(3)\nprint('never')")
    code, out, err = finish(start(["-c", script], MASTER_PORT=str(free_port()), RANK="0", WORLD_SIZE="1",
                                  PYTHONUNBUFFERED=""), 60)  # buffered, as output to a pipe usually is
    assert (code, out, err) == (3, "trained", "a note")


def test_shards_cover_every_row_once():
    shards = [ddp.shard_rows(10, rank, 3).tolist() for rank in range(3)]
    assert shards == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert sorted(sum(shards, [])) == list(range(10))


def test_the_checkpoint_folder_is_really_tried(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(PermissionError, match=r"cannot write .*a_file/m\.pt .*choose another --checkpoint path"):
        distributed._check_can_write(tmp_path / "a_file" / "m.pt")
    distributed._check_can_write(tmp_path / "new" / "folder" / "m.pt")  # folders that do not exist yet are made
    assert list(tmp_path.iterdir()) == [tmp_path / "a_file"]  # the probe leaves nothing behind

