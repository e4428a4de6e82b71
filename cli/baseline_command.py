"""``magneto baseline``: simple models fit on a prepared dataset's ``train.csv`` and scored
like ``magneto evaluate`` scores a checkpoint, so a model's figures have something to beat."""

from __future__ import annotations

import argparse
from pathlib import Path

from magneto.cli.common import (
    DEVICE_HELP,
    UsageError,
    device_name,
    non_negative_int,
    positive_int,
    print_json,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    cmd = subparsers.add_parser(
        "baseline",
        help="fit and score the simple baselines a model must beat (keep-all, tag prior, "
        "tag-context regression, + image)",
        description="Fit keep-all, the per-tag prior, a tag-context logistic regression and "
        "(with --images) the same regression plus pooled backbone features on DATA/train.csv; "
        "choose each one's threshold on DATA/val.csv; report val.csv and test.csv (when there "
        "is one) with the metrics of magneto evaluate. --load scores saved baselines again.",
    )
    cmd.add_argument("--data", required=True, type=Path, metavar="DIR", help="a prepared dataset")
    cmd.add_argument("--images", type=Path, metavar="DIR", help="its images (the image baseline)")
    source = cmd.add_mutually_exclusive_group(required=True)
    source.add_argument("--out", type=Path, metavar="DIR", help="fit, and save the baselines here")
    source.add_argument("--load", type=Path, metavar="DIR", help="score baselines saved before")
    cmd.add_argument(
        "--outliers",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="add N random vocabulary tags per item and report the outlier rate",
    )
    cmd.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the outlier tags")
    cmd.add_argument("--backbone", default="resnet18", metavar="NAME", help="image backbone")
    cmd.add_argument(
        "--backbone-weights",
        default="imagenet",
        metavar="NAME",
        help="imagenet, none (random: synthetic images only) or a weights FILE",
    )
    cmd.add_argument(
        "--input-size", type=positive_int, default=112, metavar="N", help="image side in pixels"
    )
    cmd.add_argument(
        "--device", type=device_name, default="auto", metavar="DEVICE", help=DEVICE_HELP
    )
    cmd.add_argument(
        "--workers", type=non_negative_int, default=2, metavar="N", help="image-decoding processes"
    )
    cmd.add_argument("--json", action="store_true", help="print machine-readable figures")
    cmd.set_defaults(handler=run_baseline)


def run_baseline(args: argparse.Namespace) -> int:
    from magneto.training.baseline_files import load_baselines, save_baselines
    from magneto.training.baselines import ImageSettings, fit_baselines, score_file

    if not args.data.is_dir():
        raise UsageError(f"--data {args.data} is not a folder")
    images = None
    if args.images is not None:
        if not args.images.is_dir():
            raise UsageError(f"--images {args.images} is not a folder")
        weights = None if args.backbone_weights == "none" else args.backbone_weights
        images = ImageSettings(
            args.images,
            args.backbone,
            weights,
            args.input_size,
            device=args.device,
            workers=args.workers,
        )
    if args.out is not None:
        if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
            raise UsageError(f"--out {args.out} already holds files; choose another folder")
        baselines = fit_baselines(args.data, images)
        save_baselines(baselines, args.out)
    else:
        baselines = load_baselines(args.load)
        if images is not None and baselines.image:  # the backbone the prototypes came from
            saved = baselines.image
            images = ImageSettings(
                args.images,
                saved["backbone"],
                saved["backbone_weights"],
                int(saved["input_size"]),
                device=args.device,
                workers=args.workers,
            )
    splits = [s for s in ("val", "test") if (args.data / f"{s}.csv").is_file()]
    if not splits:
        raise UsageError(f"{args.data} has no val.csv or test.csv to score")
    figures = {
        split: score_file(
            baselines,
            args.data / f"{split}.csv",
            images=images,
            outliers=args.outliers,
            seed=args.seed,
        )
        for split in splits
    }
    if args.json:
        print_json(
            {
                split: {name: result.as_dict() for name, result in by.items()}
                for split, by in figures.items()
            }
        )
        return 0
    for split, by in figures.items():
        note = " (thresholds chosen here: optimistic)" if split == "val" else ""
        print(f"== {split}.csv{note}")
        for name, result in by.items():
            print(f"-- {name}")
            print(result.table())
    print(_summary(figures))
    if args.out is not None:
        print(f"baselines saved in {args.out} (score them again with --load {args.out})")
    return 0


def _summary(figures: dict) -> str:
    """One line per baseline: F1 on each split."""
    names = list(next(iter(figures.values())))
    head = "baseline".ljust(20) + "".join(f"{s + ' F1':>12}" for s in figures)
    rows = [
        name.ljust(20)
        + "".join(
            f"{100 * by[name].metrics.f1:>11.2f}%" if name in by else f"{'-':>12}"
            for by in figures.values()
        )
        for name in names
    ]
    return "\n".join(["", head, *rows])
