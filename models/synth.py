"""Synthetic rain: streak layers composited onto clean images, for training and for test clips.

Streaks are made the way the Rain100L/H family was (Yang et al. 2017): sparse random noise
smeared by a motion-blur line kernel. Here the kernel is drawn analytically, so length, angle
and width are exact numbers rather than Photoshop filter settings, and heavier rain adds a
veil (haze) and blurred streak accumulation on top.

Every function takes a `numpy.random.Generator`, so a seed fixes the output. Angles are in
degrees from vertical; positive leans the streak's lower end to the right (wind from the
left), i.e. a streak runs along (dx, dy) = (sin a, cos a) with y pointing down.

Compositing is additive and clipped, `rainy = clip(clean + layer, 0, 1)`, or Photoshop's
Screen layer mode, `rainy = clean + min(layer, 1) * (1 - clean)`: the widely copied Photoshop rain
recipe (noise, blur, motion blur, a Screen layer) that many published synthetic sets follow, in
which a streak fades over a bright sky instead of saturating it. Either way the returned rain
layer is `rainy - clean`, so `clean + rain == rainy` holds exactly up to float rounding and
the rain branch trains against what the network actually sees.

`dead_leaves` makes clean backgrounds with no image files at all: occluding discs of random
colours over a smooth gradient, the model of natural-image statistics that image-restoration
networks train well on (Achddou et al., "Synthetic images as a regularity prior for image
restoration neural networks", 2021). BRN rebuilds the whole image rather than a residual, so
backgrounds that span the colour cube teach it to keep colours the few bundled photos lack.
Some of the leaves are thin sticks (twigs, wires, stripes, railings): clean structure shaped
like a streak, which the network must learn to keep rather than erase as rain.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

BLENDS = ("add", "screen")


@dataclass(frozen=True)
class RainStyle:
    """One streak layer and the veil over it.

    density: expected streak seeds per pixel (0.002 light drizzle, 0.03 downpour).
    length: streak length in pixels. width: streak thickness (FWHM) in pixels.
    intensity: peak brightness a streak adds, in [0, 1].
    haze: strength of the veil, the fraction of the background replaced by the atmospheric light.
    accumulation: strength of the blurred, misty copy of the streaks that heavy rain builds up.
    blur: Gaussian sigma in pixels of the whole layer: drops nearer or farther than the focus
    plane, wide, soft-ended and faint.
    blend: "add" (light adds, clipped at white) or "screen" (adds in proportion to how dark the
    background is).
    """

    density: float = 0.01
    length: float = 20.0
    angle: float = 0.0
    width: float = 1.0
    intensity: float = 0.7
    haze: float = 0.0
    accumulation: float = 0.0
    blur: float = 0.0
    blend: str = "add"

    def __post_init__(self) -> None:
        if self.blend not in BLENDS:
            raise ValueError(f"rain style blend must be one of {BLENDS}, got {self.blend!r}")
        if self.density < 0 or self.length < 1 or self.width <= 0:
            raise ValueError(f"rain style needs density >= 0, length >= 1 and width > 0, got {self}")
        if not (0.0 <= self.intensity <= 1.0 and 0.0 <= self.haze < 1.0 and self.accumulation >= 0.0 and self.blur >= 0.0):
            raise ValueError(f"rain style needs intensity in [0, 1], haze in [0, 1), accumulation and blur >= 0, got {self}")


def direction(angle: float) -> tuple[float, float]:
    """Unit (dx, dy) along which a streak at `angle` degrees runs (y down)."""
    a = math.radians(angle)
    return math.sin(a), math.cos(a)


def streak_kernel(length: float, angle: float, width: float) -> np.ndarray:
    """A motion-blur line of the given length, angle and width, peak 1 (not normalised).

    Peak 1 rather than unit sum keeps a streak's brightness independent of its length, so
    `intensity` means the same thing for drizzle and for long streaks.
    """
    radius = math.ceil(length / 2 + 2 * width) + 1
    coords = np.arange(-radius, radius + 1, dtype=np.float32)
    xx, yy = np.meshgrid(coords, coords)
    dx, dy = direction(angle)
    along = xx * dx + yy * dy
    across = -xx * dy + yy * dx
    sigma = width / 2.3548  # width is the full width at half maximum
    profile = np.exp(-0.5 * (across / max(sigma, 0.35)) ** 2)
    # Soft ends (one pixel ramp) avoid aliasing steps when length is not an integer.
    ends = np.clip(length / 2 + 0.5 - np.abs(along), 0.0, 1.0)
    return (profile * ends).astype(np.float32)


def _seeds(shape: tuple[int, int], density: float, rng: np.random.Generator) -> np.ndarray:
    """Sparse noise: each pixel is a seed with probability `density`, amplitude in [0.4, 1]."""
    hit = rng.random(shape, dtype=np.float32) < density
    return np.where(hit, rng.uniform(0.4, 1.0, shape).astype(np.float32), np.float32(0.0))


def _filter(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return cv2.filter2D(image, cv2.CV_32F, kernel, borderType=cv2.BORDER_CONSTANT)


def render_streaks(height: int, width: int, style: RainStyle, rng: np.random.Generator) -> np.ndarray:
    """A (H, W) float32 streak layer in [0, intensity] (no veil).

    Seeds are drawn on a canvas larger than the frame by the kernel radius, so streaks enter
    from outside instead of stopping short of the borders.
    """
    kernel = streak_kernel(style.length, style.angle, style.width)
    margin = kernel.shape[0] // 2 + math.ceil(3 * style.blur)
    seeds = _seeds((height + 2 * margin, width + 2 * margin), style.density, rng)
    layer = _filter(seeds, kernel)
    if style.blur > 0:
        # Defocus spreads a drop's light without adding to it: the peak falls as the streak widens.
        layer = cv2.GaussianBlur(layer, (0, 0), style.blur)
    layer = layer[margin : margin + height, margin : margin + width]
    return np.minimum(layer, 1.0) * np.float32(style.intensity)


def _accumulate(streaks: np.ndarray, style: RainStyle) -> np.ndarray:
    """Misty accumulation: the streaks blurred across several streak lengths."""
    if style.accumulation <= 0:
        return np.zeros_like(streaks)
    sigma = max(2.0, style.length / 4)
    mist = cv2.GaussianBlur(streaks, (0, 0), sigma)
    return mist / max(float(mist.max()), 1e-6) * np.float32(style.accumulation * style.intensity)


def composite(
    clean: np.ndarray,
    streaks: np.ndarray,
    haze: float = 0.0,
    atmosphere: float = 0.9,
    blend: str = "add",
) -> tuple[np.ndarray, np.ndarray]:
    """(rainy, rain) for a clean (H, W, 3) image in [0, 1] and a (H, W) or (H, W, 3) streak layer.

    veiled = clean * (1 - haze) + haze * atmosphere; rainy = clip(veiled + streaks, 0, 1) for
    "add", veiled + min(streaks, 1) * (1 - veiled) for "screen"; rain = rainy - clean.
    """
    if blend not in BLENDS:
        raise ValueError(f"blend must be one of {BLENDS}, got {blend!r}")
    clean = clean.astype(np.float32, copy=False)
    if streaks.ndim == 2:
        streaks = streaks[..., None]
    veiled = clean * np.float32(1.0 - haze) + np.float32(haze * atmosphere) if haze > 0 else clean
    if blend == "screen":
        streaks = np.minimum(streaks, 1.0) * (1.0 - veiled)
    rainy = np.clip(veiled + streaks, 0.0, 1.0)
    return rainy, rainy - clean


def add_rain(
    clean: np.ndarray, styles: RainStyle | list[RainStyle], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Render one or more streak layers, add accumulation and veil, composite onto `clean`.

    The layers are one rain, so they share one blend. Returns (rainy, rain) with
    rainy = clean + rain exactly (see `composite`).
    """
    styles = [styles] if isinstance(styles, RainStyle) else styles
    blends = {s.blend for s in styles}
    if len(blends) > 1:
        raise ValueError(f"the layers of one rain share one blend, got {sorted(blends)}")
    height, width = clean.shape[:2]
    layer = np.zeros((height, width), np.float32)
    for style in styles:
        streaks = render_streaks(height, width, style, rng)
        layer += streaks + _accumulate(streaks, style)
    haze = 1.0 - math.prod(1.0 - s.haze for s in styles)
    atmosphere = float(rng.uniform(0.75, 1.0)) if haze > 0 else 0.9
    return composite(clean, layer, haze, atmosphere, blends.pop() if blends else "add")


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(math.log(low), math.log(high))))


