"""Timing and agreement of trunk runtimes on one model: each candidate's trunk plus the rest of
the model, on the caller's batch size and on one item, candidates interleaved round by round so
that machine noise hits them alike; medians count. Agreement is the share of keep/drop
decisions (at the model's threshold) equal to float32's, on the same images and seeded tags."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from magneto.devices import autocast
from magneto.infer.runtimes.trunks import TrunkRuntime, model_amp
from magneto.model.architectures import TagModel

CHECK_TAGS = 8


@dataclass
class Measurement:
    batch_ms: dict[str, float]
    item_ms: dict[str, float]
    agreement: dict[str, float]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def final_scores(
    model: TagModel, runtime: TrunkRuntime, images: torch.Tensor, tags: torch.Tensor
) -> torch.Tensor:
    """The model's final scores with ``runtime`` running the trunk (bf16 on CUDA: the whole
    model under autocast, as the predictor runs it)."""
    device = tags.device
    features = runtime(images).to(device)
    mask = torch.zeros_like(tags, dtype=torch.bool)
    with autocast(device, model_amp(runtime.name, device)):
        return model(None, tags, mask, image_features=features).final.float().cpu()


def _timed(call: Callable[[], Any], device: torch.device) -> float:
    _sync(device)
    started = time.perf_counter()
    call()
    _sync(device)
    return 1000 * (time.perf_counter() - started)


def measure(
    model: TagModel,
    runtimes: dict[str, TrunkRuntime],
    check_images: torch.Tensor,
    *,
    threshold: float,
    batch_size: int,
    rounds: int,
    device: torch.device,
    seed: int = 1,
) -> Measurement:
    """Median ms per batch and per item, and agreement with ``runtimes["float32"]``."""
    generator = torch.Generator().manual_seed(seed)
    vocab = int(model.config.vocab_size or 1)
    size = check_images.shape[-1]

    def workload(items: int, images: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        if images is None:
            images = torch.randn(items, 3, size, size, generator=generator)
        tags = torch.randint(0, vocab, (items, CHECK_TAGS), generator=generator)
        return images.to(device), tags.to(device)

    check = workload(len(check_images), check_images)
    full, one = workload(batch_size), workload(1)
    reference = None
    agreement: dict[str, float] = {}
    batch_ms: dict[str, list[float]] = {n: [] for n in runtimes}
    item_ms: dict[str, list[float]] = {n: [] for n in runtimes}
    with torch.inference_mode():
        for name in ["float32", *(n for n in runtimes if n != "float32")]:
            kept = final_scores(model, runtimes[name], *check) >= threshold
            reference = kept if reference is None else reference
            agreement[name] = float((kept == reference).float().mean())
        for runtime in runtimes.values():  # warm-up: first calls allocate, pick kernels
            final_scores(model, runtime, *full)
            final_scores(model, runtime, *one)
        for _ in range(rounds):
            for name, runtime in runtimes.items():
                batch_ms[name].append(_timed(partial(final_scores, model, runtime, *full), device))
                item_ms[name].append(_timed(partial(final_scores, model, runtime, *one), device))
    return Measurement(
        batch_ms={n: round(statistics.median(t), 2) for n, t in batch_ms.items()},
        item_ms={n: round(statistics.median(t), 2) for n, t in item_ms.items()},
        agreement=agreement,
    )
