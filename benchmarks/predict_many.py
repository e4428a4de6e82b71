"""``magneto predict FOLDER`` against ``magneto summarize`` on the same images: the two take
the same path (decoding workers, padded batches), so predict should cost little more.

Writes --images photo-sized JPEGs and an untrained MAGNeto checkpoint (ResNet-18, 112 px; speed
does not depend on the weights) once into --workdir, then times both commands end to end as
subprocesses (start-up, model load and output included), alternating, --repeats times each,
with the same tags for every image, the same --workers and --batch-size. Usage:
    python benchmarks/predict_many.py [--images 100] [--repeats 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bulk_throughput import write_library
from machine import header
from serve_load import build_checkpoint

TAGS = ["sky", "clouds", "sun", "water", "beach", "dog", "cat", "tree"]


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("runs/bench-predict"))
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    print(header("magneto predict on many images against magneto summarize"), flush=True)
    args.workdir.mkdir(parents=True, exist_ok=True)
    library = write_library(args.workdir, args.images).parent / "images"
    folder = args.workdir / f"folder-{args.images}"
    if not folder.is_dir():
        folder.mkdir()
        for i in range(args.images):
            shutil.copy(library / f"{i}.jpg", folder / f"{i}.jpg")
    manifest = args.workdir / f"same-tags-{args.images}.jsonl"
    manifest.write_text(
        "".join(
            json.dumps({"item_id": str(i), "tags": TAGS, "image": f"{i}.jpg"}) + "\n"
            for i in range(args.images)
        )
    )
    checkpoint = build_checkpoint(args.workdir)
    magneto = [sys.executable, "-m", "magneto.cli.main"]
    common = ["--checkpoint", str(checkpoint), "--workers", str(args.workers)]
    common += ["--batch-size", str(args.batch_size)]
    predict = [*magneto, "predict", *common, str(folder), "--tags", ",".join(TAGS), "--json"]
    results = args.workdir / "results.jsonl"
    summarize = [*magneto, "summarize", *common, "--data", str(manifest), "--images", str(folder)]
    summarize += ["--out", str(results), "--no-progress"]
    times: dict[str, list[float]] = {"predict": [], "summarize": []}
    for _ in range(args.repeats):
        times["predict"].append(timed(predict))
        results.unlink(missing_ok=True)
        times["summarize"].append(timed(summarize))
        rows = [json.loads(line) for line in results.read_text().splitlines()]
        assert len(rows) == args.images and not any(r["error_kind"] for r in rows), "not scored"
        results.unlink(missing_ok=True)
    print(
        f"{args.images} JPEGs of 640x480, 8 tags each, untrained MAGNeto at 112 px, "
        f"batch {args.batch_size}, {args.workers} decoding workers, {args.repeats} runs each"
    )
    for name, values in times.items():
        runs = ", ".join(f"{v:.2f}" for v in values)
        print(f"{name:>9}: median {statistics.median(values):.2f} s (runs: {runs})")
    ratio = statistics.median(times["predict"]) / statistics.median(times["summarize"])
    print(f"predict / summarize = {ratio:.2f}")


if __name__ == "__main__":
    main()
