"""Kept-vs-important metrics (paper and reference) and the outlier rate (paper Table 3).

Per item: precision = |kept ∩ important| / |kept|, recall = ... / |important|, F1 their
harmonic mean; the paper's figures are these averaged over items. Edge cases: an item that
keeps nothing has precision 1 if nothing was important and 0 otherwise; an item with nothing
important has recall 1. Micro-F1 pools true/false positives over all tags of all items.
The outlier rate is the share of items (among those given outlier tags) that keep any of them.

Accumulators hold plain sums, so results from several processes combine by adding states.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

_FIELDS = (
    "items",
    "precision_sum",
    "recall_sum",
    "f1_sum",
    "tp",
    "fp",
    "fn",
    "kept",
    "important",
    "outlier_items",
    "outlier_hit_items",
)


@dataclass(frozen=True)
class SetMetrics:
    items: int
    precision: float
    recall: float
    f1: float
    micro_f1: float
    mean_kept: float
    mean_important: float
    outlier_rate: float | None  # percentage of items where any added outlier tag was kept

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "items": self.items,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "micro_f1": self.micro_f1,
            "mean_kept": self.mean_kept,
            "mean_important": self.mean_important,
            "outlier_rate": self.outlier_rate,
        }


def per_item_scores(
    kept: torch.Tensor, targets: torch.Tensor, padding_mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-item precision, recall and F1 for boolean ``kept`` and 0/1 ``targets`` ``(B, L)``."""
    valid = torch.ones_like(kept, dtype=torch.bool) if padding_mask is None else ~padding_mask
    pred = kept.bool() & valid
    truth = targets.bool() & valid
    tp = (pred & truth).sum(-1).double()
    n_pred = pred.sum(-1).double()
    n_truth = truth.sum(-1).double()
    precision = torch.where(n_pred > 0, tp / n_pred.clamp_min(1), (n_truth == 0).double())
    recall = torch.where(n_truth > 0, tp / n_truth.clamp_min(1), torch.ones_like(tp))
    denom = precision + recall
    f1 = torch.where(
        denom > 0, 2 * precision * recall / denom.clamp_min(1e-12), torch.zeros_like(tp)
    )
    return precision, recall, f1


class SetMetricAccumulator:
    """Accumulates metrics over batches of thresholded predictions."""

    def __init__(self) -> None:
        self.state = torch.zeros(len(_FIELDS), dtype=torch.float64)

    def update(
        self,
        kept: torch.Tensor,
        targets: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        outliers: torch.Tensor | None = None,
    ) -> None:
        kept, targets = kept.detach().cpu(), targets.detach().cpu()
        padding_mask = None if padding_mask is None else padding_mask.detach().cpu()
        valid = torch.ones_like(kept, dtype=torch.bool) if padding_mask is None else ~padding_mask
        pred = kept.bool() & valid
        truth = targets.bool() & valid
        precision, recall, f1 = per_item_scores(pred, truth)
        update = torch.zeros_like(self.state)
        update[0] = kept.shape[0]
        update[1], update[2], update[3] = precision.sum(), recall.sum(), f1.sum()
        update[4] = (pred & truth).sum()
        update[5] = (pred & ~truth).sum()
        update[6] = (~pred & truth).sum()
        update[7] = pred.sum()
        update[8] = truth.sum()
        if outliers is not None:
            flags = outliers.detach().cpu().bool() & valid
            has = flags.any(-1)
            update[9] = has.sum()
            update[10] = (has & (pred & flags).any(-1)).sum()
        self.state += update

    def merge(self, other_state: torch.Tensor) -> None:
        self.state += other_state.to(self.state)

    def compute(self) -> SetMetrics:
        s = dict(zip(_FIELDS, self.state.tolist(), strict=True))
        items = max(s["items"], 1.0)
        micro_denom = 2 * s["tp"] + s["fp"] + s["fn"]
        return SetMetrics(
            items=int(s["items"]),
            precision=s["precision_sum"] / items,
            recall=s["recall_sum"] / items,
            f1=s["f1_sum"] / items,
            micro_f1=2 * s["tp"] / micro_denom if micro_denom else 1.0,
            mean_kept=s["kept"] / items,
            mean_important=s["important"] / items,
            outlier_rate=(
                100.0 * s["outlier_hit_items"] / s["outlier_items"] if s["outlier_items"] else None
            ),
        )


def set_metrics(
    kept: torch.Tensor,
    targets: torch.Tensor,
    padding_mask: torch.Tensor | None = None,
    outliers: torch.Tensor | None = None,
) -> SetMetrics:
    """Metrics of one batch (or one whole set) of thresholded predictions."""
    acc = SetMetricAccumulator()
    acc.update(kept, targets, padding_mask, outliers)
    return acc.compute()


def outlier_rate(
    kept: torch.Tensor, outliers: torch.Tensor, padding_mask: torch.Tensor | None = None
) -> float:
    """Percentage of items with outlier tags where at least one outlier tag is kept."""
    valid = torch.ones_like(kept, dtype=torch.bool) if padding_mask is None else ~padding_mask
    flags = outliers.bool() & valid
    has = flags.any(-1)
    if not bool(has.any()):
        raise ValueError("no item has an outlier tag")
    hit = (kept.bool() & flags).any(-1) & has
    return 100.0 * hit.sum().item() / has.sum().item()


def _padded(rows: Sequence[np.ndarray], fill: float = 0.0) -> np.ndarray:
    """Ragged per-item arrays -> one ``(items, longest)`` float array."""
    out = np.full((len(rows), max((len(r) for r in rows), default=0)), fill)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def metrics_at(
    threshold: float,
    scores: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    outliers: Sequence[np.ndarray] | None = None,
) -> SetMetrics:
    """Metrics of per-item scores (real tags only) kept at ``threshold``."""
    if not scores:
        return SetMetricAccumulator().compute()
    padding = torch.from_numpy(_padded([np.zeros(len(s)) for s in scores], 1.0) > 0.5)
    kept = torch.from_numpy(_padded(scores, -1.0) >= threshold)
    flags = torch.from_numpy(_padded(outliers) > 0.5) if outliers is not None else None
    return set_metrics(kept, torch.from_numpy(_padded(targets)), padding, flags)


DEFAULT_THRESHOLDS = tuple(round(0.05 + 0.01 * i, 2) for i in range(91))  # 0.05 .. 0.95


def choose_threshold(
    scores: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    candidates: tuple[float, ...] = DEFAULT_THRESHOLDS,
) -> tuple[float, float]:
    """The decision threshold maximising mean per-item F1 (ties: the one nearest 0.5).

    ``scores``/``targets``: one 1-D array per item (real tags only).
    """
    if not scores:
        raise ValueError("no validation items to choose a threshold on")
    s = _padded(scores, -1.0)
    y = _padded(targets) > 0.5
    n_truth = y.sum(1)
    best = (-1.0, 0.5)
    for t in candidates:
        pred = s >= t
        tp = (pred & y).sum(1)
        n_pred = pred.sum(1)
        precision = np.where(n_pred > 0, tp / np.maximum(n_pred, 1), (n_truth == 0).astype(float))
        recall = np.where(n_truth > 0, tp / np.maximum(n_truth, 1), 1.0)
        denom = precision + recall
        f1 = float(np.where(denom > 0, 2 * precision * recall / np.maximum(denom, 1e-12), 0).mean())
        if f1 > best[0] + 1e-12 or (
            abs(f1 - best[0]) <= 1e-12 and abs(t - 0.5) < abs(best[1] - 0.5)
        ):
            best = (f1, float(t))
    return best[1], best[0]
