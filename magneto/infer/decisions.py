"""Which tags are kept, and why: the one decision the service, ``magneto predict``,
``magneto summarize`` and the page all show.

A known tag is kept when its score reaches the threshold; ``top_k`` then keeps at most the k
best of those; ``min_keep`` tops the kept set up with the best remaining tags. Every tag gets
the reason for its fate: ``kept``, ``kept_min_keep``, ``dropped_threshold``, ``dropped_top_k``
or ``unknown`` (not in the model's vocabulary, so not judged).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

REASONS = ("kept", "kept_min_keep", "dropped_threshold", "dropped_top_k", "unknown")


def decide(
    scores: Sequence[float | None],
    threshold: float,
    top_k: int | None = None,
    min_keep: int | None = None,
) -> list[str]:
    """The reason of each tag (its score None: unknown), in the tags' order."""
    known = {p: s for p, s in enumerate(scores) if s is not None}
    ranked = sorted(known, key=lambda p: -known[p])  # best first; ties keep the tags' order
    reasons = ["unknown" if s is None else "dropped_threshold" for s in scores]
    above = [p for p in ranked if known[p] >= threshold]
    for rank, p in enumerate(above):
        reasons[p] = "kept" if top_k is None or rank < top_k else "dropped_top_k"
    kept = sum(r == "kept" for r in reasons)
    for p in ranked:
        if not min_keep or kept >= min_keep:
            break
        if not reasons[p].startswith("kept"):
            reasons[p] = "kept_min_keep"
            kept += 1
    return reasons


def reason_text(reason: str, threshold: float, top_k: int | None, min_keep: int | None) -> str:
    """A reason in words, as the page shows it."""
    return {
        "kept": f"kept: its score reaches the threshold {threshold:.2f}",
        "kept_min_keep": f"kept: at least {min_keep} are kept, and it is among the best",
        "dropped_threshold": f"dropped: its score is below the threshold {threshold:.2f}",
        "dropped_top_k": f"dropped: only the top {top_k} are kept",
        "unknown": "not judged: the model does not know this tag",
    }[reason]


@dataclass(frozen=True)
class TagScore:
    tag: str  # the user's spelling
    score: float | None  # None for unknown tags
    kept: bool
    alpha: float | None  # gate: weight of the image stream (MAGNeto only)
    known: bool
    reason: str = ""  # one of REASONS
    tag_score: float | None = None  # the tag stream's probability (explanations)
    image_score: float | None = None  # the image stream's probability (explanations)
    attention: list[list[float]] | None = None  # over the region grid, rows of columns

    def as_dict(self, explain: bool = False, grid: bool = True) -> dict[str, Any]:
        """The fields every answer has; with ``explain`` the reason and stream scores too
        (and, with ``grid``, the attention grid)."""
        out: dict[str, Any] = {
            "tag": self.tag,
            "score": self.score,
            "kept": self.kept,
            "alpha": self.alpha,
            "known": self.known,
        }
        if explain:
            out.update(reason=self.reason, tag_score=self.tag_score, image_score=self.image_score)
            if grid:
                out["attention"] = self.attention
        return out


@dataclass
class Prediction:
    tags: list[TagScore]
    threshold: float
    seconds: float = 0.0
    grid: tuple[int, int] | None = None  # the attention grid's (rows, columns), when explained

    @property
    def kept_tags(self) -> list[str]:
        return [t.tag for t in self.tags if t.kept]

    @property
    def unknown_tags(self) -> list[str]:
        return [t.tag for t in self.tags if not t.known]

    def as_dict(self, explain: bool = False, grid: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kept_tags": self.kept_tags,
            "tags": [t.as_dict(explain, grid) for t in self.tags],
            "unknown_tags": self.unknown_tags,
            "threshold": self.threshold,
        }
        if explain and grid:
            out["attention_grid"] = list(self.grid) if self.grid else None
        return out