@dataclass(frozen=True)
class RainSampler:
    """Draws random rain styles: mostly light Rain100L-like streaks, some heavy Rain100H-like rain.

    Light: one or two layers at one angle, thin (width 1-2 px), mostly near-vertical (|angle|
    under 17 degrees for two thirds of them, up to 35), length 10-60 px; a second layer is
    shorter and fainter (farther drops). A `faint_fraction` of them is dense and faint (covering
    10-40 % of the image, intensity 0.1-0.4), the rest sparse and bright (2-12 %, 0.2-0.95).
    Heavy: two or three layers of wider
    streaks covering 5-20 % each at a shared wind angle, with haze and accumulation. Either
    kind is composited with the Screen blend for a `screen_fraction` of the draws, and for a
    `defocus_fraction` of them gets one more layer of out-of-focus drops near the lens: wide
    (3-8 px), blurred, sparse and faint, as real footage shows them and thin test-set streaks
    do not.

    Density is drawn as coverage (area the streaks paint, about density x length x width) so a
    long streak does not turn light rain into a downpour.
    """

    heavy_fraction: float = 0.25
    max_angle: float = 35.0
    screen_fraction: float = 0.5
    # Rain100L-style rain (noise, motion blur, Screen) is mostly overlapping faint streaks: its
    # rain adds 4-16 codes of luma to about 12 % of the pixels, where sparse bright streaks at
    # the same overall strength touch 3 %. 0.7 matches that share (benchmarks/RESULTS.md, run 10).
    faint_fraction: float = 0.7
    defocus_fraction: float = 0.3

    def _blend(self, rng: np.random.Generator) -> str:
        return "screen" if rng.random() < self.screen_fraction else "add"

    def light(self, rng: np.random.Generator) -> list[RainStyle]:
        angle = float(np.clip(rng.normal(0.0, self.max_angle / 2), -self.max_angle, self.max_angle))
        if rng.random() < self.faint_fraction:
            coverage, intensity = _log_uniform(rng, 0.1, 0.4), float(rng.uniform(0.1, 0.4))
        else:
            coverage, intensity = _log_uniform(rng, 0.02, 0.12), float(rng.uniform(0.2, 0.95))
        # Real light rain mixes near and far drops: often a second layer of shorter, fainter
        # streaks at the same angle shares the coverage with the first.
        layers = 1 if rng.random() < 0.5 else 2
        near_length, near_width = float(rng.uniform(10, 60)), float(rng.uniform(1.0, 2.0))
        blend = self._blend(rng)
        styles = []
        for k in range(layers):
            length, width = (max(4.0, near_length * 0.4), 1.0) if k else (near_length, near_width)
            styles.append(
                RainStyle(
                    density=coverage / layers / (length * width),
                    length=length,
                    angle=angle + (float(rng.normal(0.0, 2.0)) if k else 0.0),
                    width=width,
                    intensity=intensity * (0.7 if k else 1.0),
                    blend=blend,
                )
            )
        return self._with_defocus(styles, rng)

    def defocused(self, angle: float, blend: str, rng: np.random.Generator) -> RainStyle:
        """Out-of-focus drops near the lens, at about the angle of the rain behind them."""
        length, width = float(rng.uniform(20, 80)), float(rng.uniform(3.0, 8.0))
        return RainStyle(
            density=_log_uniform(rng, 0.01, 0.06) / (length * width),
            length=length,
            angle=angle + float(rng.normal(0.0, 3.0)),
            width=width,
            intensity=float(rng.uniform(0.1, 0.35)),
            blur=float(rng.uniform(1.0, 4.0)),
            blend=blend,
        )

    def _with_defocus(self, styles: list[RainStyle], rng: np.random.Generator) -> list[RainStyle]:
        if rng.random() < self.defocus_fraction:
            styles.append(self.defocused(styles[0].angle, styles[0].blend, rng))
        return styles

    def heavy(self, rng: np.random.Generator) -> list[RainStyle]:
        wind = float(rng.uniform(-self.max_angle, self.max_angle))
        layers = int(rng.integers(2, 4))
        haze = float(rng.uniform(0.0, 0.2))
        blend = self._blend(rng)
        styles = []
        for k in range(layers):
            length, width = float(rng.uniform(15, 50)), float(rng.uniform(1.0, 2.5))
            styles.append(
                RainStyle(
                    density=_log_uniform(rng, 0.05, 0.2) / (length * width),
                    length=length,
                    angle=wind + float(rng.normal(0.0, 5.0)),
                    width=width,
                    intensity=float(rng.uniform(0.2, 0.7)),
                    # The veil is one atmosphere, so it rides on the first layer only.
                    haze=haze if k == 0 else 0.0,
                    accumulation=float(rng.uniform(0.0, 0.4)),
                    blend=blend,
                )
            )
        return self._with_defocus(styles, rng)

    def __call__(self, rng: np.random.Generator) -> list[RainStyle]:
        return self.heavy(rng) if rng.random() < self.heavy_fraction else self.light(rng)


