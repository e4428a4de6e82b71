"""The soak benchmark for one minute: mixed valid, hostile, abandoned and slow traffic leaves
the server answering every request without a 5xx, and its memory flat."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from tests.service.conftest import start_server, stop_server

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from soak import soak

pytestmark = pytest.mark.slow  # a minute of traffic


def test_a_minute_of_mixed_traffic_brings_no_5xx_and_no_memory_growth(checkpoint):
    proc, url = start_server(checkpoint, "--max-queue-wait-s", "10")
    try:
        report = asyncio.run(soak(url, proc.pid, seconds=60, clients=8))
        assert proc.poll() is None, "the server died"
    finally:
        stop_server(proc)
    print("\n".join(report.lines()))
    kinds = {kind for kind, _, _ in report.answers}
    assert {"valid", "batch", "hostile", "abandoned", "slow"} <= kinds
    assert report.server_errors == 0, report.lines()
    hostile = {(status, code) for (kind, status, code) in report.answers if kind == "hostile"}
    assert all(400 <= status < 500 for status, _ in hostile), hostile
    assert len(report.latencies) >= 50  # valid work kept being served
    mib = [m for _, m in report.rss]
    third = max(1, len(mib) // 3)
    growth = max(mib[-third:]) - max(mib[:third])
    assert growth < 100, f"RSS grew {growth:.0f} MiB: {report.rss}"
