"""Writing a benchmark profile's dataset (``magneto synth --profile nuswide|large-scale``).

``nuswide`` writes the NUS-WIDE raw layout of :mod:`magneto.sources.synthetic.generator` (same
tables, same defects), so ``magneto prepare nuswide --root OUT --out DIR`` prepares it unchanged.
``large-scale`` has thousands of concepts, which the 81-concept raw layout cannot hold, so it writes
what preparation would have written, straight into ``OUT``: ``train.csv``, ``val.csv``,
``vocab.csv``, ``unlabeled.csv`` and ``summary.json``, with the pictures under
``OUT/images/<item_id>.jpg`` (train with ``--data OUT --images OUT/images``). Its items are not cut
to a maximum length: a few exceed 64 tags, as real uploads do.

Both also write, for the analysis of the gate alpha by tag kind:

* ``tag_kinds.csv``: ``item_id,tag,kind,source,drawn,important``, one row per tag of every
  item (kind: visual / generic / noise; source: the step of the story that added it);
* ``items.csv``: ``item_id,theme,status,drawn``: each item's scene, whether it is labelled
  (or why not), and every concept in its picture (tagged or not);
* ``concepts.csv``: each word's role, theme, salience prior, popularity and visual code;
* ``synth_summary.json``: the configuration and the statistics of the labelled items.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from magneto.data.annotation_files import write_annotations
from magneto.data.annotations import Annotation
from magneto.data.vocabulary import Vocabulary
from magneto.sources.nuswide import PreparationSummary, held_out
from magneto.sources.synthetic.plan import PlannedItem, plan_items
from magneto.sources.synthetic.profiles import ProfileConfig
from magneto.sources.synthetic.raw_layout import (
    SynthRow,
    plan_defects,
    raw_image_lines,
    write_raw_tables,
)
from magneto.sources.synthetic.render import RenderJob, render_all
from magneto.sources.synthetic.signal import tag_statistics
from magneto.sources.synthetic.vocab import ConceptTable, build_concepts


class BenchConfig(BaseModel):
    """Size, seed and picture size of one benchmark dataset."""

    model_config = ConfigDict(extra="forbid")

    profile: ProfileConfig
    items: int = Field(2000, ge=10, description="labelled items (train + val)")
    unlabeled: int = Field(500, ge=0, description="extra items without usable ground truth")
    seed: int = 0
    image_size: int | None = Field(None, ge=32, le=1024, description="default: the profile's")
    test_fraction: float = Field(0.4, gt=0.0, lt=1.0, description="share in val / the test list")
    test_holdout: float = Field(
        0.0, ge=0.0, lt=1.0, description="large-scale: share of val written to test.csv"
    )
    defects: bool = Field(True, description="nuswide: inject NUS-WIDE's known defects")
    workers: int = Field(1, ge=1, description="processes drawing the pictures")


@dataclass
class BenchSummary:
    """What was written and where to point the next command."""

    profile: str
    layout: str  # "nuswide-raw" or "prepared"
    data: str  # the directory for --root (raw) or --data (prepared)
    images: str
    labelled: int = 0
    unlabeled: int = 0
    images_written: int = 0
    expected_prepared: int = 0
    defects: dict[str, list[str]] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"profile {self.profile}: {self.labelled} labelled + {self.unlabeled} extra items,"
               f" {self.images_written} images under {self.images}"]  # fmt: skip
        s = self.stats
        out.append(
            f"tags/item: mean {s['mean_tags']:.2f} (min {s['min_tags']}, max {s['max_tags']}, "
            f"{s['items_over_64']} items over 64); mean important ratio "
            f"{s['mean_important_ratio']:.3f}"
        )
        out.append(
            f"vocabulary: {s['vocabulary']} words, {s['concepts_used']} used; top 10% hold "
            f"{100 * s['top10_share']:.1f}% of tag occurrences"
        )
        out += [f"defect {k}: {', '.join(v)}" for k, v in self.defects.items() if v]
        if self.layout == "nuswide-raw":
            out.append(f"expected train+val after preparation: {self.expected_prepared}")
            out.append(f"next: magneto prepare nuswide --root {self.data} --out PREPARED")
        else:
            out.append(f"next: magneto train --data {self.data} --images {self.images} ...")
        return out


def _kinds_rows(items: list[PlannedItem], table: ConceptTable) -> list[list[object]]:
    rows: list[list[object]] = []
    for it in items:
        drawn, truth = set(it.present), set(it.ground_truth())
        for c, kind, source in zip(it.tags, it.kinds, it.sources, strict=True):
            rows.append(
                [it.item_id, table.names[c], kind, source, int(c in drawn), int(c in truth)]
            )
    return rows


def _write_side_files(root: Path, items: list[PlannedItem], table: ConceptTable) -> None:
    with (root / "tag_kinds.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item_id", "tag", "kind", "source", "drawn", "important"])
        writer.writerows(_kinds_rows(items, table))
    with (root / "items.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item_id", "theme", "status", "drawn"])
        writer.writerows(
            [it.item_id, table.theme_names[it.theme], it.status,
             ",".join(table.names[c] for c in it.present)]
            for it in items
        )  # fmt: skip
    table.write_csv(root / "concepts.csv")


def _codes(item: PlannedItem, table: ConceptTable) -> list[tuple[int, int, int]]:
    return [tuple(table.code[c].tolist()) for c in item.present]


def _write_raw(
    root: Path, config: BenchConfig, items: list[PlannedItem], table: ConceptTable
) -> tuple[int, dict[str, list[str]]]:
    """The NUS-WIDE raw layout; returns the pictures written and the defects planted."""
    rows = [
        SynthRow(it.item_id, table.theme_names[it.theme], sorted(it.ground_truth()),
                 sorted(it.tags), it.test, "" if it.status == "labelled" else it.status)
        for it in items
    ]  # fmt: skip
    defects: dict[str, list[str]] = {}
    labelled = [r for r in rows if not r.defect]
    # The disagreeing duplicate flips a label to an unimportant tag: it needs one.
    mixed = next((r for r in labelled[1:] if set(r.tags) - set(r.visible)), None)
    if mixed is not None:
        labelled.remove(mixed)
        labelled.insert(1, mixed)
    if config.defects and len(labelled) >= 8:
        extra, defects = plan_defects(labelled)
        rows += extra
    by_id = {it.item_id: it for it in items}
    lines = raw_image_lines(rows)
    size = config.image_size or config.profile.image_size
    jobs: list[RenderJob] = [
        (str(root / "Flickr" / line.replace("\\", "/")), _codes(by_id[row.item_id], table),
         (config.seed, 1, r), row.item_id in defects.get("truncated jpeg", []))
        for r, (line, row) in enumerate(zip(lines, rows, strict=True))
        if row.item_id not in defects.get("missing image", [])
    ]  # fmt: skip
    written = render_all(jobs, size, config.profile.grid, config.workers)
    write_raw_tables(root, table.names, lines, rows)
    return written, defects


def _write_prepared(
    root: Path, config: BenchConfig, items: list[PlannedItem], table: ConceptTable
) -> tuple[int, PreparationSummary]:
    """The prepared files (what ``prepare`` would write) and the pictures under images/."""

    def record(it: PlannedItem, labelled: bool) -> Annotation:
        truth = set(it.important)
        labels = tuple(int(c in truth) for c in it.tags) if labelled else None
        return Annotation(it.item_id, tuple(table.names[c] for c in it.tags), labels)

    labelled = [it for it in items if it.status == "labelled"]
    extra = [it for it in items if it.status != "labelled"]
    summary = PreparationSummary(images_listed=len(items), concepts=len(table))
    summary.add_step("generated (large-scale profile: no raw layout)", len(items))
    summary.add_step("labelled (important tags all among the tags)", len(labelled))
    summary.image_root = str(root / "images")
    size = config.image_size or config.profile.image_size
    jobs: list[RenderJob] = [
        (str(root / "images" / f"{it.item_id}.jpg"), _codes(it, table), (config.seed, 1, r), False)
        for r, it in enumerate(items)
    ]
    written = render_all(jobs, size, config.profile.grid, config.workers)
    train = [record(it, True) for it in labelled if not it.test]
    held = [record(it, True) for it in labelled if it.test]
    val = [r for r in held if not held_out(r.item_id, config.test_holdout, config.seed)]
    test = [r for r in held if held_out(r.item_id, config.test_holdout, config.seed)]
    summary.train_items = write_annotations(root / "train.csv", train, labelled=True)
    summary.val_items = write_annotations(root / "val.csv", val, labelled=True)
    if config.test_holdout:
        summary.test_items = write_annotations(root / "test.csv", test, labelled=True)
    summary.unlabeled_items = write_annotations(
        root / "unlabeled.csv", [record(it, False) for it in extra], labelled=False
    )
    Vocabulary(table.names).save(root / "vocab.csv")
    final = train + val + test
    stats = tag_statistics([r.tags for r in final], [r.labels for r in final])
    summary.mean_tags_per_item = stats["mean_tags"]
    summary.mean_important_per_item = stats["mean_important"]
    summary.mean_important_ratio = stats["mean_important_ratio"]
    _atomic_json(root / "summary.json", asdict(summary))
    return written, summary


def _atomic_json(path: Path, payload: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def generate_benchmark(
    config: BenchConfig, out: str | Path, *, overwrite: bool = False
) -> BenchSummary:
    """Write the profile's dataset under ``out``; returns what was written."""
    root = Path(out)
    if root.exists() and any(root.iterdir()) and not overwrite:
        raise FileExistsError(f"{root} is not empty; choose another --out or pass --overwrite")
    root.mkdir(parents=True, exist_ok=True)
    profile = config.profile
    table = build_concepts(profile)
    raw = profile.vocabulary == "nuswide81"
    rng = np.random.default_rng([config.seed, 2])
    items = plan_items(profile, table, config.items, config.unlabeled, rng, raw_layout=raw)
    for it in items:
        it.test = bool(rng.random() < config.test_fraction)
    labelled = [it for it in items if it.status == "labelled"]
    stats: dict[str, Any] = tag_statistics(
        [[table.names[c] for c in it.tags] for it in labelled],
        [[int(c in set(it.important)) for c in it.tags] for it in labelled],
        vocabulary=len(table),
    )
    stats["kinds"] = _kind_table(labelled)
    if raw:
        written, defects = _write_raw(root, config, items, table)
        images = root / "Flickr"
    else:
        written, _ = _write_prepared(root, config, items, table)
        defects, images = {}, root / "images"
    summary = BenchSummary(
        profile=profile.name,
        layout="nuswide-raw" if raw else "prepared",
        data=str(root),
        images=str(images),
        labelled=len(labelled),
        unlabeled=len(items) - len(labelled),
        images_written=written,
        # Preparation drops the disagreeing duplicate and the missing image.
        expected_prepared=len(labelled) - (2 if defects else 0),
        defects=defects,
        stats=stats,
    )
    _write_side_files(root, items, table)
    # Paths relative to the dataset, and no worker count: the same seed, the same bytes.
    record = {**asdict(summary), "data": ".", "images": images.name}
    _atomic_json(
        root / "synth_summary.json",
        {"config": config.model_dump(exclude={"workers"}), "vocabulary_size": len(table), **record},
    )
    return summary


def _kind_table(items: list[PlannedItem]) -> dict[str, dict[str, float]]:
    """Per kind: its share of the tags and how often it is important."""
    counts: dict[str, list[int]] = {}
    for it in items:
        truth = set(it.important)
        for c, kind in zip(it.tags, it.kinds, strict=True):
            entry = counts.setdefault(kind, [0, 0])
            entry[0] += 1
            entry[1] += int(c in truth)
    total = sum(n for n, _ in counts.values()) or 1
    return {
        kind: {"share": n / total, "important_rate": k / n}
        for kind, (n, k) in sorted(counts.items())
    }