def dead_leaves(height: int, width: int, rng: np.random.Generator, discs: int = 400, sticks: float = 0.2) -> np.ndarray:
    """A (H, W, 3) float32 image in [0, 1]: `discs` occluding shapes over a smooth gradient.

    Radii follow the scale-invariant law p(r) ~ r^-3 between 1 px and half the shorter side;
    colours are uniform in RGB, half of them pulled towards grey (natural colours are mostly
    desaturated). A `sticks` share of the shapes are segments 1-3 px wide, as long as four radii,
    at any angle, vertical included. Edges are hard, as in the classic model; a random blur of
    up to 1.5 px softens them in most images, as defocus would.
    """
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (xs * math.cos(angle) + ys * math.sin(angle)) / max(height, width) + 0.5
    start, end = rng.random(3).astype(np.float32), rng.random(3).astype(np.float32)
    image = np.ascontiguousarray(start + np.clip(ramp, 0, 1)[..., None] * (end - start))
    r_min, r_max = 1.0, max(2.0, min(height, width) / 2)
    u = rng.random(discs)
    radii = (r_min**-2 - u * (r_min**-2 - r_max**-2)) ** -0.5
    centres = rng.uniform((0, 0), (width, height), (discs, 2))
    colours = rng.random((discs, 3))
    grey = rng.random(discs) < 0.5
    colours[grey] = colours[grey] * 0.3 + colours[grey].mean(axis=1, keepdims=True) * 0.7
    is_stick = rng.random(discs) < sticks
    turns = rng.uniform(0, math.pi, discs)
    widths = rng.integers(1, 4, discs)
    # cv2 draws in fixed point (4 fractional bits), so sub-pixel positions stay sub-pixel.
    for (cx, cy), radius, colour, stick, turn, w in zip(centres, radii, colours, is_stick, turns, widths):
        if stick:
            dx, dy = 2 * radius * math.cos(turn), 2 * radius * math.sin(turn)
            ends = (round((cx - dx) * 16), round((cy - dy) * 16)), (round((cx + dx) * 16), round((cy + dy) * 16))
            cv2.line(image, *ends, colour.tolist(), int(w), cv2.LINE_8, 4)
        else:
            cv2.circle(image, (round(cx * 16), round(cy * 16)), round(radius * 16), colour.tolist(), -1, cv2.LINE_8, 4)
    sigma = float(rng.uniform(0, 1.5))
    return cv2.GaussianBlur(image, (0, 0), sigma) if sigma > 0.3 else image


