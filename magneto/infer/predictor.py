"""Inference from one checkpoint: load once, score items one by one or in batches.

Unknown tags (not in the model's vocabulary) are returned with ``known=False`` and no score;
they are never silently dropped. Duplicated tags (same after normalisation) are merged, the
first spelling kept. The decision: a known tag is kept when its score reaches the threshold;
``top_k`` then caps how many are kept (highest scores first) and ``min_keep`` tops the kept
set up with the highest-scoring remaining tags.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from magneto.data.dataset import Batch
from magneto.data.images import DEFAULT_MAX_PIXELS
from magneto.data.vocabulary import Vocabulary
from magneto.devices import resolve_device
from magneto.errors import ImageError
from magneto.infer.checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint
from magneto.infer.requests import (
    ItemFailure,
    ItemPreparer,
    PredictionError,
    PredictRequest,
    PreparedItem,
    collate,
    failure_kind,
)
from magneto.model.forward import forward

__all__ = [
    "ItemFailure",
    "PredictRequest",
    "Prediction",
    "PredictionError",
    "Predictor",
    "PreparedItem",
    "TagScore",
]


@dataclass(frozen=True)
class TagScore:
    tag: str  # the user's spelling
    score: float | None  # None for unknown tags
    kept: bool
    alpha: float | None  # gate: weight of the image stream (MAGNeto only)
    known: bool


@dataclass
class Prediction:
    tags: list[TagScore]
    threshold: float
    seconds: float = 0.0

    @property
    def kept_tags(self) -> list[str]:
        return [t.tag for t in self.tags if t.kept]

    @property
    def unknown_tags(self) -> list[str]:
        return [t.tag for t in self.tags if not t.known]

    def as_dict(self) -> dict[str, Any]:
        return {
            "kept_tags": self.kept_tags,
            "tags": [t.__dict__ for t in self.tags],
            "unknown_tags": self.unknown_tags,
            "threshold": self.threshold,
        }


class Predictor:
    """Scores tags of images with one trained model."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        *,
        device: str | torch.device = "auto",
        amp: str = "auto",
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.checkpoint = checkpoint
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.amp = amp
        self.vocabulary: Vocabulary = checkpoint.vocabulary
        self.threshold = checkpoint.threshold
        self.input_size = checkpoint.input_size
        self.max_pixels = max_pixels
        self.model = model_from_checkpoint(checkpoint, self.device, amp)
        self.uses_images = self.model.uses_images
        self.preparer = ItemPreparer.for_checkpoint(checkpoint, max_pixels=max_pixels)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        *,
        device: str | torch.device = "auto",
        amp: str = "auto",
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> Predictor:
        return cls(load_checkpoint(path), device=device, amp=amp, max_pixels=max_pixels)

    @property
    def info(self) -> dict[str, Any]:
        config = self.checkpoint.model_config
        return {
            "architecture": config.architecture,
            "backbone": config.backbone,
            "vocabulary_size": len(self.vocabulary),
            "threshold": self.threshold,
            "input_size": self.input_size,
            "uses_images": self.uses_images,
            "stage": self.checkpoint.stage,
            "metrics": self.checkpoint.metrics,
        }

    def prepare(self, request: PredictRequest) -> PreparedItem:
        """Decode the image and look up the tags (CPU only); raises for unscorable requests."""
        return self.preparer.prepare(request)

    # -- scoring -------------------------------------------------------------------------------
    def run(self, batch: Batch) -> tuple[np.ndarray, np.ndarray | None]:
        """The model on a collated batch: final scores and gate, ``(B, L)`` float32 arrays."""
        with torch.inference_mode():
            out = forward(
                self.model, batch.to(self.device, non_blocking=True), self.device, self.amp
            )
        alpha = out.alpha.float().cpu().numpy() if out.alpha is not None else None
        return out.final.float().cpu().numpy(), alpha

    def score_prepared(
        self, items: Sequence[PreparedItem], batch: Batch | None = None
    ) -> list[Prediction]:
        """One forward pass for all items that have a known tag.

        ``batch``: ``collate(items)`` done already (e.g. in a DataLoader worker).
        """
        started = time.perf_counter()
        if batch is None:
            batch, runnable = collate(items, self.vocabulary.padding_index)
        else:
            runnable = [i for i, item in enumerate(items) if item.known]
        outputs: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
        if batch is not None:
            final, alpha = self.run(batch)
            for row, i in enumerate(runnable):
                n = len(items[i].known)
                outputs[i] = (final[row, :n], alpha[row, :n] if alpha is not None else None)
        elapsed = time.perf_counter() - started
        return [self._decide(it, outputs.get(i), elapsed) for i, it in enumerate(items)]

    def _decide(
        self,
        item: PreparedItem,
        output: tuple[np.ndarray, np.ndarray | None] | None,
        seconds: float,
    ) -> Prediction:
        request = item.request
        threshold = self.threshold if request.threshold is None else request.threshold
        scores: list[float | None] = [None] * len(item.texts)
        alphas: list[float | None] = [None] * len(item.texts)
        if output is not None:
            known_positions = [p for p, x in enumerate(item.indices) if x is not None]
            for k, pos in enumerate(known_positions):
                scores[pos] = float(output[0][k])
                alphas[pos] = float(output[1][k]) if output[1] is not None else None
        known = {p: s for p, s in enumerate(scores) if s is not None}
        ranked = sorted(known, key=lambda p: -known[p])
        kept = {p for p in ranked if known[p] >= threshold}
        if request.top_k is not None and len(kept) > request.top_k:
            kept = set([p for p in ranked if p in kept][: request.top_k])
        if request.min_keep:
            for p in ranked:
                if len(kept) >= request.min_keep:
                    break
                kept.add(p)
        tags = [
            TagScore(
                tag=text,
                score=scores[p],
                kept=p in kept,
                alpha=alphas[p],
                known=item.indices[p] is not None,
            )
            for p, text in enumerate(item.texts)
        ]
        return Prediction(tags=tags, threshold=threshold, seconds=seconds)

    def predict(
        self,
        image: Any,
        tags: Sequence[str],
        *,
        threshold: float | None = None,
        top_k: int | None = None,
        min_keep: int | None = None,
    ) -> Prediction:
        request = PredictRequest(image, tags, threshold, top_k, min_keep)
        return self.score_prepared([self.prepare(request)])[0]

    def predict_batch(
        self,
        items: Sequence[PredictRequest | tuple[Any, Sequence[str]]],
        *,
        batch_size: int = 64,
    ) -> list[Prediction | ItemFailure]:
        """Score ``items`` ``batch_size`` at a time; an item that cannot be scored (bad image,
        no tags, ...) gets an :class:`ItemFailure` naming its index and id, the others their
        :class:`Prediction`, in order. Memory is bounded by ``batch_size``, not ``len(items)``.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        requests = [it if isinstance(it, PredictRequest) else PredictRequest(*it) for it in items]
        results: list[Prediction | ItemFailure] = []
        for start in range(0, len(requests), batch_size):
            chunk: list[Prediction | ItemFailure | PreparedItem] = []
            for index, request in enumerate(requests[start : start + batch_size], start):
                try:
                    chunk.append(self.prepare(request))
                except (ImageError, PredictionError) as exc:
                    chunk.append(ItemFailure(index, request.item_id, failure_kind(exc), str(exc)))
            prepared = [c for c in chunk if isinstance(c, PreparedItem)]
            scored = iter(self.score_prepared(prepared))
            results += [next(scored) if isinstance(c, PreparedItem) else c for c in chunk]
        return results
