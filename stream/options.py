"""Options that several commands share: which weights, which engine, which device."""

from __future__ import annotations

import argparse

from rich.console import Console

from derain.engines import BACKENDS, PRECISIONS, Engine, build_engine
from derain.models.brn import BRN
from derain.models.hub import load_model

console = Console(stderr=True, highlight=False)


def add_weights_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights",
        metavar="NAME|PATH",
        default=None,
        help="registry name (see `derain weights list`) or checkpoint file; default: the built-in weights",
    )


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    add_weights_option(parser)
    parser.add_argument("--engine", choices=BACKENDS, default="auto", help="inference backend (default: auto)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or cuda:N (default: CUDA when present)")
    parser.add_argument(
        "--precision",
        choices=("auto", *PRECISIONS),
        default="auto",
        help="default: fp16 on a GPU, fp32 on the CPU",
    )


def engine_from_args(args: argparse.Namespace) -> tuple[BRN, Engine]:
    model = load_model(args.weights)
    engine = build_engine(model, args.engine, args.device, args.precision)
    console.print(
        f"[dim]{model.variant.upper()} (T={model.stages}) from {args.weights or 'built-in weights'}: "
        f"{engine.backend} engine, {engine.precision}, {engine.device}[/dim]"
    )
    return model, engine
