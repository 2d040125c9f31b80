"""File helpers the checkpoint, image and cache code share: hashing and atomic replacement."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


def sha256_file(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, as hex.

    Raises:
        OSError: the file cannot be read.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _create_beside(path: Path, suffix: str) -> Path:
    """A new, empty file with a random name beside `path`.

    Created with mode 0o666 so that the kernel applies the process's umask, as it does for any
    ordinary file: reading the umask would mean setting it, which races with every other
    thread that creates a file meanwhile (mkstemp's 0o600 would need that value to fix up).
    """
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{suffix}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"{path.parent}: no free temporary name for {path.name}; remove the .{path.name}.* files there")


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """A temporary name beside `path` to write to; renamed onto `path` only if the block succeeds.

    A crash, Ctrl-C or exception inside the block leaves `path` as it was and no temporary behind.
    The finished file has the mode any new file gets (0o666 less the umask).

    Raises:
        OSError: the folder does not exist or is not writable.
    """
    path = Path(path)
    tmp = _create_beside(path, suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
