"""What a dataset serves beside an item's tags: decoded images, cached features, or nothing.

The three modes are separate :class:`ImageInput` classes rather than flags of the dataset, so
each mode's rules stand in one place: which items it can serve at all, and what it returns
for one item. Missing image files are found up front and, per ``on_bad_image``, left out and
reported (``skip``) or stop the run naming the annotation's file and line (``fail``). An image
that fails to decode is found in its batch: under ``skip`` it comes back as an error for the
collator to drop and report, under ``fail`` it raises :class:`ImageError` naming the item. No
other item is ever put in a bad item's place.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch

from magneto.data.feature_store import Features
from magneto.data.images import decode_hint, decode_image, make_transform
from magneto.data.items import DataReport, EncodedItem, short_ids
from magneto.errors import ImageError

log = logging.getLogger(__name__)

BadImagePolicy = Literal["skip", "fail"]


class Loaded(NamedTuple):
    """One item's image input: a decoded image, a cached feature map, or why there is none."""

    image: torch.Tensor | None = None
    features: torch.Tensor | None = None
    error: str | None = None


class ImageInput(ABC):
    """The image side of a dataset."""

    @abstractmethod
    def usable(self, items: list[EncodedItem], report: DataReport) -> list[EncodedItem]:
        """The items this input can serve; the others are reported in ``report`` (or raise)."""

    @abstractmethod
    def load(self, item: EncodedItem, rng: np.random.Generator) -> Loaded:
        """``item``'s input; ``rng`` is the item's (seed, epoch, index) generator."""


class NoImages(ImageInput):
    """Tags only, for the tag-only baselines: no image is read and no item is left out."""

    def usable(self, items: list[EncodedItem], report: DataReport) -> list[EncodedItem]:
        return items

    def load(self, item: EncodedItem, rng: np.random.Generator) -> Loaded:
        return Loaded()


class _ImageFiles(ImageInput):
    """An input that stands for the image files under ``image_root``, and their bad-image policy."""

    def __init__(self, image_root: str | Path, on_bad_image: BadImagePolicy) -> None:
        if on_bad_image not in ("skip", "fail"):
            raise ValueError(f"on_bad_image must be 'skip' or 'fail', not {on_bad_image!r}")
        self.image_root = Path(image_root)
        self.on_bad_image = on_bad_image

    def _drop_missing(
        self, items: list[EncodedItem], missing: set[str], report: DataReport
    ) -> list[EncodedItem]:
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
                f"{self.image_root} ({len(ids)} missing in all: {short_ids(ids, 10)})",
                item_id=first.item_id,
            )
        report.missing_images.extend(ids)
        log.warning("%d items have no image file and are skipped: %s", len(ids), short_ids(ids, 10))
        return [it for it in items if it.item_id not in missing]

    def _bad(self, item: EncodedItem, reason: str) -> Loaded:
        """An image that cannot be used: raise (``fail``) or hand the reason on (``skip``)."""
        if self.on_bad_image == "fail":
            raise ImageError(f"item {item.item_id}: {reason}", item_id=item.item_id) from None
        return Loaded(error=reason)


class DecodedImages(_ImageFiles):
    """Images decoded from ``image_root`` and transformed; randomly augmented if ``augment``."""

    def __init__(
        self,
        image_root: str | Path,
        *,
        input_size: int = 112,
        augment: bool = False,
        on_bad_image: BadImagePolicy = "skip",
    ) -> None:
        super().__init__(image_root, on_bad_image)
        self.transform = make_transform(input_size, train=augment)
        self.min_side = decode_hint(input_size, train=augment)

    def usable(self, items: list[EncodedItem], report: DataReport) -> list[EncodedItem]:
        if not self.image_root.is_dir():
            raise ImageError(f"image directory not found: {self.image_root}")
        absent = {it.item_id for it in items if not (self.image_root / it.image).is_file()}
        return self._drop_missing(items, absent, report)

    def load(self, item: EncodedItem, rng: np.random.Generator) -> Loaded:
        seed = int(rng.integers(2**31))
        try:
            array = decode_image(self.image_root / item.image, min_side=self.min_side)
            return Loaded(image=self.transform(array, seed))
        except ImageError as exc:
            return self._bad(item, str(exc))
        except Exception as exc:  # an image the pipeline chokes on is a bad image, not a crash
            return self._bad(item, f"could not be prepared ({type(exc).__name__}: {exc})")


class CachedFeatures(_ImageFiles):
    """Backbone feature maps read from the cache instead of decoding ``image_root``'s images.

    It mirrors :class:`DecodedImages`: items whose image file was missing when the cache entry
    was built are left out now, those whose image failed to decode in their batch.
    """

    def __init__(
        self, store: Features, image_root: str | Path, *, on_bad_image: BadImagePolicy = "skip"
    ) -> None:
        super().__init__(image_root, on_bad_image)
        self.store = store

    def usable(self, items: list[EncodedItem], report: DataReport) -> list[EncodedItem]:
        store = self.store
        unknown = [
            it.item_id
            for it in items
            if it.item_id not in store.rows
            and it.item_id not in store.bad
            and it.item_id not in store.missing
        ]
        if unknown:
            raise ValueError(
                f"{len(unknown)} items are not in the feature cache: {short_ids(unknown, 5)}"
            )
        return self._drop_missing(items, store.missing, report)

    def load(self, item: EncodedItem, rng: np.random.Generator) -> Loaded:
        reason = self.store.bad.get(item.item_id)
        if reason is not None:
            return self._bad(item, reason)
        return Loaded(features=self.store.get(item.item_id))
