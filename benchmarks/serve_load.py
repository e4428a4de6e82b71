"""Serving overhead: the REST service under load next to the bare Predictor, same inputs.

Builds an (untrained: speed does not depend on the weights) MAGNeto checkpoint at the paper's
NUS-WIDE setting (ResNet-18, 112 px), renders synthetic JPEGs with 5 tags each, then in one
run measures

- the bare ``Predictor``: one item per call (latency), and 16 items per call (throughput);
- the service (``magneto serve`` in its own process, loopback only): concurrency 1 and 16,
  multipart uploads, keep-alive connections;

and prints p50/p99 latency, throughput, their ratios to the bare predictor, and the server's
peak RSS. The four phases alternate for --rounds rounds (the machine's speed drifts) and each
ratio is the median of per-round ratios. Bounded by --requests and --max-seconds per phase.

With --clients N it instead overloads the service: N closed-loop clients for --max-seconds,
each on its own keep-alive connection, and reports the share of each status code and the p50/p99
wait of the accepted (200) and of all requests. A client told 503 waits the Retry-After it was
given (1 s without one) before its next request, as a well-behaved client does
(--ignore-retry-after: at once). Extra ``magneto serve`` flags go after --serve-args.
Usage:
    python benchmarks/serve_load.py [--requests 300] [--rounds 5] [--max-seconds 60]
    python benchmarks/serve_load.py --clients 200 --max-seconds 30 --checkpoint best_f1.ckpt \
        [--serve-args --max-queue-wait-s 2]
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import header

REPO = Path(__file__).resolve().parents[1]


def build_checkpoint(directory: Path) -> Path:
    import torch

    from magneto.data.vocabulary import Vocabulary
    from magneto.infer.checkpoint import Checkpoint, save_checkpoint
    from magneto.model.architectures import build_model
    from magneto.model.config import ModelConfig
    from magneto.sources.synthetic.scenes import CONCEPTS81

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
    from magneto.sources.synthetic.scenes import CONCEPTS81, render_scene

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


def bare_single(predictor, inputs, requests: int, max_seconds: float) -> dict:
    """One item per call, in this process: the latency floor for one request."""
    latencies = []
    deadline = time.perf_counter() + max_seconds
    for i in range(requests):
        raw, tags = inputs[i % len(inputs)]
        start = time.perf_counter()
        predictor.predict(raw, tags)
        latencies.append(time.perf_counter() - start)
        if time.perf_counter() > deadline:
            break
    p50, p99 = percentiles(latencies)
    return {"p50": p50, "p99": p99, "throughput": 1 / statistics.mean(latencies)}


def bare_batch16(predictor, inputs, requests: int, max_seconds: float) -> dict:
    """Sixteen items per call: the throughput a perfect batcher would reach."""
    from magneto.infer.predictor import PredictRequest

    items = 0
    start = time.perf_counter()
    while items < requests and time.perf_counter() - start < max_seconds:
        chunk = [PredictRequest(*inputs[(items + j) % len(inputs)]) for j in range(16)]
        predictor.predict_batch(chunk)
        items += 16
    return {"throughput": items / (time.perf_counter() - start)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


PYTHONPATH = os.environ.get("PYTHONPATH", "")  # where the caller's packages are (kept)


def start_server(checkpoint: Path, extra: list[str] | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "magneto.cli.main",
            "serve",
            "--checkpoint",
            str(checkpoint),
            "--port",
            str(port),
            "--device",
            "cpu",
            "--log-level",
            "warning",
            *(extra or []),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), PYTHONPATH]))},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300  # importing torch takes a while on a busy machine
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not start")


def encode_request(url: str, raw: bytes, tags: list[str]) -> bytes:
    """The multipart request a curl user sends, encoded once (with httpx) to raw HTTP/1.1."""
    request = httpx.Request(
        "POST",
        url + "/v1/summarize",
        files={"image": ("a.jpg", raw)},
        data={"tags": ",".join(tags)},
    )
    body = request.read()
    head = ["POST /v1/summarize HTTP/1.1", f"Host: {request.url.netloc.decode()}"]
    head += [f"{k}: {v}" for k, v in request.headers.items() if k.lower() != "host"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def exchange_headers(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, dict[str, str]]:
    """One request on a keep-alive connection; returns the status code and the headers."""
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines[1:] if line)
    }
    await reader.readexactly(int(headers.get("content-length", "0")))
    return int(lines[0].split()[1]), headers


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    """One request on a keep-alive connection; returns the status code."""
    return (await exchange_headers(reader, writer, request))[0]


async def load(url: str, inputs, concurrency: int, requests: int, max_seconds: float) -> dict:
    """Closed-loop clients on keep-alive connections. The load generator shares the server's
    cores, so it sends pre-encoded requests over bare asyncio streams: a full HTTP client
    library spends about 3 ms of CPU per request here, which would be taken from the server."""
    host, port = url.removeprefix("http://").split(":")
    encoded = [encode_request(url, raw, tags) for raw, tags in inputs]
    latencies: list[float] = []
    errors = 0
    counter = iter(range(requests))
    deadline = time.perf_counter() + max_seconds
    connections = [await asyncio.open_connection(host, int(port)) for _ in range(concurrency)]
    for reader, writer in connections:  # warm each connection once
        errors += await exchange(reader, writer, encoded[0]) != 200

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal errors
        for i in counter:
            if time.perf_counter() > deadline:
                return
            start = time.perf_counter()
            status = await exchange(reader, writer, encoded[i % len(encoded)])
            latencies.append(time.perf_counter() - start)
            errors += status != 200

    start = time.perf_counter()
    await asyncio.gather(*(worker(r, w) for r, w in connections))
    elapsed = time.perf_counter() - start
    for _, writer in connections:
        writer.close()
    p50, p99 = percentiles(latencies)
    return {
        "p50": p50,
        "p99": p99,
        "throughput": len(latencies) / elapsed,
        "errors": errors,
        "requests": len(latencies),
    }


async def overload(
    url: str, inputs, clients: int, max_seconds: float, honor_retry_after: bool = True
) -> dict:
    """``clients`` closed-loop clients for ``max_seconds``: status counts and waits.

    A connection the server closes (or answers with ``Connection: close``) is reopened."""
    host, port = url.removeprefix("http://").split(":")
    encoded = [encode_request(url, raw, tags) for raw, tags in inputs]
    statuses: dict[int | str, int] = {}
    waits: dict[str, list[float]] = {"ok": [], "all": []}
    deadline = time.perf_counter() + max_seconds

    async def client(index: int) -> None:
        connection = None
        i = index
        last_response = time.perf_counter()
        while time.perf_counter() < deadline:
            if connection is None:
                try:
                    connection = await asyncio.open_connection(host, int(port))
                    last_response = time.perf_counter()
                except OSError:
                    statuses["connect_error"] = statuses.get("connect_error", 0) + 1
                    await asyncio.sleep(max(0.0, min(1.0, deadline - time.perf_counter())))
                    continue
            reader, writer = connection
            start = time.perf_counter()
            idle = start - last_response
            try:
                status, headers = await asyncio.wait_for(
                    exchange_headers(reader, writer, encoded[i % len(encoded)]), 120
                )
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                # uvicorn closes a connection idle for 5 s (keep-alive): after a long
                # Retry-After a client finds it closed and reconnects, as HTTP clients do
                stale = idle >= 4.5 and not isinstance(exc, TimeoutError)
                name = "reconnect (idle keep-alive)" if stale else f"closed ({type(exc).__name__})"
                statuses[name] = statuses.get(name, 0) + 1
                writer.close()
                connection = None
                continue
            wait = time.perf_counter() - start
            last_response = time.perf_counter()
            i += clients
            statuses[status] = statuses.get(status, 0) + 1
            waits["all"].append(wait)
            if status == 200:
                waits["ok"].append(wait)
            if headers.get("connection", "").lower() == "close":
                writer.close()
                connection = None
            if status == 503 and honor_retry_after:
                retry = headers.get("retry-after", "1")
                pause = float(retry) if retry.isdigit() else 1.0
                await asyncio.sleep(max(0.0, min(pause, deadline - time.perf_counter())))
        if connection is not None:
            connection[1].close()

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed = time.perf_counter() - started
    return {"statuses": statuses, "waits": waits, "elapsed": elapsed}


def report_overload(result: dict, clients: int, honor_retry_after: bool) -> None:
    statuses, waits = result["statuses"], result["waits"]
    total = sum(statuses.values())
    behaviour = "waits Retry-After" if honor_retry_after else "retries at once"
    print(
        f"{clients} closed-loop clients for {result['elapsed']:.1f} s; after a 503 a client "
        f"{behaviour}"
    )
    print(f"responses: {total}, accepted throughput {len(waits['ok']) / result['elapsed']:.1f}/s")
    for status, count in sorted(statuses.items(), key=lambda kv: str(kv[0])):
        print(f"  {status}: {count} ({100 * count / max(total, 1):.1f} %)")
    for name, key in (("accepted (200)", "ok"), ("all responses", "all")):
        if waits[key]:
            p50, p99 = percentiles(waits[key])
            print(f"wait of {name}: p50 {p50:.3f} s, p99 {p99:.3f} s, max {max(waits[key]):.3f} s")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def median_of(rounds: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="per phase, over all rounds")
    parser.add_argument("--rounds", type=int, default=5, help="alternations of the four phases")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="per phase")
    parser.add_argument("--checkpoint", type=Path, help="default: an untrained NUS-WIDE model")
    parser.add_argument(
        "--clients", type=int, help="overload mode: this many concurrent clients (see above)"
    )
    parser.add_argument(
        "--ignore-retry-after", action="store_true", help="overload mode: retry a 503 at once"
    )
    parser.add_argument("--url", help="overload mode: a server already running there")
    parser.add_argument(
        "--serve-args",
        nargs=argparse.REMAINDER,
        default=[],
        help="everything after it goes to `magneto serve`",
    )
    args = parser.parse_args()
    print(header("service throughput and latency under load"), flush=True)
    if args.clients:
        run_overload(args)
        return
    per_round = max(16, args.requests // args.rounds)
    seconds = args.max_seconds / args.rounds
    phases: dict[str, list[dict]] = {"bare1": [], "bare16": [], "c1": [], "c16": []}
    with tempfile.TemporaryDirectory() as tmp:
        from magneto.infer.predictor import Predictor

        checkpoint = args.checkpoint or build_checkpoint(Path(tmp))
        inputs = make_inputs(64)
        predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
        for raw, tags in inputs[:5]:
            predictor.predict(raw, tags)
        proc, url = start_server(checkpoint)
        try:
            # The machine's speed drifts; alternating the phases lets each ratio compare
            # figures taken side by side.
            for _ in range(args.rounds):
                phases["bare1"].append(bare_single(predictor, inputs, per_round, seconds))
                phases["c1"].append(asyncio.run(load(url, inputs, 1, per_round, seconds)))
                phases["bare16"].append(bare_batch16(predictor, inputs, per_round, seconds))
                phases["c16"].append(asyncio.run(load(url, inputs, 16, per_round, seconds)))
            rss = peak_rss_mib(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    ms = 1000.0
    errors = sum(r["errors"] for r in phases["c1"] + phases["c16"])
    served = sum(r["requests"] for r in phases["c1"] + phases["c16"])
    print(f"ResNet-18 MAGNeto, 112 px, 5 tags per item, CPU ({os.cpu_count()} cores), loopback")
    print(f"medians over {args.rounds} alternating rounds of {per_round} requests per phase")
    print(f"{'':<26} {'p50 ms':>8} {'p99 ms':>8} {'items/s':>9}")
    rows = (
        ("bare predictor, 1/call", "bare1"),
        ("bare predictor, 16/call", "bare16"),
        ("service, concurrency 1", "c1"),
        ("service, concurrency 16", "c16"),
    )
    for name, key in rows:
        rounds = phases[key]
        latency = (
            f"{median_of(rounds, 'p50') * ms:>8.2f} {median_of(rounds, 'p99') * ms:>8.2f}"
            if "p50" in rounds[0]
            else f"{'':>8} {'':>8}"
        )
        print(f"{name:<26} {latency} {median_of(rounds, 'throughput'):>9.1f}")
    print(f"service: {served} requests, {errors} errors")
    single = statistics.median(
        c["p50"] / b["p50"] for c, b in zip(phases["c1"], phases["bare1"], strict=True)
    )
    batched = statistics.median(
        c["throughput"] / b["throughput"]
        for c, b in zip(phases["c16"], phases["bare16"], strict=True)
    )
    print(f"single-request p50 / bare call p50: {single:.3f} (target <= 1.25)")
    print(f"concurrency-16 throughput / bare batch-16 throughput: {batched:.3f} (target >= 0.8)")
    print(f"server peak RSS: {rss:.0f} MiB (target < 1536 MiB)")


def run_overload(args: argparse.Namespace) -> None:
    """The --clients mode: one server, one overload phase, status shares and waits."""
    honor = not args.ignore_retry_after
    inputs = make_inputs(64)
    if args.url:
        result = asyncio.run(overload(args.url, inputs, args.clients, args.max_seconds, honor))
        print(f"server at {args.url}")
        report_overload(result, args.clients, honor)
        return
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or build_checkpoint(Path(tmp))
        proc, url = start_server(checkpoint, args.serve_args)
        try:
            result = asyncio.run(overload(url, inputs, args.clients, args.max_seconds, honor))
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    print(f"checkpoint {checkpoint}, serve flags: {' '.join(args.serve_args) or '(defaults)'}")
    report_overload(result, args.clients, honor)


if __name__ == "__main__":
    main()
