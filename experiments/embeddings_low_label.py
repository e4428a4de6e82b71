"""Word2Vec vs random tag embeddings when labels are scarce, on the large-scale profile.

Labelled items are expensive; tag lists are free. The question: when only a fraction of the
training items is labelled, do Word2Vec vectors trained on the tag lists of *every* item
(labelled or not) give the tag embedder a head start over a random start?

Runs the command line as a user would (every command is printed):

1. ``magneto synth --profile large-scale`` (once per work folder);
2. ``magneto embeddings train`` on the tag lists of all training items and the extra
   unlabeled items (never the validation items), vector size = the config's d_model, so the
   vectors are copied as they are;
3. per seed: a random ``--fraction`` of the labelled training items (drawn with that seed),
   then ``magneto train`` twice on it with the same seed, random and ``--embeddings`` vectors,
   and ``magneto evaluate`` of each best checkpoint on the whole validation split.

Prints a Markdown table (mean ± std over seeds) and the paired per-seed F1 differences, and
writes them to ``results.json``. Finished runs are kept and reused when the script is re-run.

Usage:
    python experiments/embeddings_low_label.py [--workdir runs/embeddings-low-label]
        [--items 10000] [--fraction 0.1] [--seeds 0 1 2] [--epochs 30]
        [--config configs/large-scale-cpu.yaml]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from paper_tables import REPO, evaluate, fmt, magneto, set_config, synthetic_split, train

from magneto.config import RunConfig, load_config
from magneto.data.annotation_files import read_annotations, write_annotations

CONFIG = REPO / "configs" / "large-scale-cpu.yaml"
SPLIT_FILES = ("val.csv", "vocab.csv")


def labelled_subset(data: Path, out: Path, fraction: float, seed: int) -> int:
    """``out``: a prepared dataset whose train.csv is a seeded ``fraction`` of ``data``'s."""
    train = out / "train.csv"
    if train.is_file():  # written last, and atomically: its presence means the subset is whole
        return len(read_annotations(train))
    rows = read_annotations(data / "train.csv")
    keep = max(1, round(fraction * len(rows)))
    chosen = sorted(random.Random(seed).sample(range(len(rows)), keep))
    out.mkdir(parents=True, exist_ok=True)
    for name in SPLIT_FILES:
        shutil.copyfile(data / name, out / name)
    return write_annotations(train, [rows[i] for i in chosen], labelled=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=str(REPO / "runs" / "embeddings-low-label"))
    parser.add_argument("--items", type=int, default=10000)
    parser.add_argument("--fraction", type=float, default=0.1, help="labelled share of train")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--config", default=str(CONFIG), help="default: large-scale-cpu.yaml")
    parser.add_argument(
        "--epochs",
        type=int,
        default=30,
        help="training epochs: the labelled set is a tenth of the config's, so more epochs "
        "give about as many optimizer steps (30 x 600 / 64 vs the config's 8 x 3,000 / 64)",
    )
    args = parser.parse_args()
    if not 0 < args.fraction <= 1:
        parser.error("--fraction must be in (0, 1]")
    set_config(Path(args.config))
    d_model = load_config(RunConfig, Path(args.config)).model.d_model  # with defaults
    started = time.perf_counter()
    work = Path(args.workdir)
    data, images = synthetic_split(work, args.items, "large-scale")
    vectors = work / "tag_vectors.bin"
    if not vectors.is_file():
        coverage = magneto(
            "embeddings",
            "train",
            "--data",
            str(data / "train.csv"),
            str(data / "unlabeled.csv"),
            "--out",
            str(vectors),
            "--vector-size",
            str(d_model),
            capture=True,
        )
        print(coverage.strip(), flush=True)
    cache = ("--feature-cache-dir", str(data / "feature_cache"))  # every subset shares val's
    arms = {"random": ("--embeddings", "none"), "Word2Vec": ("--embeddings", str(vectors))}
    results: dict[str, list[dict]] = {arm: [] for arm in arms}
    labelled = {}
    for seed in args.seeds:
        subset = work / f"seed{seed}" / "data"
        labelled[seed] = labelled_subset(data, subset, args.fraction, seed)
        for arm, extra in arms.items():
            out = work / f"seed{seed}" / arm.lower()
            run = train(out, subset, images, seed, "--epochs", str(args.epochs), *cache, *extra)
            results[arm].append(evaluate(run, subset, images, 0, seed))

    counts = ", ".join(f"{n}" for n in labelled.values())
    print(
        f"\nLow-label regime: {args.fraction:.0%} of the training items labelled ({counts} items "
        f"for seeds {', '.join(map(str, args.seeds))}); vectors from all training and unlabeled "
        f"items; validation split of {results['random'][0]['items']} items\n"
    )
    print("| Embeddings | Prec (%) | Recall (%) | F1 (%) |\n|---|---|---|---|")
    for arm, rows in results.items():
        print(
            f"| {arm} | {fmt([r['precision'] for r in rows])} | "
            f"{fmt([r['recall'] for r in rows])} | {fmt([r['f1'] for r in rows])} |"
        )
    gains = [w["f1"] - r["f1"] for w, r in zip(results["Word2Vec"], results["random"], strict=True)]
    print(
        "\nWord2Vec minus random, F1 points per seed: "
        + ", ".join(f"{g * 100:+.1f}" for g in gains)
        + f" (mean {fmt(gains)})"
    )
    summary = {"labelled": labelled, "results": results, "f1_gain": gains}
    (work / "results.json").write_text(json.dumps(summary, indent=2))
    print(f"\n({time.perf_counter() - started:.0f}s; figures in {work / 'results.json'})")


if __name__ == "__main__":
    main()
