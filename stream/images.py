"""`derain image`: derain still images and folders of them into PNGs."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from derain.engines import Engine
from derain.models.brn import BRN
from derain.models.data import IMAGE_SUFFIXES, ImageError, list_images, read_image_raw, split_alpha, write_png


@dataclass
class ImageJob:
    source: Path
    output: Path
    rain_output: Path | None


def plan_jobs(inputs: Iterable[str | Path], outdir: Path, rain: bool, overwrite: bool = False) -> list[ImageJob]:
    """One job per image: folders are expanded (not recursively), names must not collide, and
    existing outputs are replaced only with `overwrite`."""
    if outdir.exists() and not outdir.is_dir():
        raise NotADirectoryError(f"outdir={str(outdir)!r}: is a file; give a folder for the PNGs")
    sources: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = list_images(item)
            if not found:
                raise FileNotFoundError(f"{item}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
            sources.extend(found)
        elif item.exists():
            sources.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such file or folder")
    jobs: list[ImageJob] = []
    taken: dict[Path, Path] = {}  # every output path, resolved, and the image it comes from
    inputs_resolved = {source.resolve(): source for source in sources}
    for source in sources:
        rain_output = outdir / f"{source.stem}_rain.png" if rain else None
        job = ImageJob(source, outdir / f"{source.stem}.png", rain_output)
        for output in filter(None, (job.output, job.rain_output)):
            key = output.resolve()
            if key in inputs_resolved:
                raise FileExistsError(f"{output}: is the input {inputs_resolved[key]}; write the output to another folder (`outdir`)")
            if key in taken:
                raise FileExistsError(f"{source} and {taken[key]} would both be written to {output}; derain them into separate folders")
            taken[key] = source
        jobs.append(job)
    existing = [output for job in jobs for output in (job.output, job.rain_output) if output is not None and output.exists()]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise FileExistsError(f"{existing[0]}: already exists{more}; pass overwrite=True to replace, or write to another folder")
    return jobs


def derain_image(engine: Engine, model: BRN | None, job: ImageJob) -> None:
    """Derain one file. Gray comes back as RGB, alpha is carried through untouched."""
    rgb, alpha = split_alpha(read_image_raw(job.source))
    batch = torch.from_numpy(rgb).permute(2, 0, 1)[None].to(engine.device)
    clean = engine.run(batch)[0].float().permute(1, 2, 0).cpu().numpy()
    write_png(job.output, clean, alpha)
    if job.rain_output is not None and model is not None:
        # The rain layer is not part of an engine's output; the eager FP32 model computes it.
        with torch.inference_mode():
            _, rain = model(batch.float().cpu())
        write_png(job.rain_output, np.clip(rain[0].permute(1, 2, 0).numpy(), 0.0, 1.0))


def run_jobs(engine: Engine, model: BRN | None, jobs: list[ImageJob], report: Callable[[ImageJob, str | None], None]) -> int:
    """Derain every job; a bad image is reported and skipped. Returns how many failed."""
    failed = 0
    for job in jobs:
        try:
            derain_image(engine, model, job)
            report(job, None)
        except (ImageError, torch.OutOfMemoryError, OSError) as err:
            # One image too large for the device, or one output that cannot be written, is that image's failure alone.
            failed += 1
            report(job, f"{job.source}: {str(err).splitlines()[0]}" if not isinstance(err, ImageError) else str(err))
    return failed
