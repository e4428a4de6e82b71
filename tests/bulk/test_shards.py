"""``magneto summarize --shard I/N``: parts of one job on any scheduler, merged into the rows
one local job writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from magneto.bulk.job import merge_job
from magneto.errors import MagnetoError
from tests.bulk.test_bulk import REPO, _summarize, job, library, read_results, write_manifest

__all__ = ["library"]  # the fixture, imported for this module's tests

pytestmark = pytest.mark.slow  # four summarize processes


def _shard_files(parts, part, of):
    return [p for p in parts.glob("part-*.jsonl") if int(p.stem.split("-")[1]) % of == part - 1]


def test_three_parts_in_parallel_one_killed_and_rerun_give_the_rows_of_one_job(
    library, checkpoint, tmp_path
):
    images, rows = library
    many = [{**rows[i % 2 * 6], "item_id": f"id{i}"} for i in range(300)]
    many[150] = {**rows[1], "item_id": "broken"}  # an error row among them
    manifest = write_manifest(many, tmp_path / "many.csv")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    whole, sharded = tmp_path / "whole.jsonl", tmp_path / "sharded.jsonl"
    subprocess.run(_summarize(checkpoint, manifest, images, whole), env=env, check=True)

    def part(i: int) -> subprocess.Popen:
        argv = [*_summarize(checkpoint, manifest, images, sharded), "--shard", f"{i}/3"]
        return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    parts_dir = tmp_path / "sharded.jsonl.parts"
    procs = {i: part(i) for i in (1, 2, 3)}
    deadline = time.time() + 120
    while time.time() < deadline and len(_shard_files(parts_dir, 2, 3)) < 2:
        time.sleep(0.02)
    assert procs[2].poll() is None, "part 2 ended before it could be killed"
    procs[2].send_signal(signal.SIGKILL)
    procs[2].wait()
    for i in (1, 3):
        out, err = procs[i].communicate(timeout=300)
        assert procs[i].returncode == 0, err
        assert json.loads(out)["merged"] is False  # part 2 is missing
    assert not sharded.exists() and 2 <= len(_shard_files(parts_dir, 2, 3)) < 10
    with pytest.raises(MagnetoError, match="shards are not committed yet"):
        merge_job(job(checkpoint, manifest, images, sharded, shard_rows=10, batch_size=4))
    rerun = part(2)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    report = json.loads(out)
    assert report["merged"] is True and report["resumed_shards"] >= 2  # the last part merged
    assert read_results(sharded) == read_results(whole)
    assert len(read_results(sharded)) == 300 and not parts_dir.exists()


def test_merge_on_request_and_wrong_part_specs(library, checkpoint, tmp_path, capsys):
    from magneto.cli.main import main

    images, rows = library
    manifest = write_manifest(rows * 1, tmp_path / "m.jsonl")
    out = tmp_path / "r.jsonl"
    base = ["summarize", "--checkpoint", str(checkpoint), "--data", str(manifest)]
    base += ["--images", str(images), "--out", str(out), "--shard-rows", "2", "--workers", "0"]
    base += ["--no-progress"]
    for spec in ("0/2", "3/2", "x/2", "1-2"):
        with pytest.raises(SystemExit) as info:
            main([*base, "--shard", spec])
        assert info.value.code == 2
    assert main([*base, "--merge"]) == 1  # nothing has run
    assert "no part of this job has run yet" in capsys.readouterr().err
    assert main([*base, "--shard", "1/2"]) == 0 and not out.exists()
    assert "still to be committed" in capsys.readouterr().out
    assert main([*base, "--shard", "2/2"]) == 0 and out.exists()  # the last part merges
    assert [r["item_id"] for r in read_results(out)] == [r["item_id"] for r in rows]
