"""`derain export`: write the model as ONNX (for ONNX Runtime or TensorRT elsewhere) or as a
serialised TensorRT engine for this GPU."""

from __future__ import annotations

import argparse
from pathlib import Path

from derain.cli.options import PRECISIONS, add_weights_option


def parse_shape(text: str) -> tuple[int, int, int, int]:
    """'1x3x720x1280' or '720x1280' (batch 1) -> (N, 3, H, W)."""
    try:
        numbers = [int(v) for v in text.lower().split("x")]
    except ValueError:
        numbers = []
    if len(numbers) == 2:
        numbers = [1, 3, *numbers]
    if len(numbers) != 4 or numbers[1] != 3 or min(numbers) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NxHxW... as N x 3 x H x W, e.g. 1x3x720x1280 or 720x1280")
    return numbers[0], numbers[1], numbers[2], numbers[3]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("export", help="write the model as ONNX or as a serialised TensorRT engine", description=__doc__)
    p.add_argument("--format", choices=("onnx", "tensorrt"), default="onnx",
                   help="onnx: a portable graph (default); tensorrt: an engine for this GPU and TensorRT release")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="FILE", help="the file to write")
    p.add_argument("--dynamic", action="store_true", help="ONNX: free batch, height and width")
    p.add_argument("--shape", type=parse_shape, default=(1, 3, 720, 1280), metavar="Nx3xHxW",
                   help="the static input shape (default 1x3x720x1280)")
    p.add_argument("--device", default="auto", help="TensorRT: the GPU to build for")
    p.add_argument("--precision", choices=("auto", *PRECISIONS), default="auto", help="TensorRT: default fp16")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    add_weights_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    output = args.output
    if output.exists() and not args.overwrite:
        raise FileExistsError(f"{output} exists; pass --overwrite to replace it")
    if not output.parent.is_dir():
        raise FileNotFoundError(f"-o {output}: no such folder {output.parent}; create it first")
    from derain.cli.console import out
    from derain.engines import export_onnx, select_device, select_precision
    from derain.engines.onnx import INPUT_NAME, OPSET, OUTPUT_NAME
    from derain.engines.tensorrt import serialize_engine
    from derain.models.hub import load_model

    model = load_model(args.weights)
    if args.format == "onnx":
        export_onnx(model, output, dynamic=args.dynamic, shape=args.shape)
        shape = "N x 3 x H x W (dynamic)" if args.dynamic else " x ".join(map(str, args.shape))
        out.print(f"{output}: ONNX opset {OPSET}, input '{INPUT_NAME}' {shape} float32 in [0, 1], output '{OUTPUT_NAME}'")
    else:
        device = select_device(args.device)
        serialize_engine(model, args.shape, device, select_precision(args.precision, device), output)
        out.print(f"{output}: serialised TensorRT engine for {' x '.join(map(str, args.shape))}")
    return 0
