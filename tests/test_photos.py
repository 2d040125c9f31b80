"""The training-photo builder: the scikit-image part end to end, the Debian part against a mirror on loopback."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import socket
import tarfile
import threading
from collections.abc import Iterator
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


def _tar_xz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _deb(files: dict[str, bytes]) -> bytes:
    """A .deb as dpkg-deb builds one: an ar archive of debian-binary, control.tar.xz and data.tar.xz."""
    members = {"debian-binary": b"2.0\n", "control.tar.xz": _tar_xz({"control": b"Package: test\n"}), "data.tar.xz": _tar_xz(files)}
    out = b"!<arch>\n"
    for name, data in members.items():
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode() + data + b"\n" * (len(data) % 2)
    return out


class _MirrorHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the folder; a path under /cut/ sends a third of its file and hangs up, as a dropped connection does."""

    def do_GET(self) -> None:
        if not self.path.startswith("/cut/"):
            return super().do_GET()
        data = Path(self.translate_path(self.path.replace("/cut/", "/", 1))).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 3])
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A Debian mirror on loopback: an HTTP server over a folder laid out as the archive's pool."""
    root = tmp_path / "mirror"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_MirrorHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/debian", root / "debian"
    server.shutdown()
    server.server_close()


def _publish(pool: Path, files: dict[str, bytes]) -> photos.Package:
    deb = _deb(files)
    path = "pool/main/t/test-wallpapers/test-wallpapers_1.0-1_all.deb"
    (pool / path).parent.mkdir(parents=True)
    (pool / path).write_bytes(deb)
    return photos.Package("test-wallpapers", "1.0-1", path, hashlib.sha256(deb).hexdigest())


def _jpeg(height: int, width: int) -> bytes:
    rng = np.random.default_rng(0)
    image = cv2.resize(rng.integers(0, 256, (height // 20, width // 20, 3), dtype=np.uint8), (width, height))
    return cv2.imencode(".jpg", image)[1].tobytes()


def _wanted(package: photos.Package, *names: str) -> tuple[photos.Photo, ...]:
    return tuple(photos.Photo(package, f"usr/share/backgrounds/{n}.jpg", "CC0-1.0", "someone") for n in names)


def test_debian_photos_are_fetched_checked_scaled_and_written_with_the_rest(
    mirror: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, pool = mirror
    package = _publish(pool, {"usr/share/backgrounds/wide.jpg": _jpeg(600, 1000), "usr/share/backgrounds/small.jpg": _jpeg(200, 300)})
    monkeypatch.setattr(photos, "DEBIAN", _wanted(package, "wide", "small"))
    assert photos.main([str(tmp_path / "set"), "--mirror", url]) == 0
    written = {p.stem for p in (tmp_path / "set").glob("*.png")}
    assert written == {"test-wallpapers-wide", "test-wallpapers-small", *photos.SKIMAGE, *photos.SKIMAGE_MORE}
    assert cv2.imread(str(tmp_path / "set" / "test-wallpapers-wide.png")).shape == (307, 512, 3)
    small = cv2.imread(str(tmp_path / "set" / "test-wallpapers-small.png"))
    np.testing.assert_array_equal(small, cv2.imdecode(np.frombuffer(_jpeg(200, 300), np.uint8), cv2.IMREAD_COLOR))


def test_held_out_photos_go_to_their_own_folder(mirror: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, pool = mirror
    package = _publish(pool, {"usr/share/backgrounds/kept.jpg": _jpeg(200, 300), "usr/share/backgrounds/held.jpg": _jpeg(200, 300)})
    monkeypatch.setattr(photos, "DEBIAN", _wanted(package, "kept", "held"))
    monkeypatch.setattr(photos, "HELD_OUT", ("test-wallpapers-held", "astronaut"))
    assert photos.main([str(tmp_path / "set"), "--mirror", url, "--held-out", str(tmp_path / "val")]) == 0
    assert {p.stem for p in (tmp_path / "val").glob("*.png")} == {"test-wallpapers-held", "astronaut"}
    train = {p.stem for p in (tmp_path / "set").glob("*.png")}
    assert "test-wallpapers-kept" in train and not train & {"test-wallpapers-held", "astronaut"}


def test_the_held_out_names_are_photos_the_builder_writes() -> None:
    names = {p.name for p in photos.DEBIAN} | set(photos.SKIMAGE)
    assert set(photos.HELD_OUT) <= names


def test_a_package_that_is_not_the_pinned_file_is_refused(mirror: tuple[str, Path]) -> None:
    url, pool = mirror
    package = _publish(pool, {"usr/share/backgrounds/wide.jpg": _jpeg(600, 1000)})
    tampered = photos.Package(package.name, package.version, package.pool_path, "0" * 64)
    with pytest.raises(photos.PhotoError, match="not 0000000000000000.*--mirror"):
        photos.debian_photos(_wanted(tampered, "wide"), mirror=url)
    with pytest.raises(photos.PhotoError, match=r"stopped after \d+ of \d+ bytes; run again"):
        photos.debian_photos(_wanted(package, "wide"), mirror=url.replace("/debian", "/cut/debian"))


def test_a_failure_after_some_photos_writes_none(mirror: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    url, pool = mirror
    package = _publish(pool, {"usr/share/backgrounds/wide.jpg": _jpeg(600, 1000)})
    monkeypatch.setattr(photos, "DEBIAN", _wanted(package, "wide", "gone"))
    assert photos.main([str(tmp_path / "set"), "--mirror", url]) == 2
    assert "test-wallpapers_1.0-1_all.deb: no image at usr/share/backgrounds/gone.jpg" in capsys.readouterr().err
    assert not (tmp_path / "set").exists()


def test_an_unreachable_or_mistyped_mirror_is_one_line_that_says_what_to_do(mirror: tuple[str, Path], tmp_path: Path, capsys) -> None:
    url, _ = mirror  # serves nothing: every package is a 404
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/debian"
    for bad in (url, closed, "deb.debian.org/debian"):
        assert photos.main([str(tmp_path / "set"), "--mirror", bad]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3
    assert "HTTP 404" in lines[0] and "Connection refused" in lines[1] and lines[2].startswith("error: deb.debian.org/debian/pool/")
    assert all("--mirror" in line and "--no-debian" in line for line in lines)
    assert not (tmp_path / "set").exists()


def test_every_debian_photo_has_a_licence_author_and_unique_name() -> None:
    names = [p.name for p in photos.DEBIAN]
    assert len(set(names)) == len(names) == 50
    assert all(p.licence and p.author for p in photos.DEBIAN)
    assert all(len(p.package.sha256) == 64 and p.package.pool_path.endswith(".deb") for p in photos.DEBIAN)


def test_a_failed_package_download_leaves_nothing_in_the_folder(mirror: tuple[str, Path], tmp_path: Path) -> None:
    url, pool = mirror
    package = _publish(pool, {"usr/share/backgrounds/wide.jpg": _jpeg(600, 1000)})
    tampered = photos.Package(package.name, package.version, package.pool_path, "0" * 64)
    folder = tmp_path / "debs"
    folder.mkdir()
    for pkg, base in ((tampered, url), (package, url.replace("/debian", "/cut/debian"))):
        with pytest.raises(photos.PhotoError):
            photos.fetch_package(pkg, folder, base)
        assert list(folder.iterdir()) == []
    assert photos.fetch_package(package, folder, url).read_bytes() == (pool / package.pool_path).read_bytes()
