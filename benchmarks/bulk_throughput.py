"""Bulk throughput: ``magneto summarize`` next to its floors and the slower ways, same files.

Writes --images photo-sized JPEGs (640x480, noisy gradients with shapes: about the bytes of a
web photo) and a manifest with 8 tags per item once into --workdir, builds an untrained
MAGNeto checkpoint at the paper's NUS-WIDE setting (ResNet-18, 112 px; speed does not depend
on the weights), then measures in one run, items/s:

- decode floor: the job's DataLoader workers only reading, decoding and resizing;
- model floor: the model alone on batches decoded beforehand;
- the job: ``magneto summarize`` end to end (start-up, indexing and commits included);
- a per-item ``Predictor.predict`` loop, and the HTTP service at 16 concurrent clients;

and the job's peak RSS on a 20,000- and a 200,000-row manifest (a tag-only model, so the
run measures the streaming, not the decoding). Usage:
    python benchmarks/bulk_throughput.py [--images 5000] [--workers 2] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import header
from serve_load import REPO, build_checkpoint, load, start_server


def write_library(directory: Path, count: int, seed: int = 0) -> Path:
    """``count`` 640x480 JPEGs and their manifest (kept between runs)."""
    from PIL import Image, ImageDraw

    from magneto.sources.synthetic.scenes import CONCEPTS81

    manifest = directory / f"manifest-{count}.csv"
    if manifest.is_file():
        return manifest
    images = directory / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, 640)[None, :, None] * np.linspace(0, 1, 480)[:, None, None]
    rows = []
    for i in range(count):
        colours = rng.uniform(40, 215, (2, 3))
        base = colours[0] + (colours[1] - colours[0]) * ramp
        pixels = np.clip(base + rng.normal(0, 6, (480, 640, 3)), 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels)
        draw = ImageDraw.Draw(image)
        for _ in range(6):
            x, y = rng.integers(0, 560), rng.integers(0, 400)
            fill = tuple(int(c) for c in rng.integers(0, 255, 3))
            draw.ellipse([x, y, x + rng.integers(30, 160), y + rng.integers(30, 160)], fill=fill)
        image.save(images / f"{i}.jpg", quality=85)
        tags = [CONCEPTS81[j] for j in rng.choice(81, 8, replace=False)]
        rows.append({"item_id": str(i), "tags": ",".join(tags), "image": f"{i}.jpg"})
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["item_id", "tags", "image"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def decode_floor(job, predictor) -> float:
    """The job's workers, reading and decoding only."""
    from magneto.bulk.local import ShardStream, shard_loader
    from magneto.bulk.manifest import Manifest
    from magneto.bulk.rows import RowPreparer

    manifest = Manifest(job.data)
    index = manifest.index(job.shard_rows)
    prepare = RowPreparer(predictor.preparer, job.images, index.duplicates, job.options)
    stream = ShardStream(
        manifest.path, index.shards, prepare, job.batch_size, predictor.vocabulary.padding_index
    )
    loader = shard_loader(stream, job.workers)
    start, items = time.perf_counter(), 0
    for work in loader:
        items += len(work)
    return items / (time.perf_counter() - start)


