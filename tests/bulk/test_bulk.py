"""The bulk job: one row per manifest row, errors in place, every format, resumable."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from magneto.bulk.engines import run_bulk
from magneto.bulk.job import BulkJob
from magneto.bulk.rows import DecisionOptions
from magneto.errors import MagnetoError
from magneto.infer.checkpoint import load_checkpoint
from magneto.infer.predictor import Predictor
from tests.conftest import write_truncated_jpeg

REPO = Path(__file__).resolve().parents[2]
pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is in the [dev] extra")


@pytest.fixture(scope="module")
def library(tiny_data, checkpoint, tmp_path_factory):
    """Images and the rows of a small library: every kind of problem once."""
    _, images = tiny_data
    root = tmp_path_factory.mktemp("library")
    good = [p for p in sorted(images.rglob("*.jpg")) if p.stat().st_size > 2000][:2]
    shutil.copy(good[0], root / "a.jpg")
    shutil.copy(good[1], root / "b.jpg")
    write_truncated_jpeg(root / "trunc.jpg")
    words = load_checkpoint(checkpoint).vocabulary.words
    rows = [
        {"item_id": "a", "tags": ",".join(words[:3]), "image": "a.jpg"},
        {"item_id": "t", "tags": words[3], "image": "trunc.jpg"},
        {"item_id": "m", "tags": words[4], "image": "missing.jpg"},
        {"item_id": "u", "tags": "not-a-tag,nor-this", "image": "a.jpg"},
        {"item_id": "a", "tags": words[5], "image": "b.jpg"},  # the id again
        {"item_id": "e", "tags": "", "image": "a.jpg"},
        {"item_id": "b", "tags": f"{words[6]},unheard-of,{words[7]}", "image": "b.jpg"},
    ]
    return root, rows


EXPECTED = [None, "bad_image", "missing_image", "no_known_tag", "duplicate_id", "no_tags", None]


def write_manifest(rows: list[dict], path: Path) -> Path:
    if path.suffix == ".csv":
        import csv

        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["item_id", "tags", "image"])
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        import pyarrow as pa

        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=3)
    return path


def read_results(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    return [json.loads(line) for line in path.read_text().splitlines()]


def job(checkpoint, manifest, images, out, **extra) -> BulkJob:
    settings = dict(batch_size=2, workers=0, shard_rows=3, device="cpu", progress=False)
    settings.update(extra)
    return BulkJob(Path(checkpoint), Path(manifest), Path(out), Path(images), **settings)


@pytest.mark.parametrize(
    ("manifest", "out", "workers"),
    [
        ("m.csv", "r.jsonl", 0),
        ("m.jsonl", "r.parquet", 2),
        ("m.parquet", "r.jsonl", 0),
        ("m.parquet", "r.parquet", 0),
    ],
)
@pytest.mark.slow
def test_one_row_per_item_errors_in_place_in_every_format(
    library, checkpoint, tmp_path, manifest, out, workers
):
    images, rows = library
    path = write_manifest(rows, tmp_path / manifest)
    # float32 in both, so that the runtime auto picks for each batch size cannot differ
    bulk = job(checkpoint, path, images, tmp_path / out, workers=workers, runtime="float32")
    report = run_bulk(bulk)
    results = read_results(tmp_path / out)
    assert [r["item_id"] for r in results] == [r["item_id"] for r in rows]
    assert [r["row"] for r in results] == list(range(len(rows)))
    assert [r["error_kind"] for r in results] == EXPECTED
    assert "row 4" in results[4]["error"] and "row 0" in results[4]["error"]
    assert results[3]["unknown_tags"] == ["not-a-tag", "nor-this"]
    assert results[6]["unknown_tags"] == ["unheard-of"]
    assert not (tmp_path / f"{out}.parts").exists()
    summary = report.as_dict()
    assert summary["items"] == 7 and summary["scored"] == 2
    assert summary["errors"] == {k: 1 for k in EXPECTED if k}
    # Each scored row is that item's own answer, as a single prediction gives it.
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu", runtime="float32")
    for index in (0, 6):
        alone = predictor.predict(images / rows[index]["image"], rows[index]["tags"].split(","))
        got = results[index]
        assert got["kept_tags"] == alone.kept_tags
        assert [t["score"] for t in got["tags"]] == pytest.approx(
            [t.score for t in alone.tags], abs=1e-5
        )


def test_an_existing_output_or_another_jobs_parts_are_never_overwritten(
    library, checkpoint, tmp_path
):
    images, rows = library
    manifest = write_manifest(rows, tmp_path / "m.csv")
    out = tmp_path / "r.jsonl"
    out.write_text("precious\n")
    with pytest.raises(MagnetoError, match="already exists"):
        run_bulk(job(checkpoint, manifest, images, out))
    assert out.read_text() == "precious\n"
    other = tmp_path / "s.jsonl"
    parts = tmp_path / "s.jsonl.parts"
    parts.mkdir()
    (parts / "job.json").write_text(json.dumps({"manifest": "elsewhere"}))
    with pytest.raises(MagnetoError, match="belongs to another job"):
        run_bulk(job(checkpoint, manifest, images, other))
    assert not other.exists()


def _summarize(checkpoint, manifest, images, out) -> list[str]:
    return [
        sys.executable,
        "-m",
        "magneto.cli.main",
        "summarize",
        "--checkpoint",
        str(checkpoint),
        "--data",
        str(manifest),
        "--images",
        str(images),
        "--out",
        str(out),
        "--batch-size",
        "1",
        "--shard-rows",
        "10",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--json",
    ]


@pytest.mark.slow
def test_killed_and_rerun_loses_and_repeats_nothing(library, checkpoint, tmp_path):
    """SIGKILL mid-run, the same command again: the rows of an uninterrupted run, exactly."""
    images, rows = library
    many = [{**rows[i % 2 * 6], "item_id": f"id{i}"} for i in range(400)]
    many[200] = {**rows[1], "item_id": "broken"}  # an error row among them
    manifest = write_manifest(many, tmp_path / "many.csv")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    whole, broken = tmp_path / "whole.jsonl", tmp_path / "broken.jsonl"
    subprocess.run(_summarize(checkpoint, manifest, images, whole), env=env, check=True)
    proc = subprocess.Popen(
        _summarize(checkpoint, manifest, images, broken),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    parts = tmp_path / "broken.jsonl.parts"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if len(list(parts.glob("part-*.jsonl"))) >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the job ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    committed = len(list(parts.glob("part-*.jsonl")))
    assert 3 <= committed < 40 and not broken.exists()
    done = subprocess.run(
        _summarize(checkpoint, manifest, images, broken),
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    report = json.loads(done.stdout)
    assert report["resumed_shards"] == committed
    assert report["rows_this_run"] == 400 - 10 * committed
    assert read_results(broken) == read_results(whole)
    assert len(read_results(whole)) == 400 and not parts.exists()


def test_command_line_errors_are_one_line(library, checkpoint, tmp_path, capsys):
    from magneto.cli.main import main

    images, _ = library
    code = main(
        [
            "summarize",
            "--checkpoint",
            str(checkpoint),
            "--data",
            str(tmp_path / "absent.csv"),
            "--images",
            str(images),
            "--out",
            str(tmp_path / "r.jsonl"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "manifest not found" in err
    bad = tmp_path / "bad.csv"
    bad.write_text("id,labels\n1,a\n")
    assert (
        main(
            [
                "summarize",
                "--checkpoint",
                str(checkpoint),
                "--data",
                str(bad),
                "--images",
                str(images),
                "--out",
                str(tmp_path / "r.jsonl"),
            ]
        )
        == 1
    )
    assert "no item_id or tags column" in capsys.readouterr().err


def test_an_aspect_ratio_bomb_is_one_error_row_and_every_other_row_is_scored(
    library, checkpoint, tmp_path
):
    from tests.conftest import strip_png

    images, rows = library
    bombs = tmp_path / "images"
    shutil.copytree(images, bombs)
    (bombs / "strip.png").write_bytes(strip_png(1_000_000, 1))
    (bombs / "fifo.jpg").unlink(missing_ok=True)
    os.mkfifo(bombs / "fifo.jpg")  # read, it would block the job forever
    manifest = write_manifest(
        [rows[0], {**rows[0], "item_id": "bomb", "image": "strip.png"},
         {**rows[0], "item_id": "pipe", "image": "fifo.jpg"}, rows[6]],
        tmp_path / "m.jsonl",
    )  # fmt: skip
    out = tmp_path / "r.jsonl"
    run_bulk(job(checkpoint, manifest, bombs, out))
    got = read_results(out)
    assert [r["error_kind"] for r in got] == [None, "image_aspect_ratio", "bad_image", None]
    assert "1000000x1" in got[1]["error"] and "not a regular file" in got[2]["error"]


def test_rerunning_a_finished_job_is_complete_and_another_job_is_still_refused(
    library, checkpoint, tmp_path, capsys
):
    from magneto.cli.main import main

    images, rows = library
    manifest = write_manifest(rows, tmp_path / "m.csv")
    out = tmp_path / "r.jsonl"
    first = run_bulk(job(checkpoint, manifest, images, out))
    written = out.read_bytes()
    again = run_bulk(job(checkpoint, manifest, images, out))  # a scheduler's retry
    assert again.complete and again.rows_this_run == 0
    assert again.summary.as_dict() == first.summary.as_dict() and out.read_bytes() == written
    argv = ["summarize", "--checkpoint", str(checkpoint), "--data", str(manifest)]
    argv += ["--images", str(images), "--out", str(out), "--shard-rows", "3", "--workers", "0"]
    assert main(argv) == 0 and "is complete" in capsys.readouterr().out
    with pytest.raises(MagnetoError, match="written by another job"):
        run_bulk(job(checkpoint, manifest, images, out, options=DecisionOptions(threshold=0.9)))
    assert out.read_bytes() == written


def test_an_unclosed_quote_costs_one_row_not_the_next(library, checkpoint, tmp_path):
    images, rows = library
    manifest = tmp_path / "m.csv"
    good = rows[0]
    manifest.write_text(
        "item_id,tags,image\n"
        f'broken,"{good["tags"]},{good["image"]}\n'
        f'next,"{good["tags"]}",{good["image"]}\n'
    )
    out = tmp_path / "r.jsonl"
    run_bulk(job(checkpoint, manifest, images, out))
    got = read_results(out)
    assert [r["error_kind"] for r in got] == ["bad_row", None]
    assert got[1]["item_id"] == "next" and got[1]["kept_tags"] is not None


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_explained_rows_carry_reasons_and_scores_and_the_grid_only_when_asked(
    library, checkpoint, tmp_path, suffix
):
    images, rows = library
    manifest = write_manifest([rows[0], rows[6]], tmp_path / "m.csv")
    plain = tmp_path / f"plain{suffix}"
    run_bulk(job(checkpoint, manifest, images, plain))
    reasons = tmp_path / f"reasons{suffix}"
    run_bulk(job(checkpoint, manifest, images, reasons, options=DecisionOptions(explain=True)))
    grids = tmp_path / f"grids{suffix}"
    options = DecisionOptions(explain=True, explain_grid=True)
    run_bulk(job(checkpoint, manifest, images, grids, options=options))
    plain_rows, reason_rows, grid_rows = map(read_results, (plain, reasons, grids))
    assert set(plain_rows[0]["tags"][0]) == {"tag", "score", "kept", "alpha", "known"}
    for row in reason_rows:
        for tag in row["tags"]:
            assert tag["reason"] in ("kept", "dropped_threshold", "unknown")
            assert "attention" not in tag or tag["attention"] is None
    assert [t["score"] for t in reason_rows[0]["tags"]] == [
        t["score"] for t in plain_rows[0]["tags"]
    ]
    known = [t for t in grid_rows[0]["tags"] if t["known"]]
    rows_, columns = grid_rows[0]["attention_grid"]
    assert known and all(len(t["attention"]) == rows_ for t in known)
    assert all(len(r) == columns for t in known for r in t["attention"])
