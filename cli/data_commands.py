"""``magneto synth`` and ``magneto prepare nuswide``."""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict
from pathlib import Path

from pydantic import ValidationError

from magneto.cli.common import UsageError, positive_int, print_json, unit_float
from magneto.cli.config_flags import field_checker, field_metavar
from magneto.config import validation_message
from magneto.sources.own import OwnDataSettings
from magneto.sources.synthetic.generator import SynthConfig
from magneto.sources.synthetic.profiles import PROFILES


def register(subparsers: argparse._SubParsersAction) -> None:
    synth = subparsers.add_parser(
        "synth",
        help="write a synthetic dataset (NUS-WIDE raw layout, or prepared for large-scale)",
        description="Render a synthetic dataset: images whose content decides which tags are "
        "important, noisy uploader tags, unlabeled extras. --profile image-only: only the image "
        "tells; nuswide: NUS-WIDE-like (81 concepts, ~85% of tags important), tags and image "
        "both tell; both in the NUS-WIDE raw layout (then run `magneto prepare nuswide`). "
        "large-scale: thousands of concepts, ~40 tags per item, ~15% important, written "
        "already prepared (train.csv, val.csv, vocab.csv, unlabeled.csv; --data OUT "
        "--images OUT/images). nuswide and large-scale also write tag_kinds.csv (each tag's "
        "kind: visual, generic or noise) and concepts.csv.",
    )
    synth.add_argument(
        "--profile",
        choices=PROFILES,
        default="image-only",
        help="which benchmark",
    )
    synth.add_argument(
        "--out", required=True, metavar="DIR", help="directory to create (must be empty)"
    )
    # Checked against SynthConfig's own bounds as they are parsed (a bad value: status 2).
    for flag, field, help_text in (
        ("--items", "items", "labelled items (at least 10)"),
        ("--unlabeled", "unlabeled", "extra items without usable ground truth"),
        ("--seed", "seed", "random seed"),
        (
            "--image-size",
            "image_size",
            "side in pixels (32 to 1024; default 128, 96 for the nuswide and large-scale profiles)",
        ),
        ("--test-fraction", "test_fraction", "share in the test list (between 0 and 1)"),
    ):
        synth.add_argument(
            flag,
            type=field_checker(SynthConfig, field),
            default=None if field == "image_size" else SynthConfig.model_fields[field].default,
            metavar=field_metavar(SynthConfig.model_fields[field].annotation),
            help=help_text,
        )
    synth.add_argument(
        "--test-holdout",
        type=unit_float,
        default=0.0,
        metavar="FLOAT",
        help="large-scale: share of the validation items written to test.csv instead (the "
        "raw-layout profiles: magneto prepare nuswide --test-holdout)",
    )
    synth.add_argument("--no-defects", action="store_true", help="omit NUS-WIDE's known defects")
    synth.add_argument(
        "--workers",
        type=positive_int,
        default=max(1, (os.cpu_count() or 1)),
        metavar="N",
        help="processes drawing the images (nuswide, large-scale; image-only draws in one)",
    )
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
        "train.csv, val.csv (official split), vocab.csv, unlabeled.csv and summary.json; "
        "with --test-holdout also test.csv, held out of the official test list.",
    )
    nus.add_argument("--root", required=True, metavar="DIR", help="the NUS-WIDE root directory")
    nus.add_argument("--out", required=True, metavar="DIR", help="directory for the prepared files")
    nus.add_argument(
        "--max-len", type=positive_int, default=16, metavar="N", help="most tags per item (l)"
    )
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
        metavar="N",
        help="processes for --check-images decode",
    )
    nus.add_argument(
        "--test-holdout",
        type=unit_float,
        default=0.0,
        metavar="FLOAT",
        help="share of the official test list written to test.csv instead of val.csv (a "
        "seeded hash of the item id): choose on val, report on test",
    )
    nus.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the test holdout")
    nus.add_argument("--overwrite", action="store_true", help="replace earlier prepared files")
    nus.add_argument("--json", action="store_true", help="print the summary as JSON")
    nus.set_defaults(handler=run_prepare_nuswide)

    own = kinds.add_parser(
        "own",
        help="your own annotations (CSV, JSONL or Parquet) and image folder",
        description="Check, split and write your own annotations for training: vocab.csv "
        "(tags of train and unlabeled, normalised as everywhere else), train.csv, val.csv and "
        "test.csv (labelled items, split by a hash of the seed and the item id, so an item "
        "keeps its split when rows are added), unlabeled.csv (items without important_tags or "
        "label, for pre-training) and report.json. Columns: item_id, tags, important_tags or "
        "label, optional image (relative to --images; default <item_id>.jpg). Rows that "
        "cannot be used are dropped and reported with their file:line and reason.",
    )
    own.add_argument(
        "--annotations",
        required=True,
        nargs="+",
        type=Path,
        metavar="FILE",
        help="annotation files: .csv, .jsonl/.ndjson or .parquet",
    )
    own.add_argument("--images", type=Path, metavar="DIR", help="the folder the images are under")
    own.add_argument("--out", required=True, type=Path, metavar="DIR", help="directory to write")
    for flag, name in (
        ("--val-fraction", "val_fraction"),
        ("--test-fraction", "test_fraction"),
        ("--seed", "seed"),
        ("--min-count", "min_count"),
        ("--max-vocab", "max_vocab"),
        ("--max-len", "max_len"),
    ):
        info = OwnDataSettings.model_fields[name]
        own.add_argument(
            flag,
            dest=name,
            type=field_checker(OwnDataSettings, name),
            default=info.default,
            metavar=field_metavar(info.annotation),
            help=info.description,
        )
    own.add_argument(
        "--check-images",
        choices=("none", "exists", "decode"),
        default="exists",
        help="drop items whose image is missing (exists) or also fails to decode (decode); "
        "none: do not look (tags-only data)",
    )
    own.add_argument(
        "--workers",
        type=positive_int,
        default=max(1, (os.cpu_count() or 1)),
        metavar="N",
        help="processes for --check-images decode",
    )
    own.add_argument("--overwrite", action="store_true", help="replace earlier prepared files")
    own.add_argument("--json", action="store_true", help="print the report as JSON")
    own.set_defaults(handler=run_prepare_own)


