"""``magneto summarize``: the bulk job over a whole library (see ``magneto.bulk.local``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from magneto.cli.common import (
    DEVICE_HELP,
    add_runtime_arguments,
    calibration_from,
    device_name,
    non_negative_float,
    non_negative_int,
    positive_int,
    print_json,
    unit_float,
)


def part_spec(text: str) -> tuple[int, int]:
    """An argparse type: ``I/N`` with 1 <= I <= N."""
    index, _, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: use I/N, e.g. 2/8") from None
    if not 1 <= i <= n:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: I must be from 1 to N")
    return i, n


def register(subparsers: argparse._SubParsersAction) -> None:
    cmd = subparsers.add_parser(
        "summarize",
        help="score a whole library's manifest (streamed, resumable; local or Ray)",
        description="Score every item of a manifest (CSV, JSONL or Parquet with item_id, tags "
        "and optionally image) and write one result row per item (JSONL or Parquet, by the "
        "extension of --out). Killed and started again with the same --out, it goes on where "
        "it stopped. On a scheduler (a Slurm array, a Kubernetes indexed job), run --shard I/N "
        "for I = 1..N with the same other flags: each part scores every N-th shard into the "
        "shared OUT.parts/, and the last part to finish merges them into --out (or run the "
        "same command with --merge once they are all done).",
    )
    cmd.add_argument(
        "--checkpoint", required=True, type=Path, metavar="FILE", help="a .ckpt to score with"
    )
    cmd.add_argument("--data", required=True, type=Path, metavar="FILE", help="the manifest")
    cmd.add_argument(
        "--images", type=Path, metavar="DIR", help="image directory (needed by image models)"
    )
    cmd.add_argument(
        "--out", required=True, type=Path, metavar="FILE", help="results: .jsonl or .parquet"
    )
    cmd.add_argument(
        "--batch-size", type=positive_int, default=64, metavar="N", help="items per forward pass"
    )
    cmd.add_argument(
        "--workers",
        type=non_negative_int,
        default=2,
        metavar="N",
        help="decoding processes (local engine)",
    )
    cmd.add_argument(
        "--shard-rows",
        type=positive_int,
        default=1024,
        metavar="N",
        help="rows committed together; a rerun redoes at most one shard per worker",
    )
    cmd.add_argument(
        "--device", type=device_name, default="auto", metavar="DEVICE", help=DEVICE_HELP
    )
    add_runtime_arguments(cmd)
    cmd.add_argument(
        "--threshold",
        type=unit_float,
        metavar="FLOAT",
        help="decision threshold [default: the checkpoint's]",
    )
    cmd.add_argument("--top-k", type=positive_int, metavar="N", help="keep at most N per item")
    cmd.add_argument(
        "--min-keep", type=non_negative_int, metavar="N", help="keep at least N per item"
    )
    cmd.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local processes, or a Ray cluster",
    )
    cmd.add_argument(
        "--ray-address", metavar="ADDRESS", help="Ray cluster address [default: a local Ray]"
    )
    cmd.add_argument(
        "--num-gpus-per-worker",
        type=non_negative_float,
        default=0.0,
        metavar="FLOAT",
        help="GPUs per scoring actor (Ray)",
    )
    cmd.add_argument(
        "--concurrency", type=positive_int, default=1, metavar="N", help="scoring actors (Ray)"
    )
    split = cmd.add_mutually_exclusive_group()
    split.add_argument(
        "--shard",
        type=part_spec,
        metavar="I/N",
        help="score only part I of N (1-based; e.g. 3/8, the third of eight parts)",
    )
    split.add_argument(
        "--merge",
        action="store_true",
        help="join the parts of a sharded job into --out (every part must be done)",
    )
    cmd.add_argument(
        "--explain",
        action="store_true",
        help="add each tag's reason and its two stream scores to the rows",
    )
    cmd.add_argument(
        "--explain-grid",
        action="store_true",
        help="with --explain, each tag's attention grid too (large: rows x columns floats)",
    )
    cmd.add_argument("--no-progress", action="store_true", help="no progress bar")
    cmd.add_argument("--json", action="store_true", help="print the summary as JSON")
    cmd.set_defaults(handler=run_summarize)


def run_summarize(args: argparse.Namespace) -> int:
    from magneto.bulk.engines import run_bulk
    from magneto.bulk.job import BulkJob
    from magneto.bulk.rows import DecisionOptions

    job = BulkJob(
        checkpoint=args.checkpoint,
        data=args.data,
        out=args.out,
        images=args.images,
        batch_size=args.batch_size,
        workers=args.workers,
        shard_rows=args.shard_rows,
        device=args.device,
        runtime=args.runtime,
        calibration=calibration_from(args),
        options=DecisionOptions(
            args.threshold, args.top_k, args.min_keep, args.explain, args.explain_grid
        ),
        progress=not (args.no_progress or args.json),
        part=args.shard,
    )
    if args.merge:
        from magneto.bulk.job import merge_job

        summary = merge_job(job).as_dict()
        if args.json:
            print_json(summary)
        else:
            print(f"{summary['items']} items merged into {args.out}: {summary['scored']} scored")
        return 0
    ray_options = {}
    if args.engine == "ray":
        ray_options = dict(
            address=args.ray_address,
            num_gpus_per_worker=args.num_gpus_per_worker,
            concurrency=args.concurrency,
        )
    report = run_bulk(job, args.engine, **ray_options)
    figures = report.as_dict()
    if args.json:
        print_json(figures)
        return 0
    if report.complete:
        print(f"{args.out} is complete: {figures['items']} items, {figures['scored']} scored "
              "(written earlier by this very job; nothing to do)")  # fmt: skip
        return 0
    errors = ", ".join(f"{k} {v}" for k, v in figures["errors"].items()) or "none"
    target = args.out if report.merged else f"part {args.shard[0]}/{args.shard[1]} of {args.out}"
    print(
        f"{figures['items']} items -> {target}: {figures['scored']} scored, "
        f"{figures['kept_tags_per_item']:.2f} kept tags per item, errors: {errors}, "
        f"unknown-tag rate {100 * figures['unknown_tag_rate']:.1f} %; this run: "
        f"{figures['rows_this_run']} items in {figures['seconds']:.1f} s "
        f"({figures['items_per_second']:.1f} items/s)"
        + (f", {figures['resumed_shards']} shards resumed" if figures["resumed_shards"] else "")
    )
    if not report.merged:
        print(
            f"{report.missing_parts} shards of the job are still to be committed by the other "
            "parts; the last part to finish merges them into --out (or run with --merge)"
        )
    return 0
