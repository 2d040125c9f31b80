"""The clean photos the built-in weights are trained on, rebuilt from their sources.

Two sources, both freely licensed and both reachable without a general internet connection:
the sample images inside the scikit-image wheel (CC0 / public domain), and photographs packed
as desktop wallpapers in Debian's archive (GPL, LGPL, CC-BY, CC-BY-SA or CC0: each file's
licence and author are listed below, as the packages' copyright files give them). Wallpapers
that are drawings or renders, and one of raindrops on a leaf, are left out.

Every image is scaled so that its longest side is 512 px (none is enlarged): about the scale
of the Berkeley photos that Rain100L's scenes come from, so a streak covers as much of a scene
in training as in the test set.

    python -m derain.models.photos out/clean-photos            # both sources (needs apt-get)
    python -m derain.models.photos out/clean-photos --no-debian
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from derain.models.files import sha256_file

LONGEST_SIDE = 512

SKIMAGE = (
    "astronaut", "brick", "camera", "chelsea", "coffee", "coins", "grass", "gravel",
    "hubble_deep_field", "immunohistochemistry", "retina", "rocket",
)


@dataclass(frozen=True)
class Photo:
    package: str  # Debian package=version
    path: str  # inside the package
    sha256_prefix: str
    licence: str
    author: str

    @property
    def name(self) -> str:
        parts = Path(self.path).parts
        stem = parts[-4] if "contents" in parts else Path(self.path).stem
        return f"{self.package.split('=')[0]}-{stem}"


_PLASMA = "plasma-workspace-wallpapers=4:5.27.5-2"
_MATE = "mate-backgrounds=1.26.0-1"
_LOMIRI16 = "lomiri-wallpapers-16.04=20.04.0-2"
_LOMIRI20 = "lomiri-wallpapers-20.04=20.04.0-2"
_PLASMA_LICENCE = "LGPL-3 (metadata.json) / GPL-2+ (Debian copyright)"


def _plasma(name: str, sha: str, author: str) -> Photo:
    return Photo(_PLASMA, f"usr/share/wallpapers/{name}/contents/images/2560x1600.jpg", sha, _PLASMA_LICENCE, author)


def _mate(name: str, sha: str, author: str) -> Photo:
    return Photo(_MATE, f"usr/share/backgrounds/mate/nature/{name}.jpg", sha, "GPL-2+", author)


def _lomiri(package: str, name: str, sha: str, licence: str, author: str) -> Photo:
    return Photo(package, f"usr/share/backgrounds/{name}.jpg", sha, licence, author)


DEBIAN = (
    _plasma("BytheWater", "c272434ef39f2abf", "Maciej Wiklo"),
    _plasma("ColdRipple", "05bef6722fc0ed81", "Risto Saukonpää"),
    _plasma("ColorfulCups", "6e0f3a72feb5a4a9", "Dmitri Popov"),
    _plasma("DarkestHour", "8e3703fae3a3c217", "Risto Saukonpää"),
    _plasma("EveningGlow", "586682dcb362b9f6", "Ian Hex"),
    _plasma("FallenLeaf", "95603a6560c7e8d5", "Martin Klapetek"),
    _plasma("Grey", "88c31d8944b7e693", "Sigi Sagi"),
    _plasma("Kite", "bdca288ce296a981", "Risto Saukonpää"),
    _plasma("OneStandsOut", "cb507baf1dafdcae", "Risto Saukonpää"),
    _plasma("Path", "7477457d7f17b736", "Risto Saukonpää"),
    _plasma("summer_1am", "c868b50789591dd4", "Risto Saukonpää"),
    _mate("Aqua", "5c30118205982da4", "Charles Barbin"),
    _mate("Blinds", "f7aac0dcc2e06d04", "Lennart Poettering"),
    _mate("Dune", "8a67c2cb0be8c46b", "Marco Cogoni"),
    _mate("FreshFlower", "972b0a0c4e5e3fa9", "Jens Ansorg"),
    _mate("Garden", "d3095ee09d425ef2", "Charles Barbin"),
    _mate("GreenMeadow", "8fa0de0aa4089f73", "Timothy Schellhase"),
    _mate("LadyBird", "e35a9a4126ef969c", "Charles Barbin"),
    _mate("Storm", "77ca53077831d323", "Sergey Nazarov"),
    _mate("TwoWings", "665e5abf8a539907", "Charles Barbin"),
    _mate("Wood", "19c78500ac00a622", "Jean-François Fortin Tam"),
    _mate("YellowFlower", "254da96256acb7ad", "Charles Barbin"),
    _lomiri(_LOMIRI16, "Bridge_by_Sander_Klootwijk", "bd86b081f9975e2b", "CC-BY-SA-4.0", "Sander Klootwijk"),
    _lomiri(_LOMIRI16, "Dragonfly_by_Bolly", "af5af17841009732", "CC-BY-SA-4.0", "Bolly"),
    _lomiri(_LOMIRI16, "Picture_0B_by_freespace", "c8c0ab18e48d9e04", "CC-BY-4.0", 'Trevor "Freespace"'),
    _lomiri(_LOMIRI16, "Picture_1A_by_freespace", "89e86af38d04daae", "CC-BY-4.0", 'Trevor "Freespace"'),
    _lomiri(_LOMIRI16, "Wine_by_Jakkub_Mede", "d2e96e6d4da40dd8", "CC-BY-4.0", "Jakub Mede"),
    _lomiri(_LOMIRI16, "aitzgorri_by_Aitzol_Berasategi", "66268e7b48f8854d", "CC-BY-4.0", "Aitzol Berasategi"),
    _lomiri(_LOMIRI16, "free_by_Peter_Nerlich", "85a5453c2fed514c", "CC-BY-SA-4.0", "Peter Nerlich"),
    _lomiri(_LOMIRI16, "friends_by_Aitzol_Berasategi", "cc40e313c74e421e", "CC-BY-4.0", "Aitzol Berasategi"),
    _lomiri(_LOMIRI16, "greentock_by_Peter_Nerlich", "e7b20e2db9dcd6e2", "CC-BY-SA-4.0", "Peter Nerlich"),
    _lomiri(_LOMIRI16, "life_by_Aitzol_Berasategi", "4c119350ead80201", "CC-BY-4.0", "Aitzol Berasategi"),
    _lomiri(_LOMIRI16, "picosdeeuropa_by_Aitzol_Berasategi", "414d0072b2f6f2c5", "CC-BY-4.0", "Aitzol Berasategi"),
    _lomiri(_LOMIRI16, "seeding_by_Clements_Engelhardt", "a5634d1ab5e41a35", "CC0-1.0", "Clemens Engelhardt"),
    _lomiri(_LOMIRI16, "sunset_by_Aitzol_Berasategi", "474dab6a4b9f94dc", "CC-BY-4.0", "Aitzol Berasategi"),
    _lomiri(_LOMIRI20, "Kleiber_by_Lukas_Baubkus", "6572410c09f4492c", "CC-BY-SA-3.0", "Lukas Baubkus"),
)


class PhotoError(RuntimeError):
    """A source that cannot be fetched or does not match what the weights were trained on."""


def _save(image: np.ndarray, path: Path) -> None:
    """Write RGB `image` as PNG with its longest side cut to LONGEST_SIDE."""
    scale = LONGEST_SIDE / max(image.shape[:2])
    if scale < 1:
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    if not cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1])):
        raise PhotoError(f"{path}: cannot write the image; check the folder is writable")


def write_skimage(out: Path) -> list[Path]:
    """The scikit-image sample photos (no download: they are inside the wheel)."""
    import skimage.data

    paths = []
    for name in SKIMAGE:
        image = getattr(skimage.data, name)()
        image = (np.repeat(image[..., None], 3, 2) if image.ndim == 2 else image)[..., :3]
        paths.append(out / f"{name}.png")
        _save(image, paths[-1])
    return paths


def write_debian(out: Path, photos: tuple[Photo, ...] = DEBIAN) -> list[Path]:
    """The wallpaper photos, from their pinned Debian packages (`apt-get download`, no root)."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise PhotoError("apt-get and dpkg-deb not found: the wallpaper photos come from Debian packages; use --no-debian")
    packages = sorted({p.package for p in photos})
    paths = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        fetched = subprocess.run(["apt-get", "download", *packages], cwd=work, capture_output=True, text=True)
        if fetched.returncode:
            errors = "; ".join(line for line in fetched.stderr.splitlines() if line.startswith("E:")) or "no error printed"
            raise PhotoError(
                f"apt-get download failed ({errors}): these exact versions are in Debian 12 (bookworm) and "
                "at snapshot.debian.org; or use --no-debian"
            )
        for deb in work.glob("*.deb"):
            unpacked = subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "root")], capture_output=True, text=True)
            if unpacked.returncode:
                raise PhotoError(f"dpkg-deb -x {deb.name} failed: {unpacked.stderr.strip() or 'no error printed'}")
        for photo in photos:
            source = work / "root" / photo.path
            if not source.is_file():
                raise PhotoError(f"{photo.package}: no {photo.path} in the package")
            digest = sha256_file(source)
            if not digest.startswith(photo.sha256_prefix):
                raise PhotoError(f"{photo.package}: {photo.path} has sha256 {digest[:16]}..., not {photo.sha256_prefix}...")
            image = cv2.imread(str(source), cv2.IMREAD_COLOR)
            if image is None:
                raise PhotoError(f"{photo.package}: {photo.path} is not an image OpenCV can read")
            paths.append(out / f"{photo.name}.png")
            _save(image[..., ::-1], paths[-1])
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m derain.models.photos", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write the PNGs to (created)")
    parser.add_argument("--no-debian", action="store_true", help="only the scikit-image photos (no apt-get)")
    args = parser.parse_args(argv)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        # The Debian photos first: a failed fetch then leaves no half-built set behind.
        paths = ([] if args.no_debian else write_debian(args.out)) + write_skimage(args.out)
    except (PhotoError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{len(paths)} photos in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
