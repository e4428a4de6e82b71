"""The supervised datasets: train.csv with TAD (and image augmentation), val.csv as is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from magneto.config import ConfigError, RunConfig
from magneto.data.augment import TagAugmentation
from magneto.data.dataset import TagImageDataset
from magneto.data.items import EncodedItem, load_items
from magneto.data.tag_context import smoothed_rates
from magneto.data.vocabulary import Vocabulary
from magneto.devices import DistInfo
from magneto.model.architectures import TagBias, TagModel
from magneto.train.run_data import data_dir, make_dataset


def supervised_datasets(
    config: RunConfig,
    vocabulary: Vocabulary,
    model: TagModel,
    device: torch.device,
    dist_info: DistInfo,
    train_items: list[EncodedItem] | None = None,
) -> tuple[TagImageDataset, TagImageDataset]:
    """``train_items``: train.csv already loaded (by :func:`start_tag_bias`), not read again."""
    root = data_dir(config)
    if train_items is None:
        train_items, _ = load_items(root / "train.csv", vocabulary)
    val_items, _ = load_items(root / "val.csv", vocabulary)
    tad = None
    if config.tad_add > 0 or config.tad_drop > 0:
        tad = TagAugmentation(
            config.tad_add, config.tad_drop, vocabulary, seed=config.seed, max_len=config.max_len
        )
    train = make_dataset(
        config,
        train_items,
        model,
        train=True,
        tag_transform=tad,
        device=device,
        dist_info=dist_info,
    )
    val = make_dataset(config, val_items, model, train=False, device=device, dist_info=dist_info)
    if not len(train) or not len(val):
        raise ConfigError(f"{root}: the training or validation set is empty after loading")
    return train, val


def start_tag_bias(bias: TagBias, train_file: Path, vocabulary: Vocabulary) -> list[EncodedItem]:
    """Start each tag's learned logit at the log-odds of its smoothed importance rate in
    ``train_file`` (what the tag-prior baseline scores); returns the loaded items, for
    :func:`supervised_datasets`."""
    items, _ = load_items(train_file, vocabulary)
    labelled = [(item.tags, item.targets) for item in items if item.targets is not None]
    concept = np.concatenate([tags for tags, _ in labelled] or [np.zeros(0, np.int64)])
    label = np.concatenate([targets for _, targets in labelled] or [np.zeros(0)])
    bias.start_from(torch.from_numpy(smoothed_rates(concept, label, len(vocabulary))))
    return items
