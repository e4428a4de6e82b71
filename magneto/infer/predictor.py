"""Inference from one checkpoint: load once, score items one by one or in batches.

Unknown tags (not in the model's vocabulary) are returned with ``known=False`` and no score;
they are never silently dropped. Duplicated tags (same after normalisation) are merged, the
first spelling kept. The decision: a known tag is kept when its score reaches the threshold;
``top_k`` then caps how many are kept (highest scores first) and ``min_keep`` tops the kept
set up with the highest-scoring remaining tags.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
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
from magneto.infer.decisions import Prediction, TagScore, decide
from magneto.infer.requests import (
    ItemFailure,
    ItemPreparer,
    PredictionError,
    PredictRequest,
    PreparedItem,
    collate,
    failure_kind,
)
from magneto.infer.runtimes import Calibration, choose_runtime
from magneto.infer.runtimes.trunks import model_amp
from magneto.model.forward import forward

log = logging.getLogger("magneto.runtime")

__all__ = [
    "ItemFailure",
    "PredictRequest",
    "Prediction",
    "PredictionError",
    "Predictor",
    "PreparedItem",
    "TagScore",
]


class Predictor:
    """Scores tags of images with one trained model."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        *,
        device: str | torch.device = "auto",
        runtime: str = "auto",
        calibration: Calibration | None = None,
        batch_size: int = 32,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        """``runtime``: how the image trunk runs (:mod:`magneto.infer.runtimes`); ``auto``
        measures the candidates on ``batch_size`` items, the batch size this predictor will
        mostly see. ``calibration``: images for the int8 runtime (needed once per trunk)."""
        self.checkpoint = checkpoint
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.vocabulary: Vocabulary = checkpoint.vocabulary
        self.threshold = checkpoint.threshold
        self.input_size = checkpoint.input_size
        self.max_pixels = max_pixels
        self.model = model_from_checkpoint(checkpoint, self.device, amp="off")
        self.uses_images = self.model.uses_images
        self.preparer = ItemPreparer.for_checkpoint(checkpoint, max_pixels=max_pixels)
        self.trunk, self.runtime = choose_runtime(
            self.model,
            device=self.device,
            requested=runtime,
            input_size=self.input_size,
            threshold=self.threshold,
            batch_size=batch_size,
            calibration=calibration,
            max_pixels=max_pixels,
        )
        log.info("%s", self.runtime.describe())
        self.amp = model_amp(self.runtime.name, self.device)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        *,
        device: str | torch.device = "auto",
        runtime: str = "auto",
        calibration: Calibration | None = None,
        batch_size: int = 32,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> Predictor:
        return cls(
            load_checkpoint(path),
            device=device,
            runtime=runtime,
            calibration=calibration,
            batch_size=batch_size,
            max_pixels=max_pixels,
        )

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
            "runtime": self.runtime.as_dict(),
        }

    def prepare(self, request: PredictRequest) -> PreparedItem:
        """Decode the image and look up the tags (CPU only); raises for unscorable requests."""
        return self.preparer.prepare(request)

    # -- scoring -------------------------------------------------------------------------------
    def run(self, batch: Batch, explain: bool = False) -> dict[str, np.ndarray]:
        """The model on a collated batch: ``final`` scores and, as the model has them, the gate
        ``alpha``; with ``explain`` also the ``tag`` and ``image`` stream scores and the
        ``attention`` over the region grid (``(B, L, H, W)``). ``(B, L)`` float32 arrays."""
        with torch.inference_mode():
            batch = batch.to(self.device, non_blocking=True)
            if self.trunk is not None and batch.features is None:
                batch = replace(batch, features=self.trunk(batch.images).to(self.device))
            out = forward(self.model, batch, self.device, self.amp, explain=explain)
        fields = {"final": out.final, "alpha": out.alpha}
        if explain:
            fields.update(tag=out.tag, image=out.image, attention=out.attention)
        return {k: v.float().cpu().numpy() for k, v in fields.items() if v is not None}

    def score_prepared(
        self, items: Sequence[PreparedItem], batch: Batch | None = None
    ) -> list[Prediction]:
        """One forward pass for all items that have a known tag (explained when any item asks
        for it; the others' answers are the same either way).

        ``batch``: ``collate(items)`` done already (e.g. in a DataLoader worker).
        """
        started = time.perf_counter()
        if batch is None:
            batch, runnable = collate(items, self.vocabulary.padding_index)
        else:
            runnable = [i for i, item in enumerate(items) if item.known]
        outputs: dict[int, dict[str, np.ndarray]] = {}
        if batch is not None:
            explain = any(it.request.explain for it in items)
            arrays = self.run(batch, explain=True) if explain else self.run(batch)
            for row, i in enumerate(runnable):
                n = len(items[i].known)
                outputs[i] = {name: array[row, :n] for name, array in arrays.items()}
        elapsed = time.perf_counter() - started
        return [self._decide(it, outputs.get(i), elapsed) for i, it in enumerate(items)]

    def _decide(
        self, item: PreparedItem, output: dict[str, np.ndarray] | None, seconds: float
    ) -> Prediction:
        request = item.request
        threshold = self.threshold if request.threshold is None else request.threshold
        per_tag: dict[str, list[Any]] = {
            name: [None] * len(item.texts) for name in ("final", "alpha", "tag", "image")
        }
        attention: list[Any] = [None] * len(item.texts)
        grid = None
        if output is not None:
            known_positions = [p for p, x in enumerate(item.indices) if x is not None]
            for k, pos in enumerate(known_positions):
                for name, values in per_tag.items():
                    if name in output:
                        values[pos] = float(output[name][k])
                if "attention" in output:
                    attention[pos] = np.round(output["attention"][k].astype(np.float64), 4).tolist()
            if "attention" in output:
                grid = tuple(output["attention"].shape[1:3])
        reasons = decide(per_tag["final"], threshold, request.top_k, request.min_keep)
        tags = [
            TagScore(
                tag=text,
                score=per_tag["final"][p],
                kept=reasons[p].startswith("kept"),
                alpha=per_tag["alpha"][p],
                known=item.indices[p] is not None,
                reason=reasons[p],
                tag_score=per_tag["tag"][p],
                image_score=per_tag["image"][p],
                attention=attention[p],
            )
            for p, text in enumerate(item.texts)
        ]
        return Prediction(tags=tags, threshold=threshold, seconds=seconds, grid=grid)

    def predict(
        self,
        image: Any,
        tags: Sequence[str],
        *,
        threshold: float | None = None,
        top_k: int | None = None,
        min_keep: int | None = None,
        explain: bool = False,
    ) -> Prediction:
        """Score one image's tags; ``explain`` adds each tag's stream scores and attention."""
        request = PredictRequest(image, tags, threshold, top_k, min_keep, explain=explain)
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
