"""The two loops every stage runs: one epoch of optimisation, and scoring a loader.

Shaped like torchvision's classification reference (``train_one_epoch`` / ``evaluate``), so that
validation, ``magneto evaluate`` and the predictor share one forward pass
(:func:`magneto.model.forward.forward`) and one scoring loop (:func:`score`) instead of three copies
that a test had to pin together. Both loops return plain per-item results and sums of losses;
reducing them across ranks and turning them into metrics is the caller's business.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from magneto.data.dataset import Batch
from magneto.devices import autocast
from magneto.errors import TrainingDiverged
from magneto.model.architectures import ModelOutput, TagModel
from magneto.model.forward import forward
from magneto.train.total_loss import TotalLoss

BatchView = Callable[[Batch], Batch]


def _add_losses(
    sums: dict[str, float], loss: torch.Tensor | float, parts: dict[str, torch.Tensor], n: int
) -> None:
    sums["loss"] += float(loss) * n
    for name, value in parts.items():
        sums[f"loss_{name}"] += value.item() * n


def _add_alpha(sums: dict[str, float], output: ModelOutput, padding_mask: torch.Tensor) -> None:
    if output.alpha is not None:
        real = ~padding_mask
        sums["alpha_sum"] += output.alpha.detach()[real].float().sum().item()
        sums["alpha_count"] += real.sum().item()


def _where_diverged(value: float, device: torch.device) -> str:
    """Empty while every rank's loss is finite. Under DDP all ranks must stop together: one
    rank raising alone would leave the others waiting in the next gradient all-reduce."""
    bad = not math.isfinite(value)
    if not (dist.is_available() and dist.is_initialized()):
        return str(value) if bad else ""
    flag = torch.tensor([float(bad)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if flag.item() == 0:
        return ""
    return str(value) if bad else "non-finite on another process"


def train_one_epoch(
    model: nn.Module,
    loader: Sequence[Batch] | torch.utils.data.DataLoader,
    criterion: TotalLoss,
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device,
    amp: str = "auto",
    grad_clip: float | None = None,
    description: str = "train",
    progress: bool = True,
) -> tuple[dict[str, float], list[tuple[str, str]]]:
    """One pass over ``loader``; returns summed losses (times items) and the skipped items."""
    model.train()
    sums: dict[str, float] = defaultdict(float)
    skipped: list[tuple[str, str]] = []
    bar = tqdm(loader, desc=description, unit="batch", leave=False, disable=not progress)
    for batch in bar:
        skipped.extend(batch.skipped)
        if not len(batch):
            continue
        batch = batch.to(device, non_blocking=True)
        output = forward(model, batch, device, amp)
        loss, parts = criterion(output, batch.targets, batch.padding_mask)
        value = loss.item()
        where = _where_diverged(value, loss.device)
        if where:
            raise TrainingDiverged(
                f"{description}: the training loss became {where} after {int(sums['items'])} "
                "items; lower the learning rate (--lr, or --pretrain-lr for pre-training) or "
                "train in float32 (--amp off); the checkpoints of earlier epochs are kept"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        sums["items"] += len(batch)
        _add_losses(sums, value, parts, len(batch))
        _add_alpha(sums, output, batch.padding_mask)
        bar.set_postfix(loss=f"{sums['loss'] / sums['items']:.4f}", refresh=False)
    return sums, skipped


@dataclass
class ScoredItem:
    """One item's final scores on its real tags (no padding), with its targets if known."""

    item_id: str
    scores: np.ndarray
    targets: np.ndarray | None
    outliers: np.ndarray | None = None


def labelled(items: Sequence[ScoredItem], what: str = "targets") -> list[np.ndarray]:
    """Each item's ``targets`` (or ``outliers``): metrics need them on every item."""
    values = [getattr(item, what) for item in items]
    missing = next((item.item_id for item, v in zip(items, values, strict=True) if v is None), None)
    if missing is not None:
        raise ValueError(f"item {missing} has no {what} to score against")
    return values


@dataclass
class Scores:
    """What :func:`score` saw: the items as loaded, each view's items, and loss sums."""

    items: list[ScoredItem] = field(default_factory=list)
    views: list[list[ScoredItem]] = field(default_factory=list)
    sums: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _scored(batch: Batch, output: ModelOutput) -> list[ScoredItem]:
    final = output.final.float().cpu().numpy()
    lengths = (~batch.padding_mask).sum(1).cpu().tolist()
    targets = batch.targets.cpu().numpy() if batch.targets is not None else None
    outliers = batch.outliers.cpu().numpy() if batch.outliers is not None else None
    return [
        ScoredItem(
            item_id,
            final[i, :n],
            targets[i, :n] if targets is not None else None,
            outliers[i, :n] if outliers is not None else None,
        )
        for i, (item_id, n) in enumerate(zip(batch.item_ids, lengths, strict=True))
    ]


def score(
    model: TagModel,
    loader: Sequence[Batch] | torch.utils.data.DataLoader,
    *,
    device: torch.device,
    amp: str = "auto",
    criterion: TotalLoss | None = None,
    views: Sequence[BatchView] = (),
    description: str = "scoring",
    progress: bool = False,
    trunk: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Scores:
    """Score every item of ``loader`` (and each ``view`` of its batches) without gradients.

    A view re-tags a batch (e.g. adds outlier tags); it reuses the batch's backbone features,
    so the backbone runs once per image however many views there are. With ``criterion``,
    validation losses are summed (times items) in ``Scores.sums``. ``trunk``: what runs the
    image trunk (an inference runtime); default the model's own, under ``amp``.
    """
    model.eval()
    result = Scores(views=[[] for _ in views])
    bar = tqdm(loader, desc=description, unit="batch", leave=False, disable=not progress)
    with torch.no_grad():
        for batch in bar:
            result.skipped.extend(batch.skipped)
            if not len(batch):
                continue
            batch = batch.to(device, non_blocking=True)
            if model.uses_images and batch.features is None:
                if trunk is not None:
                    maps = trunk(batch.images).to(device)
                else:
                    with autocast(device, amp):
                        maps = model.image_extractor.trunk_features(batch.images)
                batch = replace(batch, images=torch.empty(0), features=maps)
            output = forward(model, batch, device, amp)
            result.items.extend(_scored(batch, output))
            if criterion is not None:
                loss, parts = criterion(output, batch.targets, batch.padding_mask)
                result.sums["items"] += len(batch)
                _add_losses(result.sums, loss, parts, len(batch))
            _add_alpha(result.sums, output, batch.padding_mask)
            for view, scored in zip(views, result.views, strict=True):
                seen = view(batch).to(device)
                scored.extend(_scored(seen, forward(model, seen, device, amp)))
    return result
