"""The dataset's image inputs other than decoded images, and the feature cache's reader."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from magneto.data.dataset import CachedFeatures, Collator, NoImages, TagImageDataset
from magneto.data.feature_store import CombinedFeatures, FeatureStore
from magneto.data.items import EncodedItem
from magneto.errors import ImageError


def _items(*ids: str) -> list[EncodedItem]:
    return [
        EncodedItem(
            item_id=i,
            tags=np.array([0, 1], dtype=np.int64),
            targets=np.array([1.0, 0.0], dtype=np.float32),
            image=f"{i}.jpg",
            origin=f"a.csv:{n + 2}",
        )
        for n, i in enumerate(ids)
    ]


def _store(path, rows: dict[str, float], bad: dict[str, str], missing: list[str]) -> FeatureStore:
    features = np.stack([np.full((2, 1, 1), v, np.float32) for v in rows.values()])
    np.save(path, features)
    index = {"items": list(rows), "bad": bad, "missing": missing}
    path.with_suffix(".json").write_text(json.dumps(index))
    return FeatureStore.open(path)


@pytest.fixture
def store(tmp_path) -> FeatureStore:
    return _store(tmp_path / "a.npy", {"0": 0.0, "2": 2.0}, {"1": "corrupt"}, ["3"])


def test_tags_only_reads_no_image():
    ds = TagImageDataset(_items("0", "1"), NoImages())
    sample = ds[1]
    assert sample.image is None and sample.features is None and sample.error is None
    assert sample.tags.tolist() == [0, 1] and len(ds) == 2 and ds.report.missing_images == []


def test_cached_features_skip_policy(store, tmp_path):
    ds = TagImageDataset(_items("0", "1", "2", "3"), CachedFeatures(store, tmp_path))
    assert [it.item_id for it in ds.items] == ["0", "1", "2"]
    assert ds.report.missing_images == ["3"]
    batch = Collator(padding_index=5)([ds[i] for i in range(3)])
    assert batch.item_ids == ["0", "2"] and batch.skipped == [("1", "corrupt")]
    assert batch.features[:, 0, 0, 0].tolist() == [0.0, 2.0]
    assert batch.images.numel() == 0


def test_cached_features_fail_policy(store, tmp_path):
    with pytest.raises(ImageError, match=r"^a.csv:5: item 3: image 3.jpg not found"):
        TagImageDataset(
            _items("0", "1", "2", "3"), CachedFeatures(store, tmp_path, on_bad_image="fail")
        )
    ds = TagImageDataset(_items("0", "1"), CachedFeatures(store, tmp_path, on_bad_image="fail"))
    with pytest.raises(ImageError, match="item 1: corrupt") as info:
        ds[1]
    assert info.value.item_id == "1"


def test_items_outside_the_cache_are_an_error(store, tmp_path):
    with pytest.raises(ValueError, match="1 items are not in the feature cache: 9"):
        TagImageDataset(_items("0", "9"), CachedFeatures(store, tmp_path))


def test_combined_features_first_store_wins(store, tmp_path):
    other = _store(tmp_path / "b.npy", {"2": 7.0, "4": 4.0}, {}, ["5"])
    both = CombinedFeatures([store, other])
    assert both.get("2").flatten().tolist() == [2.0, 2.0]
    assert both.get("4").flatten().tolist() == [4.0, 4.0]
    assert both.bad == {"1": "corrupt"} and both.missing == {"3", "5"}
    assert isinstance(both.get("0"), torch.Tensor)


@pytest.mark.slow
def test_the_cache_reader_does_not_import_the_dataset():
    code = "import sys, magneto.data.feature_store; print('magneto.data.dataset' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
