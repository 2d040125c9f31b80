"""The rain synthesiser keeps the promises training relies on."""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import pytest

from derain.models.synth import (
    RainSampler,
    RainStyle,
    RainVideo,
    add_rain,
    composite,
    dead_leaves,
    direction,
    fine_structure,
    render_streaks,
)


def streak_angle(layer: np.ndarray) -> float:
    """Dominant streak angle (degrees from vertical) from the structure tensor of the layer."""
    # Pre-smoothing (derivative of Gaussian) keeps one-pixel streaks from biasing the gradients
    # towards the pixel grid's diagonals.
    gy, gx = np.gradient(cv2.GaussianBlur(layer, (0, 0), 1.5).astype(np.float64))
    jxx, jyy, jxy = (gx * gx).sum(), (gy * gy).sum(), (gx * gy).sum()
    # Gradients point across the streaks: the streaks run along the weakest eigenvector.
    _, vectors = np.linalg.eigh(np.array([[jxx, jxy], [jxy, jyy]]))
    dx, dy = vectors[:, 0]
    angle = math.degrees(math.atan2(dx, dy))
    return (angle + 90.0) % 180.0 - 90.0


@pytest.mark.parametrize("angle", [-35.0, -12.0, 0.0, 7.0, 20.0, 40.0])
def test_streak_angle_matches_parameter(angle: float) -> None:
    style = RainStyle(density=0.004, length=30, angle=angle, width=1.5, intensity=0.8)
    layer = render_streaks(192, 192, style, np.random.default_rng(3))
    assert abs(streak_angle(layer) - angle) < 3.0


def test_density_is_monotone() -> None:
    coverage = []
    for density in (0.001, 0.003, 0.01, 0.03):
        layer = render_streaks(128, 128, RainStyle(density=density, length=15), np.random.default_rng(0))
        coverage.append(float((layer > 0.05).mean()))
    assert coverage == sorted(coverage) and coverage[0] < coverage[-1] / 5
    assert not render_streaks(64, 64, RainStyle(density=0.0), np.random.default_rng(0)).any()


def test_intensity_and_length_are_honoured() -> None:
    style = RainStyle(density=0.0005, length=25, angle=0.0, width=1.0, intensity=0.6)
    layer = render_streaks(256, 256, style, np.random.default_rng(1))
    assert 0.3 < layer.max() <= 0.6 + 1e-6
    # A lone vertical streak is about `length` pixels long.
    column = layer[:, np.argmax(layer.max(axis=0))]
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, column > 0.05, 0])))[::2]
    assert 20 <= runs.max() <= 40


def test_seed_determines_output() -> None:
    clean = np.random.default_rng(5).random((48, 64, 3), dtype=np.float32)
    styles = RainSampler(heavy_fraction=0.5)(np.random.default_rng(9))
    a = add_rain(clean, styles, np.random.default_rng(42))
    b = add_rain(clean, styles, np.random.default_rng(42))
    c = add_rain(clean, styles, np.random.default_rng(43))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("blend", ["add", "screen"])
@pytest.mark.parametrize("heavy", [False, True])
def test_rainy_is_clean_plus_rain(heavy: bool, blend: str) -> None:
    rng = np.random.default_rng(11)
    clean = rng.random((64, 80, 3), dtype=np.float32)
    sampler = RainSampler()
    styles = sampler.heavy(rng) if heavy else sampler.light(rng)
    styles = [RainStyle(**{**s.__dict__, "blend": blend}) for s in styles]
    if heavy:
        styles[0] = RainStyle(**{**styles[0].__dict__, "haze": 0.3, "accumulation": 0.4})
    rainy, rain = add_rain(clean, styles, rng)
    assert rainy.dtype == np.float32 and rainy.shape == clean.shape
    assert rainy.min() >= 0.0 and rainy.max() <= 1.0
    np.testing.assert_allclose(clean + rain, rainy, atol=1e-6)
    if not heavy:
        assert rain.min() >= -1e-6  # streaks only add light


