"""Named weights: the built-in checkpoint, the authors' release, the user cache, fetching on request.

Nothing here downloads unless `fetch` is called: `resolve_weights` and `load_model` only look at
the built-in file, the cache and the file system, and say how to fetch what is missing.
"""

from __future__ import annotations

import dataclasses
import os
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import platformdirs

from derain.models.brn import BRN, CheckpointError, PretrainedCfg, pretrained_cfgs
from derain.models.checkpoint import load_checkpoint
from derain.models.download import download
from derain.models.errors import InputError, WeightsError

BUILTIN_NAME = "brn-builtin"
# The name the built-in weights had before the authors' `brn-*` names sat beside them.
BUILTIN_ALIAS = "builtin"
BUILTIN_PATH = Path(__file__).parent / "weights" / "brn-builtin.safetensors"
BUILTIN_TRAINING_DATA = "synthetic rain (this project; see MODEL_CARD.md)"
CACHE_ENV = "DERAIN_CACHE"
MIRROR_ENV = "DERAIN_WEIGHTS_MIRROR"
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors", ".ckpt")


class FetchError(WeightsError):
    """A download that failed or did not match its hash; nothing was cached."""


@dataclass(frozen=True)
class WeightInfo:
    """One named set of weights.

    Attributes:
        name: what `load_model`, `fetch_weights` and every `weights` argument take.
        variant: the BRN-family variant (brn, brn-xr, brn-rx, crn).
        training_data: what the weights were trained on.
        source: "builtin" (shipped with derain) or "authors" (the paper's release, fetched on request).
        cached: the file on disk (the built-in file, or the fetched file in the cache), else None.
    """

    name: str
    variant: str
    training_data: str
    source: Literal["builtin", "authors"]
    cached: Path | None


def cache_root() -> Path:
    """The project's cache: $DERAIN_CACHE, else the platform's user cache folder."""
    return Path(os.environ.get(CACHE_ENV) or platformdirs.user_cache_dir("derain"))


def cache_dir() -> Path:
    """Where fetched weights live."""
    return cache_root() / "weights"


def cached_path(cfg: PretrainedCfg) -> Path:
    """Where the fetched file of `cfg` lives (whether or not it is there)."""
    return cache_dir() / cfg.file


def is_cached(cfg: PretrainedCfg) -> bool:
    """Whether `cfg`'s file has been fetched."""
    return cached_path(cfg).is_file()


def is_builtin(name: str) -> bool:
    """Whether `name` names the built-in weights (`brn-builtin`, or its old name `builtin`)."""
    return name.lower() in (BUILTIN_NAME, BUILTIN_ALIAS)


def get_cfg(name: str) -> PretrainedCfg:
    """The authors' checkpoint called `name`.

    Raises:
        CheckpointError: no such name.
    """
    try:
        return pretrained_cfgs[name.lower()]
    except KeyError:
        raise CheckpointError(
            f"no weights named {name!r}: `derain weights list` shows the names ({BUILTIN_NAME}, "
            f"{', '.join(pretrained_cfgs)}), or give a checkpoint path"
        ) from None


def list_weights() -> list[WeightInfo]:
    """Every named set of weights: the built-in one first, then the authors' release.

    Looks at the disk only; nothing is downloaded.
    """
    builtin = WeightInfo(BUILTIN_NAME, "brn", BUILTIN_TRAINING_DATA, "builtin", BUILTIN_PATH if BUILTIN_PATH.is_file() else None)
    authors = [
        WeightInfo(cfg.name, cfg.variant, cfg.training_data, "authors", cached_path(cfg) if is_cached(cfg) else None)
        for cfg in pretrained_cfgs.values()
    ]
    return [builtin, *authors]


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
    """Download the named weights into the cache and return the cached path.

    The built-in weights need no download: their path is returned as it is.

    Args:
        name: a name from `list_weights`.
        mirror: a URL of a flat folder holding the released files (default $DERAIN_WEIGHTS_MIRROR,
            else the authors' repository).
        timeout: network timeout in seconds.
        progress: called with (bytes so far, total or None) as the download goes.

    Raises:
        CheckpointError: no weights of that name.
        FetchError: the download failed, was cut short or did not match its SHA-256; nothing
            was cached.
    """
    if is_builtin(name):
        return resolve_weights(BUILTIN_NAME)
    cfg = get_cfg(name)
    if not timeout > 0:
        raise FetchError(f"timeout={timeout:g}: give the network timeout in seconds, above 0")
    url = download_url(cfg, mirror)
    if urllib.parse.urlsplit(url).scheme not in ("http", "https", "file"):
        raise FetchError(f"{url}: not an http(s) URL; give `mirror` as http://host/folder/")
    target = cached_path(cfg)
    target.parent.mkdir(parents=True, exist_ok=True)
    return download(
        url, target, cfg.sha256, hint="check the network or give a `mirror` URL", pinned_by=f"as expected for {cfg.name}",
        error=FetchError, timeout=timeout, progress=progress,
    )


def resolve_weights(spec: str | os.PathLike[str] | None) -> Path:
    """The file behind a weights spec.

    Args:
        spec: None or `brn-builtin` (also `builtin`) for the built-in weights, a name from
            `list_weights`, or a checkpoint path.

    Raises:
        CheckpointError: no such file, no such name, or named weights not fetched yet.
    """
    if spec is None or (isinstance(spec, str) and is_builtin(spec)):
        if not BUILTIN_PATH.is_file():
            raise CheckpointError(
                f"the built-in weights ({BUILTIN_PATH}) are not installed; give `weights` (a registry name or a checkpoint path)"
            )
        return BUILTIN_PATH
    path = Path(spec).expanduser()
    text = os.fspath(spec)
    if not isinstance(spec, str) or path.exists() or os.sep in text or path.suffix in CHECKPOINT_SUFFIXES:
        if not path.is_file():
            raise CheckpointError(f"{path}: no such checkpoint file")
        return path
    cfg = get_cfg(text)
    if not is_cached(cfg):
        raise CheckpointError(
            f"weights {cfg.name!r} are not downloaded yet: run `derain weights fetch {cfg.name}` "
            "(downloads happen only on request)"
        )
    return cached_path(cfg)


def load_model(weights: str | os.PathLike[str] | None = None, stages: int | None = None) -> BRN:
    """A BRN-family model (CPU, FP32, eval mode).

    Args:
        weights: a name from `list_weights` or a checkpoint path; None for the built-in weights.
        stages: run only the first `stages` recurrent stages of the checkpoint (each stage's
            output is trained to be a derained image: fewer stages, less time, less rain
            removed); None for all of them.

    Raises:
        CheckpointError: the weights cannot be found or are not a BRN checkpoint.
        InputError: `stages` is not between 1 and the checkpoint's number of stages.
    """
    path = resolve_weights(weights)
    model, _ = load_checkpoint(path)
    if stages is not None:
        if isinstance(stages, bool) or not isinstance(stages, int) or not 1 <= stages <= model.stages:
            raise InputError(f"stages={stages!r}: {path.name} has {model.stages} recurrent stages; give 1 to {model.stages}, or None for all")
        model.config = dataclasses.replace(model.config, stages=stages)
    return model
