"""Named weights fetched from a real HTTP server on 127.0.0.1, never implicitly."""

from __future__ import annotations

import functools
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from brns import random_brn
from conftest import OFFICIAL, needs_official

from derain.models import CheckpointError, load_model, resolve_weights
from derain.models.brn import PretrainedCfg, pretrained_cfgs, to_authors_state_dict
from derain.models.files import sha256_file
from derain.models.hub import FetchError, cache_dir, fetch
from derain.stream.cli import main


@pytest.fixture
def serve() -> Iterator:
    """Start a static file server on a folder; yields a function that returns its base URL."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(folder: Path) -> str:
        handler = functools.partial(QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def generated_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, PretrainedCfg]:
    """A release file made here, registered under a test name (works without ../shared)."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    torch.save(to_authors_state_dict(random_brn("brn-xr")), folder / "TEST_R100L.pth")
    cfg = PretrainedCfg("test-r100l", "brn-xr", "TEST_R100L.pth", "logs/x", sha256_file(folder / "TEST_R100L.pth"), "RainTrainL")
    monkeypatch.setitem(pretrained_cfgs, cfg.name, cfg)
    return folder, cfg


def test_nothing_is_downloaded_implicitly(generated_release) -> None:
    with pytest.raises(CheckpointError, match="derain weights fetch test-r100l"):
        load_model("test-r100l")
    assert not cache_dir().exists() or not any(cache_dir().iterdir())


def test_fetch_verifies_and_caches(generated_release, serve) -> None:
    folder, cfg = generated_release
    path = fetch(cfg.name, mirror=serve(folder))
    assert path == cache_dir() / cfg.file and sha256_file(path) == cfg.sha256
    assert resolve_weights(cfg.name) == path
    assert load_model(cfg.name).variant == "brn-xr"


def test_corrupted_download_is_rejected_and_not_cached(generated_release, serve, tmp_path: Path) -> None:
    folder, cfg = generated_release
    data = bytearray((folder / cfg.file).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / cfg.file).write_bytes(bytes(data))
    with pytest.raises(FetchError, match="does not match"):
        fetch(cfg.name, mirror=serve(folder))
    assert list(cache_dir().iterdir()) == []


def test_missing_file_on_mirror(generated_release, serve, tmp_path: Path) -> None:
    _, cfg = generated_release
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FetchError, match="download failed"):
        fetch(cfg.name, mirror=serve(empty))
    assert list(cache_dir().iterdir()) == []


def test_nothing_listening(generated_release) -> None:
    with pytest.raises(FetchError, match="download failed"):
        fetch("test-r100l", mirror="http://127.0.0.1:9/", timeout=2)


def test_unknown_name() -> None:
    with pytest.raises(CheckpointError, match="derain weights list"):
        fetch("brn-r200x")


@needs_official
def test_cli_fetch_from_mirror_env_then_list(serve, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("DERAIN_WEIGHTS_MIRROR", serve(OFFICIAL))
    assert main(["weights", "fetch", "brn-r100l", "crn-r100h"]) == 0
    for name in ("brn-r100l", "crn-r100h"):
        cfg = pretrained_cfgs[name]
        assert sha256_file(cache_dir() / cfg.file) == cfg.sha256
    assert load_model("crn-r100h").variant == "crn"
    capsys.readouterr()
    assert main(["weights", "list"]) == 0
    listing = capsys.readouterr().err
    assert "brn-r100l" in listing and "brn-xr-r100h" in listing and str(cache_dir()) in listing.replace("\n", "")


def test_cli_reports_fetch_failure_in_one_line(generated_release, capsys) -> None:
    assert main(["weights", "fetch", "test-r100l", "--mirror", "http://127.0.0.1:9", "--timeout", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("derain: error:") and "download failed" in err


def test_a_server_that_does_not_speak_http(generated_release) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def answer_garbage() -> None:
            connection, _ = listener.accept()
            with connection:
                connection.recv(4096)
                connection.sendall(b"garbage\r\n\r\n")

        threading.Thread(target=answer_garbage, daemon=True).start()
        with pytest.raises(FetchError, match=r"download failed \(not an HTTP reply: garbage"):
            fetch("test-r100l", mirror=f"http://127.0.0.1:{listener.getsockname()[1]}/", timeout=5)
    assert list(cache_dir().iterdir()) == []


@pytest.mark.parametrize(
    "args, message",
    [(["--mirror", "example.com/x"], "example.com/x/TEST_R100L.pth: not an http(s) URL; give --mirror as http://host/folder/"),
     (["--timeout", "-1"], "--timeout -1: give the network timeout in seconds, above 0")],
)
def test_bad_fetch_options_one_line(generated_release, capsys, args: list[str], message: str) -> None:
    assert main(["weights", "fetch", "test-r100l", *args]) == 2
    assert capsys.readouterr().err.strip() == f"derain: error: {message}"