def test_light_rain_layers_share_one_angle() -> None:
    sampler = RainSampler(defocus_fraction=0.0)
    for seed in range(50):
        styles = sampler.light(np.random.default_rng(seed))
        assert 1 <= len(styles) <= 2
        coverage = sum(s.density * s.length * s.width for s in styles)
        assert 0.02 - 1e-9 <= coverage <= 0.4 + 1e-9
        assert all(abs(s.angle - styles[0].angle) < 10 for s in styles)
        assert all(s.length <= styles[0].length and s.intensity <= styles[0].intensity for s in styles)


@pytest.mark.parametrize("faint", [0.0, 1.0])
def test_light_rain_regimes(faint: float) -> None:
    sampler = RainSampler(faint_fraction=faint, defocus_fraction=0.0)
    for seed in range(50):
        styles = sampler.light(np.random.default_rng(seed))
        coverage = sum(s.density * s.length * s.width for s in styles)
        low, high, brightest = (0.1, 0.4, 0.4) if faint else (0.02, 0.12, 0.95)
        assert low - 1e-9 <= coverage <= high + 1e-9
        assert styles[0].intensity <= brightest


def test_faint_rain_touches_more_pixels_less() -> None:
    clean = np.full((96, 128, 3), 0.3, np.float32)

    def touched(faint: float) -> tuple[float, float]:
        rains = [add_rain(clean, RainSampler(faint_fraction=faint).light(np.random.default_rng(s)), np.random.default_rng(s))[1] for s in range(30)]
        luma = np.stack(rains).mean(-1)
        hit = luma > 4 / 255
        return float(hit.mean()), float(luma[hit].mean())

    (faint_share, faint_level), (bright_share, bright_level) = touched(1.0), touched(0.0)
    assert faint_share > 1.5 * bright_share
    assert faint_level < bright_level


def test_video_streaks_fall_consistently() -> None:
    video = RainVideo(96, 128, RainStyle(density=0.004, length=12, angle=0.0), speed=3.0, seed=2)
    f0, f1 = video.streaks(0), video.streaks(1)
    assert not np.allclose(f0, f1)
    # Frame 1 is frame 0 moved down by 3 rows; only the top rows hold drops that wrapped round.
    np.testing.assert_allclose(f1[3:], f0[:-3], atol=1e-5)


