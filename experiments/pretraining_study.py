"""Does outlier-detection pre-training pay? Outlier rate (K random tags added to every test
item) and test F1 of MAGNeto + aux against the unlabeled pool size, the noise ratio and the
pre-training epochs, beside plain training and TAD alone, on the same items.

One synthetic set per profile is generated with an unlabeled pool of 4x its training items;
each pool size P (0, 1x, 4x the training items) is a prepared folder whose unlabeled.csv holds
the first P of them. Pre-training reads the unlabeled items and the training items' tags
(``--pretrain-sources unlabeled,train``, the default); pool 0 pre-trains on the labelled
items' own tags alone (``--pretrain-sources train``). Thresholds and early stopping use val;
the figures are on test. Every command is the user's command line and is printed; finished
variants are not redone when the script is run again (``WORKDIR/pretraining_study.json``).
Usage:
    python experiments/pretraining_study.py --profile large-scale [--items 2000]
        [--variants plain tad pre-0 pre-1x pre-4x ...] [--workdir runs/pretraining-study]
        [--pretrain-epochs N (default: the config's)]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learning_curves import CONFIGS, REPO, magneto

NO_TAD = ["--tad-add", "0", "--tad-drop", "0"]
# name: (unlabeled pool as a multiple of the training items or None, train flags, pretrain flags)
VARIANTS: dict[str, tuple[float | None, list[str], list[str]]] = {
    "plain": (None, NO_TAD, []),
    "tad": (None, [], []),
    "pre-0": (0, [], ["--pretrain-sources", "train"]),
    "pre-1x": (1, [], []),
    "pre-4x": (4, [], []),
    "pre-4x noise 0.25": (4, [], ["--noise-ratio", "0.25"]),
    "pre-4x noise 1.0": (4, [], ["--noise-ratio", "1.0"]),
    "pre-4x 15 epochs": (4, [], ["--epochs", "15"]),
    "pre-4x 30 epochs": (4, [], ["--epochs", "30"]),
    "pre-4x no tad": (4, NO_TAD, []),
    "pre-1x lr 0.01": (1, [], ["--pretrain-lr", "0.01"]),
    "pre-4x lr 0.01": (4, [], ["--pretrain-lr", "0.01"]),
}


def generate(work: Path, profile: str, items: int) -> tuple[Path, Path, int]:
    """The set: (prepared folder, image folder, training items)."""
    data, raw = work / "set", work / "raw"
    unlabeled = str(int(4 * items * 0.65) + 50)  # 4x the training items (about 60-62 %)
    if not (data / "test.csv").is_file():
        if profile == "large-scale":
            magneto(
                "synth", "--profile", profile, "--out", str(data), "--items", str(items),
                "--unlabeled", unlabeled, "--test-holdout", "0.5",
            )  # fmt: skip
        else:
            magneto(
                "synth", "--profile", profile, "--out", str(raw), "--items", str(items),
                "--unlabeled", unlabeled,
            )  # fmt: skip
            magneto(
                "prepare", "nuswide", "--root", str(raw), "--out", str(data),
                "--test-holdout", "0.5",
            )  # fmt: skip
    images = data / "images" if profile == "large-scale" else raw / "Flickr"
    with (data / "train.csv").open(newline="", encoding="utf-8") as handle:
        train = sum(1 for _ in csv.DictReader(handle))
    return data, images, train


def with_pool(work: Path, data: Path, size: int) -> Path:
    """A copy of the prepared folder whose unlabeled.csv holds the first ``size`` items."""
    folder = work / f"pool{size}"
    if (folder / "unlabeled.csv").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("train.csv", "val.csv", "test.csv", "vocab.csv"):
        shutil.copy(data / name, folder / name)
    with (data / "unlabeled.csv").open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields, rows = reader.fieldnames, list(reader)
    if len(rows) < size:
        print(f"the set has {len(rows)} unlabeled items, fewer than {size}: using them all")
    with (folder / "unlabeled.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields or []))
        writer.writeheader()
        writer.writerows(rows[:size])
    return folder


def run_variant(
    work: Path, data: Path, images: Path, config: Path, train_items: int, name: str, args
) -> dict:
    multiple, train_flags, pretrain_flags = VARIANTS[name]
    folder, pool = data, None
    if multiple is not None:
        folder = with_pool(work, data, int(multiple * train_items))
        with (folder / "unlabeled.csv").open(newline="", encoding="utf-8") as handle:
            pool = sum(1 for _ in csv.DictReader(handle))
    run = work / name.replace(" ", "-")
    shutil.rmtree(run, ignore_errors=True)  # an unfinished run of a killed script
    common = ["--config", str(config), "--images", str(images), "--seed", str(args.seed)]
    init: list[str] = []
    pretrain_epochs = ["--epochs", str(args.pretrain_epochs)] if args.pretrain_epochs else []
    started = time.perf_counter()
    if multiple is not None:
        magneto(
            "pretrain", *common, "--data", str(folder), "--out", str(run / "pretrain"),
            "--no-progress", *pretrain_epochs, *pretrain_flags,
        )  # fmt: skip
        init = ["--init-from", str(run / "pretrain" / "pretrain.ckpt")]
    magneto(
        "train", *common, "--data", str(folder), "--out", str(run / "train"),
        "--early-stopping", str(args.patience), "--epochs", str(args.epochs), "--length-buckets",
        "--no-progress",
        *train_flags, *init,
    )  # fmt: skip
    out = magneto(
        "evaluate", "--checkpoint", str(run / "train" / "best_f1.ckpt"),
        "--data", str(data / "test.csv"), "--images", str(images), "--workers", "0",
        "--outliers", str(args.outliers), "--json",
    )  # fmt: skip
    figures = json.loads(out)
    final = json.loads((run / "train" / "final.json").read_text())
    return {
        "f1": 100 * figures["f1"],
        "val_f1": 100 * final["best_f1"],
        "outlier_rate": figures["outlier_rate"],
        "epochs": final["epochs"],
        "pool": pool,
        "seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(CONFIGS), default="large-scale")
    parser.add_argument("--items", type=int, default=2000, help="labelled items of the set")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--config", type=Path, help="default: the profile's CPU config")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30, help="most training epochs")
    parser.add_argument("--patience", type=int, default=4, help="--early-stopping")
    parser.add_argument(
        "--pretrain-epochs", type=int, help="pre-training epochs where a variant names none"
    )
    parser.add_argument("--outliers", type=int, default=2, help="K outlier tags per test item")
    parser.add_argument("--workdir", type=Path, default=Path("runs/pretraining-study"))
    args = parser.parse_args()
    config = args.config or REPO / "configs" / CONFIGS[args.profile]
    work = args.workdir / args.profile
    work.mkdir(parents=True, exist_ok=True)
    results_path = work / "pretraining_study.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    data, images, train_items = generate(work, args.profile, args.items)
    for name in args.variants:
        key = f"{name}/seed{args.seed}"
        if key not in results:
            results[key] = run_variant(work, data, images, config, train_items, name, args)
            results_path.write_text(json.dumps(results, indent=2) + "\n")
    report(results, train_items, args.outliers)


def report(results: dict, train_items: int, outliers: int) -> None:
    print(f"\n{train_items:,} training items; outlier rate with K = {outliers}, on test\n")
    print(
        "| variant | pool | val F1 (%) | test F1 (%) | outlier rate (%) | rate / plain's "
        "| epochs | time |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    plain = [r["outlier_rate"] for k, r in results.items() if k.startswith("plain/")]
    for name, (multiple, *_flags) in VARIANTS.items():
        runs = [r for k, r in results.items() if k.split("/")[0] == name]
        if not runs:
            continue
        rate = statistics.mean(r["outlier_rate"] for r in runs)
        ratio = f"{rate / statistics.mean(plain):.2f}" if plain else "-"
        size = runs[0].get("pool", None if multiple is None else int(multiple * train_items))
        pool = "-" if size is None else f"{size:,}"
        print(
            f"| {name} | {pool} | {statistics.mean(r['val_f1'] for r in runs):.1f} "
            f"| {statistics.mean(r['f1'] for r in runs):.1f} | {rate:.1f} | "
            f"{ratio} | {runs[0]['epochs']} | {sum(r['seconds'] for r in runs) / 60:.1f} min |"
        )


if __name__ == "__main__":
    main()
