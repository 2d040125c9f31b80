"""The clean photos the built-in weights are trained on, rebuilt from their sources.

Two sources, both freely licensed and both reachable without a general internet connection:
the sample images inside the scikit-image wheel (CC0 / public domain), and photographs packed
as desktop wallpapers in Debian's archive (GPL, LGPL, CC-BY, CC-BY-SA or CC0: each file's
licence and author are listed below, as the packages' copyright files give them). Wallpapers
that are drawings or renders, and one of raindrops on a leaf, are left out.

The packages are fetched from a Debian mirror's pool by their exact file names and checked
against the SHA-256 that Debian's package index gives them, so the set is the same on every
machine and needs neither apt nor a Debian system, only python-debian (`derain[photos]`).

Every image is scaled so that its longest side is 512 px (none is enlarged): about the scale
of the Berkeley photos that Rain100L's scenes come from, so a streak covers as much of a scene
in training as in the test set.

    python -m derain.models.photos out/clean-photos            # both sources (180 MB of packages)
    python -m derain.models.photos out/clean-photos --no-debian
    python -m derain.models.photos out/photos --held-out out/held-out   # run 11's split

`--held-out DIR` writes the six photos that runs 9 to 11 held out for validation (HELD_OUT) to
DIR instead, so that training (`--data out/photos --val out/held-out`) and
`benchmarks/harm.py --photos out/held-out` see the same split on every machine.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from derain.models.download import download
from derain.models.errors import DerainError

LONGEST_SIDE = 512
MIRROR = "http://deb.debian.org/debian"

SKIMAGE = (
    "astronaut", "brick", "camera", "chelsea", "coffee", "coins", "grass", "gravel",
    "hubble_deep_field", "immunohistochemistry", "retina", "rocket",
)
# Added for run 11 with the Debian photos (not with --no-debian, runs 1-7's set): fine print and
# a clock face. Both released into the public domain, as their docstrings say.
SKIMAGE_MORE = ("text", "clock")
# Held out for validation in runs 9-11: none was trained on in runs 9 to 11 (nor canyon-wren ever).
HELD_OUT = (
    "astronaut", "budgie-backgrounds-canyon-wren", "plasma-workspace-wallpapers-EveningGlow", "gravel",
    "lomiri-wallpapers-16.04-seeding_by_Clements_Engelhardt", "mate-backgrounds-Storm",
)


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    pool_path: str  # the .deb's path under the mirror, as Debian's package index gives it
    sha256: str  # of the .deb, from the same index


@dataclass(frozen=True)
class Photo:
    package: Package
    path: str  # inside the package
    licence: str
    author: str

    @property
    def name(self) -> str:
        parts = Path(self.path).parts
        stem = parts[-4] if "contents" in parts else Path(self.path).stem
        return f"{self.package.name}-{stem}"


# Debian 12 (bookworm), except budgie-backgrounds: Debian 13 (trixie).
_PLASMA = Package(
    "plasma-workspace-wallpapers", "4:5.27.5-2",
    "pool/main/p/plasma-workspace-wallpapers/plasma-workspace-wallpapers_5.27.5-2_all.deb",
    "32cd18b71c8c938a18b3b351f217c02ac590e323caa3cf322fbb875ce8892f8b",
)
_MATE = Package(
    "mate-backgrounds", "1.26.0-1",
    "pool/main/m/mate-backgrounds/mate-backgrounds_1.26.0-1_all.deb",
    "7bf4c2209f34b4f61ba6d24c8b58c28b361e82e4b943aae6d42c030169af9e04",
)
_LOMIRI16 = Package(
    "lomiri-wallpapers-16.04", "20.04.0-2",
    "pool/main/l/lomiri-wallpapers/lomiri-wallpapers-16.04_20.04.0-2_all.deb",
    "a99ff6a3bfe451e4cc0682ecb3cc82e71740626d59e4845ae34a0a0e45421eab",
)
_LOMIRI20 = Package(
    "lomiri-wallpapers-20.04", "20.04.0-2",
    "pool/main/l/lomiri-wallpapers/lomiri-wallpapers-20.04_20.04.0-2_all.deb",
    "d44e89b8473aafe64a5b678f014862dc31335aaaf18665c544d985d854f1a709",
)
_BUDGIE = Package(
    "budgie-backgrounds", "3.0-1",
    "pool/main/b/budgie-backgrounds/budgie-backgrounds_3.0-1_all.deb",
    "b91c2d5209558bc11d8d3a161f22a608857e3f8c735980cfab0d6650b03014ca",
)
_PLASMA_LICENCE = "LGPL-3 (metadata.json) / GPL-2+ (Debian copyright)"


def _plasma(name: str, author: str) -> Photo:
    return Photo(_PLASMA, f"usr/share/wallpapers/{name}/contents/images/2560x1600.jpg", _PLASMA_LICENCE, author)


def _mate(name: str, author: str) -> Photo:
    return Photo(_MATE, f"usr/share/backgrounds/mate/nature/{name}.jpg", "GPL-2+", author)


def _lomiri(package: Package, name: str, licence: str, author: str) -> Photo:
    return Photo(package, f"usr/share/backgrounds/{name}.jpg", licence, author)


def _budgie(name: str) -> Photo:
    return Photo(_BUDGIE, f"usr/share/backgrounds/budgie/{name}.jpg", "CC0-1.0", "Budgie Desktop Developers")


DEBIAN = (
    _plasma("BytheWater", "Maciej Wiklo"),
    _plasma("ColdRipple", "Risto Saukonpää"),
    _plasma("ColorfulCups", "Dmitri Popov"),
    _plasma("DarkestHour", "Risto Saukonpää"),
    _plasma("EveningGlow", "Ian Hex"),
    _plasma("FallenLeaf", "Martin Klapetek"),
    _plasma("Grey", "Sigi Sagi"),
    _plasma("Kite", "Risto Saukonpää"),
    _plasma("OneStandsOut", "Risto Saukonpää"),
    _plasma("Path", "Risto Saukonpää"),
    _plasma("summer_1am", "Risto Saukonpää"),
    _mate("Aqua", "Charles Barbin"),
    _mate("Blinds", "Lennart Poettering"),
    _mate("Dune", "Marco Cogoni"),
    _mate("FreshFlower", "Jens Ansorg"),
    _mate("Garden", "Charles Barbin"),
    _mate("GreenMeadow", "Timothy Schellhase"),
    _mate("LadyBird", "Charles Barbin"),
    _mate("Storm", "Sergey Nazarov"),
    _mate("TwoWings", "Charles Barbin"),
    _mate("Wood", "Jean-François Fortin Tam"),
    _mate("YellowFlower", "Charles Barbin"),
    _lomiri(_LOMIRI16, "Bridge_by_Sander_Klootwijk", "CC-BY-SA-4.0", "Sander Klootwijk"),
    _lomiri(_LOMIRI16, "Dragonfly_by_Bolly", "CC-BY-SA-4.0", "Bolly"),
    _lomiri(_LOMIRI16, "Picture_0B_by_freespace", "CC-BY-4.0", 'Trevor "Freespace"'),
    _lomiri(_LOMIRI16, "Picture_1A_by_freespace", "CC-BY-4.0", 'Trevor "Freespace"'),
    _lomiri(_LOMIRI16, "Wine_by_Jakkub_Mede", "CC-BY-4.0", "Jakub Mede"),
    _lomiri(_LOMIRI16, "aitzgorri_by_Aitzol_Berasategi", "CC-BY-4.0", "Aitzol Berasategi"),
    _lomiri(_LOMIRI16, "free_by_Peter_Nerlich", "CC-BY-SA-4.0", "Peter Nerlich"),
    _lomiri(_LOMIRI16, "friends_by_Aitzol_Berasategi", "CC-BY-4.0", "Aitzol Berasategi"),
    _lomiri(_LOMIRI16, "greentock_by_Peter_Nerlich", "CC-BY-SA-4.0", "Peter Nerlich"),
    _lomiri(_LOMIRI16, "life_by_Aitzol_Berasategi", "CC-BY-4.0", "Aitzol Berasategi"),
    _lomiri(_LOMIRI16, "picosdeeuropa_by_Aitzol_Berasategi", "CC-BY-4.0", "Aitzol Berasategi"),
    _lomiri(_LOMIRI16, "seeding_by_Clements_Engelhardt", "CC0-1.0", "Clemens Engelhardt"),
    _lomiri(_LOMIRI16, "sunset_by_Aitzol_Berasategi", "CC-BY-4.0", "Aitzol Berasategi"),
    _lomiri(_LOMIRI20, "Kleiber_by_Lukas_Baubkus", "CC-BY-SA-3.0", "Lukas Baubkus"),
    _budgie("abstract-spiral"),
    _budgie("beacon-street-sunset"),
    _budgie("blue-periwinkle"),
    _budgie("canyon-wren"),
    _budgie("casa-mila"),
    _budgie("extreme-desert-hike"),
    _budgie("high-trestle-trail"),
    _budgie("lake-sherburne"),
    _budgie("oakland-zoo-otters"),
    _budgie("perched-osprey"),
    _budgie("piazza-gae-aulenti"),
    _budgie("roman-colosseum"),
    _budgie("singaporean-cityscape"),
    _budgie("tea-gardens"),
)


class PhotoError(DerainError):
    """A source that cannot be fetched or does not match what the weights were trained on."""


def _scaled(image: np.ndarray) -> np.ndarray:
    """`image` with its longest side cut to LONGEST_SIDE."""
    scale = LONGEST_SIDE / max(image.shape[:2])
    if scale < 1:
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image


def skimage_photos(names: tuple[str, ...] = SKIMAGE) -> dict[str, np.ndarray]:
    """The scikit-image sample photos, RGB and scaled (no download: they are inside the wheel)."""
    import skimage.data

    images = {}
    for name in names:
        image = getattr(skimage.data, name)()
        images[name] = _scaled((np.repeat(image[..., None], 3, 2) if image.ndim == 2 else image)[..., :3])
    return images


def fetch_package(package: Package, folder: Path, mirror: str = MIRROR) -> Path:
    """Download `package`'s .deb from `mirror` into `folder` and check it is the pinned file.

    Raises:
        PhotoError: the download failed, was cut short or is another file; nothing is left in `folder`.
    """
    url = f"{mirror.rstrip('/')}/{package.pool_path}"
    return download(
        url, folder / Path(package.pool_path).name, package.sha256,
        hint="name a Debian mirror that has it with --mirror, or use --no-debian",
        pinned_by="as Debian's index gave it", error=PhotoError,
    )


def debian_photos(photos: tuple[Photo, ...] = DEBIAN, mirror: str = MIRROR) -> dict[str, np.ndarray]:
    """The wallpaper photos, RGB and scaled, from their pinned Debian packages (read with python-debian)."""
    try:
        from debian.debfile import DebError, DebFile
    except ImportError:
        raise PhotoError("the wallpaper photos need python-debian: pip install 'derain[photos]', or use --no-debian") from None

    images = {}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        debs = {}
        for package in sorted({p.package for p in photos}, key=lambda p: p.name):
            path = fetch_package(package, Path(tmp), mirror)
            try:
                # The data part's format is Debian's choice: xz is read in-process, zstd only with the unzstd tool.
                debs[package] = stack.enter_context(contextlib.closing(DebFile(path)))
                debs[package].data.tgz()
            except (DebError, OSError, tarfile.TarError) as err:
                raise PhotoError(f"{path.name}: cannot read the package ({err}); for a zstd-packed one install zstd, or use --no-debian") from None
        for photo in photos:
            content = debs[photo.package].data.get_content(photo.path) if debs[photo.package].data.has_file(photo.path) else None
            image = None if content is None else cv2.imdecode(np.frombuffer(content, np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                raise PhotoError(
                    f"{Path(photo.package.pool_path).name}: no image at {photo.path}; "
                    "this list and the pinned package disagree: report it, or use --no-debian"
                )
            images[photo.name] = _scaled(np.ascontiguousarray(image[..., ::-1]))
    return images


def write(out: Path, images: dict[str, np.ndarray]) -> list[Path]:
    """Write each RGB image as `out/<name>.png`."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, image in images.items():
        paths.append(out / f"{name}.png")
        if not cv2.imwrite(str(paths[-1]), np.ascontiguousarray(image[..., ::-1])):
            raise PhotoError(f"{paths[-1]}: cannot write the image; check the folder is writable")
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m derain.models.photos", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write the PNGs to (created)")
    parser.add_argument("--no-debian", action="store_true", help="only the scikit-image photos (no download)")
    parser.add_argument("--held-out", type=Path, metavar="DIR", help="write the validation photos (HELD_OUT) here instead of OUT")
    parser.add_argument("--mirror", default=MIRROR, help=f"Debian mirror to fetch the wallpaper packages from (default {MIRROR})")
    args = parser.parse_args(argv)
    try:
        # Every photo is fetched and decoded before the first is written: a failure leaves no half-built set.
        images = skimage_photos() if args.no_debian else debian_photos(DEBIAN, mirror=args.mirror) | skimage_photos(SKIMAGE + SKIMAGE_MORE)
        held = {name: images.pop(name) for name in HELD_OUT if name in images} if args.held_out else {}
        paths = write(args.out, images)
        if held:
            write(args.held_out, held)
    except (PhotoError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{len(paths)} photos in {args.out}" + (f", {len(held)} held out in {args.held_out}" if held else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
