"""Checkpoint import and the project's own format: good files load, bad ones say why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from brns import random_brn
from conftest import OFFICIAL, needs_official
from safetensors.torch import save_file

from derain.models import CheckpointError, load_checkpoint, save_checkpoint
from derain.models.brn import to_authors_state_dict
from derain.models.checkpoint import read_metadata
from derain.models.files import sha256_file


def authors_file(tmp_path: Path, variant: str = "brn", legacy: bool = True, **changes) -> Path:
    sd = to_authors_state_dict(random_brn(variant))
    for key, value in changes.items():
        key = key.replace("__", ".")
        if value is None:
            del sd[key]
        else:
            sd[key] = value
    path = tmp_path / f"{variant}.pth"
    torch.save(sd, path, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.mark.parametrize("variant", ["brn", "brn-xr", "brn-rx", "crn"])
@pytest.mark.parametrize("legacy", [True, False])
def test_authors_layout_loads_and_detects_variant(tmp_path: Path, variant: str, legacy: bool) -> None:
    path = authors_file(tmp_path, variant, legacy)
    model, metadata = load_checkpoint(path)
    assert model.variant == variant and model.stages == 4
    assert metadata["source_sha256"] == sha256_file(path)
    reference = random_brn(variant)
    y = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        assert torch.equal(model(y)[0], reference(y)[0])


def test_wrapped_and_dataparallel_state_dict(tmp_path: Path) -> None:
    sd = {"module." + k: v for k, v in to_authors_state_dict(random_brn("crn")).items()}
    torch.save({"state_dict": sd, "epoch": 7}, tmp_path / "wrapped.pth")
    model, _ = load_checkpoint(tmp_path / "wrapped.pth")
    assert model.variant == "crn"


@needs_official
def test_legacy_cuda_pickles_load_on_cpu() -> None:
    for path in sorted(OFFICIAL.glob("*.pth")):
        model, metadata = load_checkpoint(path)
        expected = path.name.split("_")[0].lower()
        assert model.variant == expected, path.name
        assert all(p.device.type == "cpu" for p in model.parameters())


def expect_error(path: Path, *fragments: str) -> None:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message


def test_truncated_file(tmp_path: Path) -> None:
    path = authors_file(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    expect_error(path, "truncated")


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.pth"
    path.write_text("these are not weights\n")
    expect_error(path, "not a readable checkpoint")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    expect_error(path, "not a readable checkpoint")


def test_other_network(tmp_path: Path) -> None:
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.bias": torch.zeros(10)}, path)
    expect_error(path, "not a BRN-family checkpoint", "conv_i.0.weight", "'conv1.weight'")


def test_missing_key(tmp_path: Path) -> None:
    expect_error(authors_file(tmp_path, res_conv3__2__bias=None), "missing key 'res_conv3.2.bias'")


def test_unexpected_key(tmp_path: Path) -> None:
    expect_error(authors_file(tmp_path, extra__weight=torch.zeros(1)), "unexpected keys", "extra.weight")


def test_wrong_shape(tmp_path: Path) -> None:
    expect_error(authors_file(tmp_path, conv0_r__0__weight=torch.zeros(32, 5, 3, 3)), "rain.head.weight", "(32, 5, 3, 3)")


def test_gate_width_of_no_variant(tmp_path: Path) -> None:
    expect_error(authors_file(tmp_path, conv_i__0__weight=torch.zeros(32, 80, 3, 3)), "80 (image)")


def test_not_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    expect_error(path, "not a state dict")


def test_own_format_round_trip_with_metadata(tmp_path: Path) -> None:
    model = random_brn("brn-rx", stages=3)
    path = save_checkpoint(model, tmp_path / "m.safetensors", training_data="synthetic", source_sha256="ab" * 32)
    loaded, metadata = load_checkpoint(path)
    assert (loaded.variant, loaded.stages) == ("brn-rx", 3)
    assert metadata["training_data"] == "synthetic" and metadata["source_sha256"] == "ab" * 32
    for key, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor)
    assert path.read_bytes()[8:9] == b"{"  # safetensors: a JSON header, no pickle
    header = json.loads(path.read_bytes()[8 : 8 + int.from_bytes(path.read_bytes()[:8], "little")])
    assert header["__metadata__"]["format"] == "derain-brn"


def test_own_format_fp16(tmp_path: Path) -> None:
    model = random_brn()
    path = save_checkpoint(model, tmp_path / "half.safetensors", dtype=torch.float16)
    loaded, _ = load_checkpoint(path)
    assert loaded.image.head.weight.dtype == torch.float32
    diff = (loaded.image.head.weight - model.image.head.weight).abs().max()
    assert 0 < diff < 1e-3
    assert read_metadata(path)["variant"] == "brn"


def test_foreign_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"format": "pt"})
    expect_error(path, "not a derain checkpoint")


def test_damaged_safetensors(tmp_path: Path) -> None:
    path = save_checkpoint(random_brn(), tmp_path / "cut.safetensors")
    path.write_bytes(path.read_bytes()[:5000])
    expect_error(path, "damaged safetensors file")


def test_missing_file(tmp_path: Path) -> None:
    expect_error(tmp_path / "nope.pth", "no such checkpoint file")
