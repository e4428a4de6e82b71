"""The dataset of (image input, tags, targets) and the batch collator.

An item's tags are transformed (e.g. by TAD) with a generator seeded by (seed, epoch, index)
only, so draws do not depend on worker processes or on where a run resumed. What is served
beside the tags is the dataset's :class:`~magneto.data.image_inputs.ImageInput`: decoded images,
cached backbone features, or nothing. Batches are padded only to their longest item and carry
a PyTorch-style ``padding_mask`` (True where a position is padding); items whose image could
not be used are reported by id and left out of the batch, never replaced by another item.

The item encoding (:mod:`magneto.data.items`) and the image inputs
(:mod:`magneto.data.image_inputs`) live in their own modules; the names callers need are re-exported
here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch.utils.data import Dataset

from magneto.data.image_inputs import (
    BadImagePolicy,
    CachedFeatures,
    DecodedImages,
    ImageInput,
    NoImages,
)
from magneto.data.items import DataReport, EncodedItem, encode_annotations, with_outliers

__all__ = [
    "BadImagePolicy",
    "Batch",
    "CachedFeatures",
    "Collator",
    "DataReport",
    "DecodedImages",
    "EncodedItem",
    "ImageInput",
    "NoImages",
    "Sample",
    "TagImageDataset",
    "TagTransform",
    "encode_annotations",
    "pad_samples",
    "with_outliers",
    "worker_init",
]

TagTransform = Callable[[list[int], list[int], np.random.Generator], tuple[list[int], list[int]]]


@dataclass
class Sample:
    """One loaded item, before batching."""

    item_id: str
    image: torch.Tensor | None
    tags: torch.Tensor
    targets: torch.Tensor | None
    outliers: torch.Tensor | None = None
    features: torch.Tensor | None = None  # cached backbone feature map, instead of the image
    error: str | None = None  # set when the image could not be used (skip policy)


class TagImageDataset(Dataset):
    """Encoded items' tags, with what ``image_input`` serves beside them.

    ``image_input``: :class:`DecodedImages`, :class:`CachedFeatures` or :class:`NoImages`.
    Items it cannot serve (missing image files) are left out here and listed in ``report``,
    or raise, per its ``on_bad_image`` policy. ``tag_transform`` (e.g. TAD) and image
    augmentation draw from a generator seeded by (seed, epoch, index) only.
    """

    def __init__(
        self,
        items: Sequence[EncodedItem],
        image_input: ImageInput,
        *,
        tag_transform: TagTransform | None = None,
        seed: int = 0,
        report: DataReport | None = None,
    ) -> None:
        self.image_input = image_input
        self.report = report or DataReport()
        self.items = image_input.usable(list(items), self.report)
        self.tag_transform = tag_transform
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Tag augmentation draws depend on (seed, epoch, index) only: reproducible, resumable."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Sample:
        item = self.items[index]
        tags = item.tags.tolist()
        targets = item.targets.tolist() if item.targets is not None else None
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.tag_transform is not None:
            tags, targets = self.tag_transform(tags, targets if targets is not None else [], rng)
        image, features, error = self.image_input.load(item, rng)
        return Sample(
            item_id=item.item_id,
            image=image,
            tags=torch.tensor(tags, dtype=torch.long),
            targets=torch.tensor(targets, dtype=torch.float32) if targets is not None else None,
            outliers=torch.from_numpy(item.outliers) if item.outliers is not None else None,
            features=features,
            error=error,
        )


@dataclass
class Batch:
    """A padded batch. ``padding_mask`` is True at padding, as in PyTorch attention modules."""

    item_ids: list[str]
    images: torch.Tensor
    tags: torch.Tensor  # long (B, L)
    padding_mask: torch.Tensor  # bool (B, L)
    targets: torch.Tensor | None  # float (B, L), 0 at padding
    outliers: torch.Tensor | None = None  # bool (B, L)
    features: torch.Tensor | None = None  # cached backbone feature maps (B, C, H, W)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (item_id, reason)

    def __len__(self) -> int:
        return len(self.item_ids)

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
        def apply(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else fn(t)

        return replace(
            self,
            images=fn(self.images),
            tags=fn(self.tags),
            padding_mask=fn(self.padding_mask),
            targets=apply(self.targets),
            outliers=apply(self.outliers),
            features=apply(self.features),
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Batch:
        """Called by DataLoader(pin_memory=True) so that host-to-GPU copies can overlap."""
        return self._map(lambda t: t.pin_memory())


class Collator:
    """Pads a list of samples to the longest one; drops samples whose image failed."""

    def __init__(self, padding_index: int) -> None:
        self.padding_index = padding_index

    def __call__(self, samples: Sequence[Sample]) -> Batch:
        skipped = [(s.item_id, s.error) for s in samples if s.error is not None]
        good = [s for s in samples if s.error is None]
        if not good:
            return Batch(
                item_ids=[],
                images=torch.empty(0),
                tags=torch.empty(0, 0, dtype=torch.long),
                padding_mask=torch.empty(0, 0, dtype=torch.bool),
                targets=None,
                skipped=skipped,
            )
        return pad_samples(good, self.padding_index, skipped)


def pad_samples(
    samples: Sequence[Sample], padding_index: int, skipped: list[tuple[str, str]] | None = None
) -> Batch:
    """Stack samples into a batch padded to the longest tag list."""
    length = max(len(s.tags) for s in samples)
    size = len(samples)
    tags = torch.full((size, length), padding_index, dtype=torch.long)
    padding_mask = torch.ones((size, length), dtype=torch.bool)
    has_targets = samples[0].targets is not None
    targets = torch.zeros((size, length), dtype=torch.float32) if has_targets else None
    has_outliers = samples[0].outliers is not None
    outliers = torch.zeros((size, length), dtype=torch.bool) if has_outliers else None
    for row, sample in enumerate(samples):
        n = len(sample.tags)
        tags[row, :n] = sample.tags
        padding_mask[row, :n] = False
        if targets is not None and sample.targets is not None:
            targets[row, :n] = sample.targets
        if outliers is not None and sample.outliers is not None:
            outliers[row, :n] = sample.outliers
    has_images = samples[0].image is not None
    images = torch.stack([s.image for s in samples]) if has_images else torch.empty(0)  # type: ignore[misc]
    has_features = samples[0].features is not None
    features = torch.stack([s.features for s in samples]) if has_features else None  # type: ignore[misc]
    return Batch(
        item_ids=[s.item_id for s in samples],
        images=images,
        tags=tags,
        padding_mask=padding_mask,
        targets=targets,
        outliers=outliers,
        features=features,
        skipped=skipped or [],
    )


def worker_init(_: int) -> None:
    """DataLoader workers: one thread each, or the workers fight the trainer for the cores."""
    import cv2

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
