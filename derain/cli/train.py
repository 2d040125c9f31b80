"""`derain train`: train or fine-tune a BRN-family model with the paper's recipe, resumable,
on paired data or on clean images under synthetic rain.

Defaults are TrainConfig's (models/train.py), the one place they are written: an option not
given here is not passed on. `--l1 W` adds W x the final image's mean absolute error to the
paper's SSIM loss; `--procedural F` draws a share F of synthetic-rain patches from generated
dead-leaves images; `--structures F` draws thin clean structure (grilles, fences, text, grass)
over a share F of them; `--identity F` leaves a share F without rain, the target the input itself. A stopped run saves its state; `--resume` continues it exactly.
"""

from __future__ import annotations

import argparse

AMP_MODES = ("auto", "on", "off")  # derain.models.train.AMP_MODES
VARIANTS = ("brn", "brn-xr", "brn-rx", "crn")  # derain.models.brn.VARIANTS


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("train", help="train or fine-tune a BRN model (the paper's recipe)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter, argument_default=argparse.SUPPRESS)
    p.add_argument("--data", required=True, help="paired folder (input/+target/, rain/+norain/, rainy/) or clean images with --synthetic-rain")
    p.add_argument("--synthetic-rain", action="store_true", help="--data holds clean images; synthesise rain on the fly")
    p.add_argument("--out", required=True, help="run folder: checkpoints, state.pt, log.jsonl")
    p.add_argument("--epochs", type=int, help="default 100")
    p.add_argument("--patch", type=int, help="training patch side (default 100)")
    p.add_argument("--batch", type=int, help="default 12")
    p.add_argument("--lr", type=float, help="Adam's learning rate (default 1e-3)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    p.add_argument("--init", metavar="WEIGHTS", help="start from these weights (name or checkpoint path) to fine-tune")
    p.add_argument("--val", metavar="DIR", help="validation data (same kind as --data); default: a tenth of --data held out")
    p.add_argument("--variant", choices=VARIANTS, help="default brn (or that of --init)")
    p.add_argument("--stages", type=int, help="recurrent stages T (default 4, or that of --init)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--steps-per-epoch", type=int, help="default: one pass over the data's area in patches")
    p.add_argument("--heavy-fraction", type=float, help="share of synthetic samples with heavy rain (default 0.25)")
    p.add_argument("--val-crop", type=int, help="centre crop of validation images (bounds CPU time; default 256)")
    p.add_argument("--seed", type=int, help="default 0")
    p.add_argument("--l1", type=float, metavar="W", help="add W x L1 of the final image to the loss (default 0: the paper's SSIM-only loss)")
    p.add_argument("--procedural", type=float, metavar="F",
                   help="with --synthetic-rain, draw this share of patches from generated dead-leaves images instead of --data (default 0)")
    p.add_argument("--structures", type=float, metavar="F",
                   help="with --synthetic-rain, draw grilles, fences, text or grass blades over this share of patches (default 0)")
    p.add_argument("--identity", type=float, metavar="F",
                   help="with --synthetic-rain, leave this share of patches dry, the target the input itself (default 0)")
    p.add_argument("--amp", choices=AMP_MODES,
                   help="mixed precision: FP16 on CUDA (auto, the default: on), BF16 on the CPU (auto: off; about twice as fast on CPUs with AMX)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    from derain.cli.console import err, out
    from derain.models.train import TrainConfig, train

    fields = TrainConfig.__dataclass_fields__
    result = train(TrainConfig(**{k: v for k, v in vars(args).items() if k in fields}), err)
    if result.stopped_by:
        err.print(f"stopped at step {result.step}; continue with --resume")
    out.print(f"final checkpoint: {result.last}" + (f"  best: {result.best}" if result.best else ""))
    return 128 + result.stopped_by if result.stopped_by else 0  # 130 for Ctrl-C, 143 for SIGTERM, as a shell reports them
