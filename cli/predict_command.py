"""``magneto predict``: the kept tags of one image, or of many (files, folders, glob patterns,
or a manifest), batched through the bulk job's path."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

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
from magneto.errors import ImageError, MagnetoError


def register(subparsers: argparse._SubParsersAction) -> None:
    pr = subparsers.add_parser(
        "predict",
        help="kept tags of one image, or of many",
        description="Score images' tags with a checkpoint and print the kept ones. INPUT is "
        "any mix of image files, folders (their images, recursively) and glob patterns (quote "
        "them; ** spans folders), each scored with --tags; or one manifest (.csv, .jsonl, "
        ".parquet: item_id, tags, optional image under --images) with tags of its own. Many "
        "images are decoded in worker processes and scored in batches, as by `magneto "
        "summarize`; an image that cannot be scored is reported in its place and the status "
        "is then 1.",
    )
    pr.add_argument(
        "inputs", nargs="*", metavar="INPUT", help="images, folders, patterns or a manifest"
    )
    pr.add_argument("--checkpoint", required=True, metavar="FILE", help="a .ckpt to score with")
    pr.add_argument("--image", metavar="FILE", help="one image file (the same as one INPUT)")
    pr.add_argument("--tags", metavar="TAG,...", help="comma-separated tags, e.g. sky,dog,beach")
    pr.add_argument(
        "--images", type=Path, metavar="DIR", help="folder a manifest's image paths are under"
    )
    pr.add_argument(
        "--threshold",
        type=unit_float,
        metavar="FLOAT",
        help="decision threshold [default: the checkpoint's]",
    )
    pr.add_argument("--top-k", type=positive_int, metavar="N", help="keep at most N tags")
    pr.add_argument("--min-keep", type=non_negative_int, metavar="N", help="keep at least N tags")
    pr.add_argument(
        "--batch-size", type=positive_int, default=64, metavar="N", help="images per forward pass"
    )
    pr.add_argument(
        "--workers", type=non_negative_int, default=2, metavar="N", help="image-decoding processes"
    )
    pr.add_argument(
        "--device", type=device_name, default="auto", metavar="DEVICE", help=DEVICE_HELP
    )
    add_runtime_arguments(pr)
    pr.add_argument(
        "--explain",
        action="store_true",
        help="each tag's reason and its two stream scores (JSON: its attention grid too)",
    )
    pr.add_argument(
        "--json", action="store_true", help="print JSON (one line per image when there are many)"
    )
    pr.set_defaults(handler=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    from magneto.bulk.image_list import is_manifest

    inputs = list(args.inputs) + ([args.image] if args.image else [])
    manifest = len(inputs) == 1 and is_manifest(inputs[0])
    if manifest and args.tags:
        raise UsageError("a manifest carries its own tags: leave out --tags")
    if not manifest and not args.tags:
        raise UsageError("pass --tags (the tags to score for every image), or one manifest")
    if any(is_manifest(i) for i in inputs) and not manifest:
        raise UsageError("a manifest is scored alone: pass it as the only INPUT")
    if args.images is not None and not manifest:
        raise UsageError("--images is for a manifest's image paths")
    one = len(inputs) == 1 and not manifest and not any(c in inputs[0] for c in "*?[")
    if not inputs or (one and Path(inputs[0]).exists() and not Path(inputs[0]).is_dir()):
        return _predict_one(args, inputs[0] if inputs else None)  # every tag of one image
    return _predict_many(args, inputs, manifest)


def _predict_one(args: argparse.Namespace, image_path: str | None) -> int:
    """One image given with --image (or a tags-only model with no image): a table of every
    tag, or one JSON object."""
    from magneto.infer.decisions import reason_text
    from magneto.infer.predictor import Predictor

    predictor = Predictor.from_checkpoint(
        args.checkpoint,
        device=args.device,
        runtime=args.runtime,
        calibration=calibration_from(args),
        batch_size=1,  # what auto measures: this command scores one image
    )
    image = Path(image_path) if image_path else None  # decoding checks the file first
    if image_path is None and predictor.uses_images:
        raise MagnetoError("this model reads images: pass --image FILE or INPUT")
    try:
        prediction = predictor.predict(
            image,
            args.tags.split(","),
            threshold=args.threshold,
            top_k=args.top_k,
            min_keep=args.min_keep,
            explain=args.explain,
        )
    except ImageError as exc:  # say which file, when the message does not already
        message = str(exc)
        named = message if str(image_path) in message else f"{image_path}: {message}"
        raise type(exc)(named) from None
    if args.json:
        print_json(prediction.as_dict(explain=args.explain))
        return 0
    kept = ", ".join(prediction.kept_tags) or "(none)"
    print(f"kept: {kept}  (threshold {prediction.threshold:.2f})")
    for t in prediction.tags:
        score = "   -  " if t.score is None else f"{t.score:.3f}"
        alpha = "" if t.alpha is None else f"  alpha {t.alpha:.2f}"
        mark = "keep" if t.kept else ("unknown" if not t.known else "drop")
        line = f"  {score}  {mark:<7}  {t.tag}{alpha}"
        if args.explain:
            line += "".join(
                f"  {name} {value:.3f}"
                for name, value in (("tag stream", t.tag_score), ("image stream", t.image_score))
                if value is not None
            )
            line += f"  [{reason_text(t.reason, prediction.threshold, args.top_k, args.min_keep)}]"
        print(line)
    return 0


def _predict_many(args: argparse.Namespace, inputs: list[str], manifest: bool) -> int:
    from magneto.bulk.image_list import expand_images, write_image_manifest
    from magneto.bulk.job import BulkJob
    from magneto.bulk.local import run_local
    from magneto.bulk.rows import DecisionOptions

    with tempfile.TemporaryDirectory(prefix="magneto-predict-") as tmp:
        if manifest:
            data = Path(inputs[0])
            images = args.images if args.images is not None else data.parent
        else:
            data = Path(tmp) / "images.jsonl"
            images = write_image_manifest(expand_images(inputs), args.tags.split(","), data)
        job = BulkJob(
            checkpoint=Path(args.checkpoint),
            data=data,
            out=Path(tmp) / "results.jsonl",
            images=images,
            batch_size=args.batch_size,
            workers=args.workers,
            device=args.device,
            runtime=args.runtime,
            calibration=calibration_from(args),
            options=DecisionOptions(
                args.threshold, args.top_k, args.min_keep, args.explain, args.explain
            ),
            progress=not args.json and sys.stderr.isatty(),
        )
        run_local(job)
        if not args.json:
            print(f"threshold {_threshold(job.out)}; kept tags with their scores, best first")
        with job.out.open(encoding="utf-8") as handle:
            failed, total = _print_rows((json.loads(line) for line in handle), args.json)
    if failed:
        print(f"magneto predict: {failed} of {total} items could not be scored", file=sys.stderr)
    return 1 if failed else 0


def _threshold(results: Path) -> str:
    """The threshold the scored rows were decided at (one for the whole job)."""
    with results.open(encoding="utf-8") as handle:
        for line in handle:
            value = json.loads(line)["threshold"]
            if value is not None:
                return f"{value:.2f}"
    return "(no item scored)"


def _print_rows(rows: Any, as_json: bool) -> tuple[int, int]:
    """Each result row as a JSON line, or as a line of the table; returns (failed, total)."""
    failed = total = 0
    for row in rows:
        total += 1
        failed += bool(row["error_kind"])
        if as_json:
            print(json.dumps(row, ensure_ascii=False))
            continue
        if row["error_kind"]:
            print(f"{row['item_id']}: error: {row['error_kind']}: {row['error']}")
            continue
        kept = sorted((t for t in row["tags"] if t["kept"]), key=lambda t: -t["score"])
        shown = ", ".join(f"{t['tag']} {t['score']:.2f}" for t in kept) or "(none)"
        unknown = f"  [unknown: {', '.join(row['unknown_tags'])}]" if row["unknown_tags"] else ""
        dropped = [t for t in row["tags"] if t["known"] and not t["kept"] and "reason" in t]
        why = "".join(f"  [{t['tag']} {t['score']:.2f}: {t['reason']}]" for t in dropped)
        print(f"{row['item_id']}: {shown}{unknown}{why}")
    return failed, total