def model_floor(job, predictor, items: int) -> float:
    """The model alone, on batches decoded beforehand."""
    from magneto.bulk.local import prepare_rows
    from magneto.bulk.manifest import Manifest
    from magneto.bulk.rows import RowPreparer

    manifest = Manifest(job.data)
    index = manifest.index(job.batch_size)
    prepare = RowPreparer(predictor.preparer, job.images, {}, job.options)
    padding = predictor.vocabulary.padding_index
    batches = [
        next(prepare_rows(manifest, shard, prepare, job.batch_size, padding)).batch
        for shard in index.shards[:4]
    ]
    predictor.run(batches[0])  # warm-up
    start, done = time.perf_counter(), 0
    while done < items:
        batch = batches[(done // job.batch_size) % len(batches)]
        predictor.run(batch)
        done += len(batch)
    return done / (time.perf_counter() - start)


def per_item_loop(job, predictor, count: int) -> float:
    rows = list(csv.DictReader(job.data.open()))[:count]
    start = time.perf_counter()
    for row in rows:
        predictor.predict(job.images / row["image"], row["tags"].split(","))
    return len(rows) / (time.perf_counter() - start)


def http_16(checkpoint: Path, job, requests: int) -> float:
    rows = list(csv.DictReader(job.data.open()))[:64]
    inputs = [((job.images / r["image"]).read_bytes(), r["tags"].split(",")) for r in rows]
    proc, url = start_server(checkpoint)
    try:
        result = asyncio.run(load(url, inputs, 16, requests, 120.0))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    if result["errors"]:
        raise SystemExit(f"the service answered {result['errors']} errors")
    return result["throughput"]


def peak_rss(workdir: Path, rows: int) -> tuple[float, float]:
    """(peak RSS MiB, seconds) of ``magneto summarize`` on a ``rows``-row manifest, tag-only."""
    import torch

    from magneto.data.vocabulary import Vocabulary
    from magneto.infer.checkpoint import Checkpoint, save_checkpoint
    from magneto.model.architectures import build_model
    from magneto.model.config import ModelConfig
    from magneto.sources.synthetic.scenes import CONCEPTS81

    checkpoint = workdir / "tags-only.ckpt"
    if not checkpoint.is_file():
        torch.manual_seed(0)
        config = ModelConfig(vocab_size=81, architecture="tf-t")
        state = build_model(config).state_dict()
        save_checkpoint(Checkpoint(config, Vocabulary(list(CONCEPTS81)), state), checkpoint)
    manifest = workdir / f"tags-{rows}.jsonl"
    if not manifest.is_file():
        rng = np.random.default_rng(1)
        with manifest.open("w") as handle:
            for i in range(rows):
                tags = [CONCEPTS81[j] for j in rng.choice(81, 8, replace=False)]
                handle.write(json.dumps({"item_id": f"i{i}", "tags": tags}) + "\n")
    out = workdir / f"tags-{rows}-results.jsonl"
    out.unlink(missing_ok=True)
    code = (
        "import resource, sys; from magneto_cli.main import main; code = main(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)"
    )
    args = ["summarize", "--checkpoint", str(checkpoint), "--data", str(manifest)]
    args += ["--out", str(out), "--workers", "0", "--batch-size", "256", "--no-progress"]
    args += ["--device", "cpu"]
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    seconds = time.perf_counter() - start
    out.unlink()
    return int(done.stdout.strip().splitlines()[-1]) / 1024, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/magneto-bulk-bench"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--loop-items", type=int, default=300)
    parser.add_argument("--http-requests", type=int, default=480)
    parser.add_argument("--memory-rows", type=int, nargs="*", default=[20_000, 200_000])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(header("magneto summarize throughput against its decode and model floors"), flush=True)
    from magneto.bulk.job import BulkJob
    from magneto.bulk.local import run_local
    from magneto.infer.predictor import Predictor

    args.workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    manifest = write_library(args.workdir, args.images)
    print(f"library: {args.images} JPEGs 640x480 ({time.perf_counter() - started:.0f} s)")
    checkpoint = build_checkpoint(args.workdir)
    job = BulkJob(
        checkpoint,
        manifest,
        args.workdir / "results.jsonl",
        args.workdir / "images",
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        progress=False,
    )
    predictor = Predictor.from_checkpoint(checkpoint, device=args.device)
    figures = {"decode floor": decode_floor(job, predictor)}
    figures["model floor"] = model_floor(job, predictor, min(args.images, 2048))
    job.out.unlink(missing_ok=True)
    report = run_local(job).as_dict()
    figures["magneto summarize"] = report["items_per_second"]
    figures["Predictor.predict loop"] = per_item_loop(job, predictor, args.loop_items)
    figures["HTTP service, 16 clients"] = http_16(checkpoint, job, args.http_requests)
    floor = min(figures["decode floor"], figures["model floor"])
    print(
        f"ResNet-18 MAGNeto, 112 px, 8 tags per item, {args.device}, {os.cpu_count()} cores, "
        f"batch {args.batch_size}, {args.workers} decoding workers"
    )
    for name, value in figures.items():
        print(f"{name:<28} {value:>9.1f} items/s   {value / floor:>5.2f} x min(floors)")
    print(f"summarize / min(decode floor, model floor): {figures['magneto summarize'] / floor:.3f}")
    print(f"job: {report['items']} items, {report['errors'] or 'no'} errors")
    for rows in args.memory_rows:
        rss, seconds = peak_rss(args.workdir, rows)
        print(f"peak RSS, {rows:>7}-row manifest (tag-only model): {rss:.0f} MiB ({seconds:.0f} s)")


if __name__ == "__main__":
    main()
