"""Shared fixtures: small MovieLens-100K look-alikes in GroupLens' exact file formats, and a local
HTTP server on 127.0.0.1 for the download path (no internet needed)."""

import http.server
import io
import os
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from autorec_utils.fetch import fetch_movielens
from autorec_utils.mirror import write_canonical_splits
from autorec_utils.releases import GENRES

OCCUPATIONS = ["engineer", "student", "writer", "other"]


def make_movielens(folder: Path, n_users: int = 12, n_items: int = 30, seed: int = 0) -> Path:
    """Write a tiny but complete ml-100k folder: every user rates 12 to n_items movies, in a shuffled
    file order like u.data's; movie 4 is the 'unknown' title."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for user in range(1, n_users + 1):
        for item in rng.choice(np.arange(1, n_items + 1), size=rng.integers(12, n_items + 1), replace=False):
            lines.append(f"{user}\t{item}\t{rng.integers(1, 6)}\t{880000000 + rng.integers(0, 10**7)}")
    lines = [lines[i] for i in rng.permutation(len(lines))]
    (folder / "u.data").write_text("\n".join(lines) + "\n")
    items = []
    for item in range(1, n_items + 1):
        flags = ["0"] * len(GENRES)
        if item == 4:
            items.append("|".join(["4", "unknown", "", "", ""] + ["1"] + ["0"] * (len(GENRES) - 1)))
            continue
        flags[1 + item % 18] = "1"
        flags[1 + (item * 7) % 18] = "1"
        title = f"Movie {item} ({1960 + item})" if item != 2 else "Misérables, Les (1995)"
        items.append("|".join([str(item), title, f"01-Jan-{1960 + item}", "", f"http://x/{item}"] + flags))
    (folder / "u.item").write_bytes(("\n".join(items) + "\n").encode("latin-1"))
    users = [f"{u}|{20 + u}|{'MF'[u % 2]}|{OCCUPATIONS[u % 4]}|{10000 + u if u != 3 else 'T8H1N'}" for u in range(1, n_users + 1)]
    (folder / "u.user").write_text("\n".join(users) + "\n")
    write_canonical_splits(lines, folder)
    return folder


@pytest.fixture
def ml_folder(tmp_path) -> Path:
    return make_movielens(tmp_path / "raw" / "ml-100k")


def zip_of(folder: Path, extra: dict[str, bytes] | None = None) -> bytes:
    """A zip laid out like GroupLens' (everything under ml-100k/), optionally with extra members."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for file in sorted(folder.iterdir()):
            archive.write(file, f"ml-100k/{file.name}")
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, bytes] = {}

    def do_GET(self):  # noqa: N802 (the name http.server wants)
        body = self.routes.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path.startswith("/drop"):  # promise everything, send a third, hang up
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.connection.close()
            return
        self.wfile.write(body)

    def log_message(self, *args):  # keep pytest's output clean
        pass


@pytest.fixture
def http_server():
    """Serve ``routes`` (path -> bytes) on 127.0.0.1; yields (base_url, routes)."""
    routes: dict[str, bytes] = {}
    handler = type("Handler", (_Handler,), {"routes": routes})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", routes
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def scratch_data(tmp_path_factory):
    """A data folder for notebooks run with other parameters: its raw/ is the real MovieLens-100K (fetched
    once), its checkpoints/ starts empty, so those runs never write over the real checkpoints."""
    real = fetch_movielens(progress=False, verbose=False).path
    folder = tmp_path_factory.mktemp("data")
    (folder / "raw").mkdir()
    os.symlink(real, folder / "raw" / "ml-100k")
    return folder
