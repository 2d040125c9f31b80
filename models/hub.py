"""Named weights: the built-in checkpoint, the user cache, and fetching on request.

Nothing here downloads unless `fetch` is called: `resolve_weights` only looks at the built-in
file, the cache and the file system, and says how to fetch what is missing.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import platformdirs

from derain.models.brn import BRN, CheckpointError, PretrainedCfg, pretrained_cfgs
from derain.models.checkpoint import load_checkpoint
from derain.models.errors import WeightsError
from derain.models.files import atomic_path

BUILTIN_NAME = "builtin"
BUILTIN_PATH = Path(__file__).parent / "weights" / "brn-builtin.safetensors"
CACHE_ENV = "DERAIN_CACHE"
MIRROR_ENV = "DERAIN_WEIGHTS_MIRROR"


class FetchError(WeightsError):
    """A download that failed or did not match its hash; nothing was cached."""


def cache_root() -> Path:
    """The project's cache: $DERAIN_CACHE, else the platform's user cache folder."""
    return Path(os.environ.get(CACHE_ENV) or platformdirs.user_cache_dir("derain"))


def cache_dir() -> Path:
    """Where fetched weights live."""
    return cache_root() / "weights"


def cached_path(cfg: PretrainedCfg) -> Path:
    return cache_dir() / cfg.file


def is_cached(cfg: PretrainedCfg) -> bool:
    return cached_path(cfg).is_file()


def get_cfg(name: str) -> PretrainedCfg:
    try:
        return pretrained_cfgs[name.lower()]
    except KeyError:
        raise CheckpointError(
            f"no weights named {name!r}: `derain weights list` shows the names ({BUILTIN_NAME}, "
            f"{', '.join(pretrained_cfgs)}), or give a checkpoint path"
        ) from None


def download_url(cfg: PretrainedCfg, mirror: str | None = None) -> str:
    """The origin URL, or the file's name under a mirror (a flat folder of the released files)."""
    mirror = mirror or os.environ.get(MIRROR_ENV)
    return f"{mirror.rstrip('/')}/{cfg.file}" if mirror else cfg.url


def fetch(
    name: str,
    mirror: str | None = None,
    timeout: float = 30.0,
    progress: Callable[[int, int | None], None] | None = None,
) -> Path:
    """Download the named weights into the cache, check the SHA-256, return the cached path.

    The file is written under a temporary name and renamed into place only after the hash
    matches, so a failed or corrupted download never lands in the cache.
    """
    cfg = get_cfg(name)
    if not timeout > 0:
        raise FetchError(f"--timeout {timeout:g}: give the network timeout in seconds, above 0")
    target = cached_path(cfg)
    url = download_url(cfg, mirror)
    if urllib.parse.urlsplit(url).scheme not in ("http", "https", "file"):
        raise FetchError(f"{url}: not an http(s) URL; give --mirror as http://host/folder/")
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    try:
        with atomic_path(target, suffix=".part") as tmp:
            with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                done = 0
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
            if digest.hexdigest() != cfg.sha256:
                raise FetchError(
                    f"{url}: SHA-256 {digest.hexdigest()[:16]}... does not match the expected "
                    f"{cfg.sha256[:16]}... for {cfg.name}; the download was discarded (check the mirror)"
                )
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, OSError) as err:
        reason = getattr(err, "reason", None) or (f"not an HTTP reply: {err}" if isinstance(err, http.client.HTTPException) else err)
        raise FetchError(f"{url}: download failed ({reason}); check the network or give --mirror URL") from None
    return target


def resolve_weights(spec: str | None) -> Path:
    """The file behind a weights spec: None or 'builtin', a registry name, or a path."""
    if spec is None or spec == BUILTIN_NAME:
        if not BUILTIN_PATH.is_file():
            raise CheckpointError(
                f"the built-in weights ({BUILTIN_PATH}) are not installed; give --weights NAME or a checkpoint path"
            )
        return BUILTIN_PATH
    path = Path(spec).expanduser()
    if path.exists() or os.sep in spec or path.suffix in (".pth", ".pt", ".safetensors", ".ckpt"):
        if not path.is_file():
            raise CheckpointError(f"{path}: no such checkpoint file")
        return path
    cfg = get_cfg(spec)
    if not is_cached(cfg):
        raise CheckpointError(
            f"weights {cfg.name!r} are not downloaded yet: run `derain weights fetch {cfg.name}` "
            "(downloads happen only on request)"
        )
    return cached_path(cfg)


def load_model(weights: str | None = None) -> BRN:
    """A BRN-family model (CPU, FP32, eval mode) for a weights spec; None means built-in."""
    model, _ = load_checkpoint(resolve_weights(weights))
    return model
