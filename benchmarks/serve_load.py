"""Serving overhead: the REST service under load next to the bare Predictor, same inputs.

Builds an (untrained: speed does not depend on the weights) MAGNeto checkpoint at the paper's
NUS-WIDE setting (ResNet-18, 112 px), renders synthetic JPEGs with 5 tags each, then in one
run measures

- the bare ``Predictor``: one item per call (latency), and 16 items per call (throughput);
- the service (``magneto serve`` in its own process, loopback only): concurrency 1 and 16,
  multipart uploads, keep-alive connections;

and prints p50/p99 latency, throughput, their ratios to the bare predictor, and the server's
peak RSS. Bounded by --requests per phase and --max-seconds per phase. Usage:
    python benchmarks/serve_load.py [--requests 300] [--max-seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def build_checkpoint(directory: Path) -> Path:
    import torch

    from magneto.checkpoint import Checkpoint, save_checkpoint
    from magneto.model import ModelConfig, build_model
    from magneto.synthetic import CONCEPTS81
    from magneto.vocabulary import Vocabulary

    torch.manual_seed(0)
    config = ModelConfig(vocab_size=81)
    model = build_model(config)
    return save_checkpoint(
        Checkpoint(
            model_config=config,
            vocabulary=Vocabulary(list(CONCEPTS81)),
            model_state=model.state_dict(),
            input_size=112,
            threshold=0.5,
        ),
        directory / "bench.ckpt",
    )


def make_inputs(count: int) -> list[tuple[bytes, list[str]]]:
    from magneto.synthetic import CONCEPTS81, render_scene

    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        image = render_scene(rng.choice(81, 2, replace=False).tolist(), 128, rng)
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=90)
        tags = [CONCEPTS81[i] for i in rng.choice(81, 5, replace=False)]
        out.append((buf.getvalue(), tags))
    return out


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered), p99


def bare_predictor(checkpoint: Path, inputs, requests: int, max_seconds: float) -> dict:
    from magneto.predictor import Predictor, PredictRequest

    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    for raw, tags in inputs[:5]:
        predictor.predict(raw, tags)
    latencies = []
    deadline = time.perf_counter() + max_seconds
    for i in range(requests):
        raw, tags = inputs[i % len(inputs)]
        start = time.perf_counter()
        predictor.predict(raw, tags)
        latencies.append(time.perf_counter() - start)
        if time.perf_counter() > deadline:
            break
    batches, items = 0, 0
    start = time.perf_counter()
    while items < requests and time.perf_counter() - start < max_seconds:
        chunk = [PredictRequest(*inputs[(items + j) % len(inputs)]) for j in range(16)]
        predictor.predict_batch(chunk)
        items += 16
        batches += 1
    elapsed = time.perf_counter() - start
    p50, p99 = percentiles(latencies)
    return {
        "p50": p50,
        "p99": p99,
        "single_throughput": 1 / statistics.mean(latencies),
        "batch16_throughput": items / elapsed,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(checkpoint: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "magneto_cli.main",
            "serve",
            "--checkpoint",
            str(checkpoint),
            "--port",
            str(port),
            "--device",
            "cpu",
            "--log-level",
            "warning",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not start")


async def load(url: str, inputs, concurrency: int, requests: int, max_seconds: float) -> dict:
    latencies: list[float] = []
    errors = 0
    counter = iter(range(requests))
    deadline = time.perf_counter() + max_seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        for raw, tags in inputs[:concurrency]:  # open the connections
            await client.post(
                "/v1/summarize", files={"image": ("a.jpg", raw)}, data={"tags": ",".join(tags)}
            )

        async def worker() -> None:
            nonlocal errors
            for i in counter:
                if time.perf_counter() > deadline:
                    return
                raw, tags = inputs[i % len(inputs)]
                start = time.perf_counter()
                response = await client.post(
                    "/v1/summarize", files={"image": ("a.jpg", raw)}, data={"tags": ",".join(tags)}
                )
                latencies.append(time.perf_counter() - start)
                errors += response.status_code != 200

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    p50, p99 = percentiles(latencies)
    return {
        "p50": p50,
        "p99": p99,
        "throughput": len(latencies) / elapsed,
        "errors": errors,
        "requests": len(latencies),
    }


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="per phase")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="per phase")
    parser.add_argument("--checkpoint", type=Path, help="default: an untrained NUS-WIDE model")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or build_checkpoint(Path(tmp))
        inputs = make_inputs(64)
        bare = bare_predictor(checkpoint, inputs, args.requests, args.max_seconds)
        proc, url = start_server(checkpoint)
        try:
            c1 = asyncio.run(load(url, inputs, 1, args.requests, args.max_seconds))
            c16 = asyncio.run(load(url, inputs, 16, args.requests, args.max_seconds))
            rss = peak_rss_mib(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    ms = 1000.0
    print(f"ResNet-18 MAGNeto, 112 px, 5 tags per item, CPU ({os.cpu_count()} cores), loopback")
    print(f"{'':<26} {'p50 ms':>8} {'p99 ms':>8} {'items/s':>9}")
    print(
        f"{'bare predictor, 1/call':<26} {bare['p50'] * ms:>8.2f} {bare['p99'] * ms:>8.2f} "
        f"{bare['single_throughput']:>9.1f}"
    )
    print(f"{'bare predictor, 16/call':<26} {'':>8} {'':>8} {bare['batch16_throughput']:>9.1f}")
    for name, r in (("service, concurrency 1", c1), ("service, concurrency 16", c16)):
        print(
            f"{name:<26} {r['p50'] * ms:>8.2f} {r['p99'] * ms:>8.2f} {r['throughput']:>9.1f}"
            f"   ({r['requests']} requests, {r['errors']} errors)"
        )
    print(f"single-request p50 / bare call p50: {c1['p50'] / bare['p50']:.3f} (target <= 1.25)")
    print(
        f"concurrency-16 throughput / bare batch-16 throughput: "
        f"{c16['throughput'] / bare['batch16_throughput']:.3f} (target >= 0.8)"
    )
    print(f"server peak RSS: {rss:.0f} MiB (target < 1536 MiB)")


if __name__ == "__main__":
    main()
