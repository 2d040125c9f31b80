"""On-disk cache of built engines, keyed by everything that makes a build valid.

An entry is a folder named by the SHA-256 of its key, holding the artefact, any files written
beside it (OpenVINO keeps its weights next to the graph), and `meta.json` (the key itself and
the SHA-256 of every file). A missing, mismatched or damaged entry is a miss: it is
removed and rebuilt, never trusted and never a crash.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from derain.models.brn import BRN
from derain.models.files import sha256_file
from derain.models.hub import cache_root


def engine_cache_dir() -> Path:
    return cache_root() / "engines"


def weights_hash(model: BRN) -> str:
    """SHA-256 over the model's tensors in a fixed order: same weights, same hash, any file."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def device_key(device: torch.device) -> dict[str, str]:
    if device.type != "cuda":
        return {"device": "cpu"}
    props = torch.cuda.get_device_properties(device)
    return {"device": props.name, "capability": f"{props.major}.{props.minor}"}


class EngineCache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or engine_cache_dir()

    @staticmethod
    def digest(key: dict[str, object]) -> str:
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]

    def entry(self, key: dict[str, object]) -> Path:
        return self.root / self.digest(key)

    def lookup(self, key: dict[str, object], artefact: str) -> Path | None:
        """The cached artefact for `key`, or None (a damaged entry is removed on the way)."""
        folder = self.entry(key)
        meta_path, path = folder / "meta.json", folder / artefact
        if not folder.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            companions = meta.get("companions", {})
            if (meta["key"] == key and meta["sha256"] == sha256_file(path)
                    and all(sha256_file(folder / name) == digest for name, digest in companions.items())):
                return path
        except (OSError, ValueError, KeyError, TypeError):
            pass
        shutil.rmtree(folder, ignore_errors=True)
        return None

    def store(self, key: dict[str, object], artefact: str, write: Callable[[Path], None]) -> Path:
        """Build an entry in a scratch folder and move it into place only when complete.

        `write` makes `artefact` at the path it is given, and may write other files beside it.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".build-", dir=self.root))
        try:
            write(scratch / artefact)
            companions = {p.name: sha256_file(p) for p in sorted(scratch.iterdir()) if p.name != artefact}
            meta = {"key": key, "sha256": sha256_file(scratch / artefact), "companions": companions}
            (scratch / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
            folder = self.entry(key)
            shutil.rmtree(folder, ignore_errors=True)
            try:
                os.replace(scratch, folder)
            except OSError:
                # Another process put the same entry in place first: use it if it is whole.
                shutil.rmtree(scratch, ignore_errors=True)
                found = self.lookup(key, artefact)
                if found is None:
                    raise
                return found
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        return folder / artefact

    def remove(self, key: dict[str, object]) -> None:
        shutil.rmtree(self.entry(key), ignore_errors=True)
