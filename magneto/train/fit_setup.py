"""What a run optimises with: loss, optimizer, scheduler, DDP wrapper, samplers and loaders.

Built once per run from the config, so the :class:`~magneto.train.trainer.Trainer` only has to
hold and step them. Sampling is reproducible: the training order is drawn from a generator
reseeded from (seed, epoch) every epoch (:meth:`FitParts.set_epoch`), which is what lets an
interrupted run resume exactly.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sized
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Sampler

from magneto.config import RunConfig
from magneto.data.dataset import Collator, worker_init
from magneto.devices import DistInfo
from magneto.model.architectures import TagModel
from magneto.train.buckets import LengthBuckets, padding_share, random_batches
from magneto.train.loss_registry import build_loss
from magneto.train.total_loss import TotalLoss

log = logging.getLogger("magneto.train.trainer")


def cosine_factor(warmup: int, epochs: int, epoch: int) -> float:
    """The lr factor during ``epoch`` (0-based): linear warm-up to 1 over ``warmup`` epochs,
    then half a cosine down to 0 after the last epoch."""
    if epoch < warmup:
        return (epoch + 1) / (warmup + 1)
    span = max(epochs - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup) / span))


def length_buckets(
    config: RunConfig, train: Dataset, generator: torch.Generator, dist_info: DistInfo
) -> LengthBuckets | None:
    """The batch sampler of ``length_buckets``, with the padding it saves in one log line."""
    items = getattr(train, "items", None)
    if not config.length_buckets or items is None:
        return None
    if dist_info.enabled:
        log.warning("length_buckets: not with several processes; batches stay random")
        return None
    lengths = [len(item.tags) for item in items]
    sampler = LengthBuckets(lengths, config.batch_size, torch.Generator().manual_seed(0))
    before = padding_share(lengths, random_batches(len(lengths), config.batch_size))
    after = padding_share(lengths, sampler.batches())
    sampler.generator = generator  # the epoch's seeded generator, as the random sampler's
    log.info(
        "length buckets: padding is %.0f%% of tag slots (%.0f%% in random batches)",
        100 * after,
        100 * before,
    )
    return sampler


@dataclass
class FitParts:
    model: TagModel
    net: nn.Module  # what the training step calls: the DDP wrapper, or the model itself
    criterion: TotalLoss
    optimizer: torch.optim.Optimizer
    # plateau steps on the validation loss, the others once per epoch
    scheduler: (
        torch.optim.lr_scheduler.ReduceLROnPlateau | torch.optim.lr_scheduler.LRScheduler | None
    )
    train_loader: DataLoader
    val_loader: DataLoader
    train_sampler: Sampler
    sampler_generator: torch.Generator
    seed: int

    def set_epoch(self, epoch: int) -> None:
        """New draws for training; validation keeps epoch 0's, so epochs stay comparable."""
        train_set = self.train_loader.dataset
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)
        if isinstance(self.train_sampler, DistributedSampler):
            self.train_sampler.set_epoch(epoch)
        self.sampler_generator.manual_seed(self.seed * 100_003 + epoch)


def build_optimizer(config: RunConfig, model: TagModel) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    fused = _fusable(params)
    foreach = None if fused else True
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            foreach=foreach,
            fused=fused,
        )
    return torch.optim.AdamW(
        params, lr=config.lr, weight_decay=config.weight_decay, foreach=foreach, fused=fused
    )


def _fusable(params: list[torch.nn.Parameter]) -> bool | None:
    """One fused kernel for the whole update where PyTorch has one (CPU and CUDA): on the CPU
    it is 4-6x faster than the multi-tensor path (about 4 ms of a 90 ms AdamW step at
    configs/large-scale-cpu.yaml), and the update is the same."""
    devices = {p.device.type for p in params}
    if devices and devices <= {"cpu", "cuda"} and all(p.dtype.is_floating_point for p in params):
        return True
    return None


def criterion(config: RunConfig, aux: bool) -> TotalLoss:
    """L_g with ``loss``; L_it and L_t with ``aux_loss`` (by default the same loss)."""
    (main, main_params), (extra, extra_params) = config.losses()
    return TotalLoss(
        build_loss(main, **main_params), aux=aux, aux_loss=build_loss(extra, **extra_params)
    )


def assemble(
    config: RunConfig,
    model: TagModel,
    train: Dataset,
    val: Dataset,
    *,
    device: torch.device,
    dist_info: DistInfo,
    aux: bool,
) -> FitParts:
    """Move ``model`` to ``device`` and build everything that trains it."""
    model = model.to(device)
    optimizer = build_optimizer(config, model)
    scheduler: Any = None
    if config.scheduler == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=config.plateau_factor, patience=config.plateau_patience
        )
    elif config.scheduler == "cosine":
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, partial(cosine_factor, config.warmup_epochs, config.epochs)
        )
    net: nn.Module = model
    if dist_info.enabled:
        net = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    generator = torch.Generator()
    train_sampler: Sampler
    val_sampler: Sampler | None = None
    if dist_info.enabled:
        replicas, rank = dist_info.world_size, dist_info.rank
        train_sampler = DistributedSampler(
            train, num_replicas=replicas, rank=rank, shuffle=True, seed=config.seed
        )
        val_sampler = DistributedSampler(val, num_replicas=replicas, rank=rank, shuffle=False)
    else:
        train_sampler = RandomSampler(cast(Sized, train), generator=generator)
    buckets = length_buckets(config, train, generator, dist_info)
    padding_index = model.config.vocab_size  # the index after the last tag
    assert padding_index is not None, "the model was built without a vocabulary size"
    loader_args: dict[str, Any] = dict(
        collate_fn=Collator(padding_index),
        num_workers=config.workers,
        pin_memory=device.type == "cuda",
        worker_init_fn=worker_init if config.workers else None,
        generator=torch.Generator().manual_seed(config.seed),
    )
    return FitParts(
        model=model,
        net=net,
        criterion=criterion(config, aux),
        optimizer=optimizer,
        scheduler=scheduler,
        train_loader=(
            DataLoader(train, batch_sampler=buckets, **loader_args)
            if buckets is not None
            else DataLoader(
                train, batch_size=config.batch_size, sampler=train_sampler, **loader_args
            )
        ),
        # Validation batches stay as they were: BCE-Dice's Dice term is computed per batch,
        # so regrouping the items would change the validation loss the scheduler reads.
        val_loader=DataLoader(
            val, batch_size=config.eval_batch_size, sampler=val_sampler, **loader_args
        ),
        train_sampler=train_sampler,
        sampler_generator=generator,
        seed=config.seed,
    )