STRUCTURES = ("grille", "mesh", "text", "blades")
_FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX)
_GLYPHS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-./"


def _colour(rng: np.random.Generator) -> list[float]:
    """Dark or bright, grey or coloured: bars, wires, letters and blades come in every shade."""
    base = float(rng.choice((rng.uniform(0.0, 0.3), rng.uniform(0.7, 1.0), rng.uniform(0.0, 1.0))))
    return np.clip(base + rng.normal(0.0, 0.12, 3), 0.0, 1.0).tolist()


def _paint(image: np.ndarray, colour: list[float], draw: Callable[[np.ndarray], None]) -> None:
    """Composite, in place, what `draw` draws (in white, antialiased) on an 8-bit coverage mask,
    in `colour`: OpenCV antialiases lines and text on 8-bit images only."""
    mask = np.zeros(image.shape[:2], np.uint8)
    draw(mask)
    alpha = mask.astype(np.float32)[..., None] / 255
    image *= 1 - alpha
    image += alpha * np.asarray(colour, np.float32)


def _bars(mask: np.ndarray, angle: float, spacing: float, thickness: int, rng: np.random.Generator) -> None:
    """Parallel lines `spacing` px apart across the whole mask, at `angle` degrees from vertical."""
    h, w = mask.shape[:2]
    dx, dy = direction(angle)
    reach = math.hypot(h, w)
    for offset in np.arange(-reach / 2 + rng.uniform(0, spacing), reach / 2, spacing):
        cx, cy = w / 2 + offset * dy, h / 2 - offset * dx  # stepped across the bars
        ends = [(round((cx + s * dx * reach) * 16), round((cy + s * dy * reach) * 16)) for s in (-1, 1)]
        cv2.line(mask, ends[0], ends[1], 255, thickness, cv2.LINE_AA, 4)


