"""A prepared dataset directory (``magneto prepare``'s output) and the datasets runs build on it.

Shared by the training and pre-training stages: the vocabulary, the annotation splits, and a
dataset that serves decoded images, cached backbone features, or tags only, as the model and
config need.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from magneto.annotations import read_annotations
from magneto.config import ConfigError, RunConfig
from magneto.dataset import DataReport, EncodedItem, TagImageDataset, encode_annotations
from magneto.features import CombinedFeatures, FeatureStore, build_feature_store
from magneto.runtime import DistInfo
from magneto.vocabulary import Vocabulary

log = logging.getLogger(__name__)


def data_dir(config: RunConfig) -> Path:
    if not config.data:
        raise ConfigError("no dataset given: pass --data DIR (a prepared dataset directory)")
    path = Path(config.data)
    if not path.is_dir():
        raise ConfigError(f"dataset directory not found: {path}")
    return path


def image_dir(config: RunConfig, needed: bool) -> Path:
    if not needed:
        return Path(config.images or ".")
    if not config.images:
        raise ConfigError("this model reads images: pass --images DIR")
    path = Path(config.images)
    if not path.is_dir():
        raise ConfigError(f"image directory not found: {path}")
    return path


def load_vocabulary(config: RunConfig) -> Vocabulary:
    return Vocabulary.load(data_dir(config) / "vocab.csv")


def load_items(
    path: Path, vocabulary: Vocabulary, *, labelled: bool = True
) -> tuple[list[EncodedItem], DataReport]:
    items, report = encode_annotations(read_annotations(path, require_labels=labelled), vocabulary)
    for line in report.lines():
        log.warning("%s: %s", path.name, line)
    return items, report


def feature_store(
    config: RunConfig,
    items: list[EncodedItem],
    model: nn.Module,
    *,
    device: torch.device,
    dist_info: DistInfo,
) -> FeatureStore:
    """The cache entry of these items' backbone features (computed on first use)."""
    config.check_cache()
    return build_feature_store(
        items,
        image_dir(config, True),
        model.image_extractor,  # type: ignore[attr-defined]
        backbone=config.model.backbone,
        input_size=config.input_size,
        cache_dir=config.feature_cache_dir or data_dir(config) / "feature_cache",
        device=device,
        amp=config.amp,
        batch_size=config.eval_batch_size,
        workers=config.workers,
        on_bad_image=config.on_bad_image,
        dist_info=dist_info,
        progress=config.progress and dist_info.is_main,
    )


def make_dataset(
    config: RunConfig,
    items: list[EncodedItem],
    model: nn.Module,
    *,
    train: bool,
    tag_transform=None,
    device: torch.device,
    dist_info: DistInfo,
    features: FeatureStore | CombinedFeatures | None = None,
) -> TagImageDataset:
    """Decoded images, cached backbone features, or no images, as the config and model need.

    With ``feature_cache`` on and no ``features`` given, the cache entry of ``items`` is used.
    """
    uses_images = bool(getattr(model, "uses_images", False))
    root = image_dir(config, uses_images)
    common = dict(
        input_size=config.input_size,
        on_bad_image=config.on_bad_image,
        seed=config.seed,
        tag_transform=tag_transform,
    )
    if not uses_images:
        return TagImageDataset(items, root, load_images=False, **common)
    if config.feature_cache:
        if features is None:
            features = feature_store(config, items, model, device=device, dist_info=dist_info)
        return TagImageDataset(items, root, features=features, **common)
    return TagImageDataset(
        items, root, train=train, augment_images=train and config.augment_images, **common
    )
