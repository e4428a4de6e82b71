"""The supervised datasets: train.csv with TAD (and image augmentation), val.csv as is."""

from __future__ import annotations

import torch

from magneto.config import ConfigError, RunConfig
from magneto.data.augment import TagAugmentation
from magneto.data.dataset import TagImageDataset
from magneto.data.items import load_items
from magneto.data.vocabulary import Vocabulary
from magneto.devices import DistInfo
from magneto.model.architectures import TagModel
from magneto.train.run_data import data_dir, make_dataset


def supervised_datasets(
    config: RunConfig,
    vocabulary: Vocabulary,
    model: TagModel,
    device: torch.device,
    dist_info: DistInfo,
) -> tuple[TagImageDataset, TagImageDataset]:
    root = data_dir(config)
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
