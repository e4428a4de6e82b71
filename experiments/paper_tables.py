"""Reproduce the paper's Table 2 and Table 3 on the built-in synthetic data.

Runs the ``magneto`` command line exactly as a user would (every command is printed), with
``configs/synthetic.yaml``, and prints both tables as Markdown (mean ± std over seeds).

- Table 2 (architectures, no TAD, no pre-training): FF, TF-t, TF-it, MAGNeto (no auxiliary
  losses), MAGNeto + aux.
- Table 3 (MAGNeto + aux): TAD beta = beta-hat in {0, 0.5} x pre-training {no, yes}; the
  outlier rate adds K random vocabulary tags to every validation item.

Usage:
    python experiments/paper_tables.py [--workdir runs/paper-tables] [--seeds 0 1 2] [--outliers 2]
        [--profile image-only|nuswide|large-scale] [--config FILE] [--items N]
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "synthetic.yaml"


def magneto(*args: str, capture: bool = False) -> str:
    cmd = [sys.executable, "-m", "magneto.cli.main", *args]
    print("$ magneto " + " ".join(shlex.quote(a) for a in args), flush=True)
    done = subprocess.run(cmd, check=True, text=True, capture_output=True, cwd=REPO)
    return done.stdout if capture else ""


def evaluate(run: Path, data: Path, images: Path, outliers: int, seed: int) -> dict:
    out = magneto(
        "evaluate",
        "--checkpoint",
        str(run / "best_f1.ckpt"),
        "--data",
        str(data / "val.csv"),
        "--images",
        str(images),
        "--outliers",
        str(outliers),
        "--seed",
        str(seed),
        "--workers",
        "0",
        "--json",
        capture=True,
    )
    return json.loads(out)


def train(out: Path, data: Path, images: Path, seed: int, *extra: str) -> Path:
    """``magneto train`` with ``CONFIG`` (``--config`` of this script) unless ``out`` is done."""
    if not (out / "final.json").is_file():
        if out.exists():
            raise SystemExit(f"{out} holds an unfinished run; remove it and re-run")
        magneto(
            "train",
            "--config",
            str(CONFIG),
            "--data",
            str(data),
            "--images",
            str(images),
            "--out",
            str(out),
            "--seed",
            str(seed),
            "--no-progress",
            *extra,
        )
    return out


def synthetic_split(work: Path, items: int, profile: str = "image-only") -> tuple[Path, Path]:
    """``magneto synth --profile`` (+ ``prepare`` where the profile writes the raw NUS-WIDE
    layout) into ``work`` once: (prepared dir, image dir)."""
    if profile == "large-scale":  # written already prepared: too many concepts for the layout
        data = work / "prepared"
        if not (data / "val.csv").is_file():
            magneto("synth", "--profile", profile, "--out", str(data), "--items", str(items))
        return data, data / "images"
    raw, data = work / "raw", work / "prepared"
    if not (data / "val.csv").is_file():
        magneto("synth", "--profile", profile, "--out", str(raw), "--items", str(items))
        magneto("prepare", "nuswide", "--root", str(raw), "--out", str(data))
    return data, raw / "Flickr"


def set_config(path: Path) -> None:
    """The config every run of this script trains with."""
    global CONFIG
    CONFIG = path.resolve()


def fmt(values: list[float], scale: float = 100.0) -> str:
    values = [v * scale for v in values]
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=str(REPO / "runs" / "paper-tables"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--outliers", type=int, default=2, help="K outlier tags per item")
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument(
        "--profile", choices=("image-only", "nuswide", "large-scale"), default="image-only"
    )
    parser.add_argument("--config", default=str(CONFIG), help="default: configs/synthetic.yaml")
    args = parser.parse_args()
    set_config(Path(args.config))
    started = time.perf_counter()
    work = Path(args.workdir)
    data, images = synthetic_split(work, args.items, args.profile)

    table2 = {name: [] for name in ("FF", "TF-t", "TF-it", "MAGNeto", "MAGNeto + aux")}
    table3 = {key: [] for key in ((0.0, False), (0.5, False), (0.0, True), (0.5, True))}
    for seed in args.seeds:
        runs = work / f"seed{seed}"
        no_tad = ("--tad-add", "0", "--tad-drop", "0")
        for name, extra in (
            ("FF", ("--model", "ff", *no_tad)),
            ("TF-t", ("--model", "tf-t", *no_tad)),
            ("TF-it", ("--model", "tf-it", *no_tad)),
            ("MAGNeto", ("--no-aux", *no_tad)),
            ("MAGNeto + aux", no_tad),
        ):
            run = train(runs / name.replace(" + ", "-").lower(), data, images, seed, *extra)
            table2[name].append(evaluate(run, data, images, args.outliers, seed))
        table3[(0.0, False)] = table3[(0.0, False)] + [table2["MAGNeto + aux"][-1]]
        pre = runs / "pretrain"
        if not (pre / "final.json").is_file():
            magneto(
                "pretrain",
                "--config",
                str(CONFIG),
                "--data",
                str(data),
                "--images",
                str(images),
                "--out",
                str(pre),
                "--seed",
                str(seed),
                "--no-progress",
            )
        init = ("--init-from", str(pre / "pretrain.ckpt"))
        for (beta, pretrained), extra in (
            ((0.5, False), ("--tad-add", "0.5", "--tad-drop", "0.5")),
            ((0.0, True), (*no_tad, *init)),
            ((0.5, True), ("--tad-add", "0.5", "--tad-drop", "0.5", *init)),
        ):
            name = f"tad{beta}-{'pre' if pretrained else 'scratch'}"
            run = train(runs / name, data, images, seed, *extra)
            table3[(beta, pretrained)].append(evaluate(run, data, images, args.outliers, seed))

    seeds = ", ".join(map(str, args.seeds))
    split = f"{args.profile} synthetic data, validation split"
    print(f"\nTable 2 ({split}, {len(args.seeds)} seeds: {seeds})\n")
    print("| Model | Prec (%) | Recall (%) | F1 (%) |\n|---|---|---|---|")
    for name, results in table2.items():
        print(
            f"| {name} | {fmt([r['precision'] for r in results])} | "
            f"{fmt([r['recall'] for r in results])} | {fmt([r['f1'] for r in results])} |"
        )
    print(f"\nTable 3 (MAGNeto + aux; outlier rate with K={args.outliers} random tags per item)\n")
    print("| β | β̂ | Pre-trained | Outlier (%) | F1 (%) |\n|---|---|---|---|---|")
    for (beta, pretrained), results in table3.items():
        rate = fmt([r["outlier_rate"] for r in results], scale=1.0)
        print(
            f"| {beta} | {beta} | {'Yes' if pretrained else 'No'} | {rate} | "
            f"{fmt([r['f1'] for r in results])} |"
        )
    summary = {"table2": table2, "table3": {f"{k[0]}-{k[1]}": v for k, v in table3.items()}}
    (work / "tables.json").write_text(json.dumps(summary, indent=2))
    print(f"\n({time.perf_counter() - started:.0f}s; figures in {work / 'tables.json'})")


if __name__ == "__main__":
    main()