def _text(mask: np.ndarray, rng: np.random.Generator) -> None:
    h, w = mask.shape[:2]
    text = "".join(rng.choice(list(_GLYPHS), int(rng.integers(3, 16))))
    origin = (int(rng.integers(-w // 4, w)), int(rng.integers(0, h + 8)))
    font, scale = _FONTS[int(rng.integers(len(_FONTS)))], float(rng.uniform(0.25, 1.2))
    cv2.putText(mask, text, origin, font, scale, 255, int(rng.integers(1, 3)), cv2.LINE_AA)


def _blades(mask: np.ndarray, count: int, rng: np.random.Generator) -> None:
    h, w = mask.shape[:2]
    for _ in range(count):
        x, y = rng.uniform(0, w), rng.uniform(0, h * 1.2)
        tilt, length = math.radians(float(rng.normal(0.0, 15.0))), float(rng.uniform(5.0, 30.0))
        ends = (round(x * 16), round(y * 16)), (round((x + length * math.sin(tilt)) * 16), round((y - length * math.cos(tilt)) * 16))
        cv2.line(mask, *ends, 255, 1, cv2.LINE_AA, 4)


def fine_structure(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`image` (H, W, 3 float32 in [0, 1]) with thin clean structure drawn over part of it.

    One of: a grille (parallel bars 1-3 px wide, mostly near vertical: railings, gates, blinds),
    a mesh (two crossing sets: fences, nets), text (OpenCV's Hershey fonts, any size down to
    a few pixels) or grass blades (short near-vertical strokes). The first and last look most
    like rain streaks, which is why they are here: they are scene, to be kept. The structure
    covers a random rectangle of 40-100 % of each side, so its edges are seen too.
    """
    h, w = image.shape[:2]
    drawn = image.astype(np.float32, copy=True)
    kind = STRUCTURES[int(rng.integers(len(STRUCTURES)))]
    upright = lambda: float(rng.normal(0.0, 8.0)) if rng.random() < 0.6 else float(rng.uniform(-90.0, 90.0))
    if kind in ("grille", "mesh"):
        angle, spacing, thickness = upright(), float(rng.uniform(3.0, 16.0)), int(rng.integers(1, 4))
        _paint(drawn, _colour(rng), lambda m: _bars(m, angle, spacing, thickness, rng))
        if kind == "mesh":
            cross, gap = angle + float(rng.uniform(50.0, 130.0)), spacing * float(rng.uniform(0.7, 1.5))
            _paint(drawn, _colour(rng), lambda m: _bars(m, cross, gap, thickness, rng))
    elif kind == "text":
        for _ in range(int(rng.integers(2, 8))):
            _paint(drawn, _colour(rng), lambda m: _text(m, rng))
    else:
        green = rng.random() < 0.7
        for _ in range(int(rng.integers(3, 7))):  # a few shades, each a clump of blades
            shade = float(rng.uniform(0.1, 0.9))
            colour = [shade * 0.6, shade, shade * 0.35] if green else _colour(rng)
            count = int(rng.integers(10, 60))
            _paint(drawn, colour, lambda m, n=count: _blades(m, n, rng))
    top, left = int(rng.integers(0, h - int(0.4 * h) + 1)), int(rng.integers(0, w - int(0.4 * w) + 1))
    bottom, right = int(rng.integers(top + int(0.4 * h), h + 1)), int(rng.integers(left + int(0.4 * w), w + 1))
    out = image.astype(np.float32, copy=True)
    out[top:bottom, left:right] = drawn[top:bottom, left:right]
    return np.clip(out, 0.0, 1.0)


class RainVideo:
    """A streak field falling along its angle, rendered frame by frame.

    Drops are points on a wrapped canvas (the frame plus a kernel-radius margin) that move
    `speed` pixels per frame along the streak direction; frame k splats them bilinearly and
    smears them with the streak kernel. Frame k + 1 is frame k shifted by `speed` along the
    direction, apart from drops that wrap around, so streaks move consistently over time.
    """

    def __init__(
        self,
        height: int,
        width: int,
        style: RainStyle,
        speed: float = 12.0,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.height, self.width, self.style, self.speed = height, width, style, speed
        self.kernel = streak_kernel(style.length, style.angle, style.width)
        self.margin = self.kernel.shape[0] // 2
        self.canvas = (height + 2 * self.margin, width + 2 * self.margin)
        count = rng.poisson(style.density * self.canvas[0] * self.canvas[1])
        self.ys = rng.uniform(0, self.canvas[0], count)
        self.xs = rng.uniform(0, self.canvas[1], count)
        self.amplitude = rng.uniform(0.4, 1.0, count).astype(np.float32)
        self.atmosphere = float(rng.uniform(0.75, 1.0))

    def streaks(self, k: int) -> np.ndarray:
        """The (H, W) float32 streak layer of frame k."""
        dx, dy = direction(self.style.angle)
        ch, cw = self.canvas
        ys = (self.ys + k * self.speed * dy) % ch
        xs = (self.xs + k * self.speed * dx) % cw
        y0, x0 = np.floor(ys).astype(np.int64), np.floor(xs).astype(np.int64)
        fy, fx = (ys - y0).astype(np.float32), (xs - x0).astype(np.float32)
        seeds = np.zeros(ch * cw, np.float32)
        for oy, ox, w in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
            idx = ((y0 + oy) % ch) * cw + (x0 + ox) % cw
            seeds += np.bincount(idx, weights=self.amplitude * w, minlength=ch * cw).astype(np.float32)
        layer = _filter(seeds.reshape(ch, cw), self.kernel)
        m = self.margin
        return np.minimum(layer[m : m + self.height, m : m + self.width], 1.0) * np.float32(self.style.intensity)

    def frame(self, clean: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(rainy, rain) for clean frame k; the veil, if any, stays constant over time."""
        if clean.shape[:2] != (self.height, self.width):
            raise ValueError(f"frame is {clean.shape[1]}x{clean.shape[0]}, the rain field {self.width}x{self.height}")
        streaks = self.streaks(k)
        return composite(clean, streaks + _accumulate(streaks, self.style), self.style.haze, self.atmosphere, self.style.blend)

