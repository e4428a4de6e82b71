"""The one forward pass that validation, ``magneto evaluate``, the predictor and the bulk job
share: the model on a batch, under the run's mixed precision, from images or from cached
backbone features. Living beside the model (not in the training loop) keeps serving free of
training code."""

from __future__ import annotations

import torch
from torch import nn

from magneto.data.dataset import Batch
from magneto.devices import autocast
from magneto.model.architectures import ModelOutput


def forward(
    model: nn.Module, batch: Batch, device: torch.device, amp: str, *, explain: bool = False
) -> ModelOutput:
    """The model (a :class:`TagModel`, or its DistributedDataParallel wrapper in training) on a
    batch already on ``device``: images, or cached backbone features. ``explain`` adds each
    tag's attention over the image regions (image models; otherwise nothing is computed)."""
    features = batch.features
    with autocast(device, amp):
        if explain:
            return model(batch.images, batch.tags, batch.padding_mask, features, explain=True)
        return model(batch.images, batch.tags, batch.padding_mask, image_features=features)