def test_video_streaks_move_along_their_angle() -> None:
    angle, speed = 25.0, 4.0
    video = RainVideo(128, 128, RainStyle(density=0.003, length=10, angle=angle), speed=speed, seed=4)
    window = cv2.createHanningWindow((128, 128), cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(video.streaks(3).astype(np.float32), video.streaks(4).astype(np.float32), window)
    ex, ey = (speed * c for c in direction(angle))
    assert abs(dx - ex) < 0.5 and abs(dy - ey) < 0.5
    rainy, rain = video.frame(np.full((128, 128, 3), 0.3, np.float32), 4)
    np.testing.assert_allclose(0.3 + rain, rainy, atol=1e-6)


def test_dead_leaves_is_seeded_and_spans_the_colour_cube() -> None:
    a = dead_leaves(96, 128, np.random.default_rng(4))
    assert a.shape == (96, 128, 3) and a.dtype == np.float32 and 0.0 <= a.min() and a.max() <= 1.0
    assert np.array_equal(a, dead_leaves(96, 128, np.random.default_rng(4)))
    assert not np.array_equal(a, dead_leaves(96, 128, np.random.default_rng(5)))
    # Over many images the colours cover the RGB cube, saturated corners included.
    pixels = np.concatenate([dead_leaves(64, 64, np.random.default_rng(s)).reshape(-1, 3) for s in range(20)])
    occupied = np.unique(np.minimum((pixels * 4).astype(int), 3), axis=0)
    assert len(occupied) > 50  # of 64 coarse colour cells


def test_dead_leaves_sticks_are_thin_structure() -> None:
    """Sticks are what a 5x5 opening/closing erases: more of it with sticks than with discs alone."""
    kernel = np.ones((5, 5), np.uint8)

    def thin_share(sticks: float, seed: int) -> float:
        grey = dead_leaves(128, 128, np.random.default_rng(seed), discs=100, sticks=sticks).mean(axis=2)
        opened = cv2.morphologyEx(grey, cv2.MORPH_OPEN, kernel)
        closed = cv2.morphologyEx(grey, cv2.MORPH_CLOSE, kernel)
        return float(((np.abs(grey - opened) + np.abs(closed - grey)) > 0.05).mean())

    for seed in range(6):
        assert thin_share(1.0, seed) > 1.5 * thin_share(0.0, seed)


def test_screen_blend_fades_over_bright_backgrounds() -> None:
    """Screen: full streak over black, none over white, in proportion between; add clips at white."""
    streaks = render_streaks(64, 64, RainStyle(density=0.01, length=20, intensity=0.8), np.random.default_rng(2))
    for level in (0.0, 0.5, 0.9, 1.0):
        clean = np.full((64, 64, 3), level, np.float32)
        _, screen = composite(clean, streaks, blend="screen")
        _, added = composite(clean, streaks)
        np.testing.assert_allclose(screen, np.repeat(streaks[..., None] * (1 - level), 3, 2), atol=1e-6)
        np.testing.assert_allclose(added, np.repeat(np.minimum(streaks[..., None], 1 - level), 3, 2), atol=1e-6)
    blends = {RainSampler(screen_fraction=0.5)(np.random.default_rng(s))[0].blend for s in range(40)}
    assert blends == {"add", "screen"}
    assert {RainSampler(screen_fraction=0.0)(np.random.default_rng(s))[0].blend for s in range(40)} == {"add"}
    with pytest.raises(ValueError, match="blend"):
        RainStyle(blend="multiply")


def test_one_rain_has_one_blend() -> None:
    clean = np.full((16, 16, 3), 0.5, np.float32)
    with pytest.raises(ValueError, match="share one blend"):
        add_rain(clean, [RainStyle(blend="add"), RainStyle(blend="screen")], np.random.default_rng(0))
    rainy, rain = add_rain(clean, [], np.random.default_rng(0))
    assert np.array_equal(rainy, clean) and not rain.any()


def test_defocused_drops_are_wide_soft_and_faint() -> None:
    sharp = RainStyle(density=0.0002, length=40, width=4.0, intensity=0.3)
    soft = dataclasses.replace(sharp, blur=3.0)
    a, b = (render_streaks(160, 160, style, np.random.default_rng(5)) for style in (sharp, soft))
    # Drops spread out: a lower peak, more pixels touched.
    assert b.max() < 0.8 * a.max() and (b > 0.02).mean() > 1.2 * (a > 0.02).mean()
    with pytest.raises(ValueError, match="blur"):
        RainStyle(blur=-1.0)


@pytest.mark.parametrize("kind", ["light", "heavy"])
def test_some_rain_gets_a_defocused_layer_at_its_angle(kind: str) -> None:
    layers = [getattr(RainSampler(defocus_fraction=f), kind)(np.random.default_rng(s)) for f in (0.0, 1.0) for s in range(20)]
    plain, defocused = layers[:20], layers[20:]
    assert not any(style.blur for styles in plain for style in styles)
    for styles in defocused:
        near = styles[-1]
        assert near.blur >= 1.0 and near.width >= 3.0 and near.intensity <= 0.35
        assert abs(near.angle - styles[0].angle) < 15 and near.blend == styles[0].blend


def test_fine_structure_is_thin_seeded_and_only_adds_scene() -> None:
    base = np.full((96, 96, 3), 0.5, np.float32)
    drawn = [fine_structure(base, np.random.default_rng(s)) for s in range(40)]
    np.testing.assert_array_equal(drawn[3], fine_structure(base, np.random.default_rng(3)))
    changed = [np.abs(d - base).max(axis=-1) > 0.02 for d in drawn]
    # Nearly every draw adds something (a colour near the grey, or text off the edge, may not),
    # as thin lines: eroding the changed pixels by a 5x5 square leaves little (no solid blocks).
    assert np.mean([c.any() for c in changed]) > 0.9
    kept = [cv2.erode(c.astype(np.uint8), np.ones((5, 5), np.uint8)).sum() / c.sum() for c in changed if c.any()]
    assert np.median(kept) < 0.3
    assert all(0.0 <= d.min() and d.max() <= 1.0 and d.dtype == np.float32 for d in drawn)
