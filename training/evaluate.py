"""``magneto evaluate``: a checkpoint's P/R/F1, micro-F1, mean kept tags and outlier rate.

The outlier rate follows the paper (Table 3): K random vocabulary tags that are not on the
item are added to every item (seeded), and the rate is the share of items where any of them
is kept. The backbone runs once per image for both the clean and the outlier pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from magneto.checkpoint import load_checkpoint
from magneto.dataset import (
    Collator,
    DataReport,
    Sample,
    TagImageDataset,
    pad_samples,
    with_outliers,
)
from magneto.metrics import SetMetricAccumulator, SetMetrics
from magneto.model import build_model
from magneto.prepared import load_items
from magneto.runtime import autocast, resolve_device


@dataclass
class EvaluationResult:
    metrics: SetMetrics
    threshold: float
    outliers: int
    outlier_metrics: SetMetrics | None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    report: DataReport = field(default_factory=DataReport)

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
        if self.outlier_metrics is not None:
            rows.append(
                (f"outlier rate (K={self.outliers})", f"{self.outlier_metrics.outlier_rate:.2f} %")
            )
            rows.append(("F1 with outliers", f"{100 * self.outlier_metrics.f1:.2f} %"))
        if self.skipped:
            rows.append(("skipped (bad image)", f"{len(self.skipped)}"))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


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
    amp: str = "auto",
    on_bad_image: str = "skip",
    progress: bool = True,
) -> EvaluationResult:
    ckpt = load_checkpoint(checkpoint)
    dev = resolve_device(device)
    model = build_model(ckpt.model_config.model_copy(update={"backbone_weights": None}))
    model.load_state_dict(ckpt.model_state)
    model.to(dev).eval()
    vocabulary = ckpt.vocabulary
    items, report = load_items(Path(data), vocabulary)
    uses_images = bool(getattr(model, "uses_images", False))
    if uses_images and images is None:
        raise ValueError("this model reads images: pass --images DIR")
    dataset = TagImageDataset(
        items,
        Path(images or "."),
        input_size=ckpt.input_size,
        on_bad_image=on_bad_image,  # type: ignore[arg-type]
        load_images=uses_images,
        report=report,
    )
    noisy = (
        {it.item_id: it for it in with_outliers(items, outliers, len(vocabulary), seed)}
        if outliers
        else {}
    )
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=Collator(vocabulary.padding_index),
    )
    used = ckpt.threshold if threshold is None else threshold
    clean_acc, noisy_acc = SetMetricAccumulator(), SetMetricAccumulator()
    skipped: list[tuple[str, str]] = []
    with torch.inference_mode():
        for batch in tqdm(
            loader, desc="evaluating", unit="batch", leave=False, disable=not progress
        ):
            skipped.extend(batch.skipped)
            if not len(batch):
                continue
            batch = batch.to(dev)
            with autocast(dev, amp):
                features = (
                    model.image_extractor.trunk_features(batch.images) if uses_images else None  # type: ignore[attr-defined]
                )
                out = model(None, batch.tags, batch.padding_mask, image_features=features)
            clean_acc.update(out.final.float() >= used, batch.targets, batch.padding_mask)
            if noisy:
                samples = [
                    Sample(
                        item_id=i,
                        image=None,
                        tags=torch.from_numpy(noisy[i].tags),
                        targets=torch.from_numpy(noisy[i].targets),
                        outliers=torch.from_numpy(noisy[i].outliers),
                    )
                    for i in batch.item_ids
                ]
                nb = pad_samples(samples, vocabulary.padding_index).to(dev)
                with autocast(dev, amp):
                    out_n = model(None, nb.tags, nb.padding_mask, image_features=features)
                noisy_acc.update(
                    out_n.final.float() >= used, nb.targets, nb.padding_mask, nb.outliers
                )
    return EvaluationResult(
        metrics=clean_acc.compute(),
        threshold=used,
        outliers=outliers,
        outlier_metrics=noisy_acc.compute() if noisy else None,
        skipped=skipped,
        report=report,
    )
