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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from magneto.checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint
from magneto.dataset import Sample, pad_samples
from magneto.errors import MagnetoError
from magneto.images import DEFAULT_MAX_PIXELS, ImageSource, decode_image, make_transform
from magneto.loop import forward
from magneto.runtime import resolve_device
from magneto.vocabulary import Vocabulary, dedupe_tags


class PredictionError(MagnetoError):
    """A request the model cannot answer (no tags, no image where one is needed, bad option)."""


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


@dataclass
class PredictRequest:
    image: ImageSource | Image.Image | np.ndarray | None
    tags: Sequence[str]
    threshold: float | None = None
    top_k: int | None = None
    min_keep: int | None = None


@dataclass
class PreparedItem:
    """A request after decoding and tag lookup: what the model needs, ready to batch."""

    request: PredictRequest
    texts: list[str]
    indices: list[int | None]
    image: torch.Tensor | None
    extra: dict[str, Any] = field(default_factory=dict)


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
        self.model = model_from_checkpoint(checkpoint, self.device)
        self.uses_images = self.model.uses_images
        self.transform = make_transform(self.input_size, train=False)

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

    # -- preparation (CPU: decode, transform, look up) -----------------------------------------
    def _image_tensor(self, image: Any) -> torch.Tensor:
        if isinstance(image, Image.Image):
            array = np.asarray(image.convert("RGB"))
        elif isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise PredictionError("an image array must be (H, W, 3) uint8 RGB")
            array = image
        else:
            array = decode_image(image, max_pixels=self.max_pixels, min_side=self.input_size)
        return self.transform(array)

    def prepare(self, request: PredictRequest) -> PreparedItem:
        """Decode the image and look up the tags; raises for requests that cannot be scored."""
        _check_options(request)
        tags = dedupe_tags(request.tags)
        if not tags:
            raise PredictionError("no tags given")
        indices = [self.vocabulary.get(t.key) for t in tags]
        image = None
        if self.uses_images:
            if request.image is None:
                raise PredictionError("this model needs an image")
            image = self._image_tensor(request.image)
        return PreparedItem(request, [t.text for t in tags], indices, image)

    # -- scoring -------------------------------------------------------------------------------
    def score_prepared(self, items: Sequence[PreparedItem]) -> list[Prediction]:
        """One forward pass for all items that have a known tag."""
        started = time.perf_counter()
        runnable = [i for i, it in enumerate(items) if any(x is not None for x in it.indices)]
        outputs: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
        if runnable:
            samples = [
                Sample(
                    item_id=str(i),
                    image=items[i].image,
                    tags=torch.tensor([x for x in items[i].indices if x is not None]),
                    targets=None,
                )
                for i in runnable
            ]
            batch = pad_samples(samples, self.vocabulary.padding_index).to(self.device)
            with torch.inference_mode():
                out = forward(self.model, batch, self.device, self.amp)
            final = out.final.float().cpu().numpy()
            alpha = out.alpha.float().cpu().numpy() if out.alpha is not None else None
            for row, i in enumerate(runnable):
                n = len(samples[row].tags)
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
        ranked = sorted(
            (p for p, s in enumerate(scores) if s is not None), key=lambda p: -scores[p]
        )  # type: ignore[operator]
        kept = {p for p in ranked if scores[p] >= threshold}  # type: ignore[operator]
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
        self, items: Sequence[PredictRequest | tuple[Any, Sequence[str]]]
    ) -> list[Prediction]:
        requests = [it if isinstance(it, PredictRequest) else PredictRequest(*it) for it in items]
        return self.score_prepared([self.prepare(r) for r in requests])


def _check_options(request: PredictRequest) -> None:
    if request.threshold is not None and not 0.0 <= request.threshold <= 1.0:
        raise PredictionError("threshold must be between 0 and 1")
    if request.top_k is not None and request.top_k < 1:
        raise PredictionError("top_k must be at least 1")
    if request.min_keep is not None and request.min_keep < 0:
        raise PredictionError("min_keep must be 0 or more")
