"""What explanations cost, and that they cost nothing when off: the bulk job's items/s and the
service's latency, today's code without ``explain`` and with it, against the code before
explanations existed (``--baseline``, a git revision), all in one run.

The baseline is installed from its own tree into a folder of its own (``pip install
--target``), so that the old library, service and command line run together, with this
environment's dependencies. Each measurement alternates between the variants, ``--rounds``
times. Usage:
    python benchmarks/explain_cost.py [--baseline REV] [--images 1000] [--requests 150]
(default baseline: the parent of the commit that added explanations).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bulk_throughput import write_library
from machine import header
from serve_load import REPO, build_checkpoint, free_port

TAGS = ["sky", "clouds", "water", "beach", "dog", "cat", "tree", "road"]


def baseline_revision() -> str:
    found = subprocess.run(
        ["git", "log", "--format=%H", "--grep=^Explanations:", "-1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not found:
        raise SystemExit("no commit 'Explanations: ...' in the history: pass --baseline REV")
    return found + "^"


def install_baseline(revision: str, workdir: Path) -> Path:
    """The baseline's package, installed into ``workdir/site`` (reused when there)."""
    site = workdir / f"site-{revision.replace('^', '_parent')[:20]}"
    if (site / "magneto").is_dir():
        return site
    tree = workdir / "baseline-tree"
    subprocess.run(
        ["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, capture_output=True
    )
    add = ["git", "worktree", "add", "--detach", str(tree), revision]
    subprocess.run(add, cwd=REPO, check=True, capture_output=True)
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip, "--target", str(site), str(tree)], check=True)
    subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, check=True)
    return site


def env_for(site: Path | None) -> dict[str, str]:
    """The environment of a variant: the baseline's folder first on the path, or ours."""
    env = {**os.environ, "OMP_NUM_THREADS": str(os.cpu_count() or 1)}
    env["PYTHONPATH"] = str(site) if site else str(REPO)
    return env


def bulk_rate(site: Path | None, flags: list[str], manifest: Path, images: Path, ckpt: Path,
              out: Path) -> float:  # fmt: skip
    for stale in (out, out.with_name(out.name + ".job.json")):
        stale.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "magneto.cli.main", "summarize", "--checkpoint", str(ckpt)]
    argv += ["--data", str(manifest), "--images", str(images), "--out", str(out), "--json"]
    done = subprocess.run([*argv, *flags], env=env_for(site), cwd=out.parent, capture_output=True,
                          text=True, check=True)  # fmt: skip
    return float(json.loads(done.stdout)["items_per_second"])


def start(site: Path | None, ckpt: Path, cwd: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    argv = [sys.executable, "-m", "magneto.cli.main", "serve", "--checkpoint", str(ckpt)]
    argv += ["--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(argv, env=env_for(site), cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("a server did not start")


def latencies(url: str, image: bytes, requests: int, explain: bool) -> list[float]:
    data = {"tags": ",".join(TAGS), **({"explain": "true"} if explain else {})}
    out = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(requests):
            started = time.perf_counter()
            reply = client.post("/v1/summarize", files={"image": ("a.jpg", image)}, data=data)
            reply.raise_for_status()
            out.append(time.perf_counter() - started)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", help="git revision without explanations")
    parser.add_argument("--workdir", type=Path, default=Path("runs/bench-explain"))
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(header("what --explain costs"), flush=True)

    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    revision = args.baseline or baseline_revision()
    site = install_baseline(revision, work)
    manifest = write_library(work, args.images)
    images, ckpt = manifest.parent / "images", build_checkpoint(work)
    bulk = {
        "baseline": (site, []),
        "explain off": (None, []),
        "--explain": (None, ["--explain"]),
        "--explain-grid": (None, ["--explain", "--explain-grid"]),
    }
    rates: dict[str, list[float]] = {name: [] for name in bulk}
    for _ in range(args.rounds):
        for name, (where, flags) in bulk.items():
            rates[name].append(bulk_rate(where, flags, manifest, images, ckpt, work / "r.jsonl"))
    image = (images / "0.jpg").read_bytes()
    servers = {"baseline": start(site, ckpt, work), "today": start(None, ckpt, work)}
    waits: dict[str, list[float]] = {"baseline": [], "explain off": [], "explain on": []}
    try:
        for _ in range(args.rounds):
            for name, (server, explain) in {
                "baseline": ("baseline", False),
                "explain off": ("today", False),
                "explain on": ("today", True),
            }.items():
                waits[name] += latencies(servers[server][1], image, args.requests, explain)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(30)
    print(f"baseline: {revision}; {args.images} JPEGs of 640x480, 8 tags each, untrained MAGNeto "
          f"(ResNet-18, 112 px); medians of {args.rounds} alternating rounds")  # fmt: skip
    base_rate = statistics.median(rates["baseline"])
    print("| bulk job (magneto summarize) | items/s | x baseline |\n|---|---:|---:|")
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"| {name} | {rate:.1f} | {rate / base_rate:.3f} |")
    base_p50 = statistics.median(waits["baseline"])
    print("| service, one client | p50 ms | p90 ms | x baseline p50 |\n|---|---:|---:|---:|")
    for name, values in waits.items():
        p50, p90 = statistics.median(values), statistics.quantiles(values, n=10)[-1]
        print(f"| {name} | {1000 * p50:.1f} | {1000 * p90:.1f} | {p50 / base_p50:.3f} |")


if __name__ == "__main__":
    main()
