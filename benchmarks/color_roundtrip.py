"""How much PSNR the YUV -> RGB -> YUV round trip costs: `derain video`'s path vs a naive one.

Frames are the demo's clean 160x120 scenes as 8-bit 4:2:0 BT.601 limited range (what a
decoder hands over). Two engines stand in for the model: `identity` (what the conversion
alone loses) and `oracle`, which returns the exact clean frame, so the result is the ceiling
each path leaves for a perfect derainer. PSNR is on RGB in [0, 1] against the clean frames,
both sides decoded the same way.

  ours:  planes -> float RGB on the device (input's matrix/range) -> engine -> rounded YUV
  naive: frame.to_ndarray("rgb24") (default swscale) -> engine -> truncate to uint8 ->
         VideoFrame.from_ndarray("rgb24").reformat("yuv420p") (default swscale)

    python benchmarks/color_roundtrip.py
"""

from __future__ import annotations

from collections.abc import Callable

import av
import numpy as np
import torch

from derain.models.metrics import psnr
from derain.stream.color import from_rgb, to_rgb
from derain.stream.demo import clean_frames
from derain.stream.pixels import ColorSpec, fill_frame, frame_planes, layout_of

SPEC = ColorSpec.of(layout_of("yuv420p"), 6, 1, 120)


def to_frame(planes: list[np.ndarray], width: int, height: int) -> av.VideoFrame:
    frame = av.VideoFrame(width, height, "yuv420p")
    fill_frame(frame, SPEC.layout, planes)
    frame.colorspace, frame.color_range = 6, 1
    return frame


def decoded_rgb(frame: av.VideoFrame) -> np.ndarray:
    """The reference view of a 4:2:0 frame: float RGB with this project's conversion."""
    planes = [torch.from_numpy(p.copy())[None] for p in frame_planes(frame, SPEC.layout)]
    return to_rgb(planes, SPEC).clamp(0, 1)[0].permute(1, 2, 0).numpy()


def ours(frame: av.VideoFrame, engine: Callable[[torch.Tensor], torch.Tensor]) -> av.VideoFrame:
    planes = [torch.from_numpy(p.copy())[None] for p in frame_planes(frame, SPEC.layout)]
    out = engine(to_rgb(planes, SPEC)).clamp(0, 1)
    return to_frame([p[0].numpy() for p in from_rgb(out, SPEC)], frame.width, frame.height)


def naive(frame: av.VideoFrame, engine: Callable[[torch.Tensor], torch.Tensor]) -> av.VideoFrame:
    rgb = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)[None].float() / 255
    out = engine(rgb).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    return av.VideoFrame.from_ndarray((out * 255).astype(np.uint8), format="rgb24").reformat(format="yuv420p")


def main() -> None:
    clean = clean_frames()
    inputs = []
    for rgb in clean:
        planes = from_rgb(torch.from_numpy(rgb).permute(2, 0, 1)[None], SPEC)
        inputs.append(to_frame([p[0].numpy() for p in planes], rgb.shape[1], rgb.shape[0]))
    print(f"{len(clean)} frames 160x120, 8-bit 4:2:0 BT.601 limited; PSNR (dB, RGB) against the clean frames")
    print(f"{'':10}{'identity':>10}{'oracle':>10}{'identity vs input':>20}")
    start = np.mean([psnr(decoded_rgb(f), c) for f, c in zip(inputs, clean)])
    print(f"{'input':10}{start:10.2f}{'':>10}")
    for name, path in (("ours", ours), ("naive", naive)):
        scores = []
        for engine_name in ("identity", "oracle"):
            values = []
            for frame, target in zip(inputs, clean):
                truth = torch.from_numpy(target).permute(2, 0, 1)[None]
                engine = (lambda x: x) if engine_name == "identity" else (lambda x, t=truth: t.clone())
                values.append(psnr(decoded_rgb(path(frame, engine)), target))
            scores.append(np.mean(values))
        # The conversion's own loss: the identity output against the input as decoded.
        own = np.mean([psnr(decoded_rgb(path(f, lambda x: x)), decoded_rgb(f)) for f in inputs])
        print(f"{name:10}{scores[0]:10.2f}{scores[1]:10.2f}{own:20.2f}")


if __name__ == "__main__":
    main()
