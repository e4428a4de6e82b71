"""Reading the on-disk cache of frozen-backbone feature maps.

The reader lives apart from the builder (:mod:`magneto.train.feature_cache`) because the builder
needs the image dataset to compute an entry, while the dataset only needs to read one: with the two
in one module, the dataset and the cache imported each other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass
class FeatureStore:
    """Feature maps ``(N, C, H, W)`` (memory-mapped) with the row of each item id."""

    path: Path
    features: np.ndarray
    rows: dict[str, int]
    bad: dict[str, str]  # item id -> why its image failed to decode
    missing: set[str]  # item ids whose image file does not exist

    def get(self, item_id: str) -> torch.Tensor:
        return torch.from_numpy(np.array(self.features[self.rows[item_id]]))

    @classmethod
    def open(cls, path: Path) -> FeatureStore:
        index = json.loads((path.with_suffix(".json")).read_text())
        features = np.load(path, mmap_mode="r")
        rows = {item_id: i for i, item_id in enumerate(index["items"])}
        return cls(
            path=path, features=features, rows=rows, bad=index["bad"], missing=set(index["missing"])
        )


class CombinedFeatures:
    """Several cache entries looked up as one (e.g. train.csv's and unlabeled.csv's)."""

    def __init__(self, stores: list[FeatureStore]) -> None:
        self.stores = stores
        self.rows: dict[str, tuple[int, int]] = {}
        self.bad: dict[str, str] = {}
        self.missing: set[str] = set()
        for s, store in enumerate(stores):
            self.bad.update(store.bad)
            self.missing |= store.missing
            for item_id, row in store.rows.items():
                self.rows.setdefault(item_id, (s, row))

    def get(self, item_id: str) -> torch.Tensor:
        s, row = self.rows[item_id]
        return torch.from_numpy(np.array(self.stores[s].features[row]))


Features = FeatureStore | CombinedFeatures
