"""Soak: ``magneto serve`` under mixed traffic for minutes, on loopback.

Clients loop over a mix of valid requests (multipart and JSON batches), hostile ones (not an
image, truncated, an aspect-ratio bomb, bad base64, malformed JSON, invalid UTF-8 tags, too
many tags, a wrong content type), abandoned ones (the client hangs up mid-request) and slow
ones (headers dribbled, then dropped). Every 5 s it samples the server's RSS; at the end it
prints RSS over time, answers by status and code, and latency percentiles of the valid
requests. Clients honour Retry-After. Usage:
    python benchmarks/soak.py --checkpoint C [--minutes 10] [--clients 8]
(without --checkpoint, an untrained tiny model is built in --workdir). A 60-second version
runs in the test suite (tests/service/test_soak.py).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

VALID_TAGS = ["sky", "clouds", "water", "beach"]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).resize((320, 240), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def _strip_png() -> bytes:
    from tests.conftest import strip_png

    return strip_png(1_000_000, 1)


@dataclass
class SoakReport:
    seconds: float
    rss: list[tuple[float, float]] = field(default_factory=list)  # (seconds, MiB)
    answers: Counter = field(default_factory=Counter)  # (kind, status, code)
    latencies: list[float] = field(default_factory=list)  # valid requests answered 200

    @property
    def server_errors(self) -> int:
        return sum(n for (_, status, _), n in self.answers.items() if status >= 500)

    def lines(self) -> list[str]:
        out = ["RSS (MiB) over time: " + ", ".join(f"{t:.0f}s {m:.0f}" for t, m in self.rss)]
        for (kind, status, code), n in sorted(self.answers.items(), key=str):
            out.append(f"  {kind:<10} {status:>4} {code:<22} {n}")
        if self.latencies:
            ordered = sorted(self.latencies)
            p = {q: ordered[int(q * (len(ordered) - 1))] * 1000 for q in (0.5, 0.9, 0.99)}
            out.append(
                f"valid requests: {len(ordered)} answered 200; latency p50 {p[0.5]:.0f} ms, "
                f"p90 {p[0.9]:.0f} ms, p99 {p[0.99]:.0f} ms"
            )
        return out


class Traffic:
    """One client's requests, chosen at random (seeded) from the mix."""

    def __init__(self, url: str, report: SoakReport, seed: int) -> None:
        self.url, self.report = url, report
        self.rng = random.Random(seed)
        self.image = _jpeg(seed)
        self.bomb = _strip_png()

    async def one(self, client: httpx.AsyncClient) -> float:
        """Send one request of the mix; returns the Retry-After to honour (0: none)."""
        roll = self.rng.random()
        if roll < 0.55:
            return await self._send(client, "valid", files=self._files(self.image))
        if roll < 0.65:
            item = {"image_base64": base64.b64encode(self.image).decode(), "tags": VALID_TAGS}
            return await self._send(
                client, "batch", path="/v1/summarize/batch", json={"items": [item, item]}
            )
        if roll < 0.85:
            return await self._hostile(client)
        if roll < 0.95:
            return await self._abandoned()
        return await self._slow()

    def _files(self, image: bytes, tags: bytes = b"sky,clouds,water") -> dict:
        return {"image": ("a.jpg", image), "tags": (None, tags)}

    async def _send(self, client: httpx.AsyncClient, kind: str, path: str = "/v1/summarize",
                    **request) -> float:  # fmt: skip
        started = time.perf_counter()
        try:
            reply = await client.post(path, **request)
        except httpx.HTTPError as exc:
            self.report.answers[(kind, 0, type(exc).__name__)] += 1
            return 0.0
        code = ""
        if reply.headers.get("content-type", "").startswith("application/json"):
            body = reply.json()
            code = body.get("error", {}).get("code", "") if isinstance(body, dict) else ""
        self.report.answers[(kind, reply.status_code, code)] += 1
        if kind == "valid" and reply.status_code == 200:
            self.report.latencies.append(time.perf_counter() - started)
        return float(reply.headers.get("retry-after", 0)) if reply.status_code == 503 else 0.0

    async def _hostile(self, client: httpx.AsyncClient) -> float:
        cases = [
            {"files": self._files(b"not an image at all")},
            {"files": self._files(self.image[: len(self.image) // 3])},
            {"files": self._files(self.bomb)},
            {"files": self._files(self.image, b"sky,\xed\xa0\x80")},
            {"files": self._files(self.image, ",".join(f"t{i}" for i in range(2000)).encode())},
            {"json": {"image_base64": "%%%not base64%%%", "tags": ["sky"]}},
            {"content": b'{"image_base64": "', "headers": {"content-type": "application/json"}},
            {"content": b"tags=sky", "headers": {"content-type": "text/plain"}},
        ]
        return await self._send(client, "hostile", **self.rng.choice(cases))

    async def _abandoned(self) -> float:
        """A request whose client gives up after a few milliseconds."""
        try:
            async with httpx.AsyncClient(base_url=self.url, timeout=0.005) as client:
                await client.post("/v1/summarize", files=self._files(self.image))
        except httpx.HTTPError:
            self.report.answers[("abandoned", 0, "client gave up")] += 1
        else:
            self.report.answers[("abandoned", 200, "answered first")] += 1
        return 0.0

    async def _slow(self) -> float:
        """Half the headers, a pause, then the connection dropped."""
        host, port = self.url.removeprefix("http://").split(":")
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /v1/summarize HTTP/1.1\r\nHost: x\r\nContent-Type: multip")
        await writer.drain()
        await asyncio.sleep(self.rng.uniform(0.2, 1.0))
        writer.close()
        self.report.answers[("slow", 0, "dropped")] += 1
        return 0.0


async def soak(url: str, pid: int, seconds: float, clients: int = 8, seed: int = 0) -> SoakReport:
    """Run the mix for ``seconds`` with ``clients`` loops; the report of what came back."""
    report = SoakReport(seconds)
    started = time.perf_counter()
    deadline = started + seconds

    async def sample() -> None:
        while time.perf_counter() < deadline:
            report.rss.append((time.perf_counter() - started, rss_mib(pid)))
            await asyncio.sleep(5)
        report.rss.append((time.perf_counter() - started, rss_mib(pid)))

    async def loop(traffic: Traffic) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            while time.perf_counter() < deadline:
                wait = await traffic.one(client)
                if wait:
                    await asyncio.sleep(wait)

    await asyncio.gather(sample(), *(loop(Traffic(url, report, seed + i)) for i in range(clients)))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="default: an untrained tiny model")
    parser.add_argument("--workdir", type=Path, default=Path("runs/soak"))
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from machine import header
    from serve_load import build_checkpoint

    print(header("service soak test"), flush=True)

    from tests.service.conftest import start_server, stop_server

    args.workdir.mkdir(parents=True, exist_ok=True)
    checkpoint = args.checkpoint or build_checkpoint(args.workdir)
    proc, url = start_server(checkpoint, "--max-queue-wait-s", "10")
    try:
        report = asyncio.run(soak(url, proc.pid, args.minutes * 60, args.clients))
    finally:
        stop_server(proc)
    print(f"{args.minutes:g} min, {args.clients} clients, checkpoint {checkpoint}")
    print("\n".join(report.lines()))
    print(json.dumps({"server_errors": report.server_errors}))


if __name__ == "__main__":
    main()
