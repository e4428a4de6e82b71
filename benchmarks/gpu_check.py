"""Every GPU code path in one command, with the figures a GPU machine should be judged on.

Run it the moment a GPU machine is available (under 8 minutes on one GPU):

1. training step, float32 vs bf16 autocast, at the paper's NUS-WIDE and large-scale configs
   (their models, batch sizes and input sizes; random data, the full objective, SGD);
2. the feature cache: images/s to build it for the generated library (workers decoding);
3. ``magneto summarize`` items/s on 20,000 generated 640 x 480 JPEGs with every CPU core
   decoding, against the decode floor (the same workers reading and decoding only); the goal
   is 5,000 images/s for ResNet-18 at 112 px, or the decode floor where that is lower;
4. the service (``magneto serve --device cuda``) under 64 concurrent clients;
5. parity: CUDA answers (float32, and the runtime ``auto`` picks there) against the CPU's.

``--dry-run`` runs every step on the CPU at toy sizes, so that CI keeps the script working.
A step that fails is reported in the table and the exit status is 1. Usage:
    python benchmarks/gpu_check.py [--dry-run] [--workdir DIR] [--images N] [--clients N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bulk_throughput import decode_floor, write_library
from machine import header
from serve_load import build_checkpoint, load, start_server

GOAL_IMAGES_PER_S = 5000


def _library_part(args: tuple[Path, int, int]) -> Path:
    directory, count, seed = args
    return write_library(directory, count, seed)


def library(workdir: Path, count: int) -> tuple[Path, Path]:
    """``count`` JPEGs of 640 x 480 and a manifest, made by every core: (manifest, images)."""
    import csv

    manifest = workdir / f"library-{count}.csv"
    images = workdir / "library"
    if manifest.is_file():
        return manifest, images
    cores = os.cpu_count() or 1
    sizes = [count // cores + (i < count % cores) for i in range(cores)]
    parts = [(workdir / "parts" / str(i), n, i) for i, n in enumerate(sizes) if n]
    with ProcessPoolExecutor(cores) as pool:
        written = list(pool.map(_library_part, parts))
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for (folder, _, part), part_manifest in zip(parts, written, strict=True):
        for row in csv.DictReader(part_manifest.open()):
            name = f"{part}-{row['image']}"
            (folder / "images" / row["image"]).rename(images / name)
            rows.append({**row, "item_id": f"{part}-{row['item_id']}", "image": name})
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["item_id", "tags", "image"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest, images


def training_steps(device: Any, dry_run: bool) -> list[tuple[str, str]]:
    """Items/s of a full training step at each paper config, float32 and bf16 autocast."""
    import torch

    from magneto.config import RunConfig, load_config
    from magneto.configs import config_path
    from magneto.devices import autocast
    from magneto.model.architectures import build_model
    from magneto.train.loss_registry import build_loss
    from magneto.train.total_loss import TotalLoss

    rows = []
    for name in ("nuswide", "large-scale"):
        config = load_config(RunConfig, config_path(name), {"model.backbone_weights": None})
        vocab, batch = 1000, 2 if dry_run else config.batch_size
        size, length = config.input_size, config.max_len
        model_config = config.model.model_copy(update={"vocab_size": vocab})
        torch.manual_seed(0)
        images = torch.randn(batch, 3, size, size, device=device)
        tags = torch.randint(0, vocab, (batch, length), device=device)
        mask = torch.arange(length, device=device)[None] >= torch.randint(
            1, length + 1, (batch, 1), device=device
        )
        targets = (torch.rand(batch, length, device=device) > 0.7).float() * ~mask
        criterion = TotalLoss(build_loss(config.loss))
        speeds = {}
        for amp in ("off", "bf16"):
            model = build_model(model_config).to(device).train()
            trainable = [p for p in model.parameters() if p.requires_grad]
            optimizer = torch.optim.SGD(trainable, lr=0.01, momentum=0.9)

            def step(
                model=model,
                optimizer=optimizer,
                amp=amp,
                data=(images, tags, mask, targets),
                criterion=criterion,
            ) -> float:
                batch_images, batch_tags, batch_mask, batch_targets = data
                with autocast(device, amp):
                    out = model(batch_images, batch_tags, batch_mask)
                    loss, _ = criterion(out, batch_targets, batch_mask)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                return float(loss.detach())

            times = timed(step, device, warmup=1 if dry_run else 3, runs=2 if dry_run else 15)
            speeds[amp] = batch / statistics.median(times)
        ratio = speeds["bf16"] / speeds["off"]
        rows.append(
            (
                f"train step, {name} ({model_config.backbone}, {size} px, batch {batch})",
                f"float32 {speeds['off']:.0f} items/s, bf16 {speeds['bf16']:.0f} items/s "
                f"({ratio:.2f}x)",
            )
        )
    return rows


def timed(call: Callable[[], Any], device: Any, warmup: int, runs: int) -> list[float]:
    import torch

    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        call()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    return times


def feature_cache(checkpoint: Path, manifest: Path, images: Path, device: Any, workdir: Path):
    from magneto.data.items import load_items
    from magneto.infer.checkpoint import load_checkpoint, model_from_checkpoint
    from magneto.train.feature_cache import build_feature_store

    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt, device, amp="off")
    items, _ = load_items(manifest, ckpt.vocabulary, labelled=False)
    started = time.perf_counter()
    build_feature_store(
        items,
        images,
        model.image_extractor,
        backbone=ckpt.model_config.backbone,
        input_size=ckpt.input_size,
        cache_dir=workdir / f"features-{time.time_ns()}",
        device=device,
        amp="auto",
        batch_size=256,
        workers=max(1, (os.cpu_count() or 2) - 1),
        progress=False,
    )
    rate = len(items) / (time.perf_counter() - started)
    return [(f"feature cache build, {len(items)} JPEGs 640x480", f"{rate:.0f} images/s")]


def summarize(checkpoint: Path, manifest: Path, images: Path, device: Any, workdir: Path):
    from magneto.bulk.job import BulkJob
    from magneto.bulk.local import run_local
    from magneto.infer.predictor import Predictor

    workers = max(1, (os.cpu_count() or 2) - 1)
    job = BulkJob(
        checkpoint=checkpoint,
        data=manifest,
        out=workdir / f"results-{time.time_ns()}.jsonl",
        images=images,
        batch_size=256,
        workers=workers,
        shard_rows=2048,
        device=str(device),
        progress=False,
    )
    # The runtime auto picks is measured once here and cached, so the job's clock counts
    # scoring, not the measurement.
    Predictor.from_checkpoint(checkpoint, device=device, batch_size=job.batch_size)
    report = run_local(job).as_dict()
    if report["errors"]:
        raise RuntimeError(f"{report['errors']} items failed")
    predictor = Predictor.from_checkpoint(checkpoint, device=device, runtime=report["runtime"])
    floor = decode_floor(job, predictor)
    rate = report["items_per_second"]
    goal = min(GOAL_IMAGES_PER_S, floor)
    verdict = "meets" if rate >= 0.95 * goal else "misses"
    return [
        (
            f"magneto summarize, {report['items']} JPEGs, {workers} decoding workers",
            f"{rate:.0f} items/s (runtime {report['runtime']}); decode floor {floor:.0f} "
            f"images/s; goal min({GOAL_IMAGES_PER_S}, floor) = {goal:.0f}: {verdict} it",
        )
    ]


def service(checkpoint: Path, manifest: Path, images: Path, device: Any, clients: int, dry: bool):
    import csv

    rows = list(csv.DictReader(manifest.open()))[:64]
    inputs = [((images / r["image"]).read_bytes(), r["tags"].split(",")) for r in rows]
    extra = ["--device", str(device), "--max-batch-size", "64", "--preprocess-threads"]
    extra.append(str(max(2, (os.cpu_count() or 2) - 2)))
    proc, url = start_server(checkpoint, extra)
    try:
        requests, seconds = (4 * clients, 60.0) if dry else (100 * clients, 60.0)
        result = asyncio.run(load(url, inputs, clients, requests, seconds))
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    if result["errors"]:
        raise RuntimeError(f"{result['errors']} requests failed")
    return [
        (
            f"service, {clients} concurrent clients (640x480 JPEG, 8 tags)",
            f"{result['throughput']:.0f} requests/s, p50 {1000 * result['p50']:.0f} ms, "
            f"p99 {1000 * result['p99']:.0f} ms",
        )
    ]


def parity(checkpoint: Path, manifest: Path, images: Path, device: Any):
    import csv

    import numpy as np

    from magneto.infer.predictor import Predictor

    rows = list(csv.DictReader(manifest.open()))[:64]
    items = [(images / r["image"], r["tags"].split(",")) for r in rows]

    def scores(predictor: Predictor) -> np.ndarray:
        return np.array([[t.score for t in p.tags] for p in predictor.predict_batch(items)])

    cpu = scores(Predictor.from_checkpoint(checkpoint, device="cpu", runtime="float32"))
    out = []
    for runtime in ("float32", "auto"):
        predictor = Predictor.from_checkpoint(checkpoint, device=device, runtime=runtime)
        got = scores(predictor)
        same = float(((got >= 0.5) == (cpu >= 0.5)).mean())
        out.append(
            (
                f"parity with the CPU, {device} {predictor.runtime.name} ({runtime})",
                f"max |score difference| {np.abs(got - cpu).max():.2e}, "
                f"decisions equal {100 * same:.2f} %",
            )
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, toy sizes (CI)")
    parser.add_argument("--workdir", type=Path, help="default: a temporary directory")
    parser.add_argument("--images", type=int, help="generated JPEGs [20000; dry run 48]")
    parser.add_argument("--clients", type=int, help="concurrent clients [64; dry run 4]")
    args = parser.parse_args()
    import torch

    print(header("GPU check" + (" (dry run on the CPU)" if args.dry_run else "")), flush=True)
    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA GPU here: run with --dry-run to check the script on the CPU")
        return 2
    device = torch.device("cpu" if args.dry_run else "cuda")
    count = args.images or (48 if args.dry_run else 20_000)
    clients = args.clients or (4 if args.dry_run else 64)
    table: list[tuple[str, str]] = []
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("MAGNETO_CACHE_DIR", str(workdir / "cache"))
        started = time.perf_counter()
        manifest, images = library(workdir, count)
        print(f"library: {count} JPEGs ({time.perf_counter() - started:.0f} s)", flush=True)
        checkpoint = build_checkpoint(workdir)  # ResNet-18 MAGNeto at 112 px, untrained
        steps: list[tuple[str, Callable[[], list[tuple[str, str]]]]] = [
            ("train step", lambda: training_steps(device, args.dry_run)),
            ("feature cache", lambda: feature_cache(checkpoint, manifest, images, device, workdir)),
            ("summarize", lambda: summarize(checkpoint, manifest, images, device, workdir)),
            (
                "service",
                lambda: service(checkpoint, manifest, images, device, clients, args.dry_run),
            ),
            ("parity", lambda: parity(checkpoint, manifest, images, device)),
        ]
        for name, step in steps:
            step_started = time.perf_counter()
            try:
                rows = step()
            except Exception as exc:
                traceback.print_exc()
                rows = [(name, f"FAILED: {type(exc).__name__}: {str(exc).splitlines()[0]}")]
                failed += 1
            seconds = time.perf_counter() - step_started
            table += [(check, f"{figure} [{seconds:.0f} s]") for check, figure in rows]
            print(f"{name}: done in {seconds:.0f} s", flush=True)
        width = max(len(check) for check, _ in table)
        print(f"\n{'check':<{width}}  figure")
        for check, figure in table:
            print(f"{check:<{width}}  {figure}")
        print(f"total {time.perf_counter() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
