"""Library messages name parameters; only the command line turns them into flags."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

import derain
from derain.cli import main
from derain.cli.flags import PARAMETERS, as_flags, flag

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = [*(ROOT / "stream").glob("*.py"), *(ROOT / "engines").glob("*.py"), *(ROOT / "models").glob("*.py"),
           ROOT / "derain" / "api.py", ROOT / "derain" / "batching.py"]
# `python -m derain.models.photos` is a data-preparation program with flags of its own.
OWN_FLAGS = {ROOT / "models" / "photos.py"}
SHELL_COMMANDS = re.compile(r"`ray start --head`")


@pytest.mark.parametrize(("message", "shown"), [
    ("engine='bogus': use one of auto, eager", "--engine bogus: use one of auto, eager"),
    ("already exists; pass overwrite=True to replace it", "already exists; pass --overwrite to replace it"),
    ("no data within 2 s (`timeout`)", "no data within 2 s (--timeout)"),
    ("restream='rtsp://h:8554/x': refused", "--restream rtsp://h:8554/x: refused"),
    ("stages=5: the checkpoint has 3", "--stages 5: the checkpoint has 3"),
    ("gpus_per_worker=0.5 and `max_latency`", "--gpus-per-worker 0.5 and --max-latency"),
    ("check `input_options`", "check --option"),
    ("outdir='/a b/c': is a file", "-o /a b/c: is a file"),
    ("a batch of 4, the engine's timeout, reconnect_max_tries=2", "a batch of 4, the engine's timeout, reconnect_max_tries=2"),
])
def test_parameters_become_flags(message: str, shown: str) -> None:
    assert as_flags(message) == shown


def test_every_parameter_is_a_flag_of_some_command(capsys: pytest.CaptureFixture[str]) -> None:
    helps = ""
    for command in ("video", "live", "image", "batch", "eval", "bench", "export", "train", "weights fetch"):
        with pytest.raises(SystemExit):
            main([*command.split(), "--help"])
        helps += capsys.readouterr().out
    assert [name for name in PARAMETERS if flag(name) not in helps] == []


def _strings(path: Path) -> list[str]:
    """Every string a module builds, an f-string whole with {} for each value; no docstrings."""
    tree = ast.parse(path.read_text())
    skip = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    texts = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            skip.update(id(part) for part in node.values)
            texts.append("".join(part.value if isinstance(part, ast.Constant) else "{}" for part in node.values))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            texts.append(node.value)
    return texts


def test_library_messages_name_no_flags() -> None:
    flagged = [f"{path.relative_to(ROOT)}: {text!r}" for path in LIBRARY if path not in OWN_FLAGS
               for text in _strings(path) if re.search(r"(?<![\w}-])--?[a-z]", SHELL_COMMANDS.sub("", text))]
    assert flagged == []


def test_the_api_names_the_parameter_and_the_cli_the_flag(tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = derain.load_model(tiny_checkpoint)
    with pytest.raises(derain.DerainError, match=r"^engine='bogus': use one of"):
        derain.build_engine(model, engine="bogus", device="cpu")
    with pytest.raises(derain.DerainError, match=r"^tile=8 must be larger"):
        derain.build_engine(model, device="cpu", tile=8)(np.zeros((16, 16, 3), np.uint8))
    image = tmp_path / "in.png"
    image.write_bytes(b"")
    assert main(["image", str(image), "-o", str(tmp_path / "out"), "--weights", str(tiny_checkpoint), "--device", "gpu0"]) == 2
    assert main(["image", str(image), "-o", str(tmp_path / "out"), "--weights", str(tiny_checkpoint), "--device", "cpu", "--tile", "8"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert any("--device gpu0 is not a device" in line for line in lines) and any("--tile 8 must be larger" in line for line in lines), lines
