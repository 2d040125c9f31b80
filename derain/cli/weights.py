"""`derain weights`: the named weights (the built-in ones and the authors' releases), what is
cached, and fetching the authors' files on request (they carry no licence: never shipped)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("weights", help="list or fetch named weights", description=__doc__)
    wsub = p.add_subparsers(dest="weights_command", required=True, metavar="ACTION")
    wsub.add_parser("list", help="the named weights and what is cached").set_defaults(func=run_list)
    f = wsub.add_parser("fetch", help="download named weights into the cache, checking their SHA-256")
    f.add_argument("names", nargs="+", metavar="NAME")
    f.add_argument("--mirror", metavar="URL", help="base URL of a flat folder of the released files (or $DERAIN_WEIGHTS_MIRROR)")
    f.add_argument("--timeout", type=float, default=30.0, metavar="S", help="network timeout in seconds")
    f.set_defaults(func=run_fetch)


def run_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    import derain
    from derain.cli.console import err, out
    from derain.models.hub import cache_dir

    table = Table(title=f"weights (cache: {cache_dir()})")
    for column in ("name", "variant", "trained on", "cached"):
        table.add_column(column)
    for info in derain.list_weights():
        where = "built in" if info.source == "builtin" else str(info.cached) if info.cached else "no"
        if info.source == "builtin" and info.cached is None:
            where = "missing"
        trained = f"{info.training_data} ({'this project' if info.source == 'builtin' else 'authors'})"
        table.add_row(info.name, info.variant, trained, where)
    out.print(table)
    err.print("The authors' checkpoints carry no licence: fetched only on request, never shipped.", style="dim")
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    import derain
    from derain.cli.console import out

    for name in args.names:
        path = derain.fetch_weights(name, mirror=args.mirror, timeout=args.timeout)
        out.print(f"{name}: {path} (SHA-256 checked)")
    return 0
