"""Decoding stays within a memory budget: a small PNG that holds a huge 16-bit image.

A 90 KB PNG holds 6300x6300 16-bit pixels. Decoded through a float64 copy of the whole image,
eight of them in parallel threads took ~4.9 GiB above the process's baseline, and the memory
stayed taken afterwards. The measurement runs in a fresh process, since the peak RSS
(``ru_maxrss``) can only grow.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow  # measures a subprocess's memory

REPO = Path(__file__).resolve().parents[2]
SIDE = 6300

# Prepares the image COUNT times in THREADS threads, as the service's decode pool does (with
# more threads than its default of 2), and prints the peak and current RSS above the baseline
# taken once torch, the preparer and a first small item are in memory.
MEASURE = """
import json, resource, sys
from concurrent.futures import ThreadPoolExecutor
import numpy as np
import torch  # noqa: F401
from magneto.infer.requests import ItemPreparer, PredictRequest
from magneto.data.vocabulary import Vocabulary

path, count, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = open(path, "rb").read()

def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

preparer = ItemPreparer(Vocabulary(["sky"]), input_size=112, uses_images=True,
                        max_pixels=50_000_000)
preparer.prepare(PredictRequest(np.zeros((8, 8, 3), np.uint8), ["sky"]))
base_peak, base_rss = peak_mib(), rss_mib()
with ThreadPoolExecutor(threads) as pool:
    items = list(pool.map(preparer.prepare, [PredictRequest(data, ["sky"])] * count))
print(json.dumps({
    "peak_extra_mib": peak_mib() - base_peak,
    "rss_extra_mib": rss_mib() - base_rss,
    "shapes": sorted({tuple(item.image.shape) for item in items}),
}))
"""


def big_grey16_png(side: int = SIDE) -> bytes:
    """A 16-bit grey PNG of ``side`` x ``side`` pixels that compresses to under 100 KB."""
    row = (np.arange(side, dtype=np.uint32) * 65535 // (side - 1)).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(np.broadcast_to(row, (side, side)))).save(
        buffer, format="PNG", compress_level=9
    )
    return buffer.getvalue()


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc and Linux's ru_maxrss (KiB)")
def test_eight_huge_16_bit_pngs_in_parallel_stay_within_a_memory_budget(tmp_path):
    data = big_grey16_png()
    assert len(data) < 100_000
    path = tmp_path / "huge16.png"
    path.write_bytes(data)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2"}
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path), "8", "8"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["shapes"] == [[3, 112, 112]]
    assert result["peak_extra_mib"] < 400, result  # was ~4,900 MiB
    assert result["rss_extra_mib"] < 150, result  # the memory is given back afterwards
