"""``magneto synth`` and ``magneto prepare nuswide``."""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict

from magneto.nuswide import prepare_nuswide
from magneto.synthetic import SynthConfig, generate
from magneto_cli.common import non_negative_int, positive_int, print_json


def register(subparsers: argparse._SubParsersAction) -> None:
    synth = subparsers.add_parser(
        "synth",
        help="write a synthetic dataset in the NUS-WIDE raw layout",
        description="Render a synthetic dataset in the NUS-WIDE raw layout: images whose "
        "content decides which tags are important, noisy uploader tags, unlabeled extras.",
    )
    synth.add_argument("--out", required=True, help="directory to create (must be empty)")
    synth.add_argument("--items", type=positive_int, default=2000, help="labelled items")
    synth.add_argument("--unlabeled", type=non_negative_int, default=500, help="extra items")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--image-size", type=positive_int, default=128, help="side in pixels")
    synth.add_argument("--test-fraction", type=float, default=0.4, help="share in the test list")
    synth.add_argument("--no-defects", action="store_true", help="omit NUS-WIDE's known defects")
    synth.add_argument("--overwrite", action="store_true", help="allow a non-empty --out")
    synth.add_argument("--json", action="store_true", help="print the summary as JSON")
    synth.set_defaults(handler=run_synth)

    prepare = subparsers.add_parser(
        "prepare",
        help="turn a raw dataset into train/val/vocab CSVs",
        description="Apply the paper's preprocessing to a raw dataset.",
    )
    kinds = prepare.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    nus = kinds.add_parser(
        "nuswide",
        help="NUS-WIDE raw layout (official archive or `magneto synth` output)",
        description="Paper preprocessing of NUS-WIDE: tags = the item's concepts among the 81, "
        "important = its ground-truth labels; keep items with tags, with a label, whose "
        "important tags are all among their tags, and with at most --max-len tags. Writes "
        "train.csv, val.csv (official split), vocab.csv, unlabeled.csv and summary.json.",
    )
    nus.add_argument("--root", required=True, help="the NUS-WIDE root directory")
    nus.add_argument("--out", required=True, help="directory for the prepared files")
    nus.add_argument("--max-len", type=positive_int, default=16, help="most tags per item (l)")
    nus.add_argument(
        "--check-images",
        choices=("none", "exists", "decode"),
        default="exists",
        help="drop items whose image is missing (exists) or also fails to decode (decode)",
    )
    nus.add_argument(
        "--workers",
        type=positive_int,
        default=max(1, (os.cpu_count() or 1)),
        help="processes for --check-images decode",
    )
    nus.add_argument("--overwrite", action="store_true", help="replace earlier prepared files")
    nus.add_argument("--json", action="store_true", help="print the summary as JSON")
    nus.set_defaults(handler=run_prepare_nuswide)


def _report(title: str, lines: list[str], payload: object, as_json: bool) -> None:
    if as_json:
        print_json(payload)
        return
    print(title)
    for line in lines:
        print(f"  {line}")


def run_synth(args: argparse.Namespace) -> int:
    config = SynthConfig(
        items=args.items,
        unlabeled=args.unlabeled,
        seed=args.seed,
        image_size=args.image_size,
        test_fraction=args.test_fraction,
        defects=not args.no_defects,
    )
    summary = generate(config, args.out, overwrite=args.overwrite)
    title = f"synthetic NUS-WIDE layout written to {args.out}"
    _report(title, summary.lines(), asdict(summary), args.json)
    return 0


def run_prepare_nuswide(args: argparse.Namespace) -> int:
    summary = prepare_nuswide(
        args.root,
        args.out,
        max_len=args.max_len,
        image_check=args.check_images,
        overwrite=args.overwrite,
        workers=args.workers,
    )
    title = f"prepared dataset written to {args.out} (images under {summary.image_root})"
    _report(title, summary.lines(), asdict(summary), args.json)
    return 0
