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

from derain.cli import main
from derain.models import (
    BUILTIN_NAME,
    CheckpointError,
    WeightInfo,
    derain,
    list_weights,
    load_model,
    resolve_weights,
    save_checkpoint,
)
from derain.models.brn import PretrainedCfg, pretrained_cfgs, to_authors_state_dict
from derain.models.errors import InputError
from derain.models.files import sha256_file
from derain.models.hub import BUILTIN_PATH, FetchError, cache_dir, fetch


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
    listing = capsys.readouterr().out  # a result: on stdout, for `derain weights list | grep`
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


def test_list_weights_names_every_weight_and_what_is_on_disk(generated_release, serve) -> None:
    folder, cfg = generated_release
    listed = {w.name: w for w in list_weights()}
    assert list(listed)[0] == BUILTIN_NAME == "brn-builtin"
    assert listed[BUILTIN_NAME] == WeightInfo(BUILTIN_NAME, "brn", listed[BUILTIN_NAME].training_data, "builtin", BUILTIN_PATH)
    assert set(pretrained_cfgs) <= set(listed) and all(listed[n].source == "authors" for n in pretrained_cfgs)
    assert listed[cfg.name].cached is None and listed[cfg.name].variant == "brn-xr"
    fetch(cfg.name, mirror=serve(folder))
    assert next(w for w in list_weights() if w.name == cfg.name).cached == cache_dir() / cfg.file
    with pytest.raises(AttributeError):
        listed[cfg.name].cached = None  # type: ignore[misc]


@pytest.mark.parametrize("name", [None, "brn-builtin", "builtin", "BRN-Builtin"])
def test_the_builtin_weights_answer_to_their_name_and_old_alias(name: str | None) -> None:
    assert resolve_weights(name) == BUILTIN_PATH
    assert fetch(name or BUILTIN_NAME) == BUILTIN_PATH  # nothing to download


def test_load_model_takes_a_path_like(tmp_path: Path) -> None:
    path = save_checkpoint(random_brn("crn", stages=2), tmp_path / "m.safetensors")
    assert load_model(path).variant == "crn" and load_model(str(path)).stages == 2


def test_load_model_with_fewer_stages_gives_that_stages_output(tmp_path: Path) -> None:
    full = random_brn(stages=3)
    path = save_checkpoint(full, tmp_path / "m.safetensors")
    y = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        xs, _ = full.forward_stages(y)
        for stages in (1, 2, 3):
            model = load_model(path, stages=stages)
            assert model.stages == stages
            assert torch.allclose(derain(model, y), xs[stages - 1].clamp(0, 1), atol=1e-6)


@pytest.mark.parametrize("stages", [0, 4, -1, 1.5, True])
def test_load_model_refuses_stages_the_checkpoint_lacks(tmp_path: Path, stages: object) -> None:
    path = save_checkpoint(random_brn(stages=3), tmp_path / "m.safetensors")
    with pytest.raises(InputError, match=r"^stages=.*: m\.safetensors has 3 recurrent stages; give 1 to 3"):
        load_model(path, stages=stages)  # type: ignore[arg-type]


class CutHandler(QuietHandler):
    """Announces the whole file, sends a third and hangs up, as a dropped connection does."""

    def do_GET(self) -> None:
        data = Path(self.translate_path(self.path)).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 3])
        self.close_connection = True


def test_a_cut_download_says_so_and_leaves_nothing(generated_release) -> None:
    folder, cfg = generated_release
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(CutHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(FetchError, match=r"stopped after \d+ of \d+ bytes; run again, or check the network"):
            fetch(cfg.name, mirror=f"http://127.0.0.1:{server.server_address[1]}/")
    finally:
        server.shutdown()
        server.server_close()
    assert list(cache_dir().iterdir()) == []
