"""Requests into model inputs: decode the image, look the tags up, pad a batch.

This is the CPU half of inference and needs no model, so it runs wherever decoding is
cheapest: the service's decode threads, DataLoader workers of the bulk job, Ray tasks. A
request that cannot be scored fails alone, with a ``kind`` that names the problem.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from magneto.data.dataset import Batch, Sample, pad_samples
from magneto.data.images import (
    DEFAULT_MAX_PIXELS,
    ImageSource,
    check_image_size,
    decode_image,
    image_size,
    make_transform,
)
from magneto.data.vocabulary import Vocabulary, dedupe_tags
from magneto.errors import (
    ImageAspectError,
    ImageError,
    ImageNotFoundError,
    ImageTooLargeError,
    MagnetoError,
)
from magneto.infer.checkpoint import Checkpoint


class PredictionError(MagnetoError):
    """A request the model cannot answer (no tags, no image where one is needed, bad option)."""

    def __init__(self, message: str, kind: str = "invalid_request") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class PredictRequest:
    image: ImageSource | Image.Image | np.ndarray | None
    tags: Sequence[str]
    threshold: float | None = None
    top_k: int | None = None
    min_keep: int | None = None
    item_id: str | None = None
    explain: bool = False  # also the stream scores, the reason and the attention grid


@dataclass
class PreparedItem:
    """A request after decoding and tag lookup: what the model needs, ready to batch."""

    request: PredictRequest
    texts: list[str]  # the tags as the user spelled them, duplicates merged
    indices: list[int | None]  # vocabulary index per tag; None for unknown tags
    image: torch.Tensor | None

    @property
    def known(self) -> list[int]:
        return [x for x in self.indices if x is not None]


@dataclass(frozen=True)
class ItemFailure:
    """Why one item of a batch could not be scored; the others were."""

    index: int
    item_id: str | None
    kind: str  # missing_image, bad_image, image_too_large, no_tags, invalid_request, ...
    message: str

    def __str__(self) -> str:
        named = f" ({self.item_id})" if self.item_id is not None else ""
        return f"item {self.index}{named}: {self.message}"


def failure_kind(exc: Exception) -> str:
    """The error kind of an exception raised while preparing an item."""
    if isinstance(exc, ImageTooLargeError):
        return "image_too_large"
    if isinstance(exc, ImageAspectError):
        return "image_aspect_ratio"
    if isinstance(exc, ImageNotFoundError):
        return "missing_image"
    if isinstance(exc, ImageError):
        return "bad_image"
    if isinstance(exc, PredictionError):
        return exc.kind
    return "invalid_request"


class ItemPreparer:
    """Decodes and looks up requests for one model (its vocabulary, input size, image need)."""

    def __init__(
        self,
        vocabulary: Vocabulary,
        *,
        input_size: int,
        uses_images: bool,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.vocabulary = vocabulary
        self.input_size = input_size
        self.uses_images = uses_images
        self.max_pixels = max_pixels
        self.transform = make_transform(input_size, train=False)

    @classmethod
    def for_checkpoint(
        cls, checkpoint: Checkpoint, *, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> ItemPreparer:
        """The preparer of the model a checkpoint holds (its vocabulary, input size, images)."""
        return cls(
            checkpoint.vocabulary,
            input_size=checkpoint.input_size,
            uses_images=checkpoint.model_config.uses_images,
            max_pixels=max_pixels,
        )

    def image_tensor(self, image: Any) -> torch.Tensor:
        if isinstance(image, Image.Image):
            check_image_size(image.width, image.height, self.max_pixels)
            array = np.asarray(image.convert("RGB"))
        elif isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise PredictionError("an image array must be (H, W, 3) uint8 RGB")
            check_image_size(image.shape[1], image.shape[0], self.max_pixels)
            array = image
        else:
            array = decode_image(image, max_pixels=self.max_pixels, min_side=self.input_size)
        return self.transform(array)

    def prepare(self, request: PredictRequest) -> PreparedItem:
        """Decode the image and look up the tags; raises for requests that cannot be scored."""
        check_options(request)
        tags = dedupe_tags(request.tags)
        if not tags:
            raise PredictionError("no tags given", "no_tags")
        indices = [self.vocabulary.get(t.key) for t in tags]
        image = None
        if self.uses_images:
            if request.image is None:
                raise PredictionError("this model needs an image", "missing_image")
            image = self.image_tensor(request.image)
        return PreparedItem(request, [t.text for t in tags], indices, image)


def header_pixels(image: ImageSource | Image.Image | np.ndarray | None) -> int:
    """Pixels the image will decode to, read from its header without decoding it.

    What a caller can cap before paying for any decode; 0 for no image and for one whose
    header cannot be read (decoding it will then fail on its own, cheaply).
    """
    if image is None:
        return 0
    if isinstance(image, Image.Image):
        return image.width * image.height
    if isinstance(image, np.ndarray):
        return int(np.prod(image.shape[:2])) if image.ndim >= 2 else 0
    size = image_size(image)
    return size[0] * size[1] if size is not None else 0


def collate(items: Sequence[PreparedItem], padding_index: int) -> tuple[Batch | None, list[int]]:
    """One padded batch of the items that have a known tag, and their positions in ``items``."""
    runnable = [i for i, item in enumerate(items) if item.known]
    if not runnable:
        return None, []
    samples = [
        Sample(
            item_id=str(i),
            image=items[i].image,
            tags=torch.tensor(items[i].known, dtype=torch.long),
            targets=None,
        )
        for i in runnable
    ]
    return pad_samples(samples, padding_index), runnable


def check_options(request: PredictRequest) -> None:
    if request.threshold is not None and not 0.0 <= request.threshold <= 1.0:
        raise PredictionError("threshold must be between 0 and 1", "invalid_option")
    if request.top_k is not None and request.top_k < 1:
        raise PredictionError("top_k must be at least 1", "invalid_option")
    if request.min_keep is not None and request.min_keep < 0:
        raise PredictionError("min_keep must be 0 or more", "invalid_option")
