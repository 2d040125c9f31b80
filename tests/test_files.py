"""Atomic file replacement: the finished file's mode, and no process-wide state touched."""

from __future__ import annotations

import importlib
import os
import stat
from pathlib import Path

import pytest

import derain.models.files as files


def test_finished_file_has_the_mode_of_the_umask_in_force(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        with files.atomic_path(tmp_path / "out.bin") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.bin").stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_the_umask_is_never_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Setting the umask to read it races with any thread creating a file meanwhile."""

    def refuse(mask: int) -> int:
        raise AssertionError(f"os.umask({mask:#o}) called")

    monkeypatch.setattr(os, "umask", refuse)
    importlib.reload(files)
    with files.atomic_path(tmp_path / "out.bin") as tmp:
        tmp.write_bytes(b"x")
    assert (tmp_path / "out.bin").read_bytes() == b"x"


def test_a_failed_block_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    (tmp_path / "out.bin").write_bytes(b"old")
    with pytest.raises(RuntimeError), files.atomic_path(tmp_path / "out.bin", ".part") as tmp:
        tmp.write_bytes(b"new")
        raise RuntimeError
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"] and (tmp_path / "out.bin").read_bytes() == b"old"
