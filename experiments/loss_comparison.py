"""Which loss wins on tag summarization: MAGNeto trained with each loss, same data and seeds.

Runs the ``magneto`` command line as a user would (every command is printed): one synthetic
split (``magneto synth`` + ``prepare``), then for every loss (paper defaults for its
parameters) and seed ``magneto train --config configs/synthetic.yaml --loss NAME`` with the
same epochs, the same threshold selection (best validation F1), auxiliary losses on, no TAD;
then ``magneto evaluate --outliers K`` on the validation split. Prints a Markdown table of
per-item F1 and micro-F1 (mean ± sd over seeds), outlier rate and epochs to best F1. A loss
whose mean F1 stays below --retry-below is trained again at --retry-lr and shown on a row of
its own. Usage:
    python experiments/loss_comparison.py [--workdir runs/loss-comparison] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paper_tables import REPO, evaluate, fmt, synthetic_split, train

LOSSES = ("bce", "dice", "bce_dice", "focal", "asl", "apl", "sigmoidf1", "zlpr")


def best_epoch(run: Path) -> int:
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return max(range(len(history)), key=lambda i: history[i]["val_f1"]) + 1


def runs_of(
    name: str, lr: float | None, args: argparse.Namespace, data: Path, images: Path
) -> list[dict]:
    results = []
    for seed in args.seeds:
        tag = name if lr is None else f"{name}-lr{lr}"
        extra = ["--loss", name, "--epochs", str(args.epochs), "--tad-add", "0", "--tad-drop", "0"]
        if lr is not None:
            extra += ["--lr", str(lr)]
        run = train(Path(args.workdir) / f"seed{seed}" / tag, data, images, seed, *extra)
        figures = evaluate(run, data, images, args.outliers, seed)
        figures["best_epoch"] = best_epoch(run)
        results.append(figures)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=str(REPO / "runs" / "loss-comparison"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--outliers", type=int, default=2, help="K outlier tags per item")
    parser.add_argument("--losses", nargs="+", default=list(LOSSES))
    parser.add_argument("--retry-below", type=float, default=0.6, help="mean F1 (0..1)")
    parser.add_argument("--retry-lr", type=float, default=0.1)
    args = parser.parse_args()
    started = time.perf_counter()
    work = Path(args.workdir)
    data, images = synthetic_split(work, args.items)
    rows: dict[str, list[dict]] = {}
    for name in args.losses:
        rows[name] = runs_of(name, None, args, data, images)
        if statistics.mean(r["f1"] for r in rows[name]) < args.retry_below:
            rows[f"{name} (lr {args.retry_lr})"] = runs_of(name, args.retry_lr, args, data, images)
    seeds = ", ".join(map(str, args.seeds))
    print(
        f"\nLosses (synthetic data, validation split, {args.epochs} epochs, "
        f"{len(args.seeds)} seeds: {seeds}; outlier rate with K={args.outliers})\n"
    )
    print("| loss | F1 (%) | micro-F1 (%) | outlier rate (%) | epochs to best F1 |")
    print("|---|---|---|---|---|")
    for name, results in rows.items():
        epochs = [r["best_epoch"] for r in results]
        print(
            f"| {name} | {fmt([r['f1'] for r in results])} | "
            f"{fmt([r['micro_f1'] for r in results])} | "
            f"{fmt([r['outlier_rate'] for r in results], scale=1.0)} | "
            f"{fmt(epochs, scale=1.0)} |"
        )
    (work / "losses.json").write_text(json.dumps(rows, indent=2))
    print(f"\n({time.perf_counter() - started:.0f}s; figures in {work / 'losses.json'})")


if __name__ == "__main__":
    main()
