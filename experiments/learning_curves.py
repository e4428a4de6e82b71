"""Learning curves: test F1 against the number of training items, for MAGNeto + aux, TF-t, FF
and every ``magneto baseline``, on the same validation and test items at every size.

One synthetic pool per profile is generated once (``magneto synth``; the nuswide profile is
then prepared with ``--test-holdout``); its validation items are split in half into val
(thresholds, early stopping) and test (the figures). Each size N trains on the first N of the
pool's training items (a seeded shuffle, so smaller sets are subsets of larger ones). Every
command is the user's command line and is printed. Models train with ``--config`` (default:
the profile's CPU config), ``--early-stopping`` and ``--length-buckets``; each point's wall
time is recorded.
``--models`` adds variants: MAGNeto pre-trained on the training items' tags
(``magneto pretrain --pretrain-sources train``, then ``--init-from``), and MAGNeto, TF-t or FF
with ``--embeddings word2vec`` (tag vectors learnt from the training items' tag lists), and FF
or MAGNeto with ``--tag-bias`` (a learned per-tag logit started at the counted rate), FF with
it and TAD off.
Results go to ``WORKDIR/learning_curves.json`` (a finished point is not redone when the script
is run again), a Markdown table to stdout and ``WORKDIR/learning_curves.png`` (log x). Usage:
    python experiments/learning_curves.py --profile large-scale [--sizes 1000 3000 10000 30000]
        [--seeds 0 1 2] [--max-seeds-above 10000 1] [--workdir runs/learning-curves]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {"large-scale": "large-scale-cpu.yaml", "nuswide": "synthetic.yaml"}
RANDOM = ["--embeddings", "none"]  # a random tag embedder, whatever the config says
WORD2VEC = ["--embeddings", "word2vec"]  # Word2Vec on the training (and unlabeled) tag lists
PLAIN = ["--no-tag-bias"]  # likewise: no per-tag logit unless the arm's name says so
BIAS = ["--tag-bias"]  # a learned per-tag logit started at the counted rate (tag-prior's)
# TAD off: its added tags are drawn uniformly from the vocabulary and labelled 0, which a model
# that sees each tag alone (FF) can only learn as lower rates, the rarest tags' lowest.
NO_TAD = ["--tad-add", "0", "--tad-drop", "0"]
MODELS = {
    "MAGNeto + aux": ["--model", "magneto", *RANDOM, *PLAIN],
    "TF-t": ["--model", "tf-t", *RANDOM, *PLAIN],
    "FF": ["--model", "ff", *RANDOM, *PLAIN],
    "MAGNeto + aux, pre-trained": ["--model", "magneto", *RANDOM, *PLAIN],
    "MAGNeto + aux, word2vec": ["--model", "magneto", *WORD2VEC, *PLAIN],
    "TF-t, word2vec": ["--model", "tf-t", *WORD2VEC, *PLAIN],
    "FF, word2vec": ["--model", "ff", *WORD2VEC, *PLAIN],
    "FF, tag bias": ["--model", "ff", *RANDOM, *BIAS],
    "FF, tag bias, no TAD": ["--model", "ff", *RANDOM, *BIAS, *NO_TAD],
    "MAGNeto + aux, word2vec, tag bias": ["--model", "magneto", *WORD2VEC, *BIAS],
}
DEFAULT_MODELS = ("MAGNeto + aux", "TF-t", "FF")
# Models that first run outlier-detection pre-training (paper 5.2) on the training items' own
# tags (no unlabeled pool: the baselines see the same items), then train from it.
PRETRAINED = {"MAGNeto + aux, pre-trained"}
# The pre-training lr each profile's studies chose on val (docs/results.md): nuswide needs 0.01.
PRETRAIN_FLAGS = {"large-scale": [], "nuswide": ["--pretrain-lr", "0.01"]}


def magneto(*args: str) -> str:
    print("$ magneto " + " ".join(shlex.quote(a) for a in args), flush=True)
    cmd = [sys.executable, "-m", "magneto.cli.main", *args]
    return subprocess.run(cmd, check=True, text=True, capture_output=True, cwd=REPO).stdout


def pool(work: Path, profile: str, largest: int) -> tuple[Path, Path]:
    """The generated items: (prepared folder with train/val/test, image folder)."""
    data = work / "pool"
    items = str(int(largest / 0.6) + 2000)  # 60 % train; the rest (>= 2,000) val + test
    if profile == "large-scale":
        if not (data / "test.csv").is_file():
            magneto(
                "synth",
                "--profile",
                profile,
                "--out",
                str(data),
                "--items",
                items,
                "--test-holdout",
                "0.5",
            )
        return data, data / "images"
    raw = work / "raw"
    if not (data / "test.csv").is_file():
        magneto("synth", "--profile", profile, "--out", str(raw), "--items", items)
        magneto(
            "prepare", "nuswide", "--root", str(raw), "--out", str(data), "--test-holdout", "0.5"
        )
    return data, raw / "Flickr"


def subset(work: Path, data: Path, size: int) -> Path:
    """A prepared folder whose train.csv is the first ``size`` training items of the pool."""
    folder = work / f"n{size}"
    if (folder / "train.csv").is_file():
        return folder
    with (data / "train.csv").open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields, rows = reader.fieldnames, list(reader)
    random.Random(0).shuffle(rows)
    if len(rows) < size:
        raise SystemExit(f"the pool has {len(rows)} training items, fewer than {size}")
    folder.mkdir(parents=True)
    for name in ("val.csv", "test.csv", "vocab.csv", "unlabeled.csv"):
        shutil.copy(data / name, folder / name)
    with (folder / "train.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields or []))
        writer.writeheader()
        writer.writerows(rows[:size])
    return folder


def model_point(
    folder: Path,
    images: Path,
    config: Path,
    name: str,
    seed: int,
    patience: int,
    epochs: list[str],
    pretrain_flags: list[str],
):
    slug = name.replace(" ", "").replace("+", "-").replace(",", "-")
    run = folder / f"{slug}-s{seed}"
    pretrained = folder / f"{slug}-s{seed}-pretrain"
    for old in (run, pretrained):
        shutil.rmtree(old, ignore_errors=True)  # an unfinished run of a killed script
    init: list[str] = []
    if name in PRETRAINED:
        magneto(
            "pretrain",
            "--config",
            str(config),
            "--data",
            str(folder),
            "--images",
            str(images),
            "--out",
            str(pretrained),
            "--seed",
            str(seed),
            "--pretrain-sources",
            "train",
            "--length-buckets",
            "--no-progress",
            *RANDOM,
            *pretrain_flags,
        )
        init = ["--init-from", str(pretrained / "pretrain.ckpt")]
    magneto(
        "train",
        "--config",
        str(config),
        "--data",
        str(folder),
        "--images",
        str(images),
        "--out",
        str(run),
        "--seed",
        str(seed),
        "--early-stopping",
        str(patience),
        "--length-buckets",
        "--no-progress",
        *epochs,
        *MODELS[name],
        *init,
    )
    out = magneto(
        "evaluate",
        "--checkpoint",
        str(run / "best_f1.ckpt"),
        "--data",
        str(folder / "test.csv"),
        "--images",
        str(images),
        "--workers",
        "0",
        "--json",
    )
    epochs = json.loads((run / "final.json").read_text())["epochs"]
    return {name: 100 * json.loads(out)["f1"]}, {"epochs": epochs}


def baseline_point(folder: Path, images: Path) -> dict[str, float]:
    out = folder / "baselines"
    shutil.rmtree(out, ignore_errors=True)
    figures = json.loads(
        magneto(
            "baseline",
            "--data",
            str(folder),
            "--images",
            str(images),
            "--backbone-weights",
            "none",
            "--out",
            str(out),
            "--json",
        )
    )
    return {name: 100 * result["f1"] for name, result in figures["test"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(CONFIGS), default="large-scale")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000, 10000, 30000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--max-seeds-above",
        type=int,
        nargs=2,
        default=[10000, 1],
        metavar=("SIZE", "SEEDS"),
        help="above SIZE items run only the first SEEDS seeds",
    )
    parser.add_argument("--config", type=Path, help="default: the profile's CPU config")
    parser.add_argument("--patience", type=int, default=3, help="--early-stopping of every run")
    parser.add_argument("--epochs", type=int, help="most epochs of a run [default: the config's]")
    parser.add_argument("--workdir", type=Path, default=Path("runs/learning-curves"))
    parser.add_argument(
        "--models",
        nargs="+",
        choices=sorted(MODELS),
        default=list(DEFAULT_MODELS),
        metavar="NAME",
        help=f"the models to run, of: {'; '.join(MODELS)} (default: "
        f"{'; '.join(DEFAULT_MODELS)}); a point's models already in the results are not run "
        "again",
    )
    args = parser.parse_args()
    config = args.config or REPO / "configs" / CONFIGS[args.profile]
    work = args.workdir / args.profile
    work.mkdir(parents=True, exist_ok=True)
    results_path = work / "learning_curves.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    data, images = pool(work, args.profile, max(args.sizes))
    for size in sorted(args.sizes):
        folder = subset(work, data, size)
        limit, few = args.max_seeds_above
        seeds = args.seeds[:few] if size > limit else args.seeds
        for seed in seeds:
            key = f"{size}/{seed}"
            entry = results.setdefault(key, {"f1": {}, "epochs": {}, "seconds": {}})
            if not isinstance(entry["seconds"], dict):  # older results: one total per point
                entry["seconds"] = {"models run together": entry["seconds"]}
            for name in args.models:
                if name in entry["f1"]:
                    continue
                started = time.perf_counter()
                epochs_flag = ["--epochs", str(args.epochs)] if args.epochs else []
                f1, extra = model_point(
                    folder,
                    images,
                    config,
                    name,
                    seed,
                    args.patience,
                    epochs_flag,
                    PRETRAIN_FLAGS[args.profile],
                )
                entry["f1"].update(f1)
                entry["epochs"][name] = extra["epochs"]
                entry["seconds"][name] = time.perf_counter() - started
                results_path.write_text(json.dumps(results, indent=2) + "\n")
            baselines_done = any(name not in MODELS for name in entry["f1"])
            if seed == seeds[0] and not baselines_done:  # deterministic: once per size
                started = time.perf_counter()
                entry["f1"].update(baseline_point(folder, images))
                entry["seconds"]["baselines"] = time.perf_counter() - started
                results_path.write_text(json.dumps(results, indent=2) + "\n")
    report(results, work)


def report(results: dict, work: Path) -> None:
    by_size: dict[int, dict[str, list[float]]] = {}
    seconds: dict[int, float] = {}
    for key, point in results.items():
        size = int(key.split("/")[0])
        for name, f1 in point["f1"].items():
            by_size.setdefault(size, {}).setdefault(name, []).append(f1)
        spent = point["seconds"]  # per model; older results: one total per point
        total = sum(spent.values()) if isinstance(spent, dict) else spent
        seconds[size] = seconds.get(size, 0.0) + total
    names = sorted({n for by in by_size.values() for n in by}, key=lambda n: (n not in MODELS, n))
    print("\n| training items | " + " | ".join(names) + " | wall time |")
    print("|---" * (len(names) + 2) + "|")
    for size in sorted(by_size):
        cells = []
        for name in names:
            values = by_size[size].get(name, [])
            spread = f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else ""
            cells.append(
                f"{statistics.mean(values):.1f}{spread} (n={len(values)})" if values else "-"
            )
        print(f"| {size:,} | " + " | ".join(cells) + f" | {seconds[size] / 60:.0f} min |")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name in names:
        sizes = [s for s in sorted(by_size) if name in by_size[s]]
        means = [statistics.mean(by_size[s][name]) for s in sizes]
        axes.plot(sizes, means, marker="o", linestyle="-" if name in MODELS else "--", label=name)
    axes.set_xscale("log")
    axes.set_xlabel("training items")
    axes.set_ylabel("test F1 (%)")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(work / "learning_curves.png", dpi=120)
    print(f"\nplot: {work / 'learning_curves.png'}")


if __name__ == "__main__":
    main()
