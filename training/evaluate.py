"""``magneto evaluate``: a checkpoint's P/R/F1, micro-F1, mean kept tags and outlier rate.

The outlier rate follows the paper (Table 3): K random vocabulary tags that are not on the
item are added to every item (seeded), and the rate is the share of items where any of them
is kept. The backbone runs once per image for both the clean and the outlier pass.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from magneto.data.dataset import (
    Batch,
    Collator,
    DataReport,
    EncodedItem,
    Sample,
    TagImageDataset,
    pad_samples,
    with_outliers,
)
from magneto.data.image_inputs import DecodedImages, ImageInput, NoImages
from magneto.data.items import load_items, short_ids
from magneto.devices import resolve_device
from magneto.infer.checkpoint import load_checkpoint, model_from_checkpoint
from magneto.infer.runtimes.calibration import Calibration
from magneto.infer.runtimes.choose import RuntimeChoice, choose_runtime
from magneto.infer.runtimes.trunks import model_amp
from magneto.train.loop import ScoredItem, labelled, score
from magneto.train.metrics import SetMetrics, metrics_at

log = logging.getLogger("magneto.runtime")


@dataclass
class EvaluationResult:
    metrics: SetMetrics
    threshold: float
    outliers: int
    outlier_metrics: SetMetrics | None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    report: DataReport = field(default_factory=DataReport)
    runtime: RuntimeChoice | None = None

    @property
    def outlier_rate(self) -> float | None:
        return self.outlier_metrics.outlier_rate if self.outlier_metrics else None

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.metrics.as_dict(),
            "outlier_rate": self.outlier_rate,
            "outliers_per_item": self.outliers,
            "f1_with_outliers": self.outlier_metrics.f1 if self.outlier_metrics else None,
            "threshold": self.threshold,
            "skipped_items": [i for i, _ in self.skipped],
            "report": self.report.lines(),
            "runtime": self.runtime.as_dict() if self.runtime else None,
        }

    def table(self) -> str:
        m = self.metrics
        rows = [
            ("items", f"{m.items}"),
            ("precision", f"{100 * m.precision:.2f} %"),
            ("recall", f"{100 * m.recall:.2f} %"),
            ("F1", f"{100 * m.f1:.2f} %"),
            ("micro-F1", f"{100 * m.micro_f1:.2f} %"),
            ("mean kept tags", f"{m.mean_kept:.3f} (important: {m.mean_important:.3f})"),
            ("threshold", f"{self.threshold:.2f}"),
        ]
        if self.runtime is not None:
            rows.append(("runtime", self.runtime.name))
        if self.outlier_metrics is not None:
            rows.append(
                (f"outlier rate (K={self.outliers})", f"{self.outlier_metrics.outlier_rate:.2f} %")
            )
            rows.append(("F1 with outliers", f"{100 * self.outlier_metrics.f1:.2f} %"))
        if self.skipped:
            ids = short_ids([i for i, _ in self.skipped], 5)
            rows.append(("skipped (bad image)", f"{len(self.skipped)}: {ids}"))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


class OutlierView:
    """A batch's items with their outlier tags added (the backbone features are reused)."""

    def __init__(self, items: Sequence[EncodedItem], padding_index: int) -> None:
        self.items = {item.item_id: item for item in items}
        self.padding_index = padding_index

    def __call__(self, batch: Batch) -> Batch:
        samples = []
        for item_id in batch.item_ids:
            item = self.items[item_id]
            samples.append(
                Sample(
                    item_id=item_id,
                    image=None,
                    tags=torch.from_numpy(item.tags),
                    targets=torch.from_numpy(item.targets),
                    outliers=torch.from_numpy(item.outliers),
                )
            )
        return replace(pad_samples(samples, self.padding_index), features=batch.features)


def _metrics(threshold: float, items: list[ScoredItem], outliers: bool = False) -> SetMetrics:
    return metrics_at(
        threshold,
        [i.scores for i in items],
        labelled(items),
        labelled(items, "outliers") if outliers else None,
    )


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str | Path,
    images: str | Path | None,
    *,
    outliers: int = 0,
    seed: int = 0,
    threshold: float | None = None,
    batch_size: int = 64,
    workers: int = 0,
    device: str = "auto",
    runtime: str = "auto",
    calibration: Calibration | None = None,
    on_bad_image: str = "skip",
    progress: bool = True,
) -> EvaluationResult:
    """``runtime``: how the image trunk runs (:mod:`magneto.infer.runtimes`); the figures are
    those of the model as it would be served with that runtime."""
    ckpt = load_checkpoint(checkpoint)
    dev = resolve_device(device)
    model = model_from_checkpoint(ckpt, dev, amp="off")
    trunk, choice = choose_runtime(
        model,
        device=dev,
        requested=runtime,
        input_size=ckpt.input_size,
        threshold=ckpt.threshold,
        batch_size=batch_size,
        calibration=calibration,
    )
    log.info("%s", choice.describe())
    amp = model_amp(choice.name, dev)
    vocabulary = ckpt.vocabulary
    items, report = load_items(Path(data), vocabulary)
    image_input: ImageInput = NoImages()
    if model.uses_images:
        if images is None:
            raise ValueError("this model reads images: pass --images DIR")
        image_input = DecodedImages(
            images,
            input_size=ckpt.input_size,
            on_bad_image=on_bad_image,  # type: ignore[arg-type]
        )
    dataset = TagImageDataset(items, image_input, report=report)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=Collator(vocabulary.padding_index),
    )
    views = []
    if outliers:
        noisy = with_outliers(items, outliers, len(vocabulary), seed)
        views.append(OutlierView(noisy, vocabulary.padding_index))
    scored = score(
        model,
        loader,
        device=dev,
        amp=amp,
        views=views,
        description="evaluating",
        progress=progress,
        trunk=trunk,
    )
    used = ckpt.threshold if threshold is None else threshold
    return EvaluationResult(
        metrics=_metrics(used, scored.items),
        threshold=used,
        outliers=outliers,
        outlier_metrics=_metrics(used, scored.views[0], outliers=True) if outliers else None,
        skipped=scored.skipped,
        report=report,
        runtime=choice,
    )
