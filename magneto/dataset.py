"""Datasets of (image, tags, targets) and the batch collator.

Items are encoded against the vocabulary once (unknown tags are counted and reported, never a
crash). Batches are padded only to their longest item and carry a PyTorch-style
``padding_mask`` (True where a position is padding). Images that are missing or fail to decode
are reported by item id and, under the ``skip`` policy, left out of the batch; no other item is
ever put in their place.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from magneto.annotations import Annotation
from magneto.augment import add_outliers
from magneto.errors import ImageError
from magneto.images import DEFAULT_MAX_PIXELS, decode_hint, decode_image, make_transform
from magneto.vocabulary import Vocabulary

if TYPE_CHECKING:
    from magneto.features import CombinedFeatures, FeatureStore

log = logging.getLogger(__name__)

BadImagePolicy = Literal["skip", "fail"]
TagTransform = Callable[[list[int], list[int], np.random.Generator], tuple[list[int], list[int]]]


@dataclass(frozen=True)
class EncodedItem:
    """An item with its tags as vocabulary indices."""

    item_id: str
    tags: np.ndarray  # int64 (n,)
    targets: np.ndarray | None  # float32 (n,), 1 = important
    image: str  # path relative to the image directory
    outliers: np.ndarray | None = None  # bool (n,), True for tags added as outliers
    origin: str | None = None  # "FILE:LINE" of the annotation, for messages


@dataclass
class DataReport:
    """What was left out while building a dataset, for the user to see."""

    unknown_tags: Counter = field(default_factory=Counter)
    items_without_known_tags: list[str] = field(default_factory=list)
    missing_images: list[str] = field(default_factory=list)

    def lines(self, max_ids: int = 10) -> list[str]:
        out: list[str] = []
        if self.unknown_tags:
            common = ", ".join(f"{t!r} x{n}" for t, n in self.unknown_tags.most_common(5))
            out.append(
                f"{sum(self.unknown_tags.values())} unknown tag occurrences "
                f"({len(self.unknown_tags)} distinct) were ignored; most common: {common}"
            )
        if self.items_without_known_tags:
            out.append(
                f"{len(self.items_without_known_tags)} items had no known tag and were skipped: "
                + _ids(self.items_without_known_tags, max_ids)
            )
        if self.missing_images:
            out.append(
                f"{len(self.missing_images)} items have no image file and were skipped: "
                + _ids(self.missing_images, max_ids)
            )
        return out


def _ids(ids: Sequence[str], limit: int) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f", ... ({len(ids) - limit} more)" if len(ids) > limit else "")


def encode_annotations(
    records: Sequence[Annotation], vocabulary: Vocabulary, report: DataReport | None = None
) -> tuple[list[EncodedItem], DataReport]:
    """Map tags to indices; tags the vocabulary lacks are dropped with their labels and reported."""
    report = report or DataReport()
    items: list[EncodedItem] = []
    for record in records:
        indices: list[int] = []
        targets: list[float] = []
        for pos, tag in enumerate(record.tags):
            idx = vocabulary.get(tag)
            if idx is None:
                report.unknown_tags[tag] += 1
                continue
            indices.append(idx)
            if record.labels is not None:
                targets.append(float(record.labels[pos]))
        if not indices:
            report.items_without_known_tags.append(record.item_id)
            continue
        items.append(
            EncodedItem(
                item_id=record.item_id,
                tags=np.asarray(indices, dtype=np.int64),
                targets=np.asarray(targets, dtype=np.float32)
                if record.labels is not None
                else None,
                image=record.image_path,
                origin=record.origin,
            )
        )
    return items, report


def with_outliers(
    items: Sequence[EncodedItem], k: int, vocab_size: int, seed: int
) -> list[EncodedItem]:
    """Add ``k`` random absent vocabulary tags (target 0) to every item, flagged as outliers."""
    rng = np.random.default_rng(seed)
    out: list[EncodedItem] = []
    for item in items:
        tags, flags = add_outliers(item.tags.tolist(), k, vocab_size, rng)
        targets = None
        if item.targets is not None:
            targets = np.concatenate(
                [item.targets, np.zeros(len(tags) - len(item.tags), np.float32)]
            )
        out.append(
            replace(
                item,
                tags=np.asarray(tags, dtype=np.int64),
                targets=targets,
                outliers=np.asarray(flags, dtype=bool),
            )
        )
    return out


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
    """Images (or cached backbone features, or nothing) and tags of encoded items.

    ``features``: serve cached feature maps instead of decoding images. ``load_images=False``:
    serve tags only, for the tag-only baselines. ``tag_transform`` (e.g. TAD) and image
    augmentation draw from a generator seeded by (seed, epoch, index) only.
    """

    def __init__(
        self,
        items: Sequence[EncodedItem],
        image_root: str | Path,
        *,
        input_size: int = 112,
        train: bool = False,
        augment_images: bool | None = None,
        tag_transform: TagTransform | None = None,
        on_bad_image: BadImagePolicy = "skip",
        max_pixels: int = DEFAULT_MAX_PIXELS,
        seed: int = 0,
        report: DataReport | None = None,
        check_files: bool = True,
        features: FeatureStore | CombinedFeatures | None = None,
        load_images: bool = True,
    ) -> None:
        if on_bad_image not in ("skip", "fail"):
            raise ValueError(f"on_bad_image must be 'skip' or 'fail', not {on_bad_image!r}")
        self.image_root = Path(image_root)
        self.report = report or DataReport()
        self.on_bad_image = on_bad_image
        items = list(items)
        self.features = features
        self.load_images = load_images and features is None
        if features is not None:
            # Mirror the image path: missing files go now, undecodable images in their batch.
            unknown = [
                it.item_id
                for it in items
                if it.item_id not in features.rows
                and it.item_id not in features.bad
                and it.item_id not in features.missing
            ]
            if unknown:
                raise ValueError(
                    f"{len(unknown)} items are not in the feature cache: {_ids(unknown, 5)}"
                )
            items = self._drop_missing(items, features.missing)
        elif self.load_images and check_files:
            if not self.image_root.is_dir():
                raise ImageError(f"image directory not found: {self.image_root}")
            absent = {it.item_id for it in items if not (self.image_root / it.image).is_file()}
            items = self._drop_missing(items, absent)
        self.items = items
        self.input_size = input_size
        self.augment_images = train if augment_images is None else augment_images
        self.transform = make_transform(input_size, train=self.augment_images)
        self.min_side = decode_hint(input_size, train=self.augment_images)
        self.tag_transform = tag_transform
        self.max_pixels = max_pixels
        self.seed = seed
        self.epoch = 0

    def _drop_missing(self, items: list[EncodedItem], missing: set[str]) -> list[EncodedItem]:
        """Stop at the first missing image (``fail``) or leave them out and report (``skip``)."""
        absent = [it for it in items if it.item_id in missing]
        if not absent:
            return items
        ids = [it.item_id for it in absent]
        if self.on_bad_image == "fail":
            first = absent[0]
            where = f"{first.origin}: " if first.origin else ""
            raise ImageError(
                f"{where}item {first.item_id}: image {first.image} not found under "
                f"{self.image_root} ({len(ids)} missing in all: {_ids(ids, 10)})",
                item_id=first.item_id,
            )
        self.report.missing_images.extend(ids)
        log.warning("%d items have no image file and are skipped: %s", len(ids), _ids(ids, 10))
        return [it for it in items if it.item_id not in missing]

    def set_epoch(self, epoch: int) -> None:
        """Tag augmentation draws depend on (seed, epoch, index) only: reproducible, resumable."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def load_image(self, item: EncodedItem, seed: int | None = None) -> torch.Tensor:
        array = decode_image(
            self.image_root / item.image, max_pixels=self.max_pixels, min_side=self.min_side
        )
        return self.transform(array, seed)

    def __getitem__(self, index: int) -> Sample:
        item = self.items[index]
        tags = item.tags.tolist()
        targets = item.targets.tolist() if item.targets is not None else None
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.tag_transform is not None:
            tags, targets = self.tag_transform(tags, targets if targets is not None else [], rng)
        sample = Sample(
            item_id=item.item_id,
            image=None,
            tags=torch.tensor(tags, dtype=torch.long),
            targets=torch.tensor(targets, dtype=torch.float32) if targets is not None else None,
            outliers=torch.from_numpy(item.outliers) if item.outliers is not None else None,
        )
        if self.features is not None:
            reason = self.features.bad.get(item.item_id)
            if reason is None:
                sample.features = self.features.get(item.item_id)
            elif self.on_bad_image == "fail":
                raise ImageError(f"item {item.item_id}: {reason}", item_id=item.item_id)
            else:
                sample.error = reason
            return sample
        if not self.load_images:
            return sample
        try:
            sample.image = self.load_image(item, int(rng.integers(2**31)))
        except ImageError as exc:
            if self.on_bad_image == "fail":
                raise ImageError(f"item {item.item_id}: {exc}", item_id=item.item_id) from None
            sample.error = str(exc)
        return sample


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
            images=apply(self.images),
            tags=apply(self.tags),
            padding_mask=apply(self.padding_mask),
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
                skipped=skipped,  # type: ignore[arg-type]
            )
        return pad_samples(good, self.padding_index, skipped)  # type: ignore[arg-type]


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
