"""docker/smoke.sh: build both images with podman and prove them (minutes; root and podman).

Runs only with MAGNETO_CONTAINER_TESTS=1, since it builds two multi-GB images; the script's
request-and-check half also runs in every suite, against a local server
(test_container_files.py).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

SMOKE = Path(__file__).resolve().parents[2] / "docker" / "smoke.sh"


def test_smoke_script_is_valid_bash():
    result = subprocess.run(["bash", "-n", str(SMOKE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert os.access(SMOKE, os.X_OK)


def test_smoke_script_refuses_an_unknown_target():
    result = subprocess.run(["bash", str(SMOKE), "tpu"], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip() == "[smoke] FAILED: unknown target 'tpu' (cpu or gpu)"


@pytest.mark.skipif(
    os.environ.get("MAGNETO_CONTAINER_TESTS") != "1",
    reason="builds the cpu and gpu images with podman (root, minutes, GBs): "
    "set MAGNETO_CONTAINER_TESTS=1 to run docker/smoke.sh",
)
def test_smoke_script_proves_the_cpu_and_gpu_images():
    result = subprocess.run(
        ["bash", str(SMOKE), "cpu", "gpu"], capture_output=True, text=True, timeout=3 * 3600
    )
    print(result.stdout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "[smoke] all passed: cpu gpu" in out
    for target in ("cpu", "gpu"):
        assert re.search(
            rf"\[smoke\] {target}: image [\d.]+ GB, build [\d.]+ s, ready [\d.]+ s, stop [\d.]+ s",
            out,
        )
    assert out.count("[smoke] server process runs as uid 10001") == 2
    assert out.count("[smoke] HEALTHCHECK passes") == 2
    assert out.count('[smoke] answer: {"sent"') == 2
