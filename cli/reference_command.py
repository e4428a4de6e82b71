"""``magneto import-reference``: a model trained with the paper's public code, as our checkpoint.

The converted file is an ordinary MAGNeto checkpoint (stage ``imported``), so predict, evaluate,
serve, summarize and export take it unchanged; see :mod:`magneto.infer.reference_import`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from magneto.cli.common import int_at_least, positive_int, print_json, unit_float


def register(subparsers: argparse._SubParsersAction) -> None:
    cmd = subparsers.add_parser(
        "import-reference",
        help="convert a best_f1.pth of the original implementation (pixta-dev/labteam)",
        description="Convert a checkpoint saved by the paper's public MAGNeto code (its "
        "best_f1.pth, best_loss.pth, latest.pth ...) and the vocabulary CSV (index,word) it was "
        "trained with into a MAGNeto checkpoint. The file is read without unpickling arbitrary "
        "objects; the architecture is read off the weights' shapes.",
    )
    cmd.add_argument(
        "--checkpoint", required=True, type=Path, metavar="FILE", help="the reference .pth file"
    )
    cmd.add_argument(
        "--vocab", required=True, type=Path, metavar="FILE", help="its vocabulary CSV (index,word)"
    )
    cmd.add_argument(
        "--out", required=True, type=Path, metavar="FILE", help="the MAGNeto checkpoint to write"
    )
    cmd.add_argument(
        "--threshold",
        type=unit_float,
        metavar="FLOAT",
        help="decision threshold [default: the file's, or 0.5]",
    )
    cmd.add_argument(
        "--input-size", type=int_at_least(32), default=112, metavar="N", help="image side in px"
    )
    cmd.add_argument(
        "--heads",
        type=positive_int,
        metavar="N",
        help="attention heads, if the file's config lacks them (default: the paper's, 4 or 8)",
    )
    cmd.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    cmd.add_argument("--json", action="store_true", help="print the result as JSON")
    cmd.set_defaults(handler=run_import_reference)


def run_import_reference(args: argparse.Namespace) -> int:
    from magneto.infer.checkpoint import save_checkpoint
    from magneto.infer.reference_import import import_reference

    if args.out.exists() and not args.overwrite:
        raise FileExistsError(f"{args.out} exists; pass --overwrite to replace it")
    result = import_reference(
        args.checkpoint,
        args.vocab,
        threshold=args.threshold,
        input_size=args.input_size,
        heads=args.heads,
    )
    save_checkpoint(result.checkpoint, args.out)
    ckpt, config = result.checkpoint, result.checkpoint.model_config
    if args.json:
        print_json(
            {
                "out": str(args.out),
                "model_config": config.model_dump(),
                "vocabulary_size": len(ckpt.vocabulary),
                "threshold": ckpt.threshold,
                "input_size": ckpt.input_size,
                "metrics": ckpt.metrics,
                "notes": result.notes,
            }
        )
        return 0
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in ckpt.metrics.items()) or "none"
    print(
        f"{args.checkpoint} -> {args.out}: MAGNeto {config.backbone}, d_model {config.d_model}, "
        f"{config.tag_layers} tag + {config.image_layers} image layers, {config.heads} heads, "
        f"{len(ckpt.vocabulary)} tags, threshold {ckpt.threshold:g}, {ckpt.input_size} px; "
        f"file metrics: {metrics}"
    )
    for note in result.notes:
        print(f"note: {note}")
    print(f"predict with it: magneto predict --checkpoint {args.out} --image IMG --tags a,b,c")
    return 0
