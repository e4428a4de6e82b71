"""What the gate learned: mean alpha per kind of tag on the nuswide-profile validation split.

The gate mixes the two streams per tag (O = alpha*O_image + (1 - alpha)*O_tags). On the ``nuswide``
synthetic profile every tag of every item has a known kind (``tag_kinds.csv``): a *visual*
concept that is drawn in the picture (important or not), a *generic* word that is never drawn
("animal", "water", ...), or *noise* the uploader added (a plausible-but-absent concept of the
scene, a random concept, a near-synonym). If the gate does what the paper says, it leans on
the image for tags the image can settle and on the tags for the rest.

Runs the command line as a user would (every command is printed): synth, prepare, train
MAGNeto with ``configs/synthetic.yaml``, then scores the validation items with the best
checkpoint and writes ``alpha_by_kind.png`` and ``alpha_by_kind.md`` into the work folder.

Usage:
    python experiments/gate_alpha.py [--workdir runs/gate-alpha] [--items 3000] [--epochs 15]
"""

from __future__ import annotations

import argparse
import csv
import shlex
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from magneto.data.annotation_files import read_annotations  # noqa: E402
from magneto.infer.predictor import Prediction, Predictor  # noqa: E402

CONFIG = REPO / "configs" / "synthetic.yaml"


def magneto(*args: str) -> None:
    print("$ magneto " + " ".join(shlex.quote(a) for a in args), flush=True)
    subprocess.run(
        [sys.executable, "-m", "magneto.cli.main", *args], check=True, cwd=REPO, capture_output=True
    )


def kind_of(row: dict[str, str]) -> str:
    """The table's row for one tag: visual tags split by whether they are important."""
    if row["kind"] == "visual":
        return "visual, important" if row["important"] == "1" else "visual, not important"
    if row["kind"] == "noise":
        return f"noise ({row['source']})"
    return row["kind"]


def alphas_by_kind(
    checkpoint: Path, raw: Path, prepared: Path
) -> dict[str, list[tuple[float, float]]]:
    """(alpha, score) of every validation tag, grouped by its kind."""
    kinds = {}
    with (raw / "tag_kinds.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            kinds[(row["item_id"], row["tag"])] = kind_of(row)
    records = read_annotations(prepared / "val.csv")
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    requests = [(raw / "Flickr" / r.image_path, r.tags) for r in records]
    grouped: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for record, answer in zip(records, predictor.predict_batch(requests), strict=True):
        if not isinstance(answer, Prediction):
            continue  # the profile's deliberate defects (truncated images)
        for tag in answer.tags:
            kind = kinds.get((record.item_id, tag.tag))
            if kind is not None and tag.alpha is not None and tag.score is not None:
                grouped[kind].append((tag.alpha, tag.score))
    return grouped


def table(grouped: dict[str, list[tuple[float, float]]]) -> str:
    lines = [
        "| kind of tag | tags | mean alpha (image weight) | sd alpha | mean score |",
        "|---|---|---|---|---|",
    ]
    for kind in sorted(grouped, key=lambda k: -statistics.fmean(a for a, _ in grouped[k])):
        alphas = [a for a, _ in grouped[kind]]
        scores = [s for _, s in grouped[kind]]
        sd = statistics.stdev(alphas) if len(alphas) > 1 else 0.0
        lines.append(
            f"| {kind} | {len(alphas)} | {statistics.fmean(alphas):.3f} | {sd:.3f} | "
            f"{statistics.fmean(scores):.3f} |"
        )
    return "\n".join(lines)


def figure(grouped: dict[str, list[tuple[float, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = sorted(grouped, key=lambda k: -statistics.fmean(a for a, _ in grouped[k]))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    values = [[a for a, _ in grouped[k]] for k in kinds]
    ax.boxplot(values, orientation="horizontal", showfliers=False)
    ax.set_yticks(range(1, len(kinds) + 1), [f"{k} (n={len(grouped[k])})" for k in kinds])
    ax.set_xlabel("gate alpha: weight of the image stream (1 - alpha: the tags')")
    ax.set_title("What the gate learned, per kind of tag (nuswide profile, validation)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/gate-alpha")
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = Path(args.workdir).resolve()
    raw, prepared, run = work / "raw", work / "prepared", work / "run"
    started = time.perf_counter()
    if not (raw / "tag_kinds.csv").is_file():
        magneto("synth", "--profile", "nuswide", "--out", str(raw), "--items", str(args.items),
                "--seed", str(args.seed), "--overwrite")  # fmt: skip
    if not (prepared / "val.csv").is_file():
        magneto("prepare", "nuswide", "--root", str(raw), "--out", str(prepared), "--overwrite")
    if not (run / "final.json").is_file():
        magneto("train", "--config", str(CONFIG), "--data", str(prepared), "--images",
                str(raw / "Flickr"), "--out", str(run), "--epochs", str(args.epochs),
                "--seed", str(args.seed), "--no-progress")  # fmt: skip
    grouped = alphas_by_kind(run / "best_f1.ckpt", raw, prepared)
    text = table(grouped)
    (work / "alpha_by_kind.md").write_text(text + "\n")
    figure(grouped, work / "alpha_by_kind.png")
    print(text)
    print(f"\nwrote {work / 'alpha_by_kind.png'} and {work / 'alpha_by_kind.md'} "
          f"in {time.perf_counter() - started:.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
