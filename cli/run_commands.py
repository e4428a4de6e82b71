"""``magneto pretrain``, ``train``, ``evaluate`` and ``predict``."""

from __future__ import annotations

import argparse
from pathlib import Path

from magneto.cli.common import (
    DEVICE_HELP,
    UsageError,
    add_runtime_arguments,
    calibration_from,
    device_name,
    non_negative_int,
    positive_int,
    print_json,
    unit_float,
)
from magneto.cli.config_flags import add_config_flags, overrides_from
from magneto.config import ConfigError, RunConfig, load_config

STAGES = {
    "pretrain": "outlier-detection pre-training on unlabeled items (paper 5.2)",
    "train": "supervised training of MAGNeto or a baseline",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    for name, helptext in STAGES.items():
        cmd = subparsers.add_parser(
            name,
            help=helptext,
            description=helptext + ". Settings come from the defaults, "
            "then --config FILE, then the flags below.",
        )
        cmd.add_argument("--config", metavar="FILE", help="YAML config file (see configs/)")
        cmd.add_argument(
            "--resume",
            action="store_true",
            help="continue the run in --out from its latest checkpoint",
        )
        add_config_flags(cmd, stage=name)
        cmd.set_defaults(handler=run_training_command, stage=name)

    ev = subparsers.add_parser(
        "evaluate",
        help="P/R/F1, micro-F1 and outlier rate of a checkpoint",
        description="Evaluate a checkpoint on an annotation file at its stored threshold.",
    )
    ev.add_argument("--checkpoint", required=True, metavar="FILE", help="a .ckpt to evaluate")
    ev.add_argument(
        "--data", required=True, metavar="FILE", help="annotation CSV/JSONL (e.g. prepared/val.csv)"
    )
    ev.add_argument("--images", metavar="DIR", help="image directory (needed by image models)")
    ev.add_argument(
        "--outliers",
        type=non_negative_int,
        metavar="N",
        default=0,
        help="K random vocabulary tags added to each item for the outlier rate",
    )
    ev.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the outlier tags")
    ev.add_argument(
        "--threshold",
        type=unit_float,
        metavar="FLOAT",
        help="decision threshold [default: the checkpoint's]",
    )
    ev.add_argument(
        "--batch-size", type=positive_int, default=64, metavar="N", help="items per forward pass"
    )
    ev.add_argument(
        "--workers",
        type=non_negative_int,
        default=2,
        metavar="N",
        help="data-loading worker processes",
    )
    ev.add_argument(
        "--device", type=device_name, default="auto", metavar="DEVICE", help=DEVICE_HELP
    )
    add_runtime_arguments(ev)
    ev.add_argument("--json", action="store_true", help="print machine-readable figures")
    ev.set_defaults(handler=run_evaluate)


def resolve_config(args: argparse.Namespace) -> RunConfig:
    """Defaults <- --config (or the run's saved config with --resume) <- flags.

    A config that is only wrong once the flags are applied (a loss parameter the chosen loss
    does not take, heads that do not divide d_model) is a usage error; a file that is wrong
    on its own is reported as the file's error.
    """
    overrides = overrides_from(args)
    if args.stage == "pretrain":  # on this command line, --epochs and --lr are pre-training's
        for field in ("epochs", "lr"):
            if field in overrides and f"pretrain_{field}" not in overrides:
                overrides[f"pretrain_{field}"] = overrides[field]
    path: Path | None = Path(args.config) if args.config else None
    if args.resume:
        out = overrides.get("out")
        if not out:
            raise UsageError("--resume needs --out RUN_DIR")
        if args.config:
            raise UsageError("--resume reuses the run's saved config; drop --config")
        path = Path(out) / "config.yaml"
        if not path.is_file():
            raise ConfigError(f"nothing to resume: {path} does not exist")
    try:
        return _build_config(path, overrides)
    except ConfigError as exc:
        if not overrides:
            raise
        _build_config(path, {})  # the file alone: its own error, if it has one
        message = str(exc).removeprefix(f"{path}: ").replace("Value error, ", "")
        raise UsageError(message) from None


def _build_config(path: Path | None, overrides: dict) -> RunConfig:
    config = load_config(RunConfig, path, overrides)
    config.check_cache()  # options that contradict each other, found before any data loads
    return config


def check_run_paths(config: RunConfig) -> None:
    """What every stage needs before it loads anything."""
    if not config.out:
        raise UsageError("no run directory given: pass --out DIR")
    if not config.data:
        raise UsageError("no dataset given: pass --data DIR")
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a run directory; choose another --out")


def run_training_command(args: argparse.Namespace) -> int:
    """``magneto train`` and ``magneto pretrain``: resolve the config, run the stage."""
    config = resolve_config(args)
    check_run_paths(config)
    if args.stage == "pretrain":
        from magneto.pretraining import run_pretraining

        pretrained = run_pretraining(config, resume=args.resume)
        if pretrained.fit.nothing_to_do:  # the library logged the one line
            return 0
        print(f"pre-training checkpoint: {pretrained.checkpoint}")
        return 0
    from magneto.training import run_training

    result = run_training(config, resume=args.resume)
    fit = result.fit
    if fit.nothing_to_do:  # the library logged the one line
        return 0
    print(
        f"best validation F1 {fit.best_f1:.4f}; checkpoints: "
        + ", ".join(str(p) for p in fit.checkpoints.values())
    )
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from magneto.training import evaluate_checkpoint

    result = evaluate_checkpoint(
        args.checkpoint,
        args.data,
        args.images,
        outliers=args.outliers,
        seed=args.seed,
        threshold=args.threshold,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        runtime=args.runtime,
        calibration=calibration_from(args),
        progress=not args.json,
    )
    if args.json:
        print_json(result.as_dict())
    else:
        print(result.table())
        for line in result.report.lines():
            print(f"note: {line}")
    return 0