def _report(title: str, lines: list[str], payload: object, as_json: bool) -> None:
    if as_json:
        print_json(payload)
        return
    print(title)
    for line in lines:
        print(f"  {line}")


def run_synth(args: argparse.Namespace) -> int:
    if args.test_holdout and args.profile != "large-scale":
        raise UsageError(
            "--test-holdout is for --profile large-scale; for the raw layout pass it to "
            "magneto prepare nuswide"
        )
    sizes = {} if args.image_size is None else {"image_size": args.image_size}
    common = dict(
        items=args.items,
        unlabeled=args.unlabeled,
        seed=args.seed,
        test_fraction=args.test_fraction,
        defects=not args.no_defects,
        **sizes,
    )
    if args.profile == "image-only":
        from magneto.sources.synthetic.generator import generate

        summary = generate(SynthConfig(**common), args.out, overwrite=args.overwrite)
        title = f"synthetic NUS-WIDE layout written to {args.out}"
        _report(title, summary.lines(), asdict(summary), args.json)
        return 0
    from magneto.sources.synthetic.benchmark import BenchConfig, generate_benchmark
    from magneto.sources.synthetic.profiles import profile_config

    config = BenchConfig(
        profile=profile_config(args.profile),
        workers=args.workers,
        test_holdout=args.test_holdout,
        **common,
    )
    bench = generate_benchmark(config, args.out, overwrite=args.overwrite)
    if bench.layout == "prepared":
        title = f"prepared {args.profile} dataset written to {args.out} (--data {bench.data})"
    else:
        title = f"synthetic NUS-WIDE layout ({args.profile} profile) written to {args.out}"
    _report(title, bench.lines(), asdict(bench), args.json)
    return 0


def run_prepare_nuswide(args: argparse.Namespace) -> int:
    from magneto.sources.nuswide import prepare_nuswide

    summary = prepare_nuswide(
        args.root,
        args.out,
        max_len=args.max_len,
        image_check=args.check_images,
        overwrite=args.overwrite,
        workers=args.workers,
        test_holdout=args.test_holdout,
        seed=args.seed,
    )
    title = f"prepared dataset written to {args.out} (images under {summary.image_root})"
    _report(title, summary.lines(), asdict(summary), args.json)
    return 0


def run_prepare_own(args: argparse.Namespace) -> int:
    from magneto.sources.own import prepare_own

    if args.images is None and args.check_images != "none":
        raise UsageError("pass --images DIR (or --check-images none for data without images)")
    try:
        settings = OwnDataSettings(
            val_fraction=args.val_fraction,
            test_fraction=args.test_fraction,
            seed=args.seed,
            min_count=args.min_count,
            max_vocab=args.max_vocab,
            max_len=args.max_len,
            image_check=args.check_images,
            workers=args.workers,
        )
    except ValidationError as exc:  # flags that contradict each other: a usage error
        raise UsageError(validation_message(exc)) from None
    report = prepare_own(
        args.annotations, args.out, images=args.images, settings=settings, overwrite=args.overwrite
    )
    title = f"prepared dataset written to {args.out}"
    if args.images:
        title += f" (train with --data {args.out} --images {args.images})"
    _report(title, report.lines(), report.as_dict(), args.json)
    return 0
