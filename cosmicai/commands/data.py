"""``cosmicai data make|split``: synthetic partition files, and a data file cut into 1.pt..N.pt."""

from __future__ import annotations

import argparse
from pathlib import Path

from cosmicai.argtypes import Parser, add_debug, positive_int
from cosmicai.errors import EXIT_OK, BadInput


def add_arguments(data: argparse.ArgumentParser) -> None:
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND", parser_class=Parser)
    make = data_sub.add_parser("make", help="generate a synthetic SDSS-like data file")
    add_debug(make)
    make.add_argument("--samples", type=positive_int, required=True, help="galaxies to generate")
    make.add_argument("--out", type=Path, required=True, help="the data file to write (e.g. all.pt)")
    make.add_argument("--seed", type=int, default=0, help="seed of the generator: same seed, same bytes")
    make.add_argument("--format", choices=("tensordataset", "dict"), default="tensordataset", help="tensordataset (default: the reference's layout, float64 magnitudes) or dict")
    split = data_sub.add_parser("split", help="split a data file into 1.pt..N.pt")
    add_debug(split)
    split.add_argument("path", type=Path, help="the data file to split")
    how = split.add_mutually_exclusive_group(required=True)
    how.add_argument("--partition-size", help="partitions of this size, e.g. 25MB (binary units)")
    how.add_argument("--partitions", type=positive_int, help="this many partitions of near-equal size")
    split.add_argument("--out", type=Path, required=True, help="the folder for 1.pt .. N.pt")
    split.add_argument("--format", choices=("tensordataset", "dict"), default="tensordataset", help="tensordataset (default: the reference's layout) or dict")


def main(args: argparse.Namespace) -> int:
    from cosmicai import console
    from inference.data import generate, parse_size, save_partition, split_file

    if args.data_command == "make":
        save_partition(args.out, generate(args.samples, seed=args.seed), fmt=args.format)
        console.out.print(f"wrote {args.samples} samples to {args.out}")
        return EXIT_OK
    if not args.path.is_file():
        raise BadInput(f"{args.path}: no such file")
    size = parse_size(args.partition_size) if args.partition_size else None
    paths = split_file(args.path, args.out, partition_size=size, partitions=args.partitions, fmt=args.format)
    console.out.print(f"wrote {len(paths)} partitions to {args.out} ({paths[0].name} .. {paths[-1].name})")
    return EXIT_OK
