"""The Ray engine of the bulk job: the same rows as the single-process job, errors included."""

from __future__ import annotations

import sys

import pytest

from magneto.bulk.engines import run_bulk
from magneto.bulk.job import open_job
from magneto.errors import MagnetoError
from tests.bulk.test_bulk import EXPECTED, job, library, read_results, write_manifest

ray = pytest.importorskip("ray", reason="ray[data] is in the [dev] extra")
__all__ = ["library"]  # the fixture, imported for the tests below
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")


@pytest.fixture(scope="module")
def local_ray():
    """One small local Ray for the module (starting Ray takes seconds)."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


def assert_same_rows(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        same = ("item_id", "row", "error_kind", "error", "kept_tags", "unknown_tags", "threshold")
        assert {k: a[k] for k in same} == {k: b[k] for k in same}
        assert [(t["tag"], t["kept"], t["known"]) for t in a["tags"]] == [
            (t["tag"], t["kept"], t["known"]) for t in b["tags"]
        ]
        for x, y in zip(a["tags"], b["tags"], strict=True):
            for key in ("score", "alpha"):
                assert (x[key] is None) == (y[key] is None)
                if x[key] is not None:
                    assert x[key] == pytest.approx(y[key], abs=1e-5)


@pytest.mark.parametrize(("manifest", "out"), [("m.csv", "r.jsonl"), ("m.parquet", "r.parquet")])
@pytest.mark.slow
def test_ray_gives_the_rows_of_the_local_job(
    local_ray, library, checkpoint, tmp_path, manifest, out
):
    images, rows = library
    rows = rows * 3  # 21 rows: several shards, batches across shard boundaries
    path = write_manifest(rows, tmp_path / manifest)
    local = run_bulk(job(checkpoint, path, images, tmp_path / f"local-{out}", batch_size=4))
    report = run_bulk(
        job(checkpoint, path, images, tmp_path / out, batch_size=4), "ray", concurrency=1
    )
    got, want = read_results(tmp_path / out), read_results(tmp_path / f"local-{out}")
    assert [r["error_kind"] for r in got[:7]] == EXPECTED
    assert_same_rows(got, want)
    assert report.summary.as_dict() == local.summary.as_dict()
    assert report.rows_this_run == 21 and report.resumed_shards == 0
    assert not (tmp_path / f"{out}.parts").exists()


@pytest.mark.slow
def test_ray_resumes_where_a_job_stopped(local_ray, library, checkpoint, tmp_path):
    """Committed shards are skipped; the rest is scored on Ray and merged in order."""
    images, rows = library
    path = write_manifest(rows * 2, tmp_path / "m.jsonl")
    whole = tmp_path / "whole.jsonl"
    run_bulk(job(checkpoint, path, images, whole))
    finished = read_results(whole)
    out = tmp_path / "r.jsonl"
    _, index, store, _ = open_job(job(checkpoint, path, images, out))  # stopped after 2 shards
    for shard in index.shards[:2]:
        for r in finished[shard.start : shard.start + shard.count]:
            store.add(shard, r["row"], r)
    report = run_bulk(job(checkpoint, path, images, out), "ray")
    assert report.resumed_shards == 2 and report.rows_this_run == 14 - 6
    assert report.summary.items == 14 and not (tmp_path / "r.jsonl.parts").exists()
    assert_same_rows(read_results(out), finished)


def test_without_ray_the_engine_says_how_to_install_it(library, checkpoint, tmp_path, monkeypatch):
    images, rows = library
    path = write_manifest(rows, tmp_path / "m.csv")
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MagnetoError) as raised:
        run_bulk(job(checkpoint, path, images, tmp_path / "r.jsonl"), "ray")
    message = str(raised.value)
    assert len(message.splitlines()) == 1 and "pip install 'magneto-ets[ray]'" in message
    assert not (tmp_path / "r.jsonl.parts").exists()


@pytest.mark.slow
def test_cpu_actors_that_would_starve_decoding_are_refused(
    library, checkpoint, tmp_path, monkeypatch
):
    """A local Ray whose CPUs all hold scoring actors would never read a row: say so at once."""
    images, rows = library
    path = write_manifest(rows, tmp_path / "m.csv")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    with pytest.raises(MagnetoError, match="--concurrency 2 scoring actors"):
        run_bulk(job(checkpoint, path, images, tmp_path / "r.jsonl"), "ray", concurrency=2)
    assert not (tmp_path / "r.jsonl.parts").exists()
