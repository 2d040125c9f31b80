"""The training-photo builder: the offline part end to end, the Debian part's failure message."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from derain.models import photos


def test_skimage_photos_are_written_scaled_and_unchanged_in_content(tmp_path: Path) -> None:
    assert photos.main([str(tmp_path / "set"), "--no-debian"]) == 0
    written = sorted((tmp_path / "set").glob("*.png"))
    assert [p.stem for p in written] == sorted(photos.SKIMAGE)
    for path in written:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        assert image.ndim == 3 and max(image.shape[:2]) <= photos.LONGEST_SIDE
    # A photo already within the size limit is stored exactly (RGB order kept).
    chelsea = cv2.imread(str(tmp_path / "set" / "chelsea.png"))[..., ::-1]
    np.testing.assert_array_equal(chelsea, skimage.data.chelsea())


def test_debian_photos_without_apt_get_say_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert photos.main([str(tmp_path / "set")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "apt-get" in err and "--no-debian" in err
    assert not list((tmp_path / "set").glob("*.png"))


def test_every_debian_photo_has_a_licence_author_and_unique_name() -> None:
    names = [p.name for p in photos.DEBIAN]
    assert len(set(names)) == len(names) == 36
    assert all(p.licence and p.author and len(p.sha256_prefix) == 16 for p in photos.DEBIAN)
    assert all("=" in p.package for p in photos.DEBIAN)
