"""Checkpoint files: the authors' PyTorch pickles in, the project's own safetensors in and out.

The project's own files are safetensors (no code runs on load) with the model's identity in the
header metadata: format version, variant, stages, training data and the SHA-256 of the file
the weights came from.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from derain.models.brn import BRN, CheckpointError, checkpoint_filter_fn, detect_variant
from derain.models.files import atomic_path, sha256_file

FORMAT = "derain-brn"
FORMAT_VERSION = "1"
# Wrappers that training scripts put around a state dict.
_WRAPPER_KEYS = ("state_dict", "model", "net", "model_state_dict")


def is_safetensors(path: Path) -> bool:
    """A safetensors file opens with an 8-byte header length and then a JSON object."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (1 << 32)


def save_checkpoint(
    model: BRN,
    path: str | Path,
    *,
    training_data: str = "",
    source_sha256: str = "",
    dtype: torch.dtype = torch.float32,
    extra: dict[str, str] | None = None,
) -> Path:
    """Write `model` in the project's format, atomically (a crash leaves no half file)."""
    path = Path(path)
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "variant": model.variant,
        "stages": str(model.stages),
        "training_data": training_data,
        "source_sha256": source_sha256,
        **(extra or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def read_metadata(path: str | Path) -> dict[str, str]:
    """The header metadata of a project checkpoint."""
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def load_checkpoint(path: str | Path) -> tuple[BRN, dict[str, str]]:
    """A BRN-family model (FP32, CPU, eval mode) and its metadata from either kind of file.

    Raises CheckpointError with a one-line reason for anything that is not a BRN checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        if is_safetensors(path):
            model, metadata = _load_own(path)
        else:
            model, metadata = _load_authors(path)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    return model.eval(), metadata


def _load_own(path: Path) -> tuple[BRN, dict[str, str]]:
    try:
        metadata = read_metadata(path)
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"damaged safetensors file ({err}); fetch or export it again") from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(
            f"a safetensors file, but not a derain checkpoint (metadata format={metadata.get('format')!r}, "
            f"expected {FORMAT!r})"
        )
    try:
        model = BRN(metadata["variant"], int(metadata["stages"]))
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"derain checkpoint with bad metadata: {err}") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"derain checkpoint does not match its metadata: missing {missing[:3]}, unexpected {unexpected[:3]}")
    for key, tensor in tensors.items():
        if tensor.shape != expected[key].shape:
            raise CheckpointError(f"{key} has shape {tuple(tensor.shape)}, expected {tuple(expected[key].shape)}")
    model.load_state_dict({k: v.float() for k, v in tensors.items()})
    return model, metadata


def _load_authors(path: Path) -> tuple[BRN, dict[str, str]]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises a dozen types for files that are not checkpoints
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(
            f"not a readable checkpoint (expected a PyTorch state dict or a derain .safetensors file; "
            f"the file is truncated, damaged or of another kind: {reason[:120]})"
        ) from None
    state_dict = unwrap_state_dict(obj)
    variant = detect_variant(state_dict)
    model = BRN(variant, stages=4)
    model.load_state_dict(checkpoint_filter_fn(state_dict, model))
    metadata = {
        "format": "authors-pth",
        "variant": variant,
        "stages": "4",
        "training_data": "",
        "source_sha256": sha256_file(path),
    }
    return model, metadata


def unwrap_state_dict(obj: object) -> dict[str, Tensor]:
    """The state dict inside a checkpoint object, without DataParallel's 'module.' prefixes."""
    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"not a state dict of tensors (found {type(obj).__name__})")
    return {k.removeprefix("module."): v for k, v in obj.items()}
