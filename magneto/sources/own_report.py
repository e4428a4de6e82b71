"""The data report of ``magneto prepare own``: what was read, what was dropped and why, what
each split holds, and how well the vocabulary covers the tags of the splits it was not built
from."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from magneto.data.annotations import Annotation
from magneto.errors import DataError

EXAMPLES = 5  # rows quoted per reason
SPLITS = ("train", "val", "test", "unlabeled")


def _quantile(counts: Counter[int], q: float) -> int:
    """The ``q`` quantile of a histogram of tag counts."""
    total, seen = sum(counts.values()), 0
    for value in sorted(counts):
        seen += counts[value]
        if seen >= q * total:
            return value
    return 0


@dataclass
class OwnDataReport:
    sources: list[str]
    settings: dict[str, Any]
    rows: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    items: Counter[str] = field(default_factory=Counter)
    tags_seen: int = 0
    tags_rare: int = 0
    tags_cut: int = 0
    vocabulary: int = 0
    tag_histogram: Counter[int] = field(default_factory=Counter)  # labelled items' tag counts
    important: int = 0
    important_ratio_sum: float = 0.0
    occurrences: Counter[str] = field(default_factory=Counter)  # tag occurrences by split
    known: Counter[str] = field(default_factory=Counter)  # ... of which in the vocabulary

    def drop(self, reason: str, example: str) -> None:
        self.dropped[reason] += 1
        quoted = self.examples.setdefault(reason, [])
        if len(quoted) < EXAMPLES:
            quoted.append(example)

    def count_tags(self, split: str, tags: int, known: int) -> None:
        self.occurrences[split] += tags
        self.known[split] += known

    def add_item(self, split: str, item: Annotation) -> None:
        self.items[split] += 1
        if item.labels is not None:
            self.tag_histogram[len(item.tags)] += 1
            self.important += sum(item.labels)
            self.important_ratio_sum += sum(item.labels) / len(item.tags)

    def check_usable(self) -> None:
        """Training needs items in train and in val; say which flag to change otherwise."""
        empty = [split for split in ("train", "val") if not self.items[split]]
        if empty:
            raise DataError(
                ", ".join(self.sources),
                None,
                f"no usable labelled item lands in {' or '.join(empty)} "
                f"({self.kept()} kept of {self.rows} rows; dropped: {self._dropped_text()}); "
                "check the rows, or change --val-fraction / --test-fraction",
            )

    def kept(self) -> int:
        return sum(self.items.values())

    def _dropped_text(self) -> str:
        return ", ".join(f"{k} {n}" for k, n in sorted(self.dropped.items())) or "none"

    def coverage(self) -> dict[str, float]:
        """Share of each split's tag occurrences that the vocabulary knows."""
        return {s: self.known[s] / self.occurrences[s] for s in SPLITS if self.occurrences[s]}

    def tags_per_item(self) -> dict[str, float]:
        n = sum(self.tag_histogram.values())
        if not n:
            return {}
        total = sum(k * c for k, c in self.tag_histogram.items())
        return {
            "mean": total / n,
            "median": _quantile(self.tag_histogram, 0.5),
            "p95": _quantile(self.tag_histogram, 0.95),
            "max": max(self.tag_histogram),
        }

    def as_dict(self) -> dict[str, Any]:
        labelled = sum(self.tag_histogram.values())
        return {
            "sources": self.sources,
            "settings": self.settings,
            "rows": self.rows,
            "kept": self.kept(),
            "items": {s: self.items[s] for s in SPLITS},
            "dropped": dict(sorted(self.dropped.items())),
            "dropped_examples": self.examples,
            "vocabulary": {
                "size": self.vocabulary,
                "tags_seen": self.tags_seen,
                "below_min_count": self.tags_rare,
                "beyond_max_vocab": self.tags_cut,
                "coverage": self.coverage(),
            },
            "tags_per_item": self.tags_per_item(),
            "important_per_item": self.important / labelled if labelled else 0.0,
            "important_ratio": self.important_ratio_sum / labelled if labelled else 0.0,
        }

    def lines(self) -> list[str]:
        d = self.as_dict()
        out = [f"rows read: {self.rows}, kept: {self.kept()}, dropped: {self._dropped_text()}"]
        for reason, quoted in sorted(self.examples.items()):
            out += [f"  {reason}: {q}" for q in quoted]
        out.append(", ".join(f"{s}: {n}" for s, n in d["items"].items()))
        v = d["vocabulary"]
        out.append(
            f"vocabulary: {v['size']} tags of {v['tags_seen']} seen in train and unlabeled "
            f"({v['below_min_count']} below --min-count, {v['beyond_max_vocab']} beyond "
            "--max-vocab)"
        )
        out.append(
            "tag occurrences the vocabulary knows: "
            + ", ".join(f"{s} {100 * c:.1f} %" for s, c in v["coverage"].items())
        )
        if d["tags_per_item"]:
            t = d["tags_per_item"]
            out.append(
                f"tags per labelled item: mean {t['mean']:.1f}, median {t['median']}, "
                f"95th percentile {t['p95']}, max {t['max']}"
            )
            out.append(
                f"important tags per item: {d['important_per_item']:.2f} "
                f"(mean share {100 * d['important_ratio']:.1f} %)"
            )
        return out
