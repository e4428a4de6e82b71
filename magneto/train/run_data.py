"""What a training-like run reads from its config: the prepared dataset directory
(``magneto prepare``'s output), its vocabulary, and datasets whose image input (decoded
images, cached backbone features, or none) is what the model and config need.

Shared by the training and pre-training stages.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from magneto.config import ConfigError, RunConfig
from magneto.data.dataset import (
    CachedFeatures,
    DecodedImages,
    ImageInput,
    NoImages,
    TagImageDataset,
    TagTransform,
)
from magneto.data.feature_store import Features, FeatureStore
from magneto.data.items import EncodedItem
from magneto.data.vocabulary import Vocabulary
from magneto.devices import DistInfo
from magneto.model.architectures import TagModel
from magneto.train.feature_cache import build_feature_store

log = logging.getLogger(__name__)


def _existing_dir(value: str | None, kind: str, unset: str) -> Path:
    """``value`` as a directory that exists; ``unset`` is the message when none was given."""
    if not value:
        raise ConfigError(unset)
    path = Path(value)
    if not path.is_dir():
        raise ConfigError(f"{kind} directory not found: {path}")
    return path


def data_dir(config: RunConfig) -> Path:
    unset = "no dataset given: pass --data DIR (a prepared dataset directory)"
    return _existing_dir(config.data, "dataset", unset)


def image_dir(config: RunConfig) -> Path:
    return _existing_dir(config.images, "image", "this model reads images: pass --images DIR")


def load_vocabulary(config: RunConfig) -> Vocabulary:
    return Vocabulary.load(data_dir(config) / "vocab.csv")


def word2vec_corpus(config: RunConfig) -> list[tuple[Path, bool]]:
    """The prepared files ``embeddings: word2vec`` trains on (and whether each is labelled)."""
    if config.embeddings != "word2vec":
        return []
    root = data_dir(config)
    files = [(root / "train.csv", True), (root / "unlabeled.csv", False)]
    return [(path, labelled) for path, labelled in files if path.is_file()]


def feature_cache_dir(config: RunConfig) -> Path:
    """The configured cache folder; else next to the data, so that every run on it shares the
    features; else (a read-only dataset, like a container's ``/data:ro`` mount) the run's own."""
    if config.feature_cache_dir:
        return Path(config.feature_cache_dir)
    shared = data_dir(config) / "feature_cache"
    if os.access(shared if shared.exists() else shared.parent, os.W_OK):
        return shared
    if not config.out:
        raise ConfigError(f"{shared.parent} is read-only: pass --feature-cache-dir DIR")
    own = Path(config.out) / "feature_cache"
    log.info("%s is read-only: caching backbone features in %s", shared.parent, own)
    return own


def feature_store(
    config: RunConfig,
    items: list[EncodedItem],
    model: TagModel,
    *,
    device: torch.device,
    dist_info: DistInfo,
) -> FeatureStore:
    """The cache entry of these items' backbone features (computed on first use)."""
    config.check_cache()
    return build_feature_store(
        items,
        image_dir(config),
        model.image_extractor,
        backbone=config.model.backbone,
        input_size=config.input_size,
        cache_dir=feature_cache_dir(config),
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
    model: TagModel,
    *,
    train: bool,
    tag_transform: TagTransform | None = None,
    device: torch.device,
    dist_info: DistInfo,
    features: Features | None = None,
) -> TagImageDataset:
    """Decoded images, cached backbone features, or no images, as the config and model need.

    With ``feature_cache`` on and no ``features`` given, the cache entry of ``items`` is used.
    """
    image_input: ImageInput = NoImages()
    if config.model.uses_images:
        root = image_dir(config)
        if not config.feature_cache:
            image_input = DecodedImages(
                root,
                input_size=config.input_size,
                augment=train and config.augment_images,
                on_bad_image=config.on_bad_image,
            )
        else:
            if features is None:
                features = feature_store(config, items, model, device=device, dist_info=dist_info)
            image_input = CachedFeatures(features, root, on_bad_image=config.on_bad_image)
    return TagImageDataset(items, image_input, tag_transform=tag_transform, seed=config.seed)
