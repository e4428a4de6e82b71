"""What a picture says about each of its tags, for the tag-context+image baseline.

Each item's picture becomes one vector: the frozen backbone's feature map (from the feature
cache, so it is computed once per image and backbone) averaged over its regions and scaled to
unit length. Each concept gets two prototypes from the training items: the mean vector of the
pictures where it was important, and of those where it was present but not. A tag position's
features are its picture's similarity to both. On the training items each picture's own
contribution is left out, as :mod:`magneto.data.tag_context` does for the tag counts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from magneto.data.dataset import EncodedItem
from magneto.data.tag_context import TagPositions
from magneto.model.architectures import build_model
from magneto.model.config import ModelConfig
from magneto.train.feature_cache import build_feature_store

SMOOTH = 2.0


def pooled_features(
    items: list[EncodedItem],
    images: Path,
    *,
    backbone: str,
    backbone_weights: str | None,
    input_size: int,
    cache_dir: Path,
    device: torch.device,
    workers: int = 0,
    progress: bool = True,
) -> np.ndarray:
    """``(len(items), C)`` unit vectors, zeros for an item whose picture could not be read."""
    config = ModelConfig(
        vocab_size=1, backbone=backbone, backbone_weights=backbone_weights, freeze_backbone="all"
    )
    torch.manual_seed(0)  # random weights (backbone_weights none) are the same at every call
    extractor = build_model(config).image_extractor.to(device).eval()
    store = build_feature_store(
        items,
        images,
        extractor,
        backbone=backbone,
        input_size=input_size,
        cache_dir=cache_dir,
        device=device,
        workers=workers,
        progress=progress,
    )
    channels = store.features.shape[1]
    out = np.zeros((len(items), channels), dtype=np.float32)
    for i, item in enumerate(items):
        row = store.rows.get(item.item_id)
        if row is not None:
            vector = np.asarray(store.features[row], dtype=np.float32).mean(axis=(1, 2))
            out[i] = vector / max(float(np.linalg.norm(vector)), 1e-9)
    return out


class ImagePrototypes:
    """Per concept: the summed picture vectors of items where it was important / was not."""

    def __init__(self, positions: TagPositions, pictures: np.ndarray, vocab_size: int) -> None:
        self.sums = np.zeros((2, vocab_size, pictures.shape[1]), dtype=np.float64)
        self.counts = np.zeros((2, vocab_size), dtype=np.float64)
        important = positions.label.astype(np.int64)
        np.add.at(self.sums, (important, positions.concept), pictures[positions.item])
        np.add.at(self.counts, (important, positions.concept), 1.0)

    def features(self, positions: TagPositions, pictures: np.ndarray, own: bool) -> np.ndarray:
        """Two columns per position: similarity to the important and the other prototype."""
        picture = pictures[positions.item].astype(np.float64)
        columns = []
        for side in (1, 0):
            sums = self.sums[side, positions.concept]
            counts = self.counts[side, positions.concept]
            if own:  # leave the item's own picture out of its concept's prototype
                mine = (positions.label == side)[:, None]
                sums = sums - picture * mine
                counts = counts - mine[:, 0]
            columns.append((picture * sums).sum(axis=1) / (counts + SMOOTH))
        return np.column_stack(columns)

    def state(self) -> dict[str, np.ndarray]:
        return {"image_sums": self.sums, "image_counts": self.counts}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> ImagePrototypes:
        prototypes = cls.__new__(cls)
        prototypes.sums = np.asarray(state["image_sums"])
        prototypes.counts = np.asarray(state["image_counts"])
        return prototypes
