"""Training throughput at the paper's NUS-WIDE setting, against the bare backbone forward.

ResNet-18 fully frozen, 112 px, batch 32, tag lists of 1..16 tags (l = 16), d_model 128, the
full MAGNeto objective (BCE-Dice on three outputs) and SGD, on random data. Modes:

- ``backbone``: the bare frozen trunk forward of the batch (no_grad, eval): the floor;
- ``step``: one full training step with images in (trunk + streams + gate + loss + backward
  + SGD), as ``magneto train`` runs it;
- ``cached``: the same step from cached trunk features (``--feature-cache``);
- ``reference``: the original implementation's way, for context: the trunk under autograd
  with train-mode BatchNorm, every item padded to l, dropout by Bernoulli sampling.

Timings interleave the modes round-robin in one process, so machine noise hits all of them
alike, and the ratios compare modes measured in the same run. Peak RSS is measured per mode
in a process of its own. Usage:
    python benchmarks/train_throughput.py [--rounds 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import header

BATCH, L, SIZE, VOCAB = 32, 16, 112, 81
MODES = ("backbone", "step", "cached", "reference")


def _setup(threads: int):
    import torch
    from torch import nn

    from magneto.model.architectures import build_model
    from magneto.model.config import ModelConfig
    from magneto.train.loss_registry import build_loss
    from magneto.train.total_loss import TotalLoss

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    images = torch.randn(BATCH, 3, SIZE, SIZE)
    lengths = torch.randint(1, L + 1, (BATCH,))
    lengths[0] = L
    tags = torch.randint(0, VOCAB, (BATCH, L))
    mask = torch.arange(L)[None, :] >= lengths[:, None]
    tags[mask] = VOCAB
    targets = (torch.rand(BATCH, L) > 0.15).float() * ~mask
    criterion = TotalLoss(build_loss("bce_dice"))

    def trainer(model):
        model.train()
        optimizer = torch.optim.SGD(
            [p for p in model.parameters() if p.requires_grad],
            lr=0.01,
            momentum=0.9,
            foreach=True,
        )

        def step(images_in, features, step_tags, step_mask, step_targets) -> None:
            out = model(images_in, step_tags, step_mask, image_features=features)
            loss, _ = criterion(out, step_targets, step_mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return step

    model = build_model(ModelConfig(vocab_size=VOCAB))
    extractor = model.image_extractor
    with torch.no_grad():
        features = extractor.trunk_features(images)
    step = trainer(model)

    reference = build_model(ModelConfig(vocab_size=VOCAB))
    ref_extractor = reference.image_extractor
    for module in list(reference.modules()):  # Bernoulli dropout, as in PyTorch
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Dropout):
                setattr(module, child_name, nn.Dropout(child.p))
    ref_step = trainer(reference)
    ref_extractor.trunk.train()  # frozen weights, BatchNorm in train mode, under autograd
    ref_extractor.trunk_features = ref_extractor.trunk  # type: ignore[method-assign]
    full_mask = torch.zeros_like(mask)
    full_tags = tags.clone()
    full_tags[mask] = 0  # the reference pads with the padding index but lets it through

    def run_backbone() -> None:
        extractor.eval()
        with torch.no_grad():
            extractor.trunk(images)

    def run_step() -> None:
        step(images, None, tags, mask, targets)

    def run_cached() -> None:
        step(None, features, tags, mask, targets)

    def run_reference() -> None:
        ref_step(images, None, full_tags, full_mask, targets)

    return {
        "backbone": run_backbone,
        "step": run_step,
        "cached": run_cached,
        "reference": run_reference,
    }


def _previous_path(on: bool):
    """Switch the model back to the code of before the speed-ups, for the baseline of the
    ratio: exact packing, fused attention (one Bernoulli draw per attention weight), dropout
    masks made by comparing bytes and the region projection as a convolution; returns a
    restore function."""
    import torch
    import torch.nn.functional as F

    from magneto.model import dropout, layers, packing
    from magneto.model.backbone import ImageFeatureExtractor

    def fused(q, k, v, keep=None, p=0.0, training=False):
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=keep, dropout_p=p if training else 0.0
        )

    def compared(noise_bytes, cut, scale, dtype):
        keep = noise_bytes >= cut
        if dtype != torch.bfloat16:
            return keep.to(dtype).mul_(scale)
        bits = int(torch.tensor(scale, dtype=dtype).view(torch.int16))
        return keep.view(torch.uint8).to(torch.int16).mul_(bits).view(torch.bfloat16)

    def convolved(self, features):
        return self.bn(self.conv(features)).flatten(2).transpose(1, 2)

    saved = (
        packing.ROWS_MULTIPLE,
        layers.attention,
        dropout._scaled_mask,
        ImageFeatureExtractor.project,
    )
    if on:
        packing.ROWS_MULTIPLE, layers.attention, dropout._scaled_mask = 1, fused, compared
        ImageFeatureExtractor.project = convolved

    def restore() -> None:
        (
            packing.ROWS_MULTIPLE,
            layers.attention,
            dropout._scaled_mask,
            ImageFeatureExtractor.project,
        ) = saved

    return restore


def large_scale_cpu(rounds: int, threads: int) -> None:
    """A training epoch's steps at configs/large-scale-cpu.yaml from cached features, on the
    tag counts of a generated large-scale set, the full objective (BCE-Dice, aux), AdamW:
    the previous path (random batches, float32, multi-tensor AdamW, exact packing) against
    each speed-up added in turn, interleaved epoch by epoch."""
    import contextlib
    import csv
    import tempfile

    import numpy as np
    import torch

    from magneto.config import RunConfig, load_config
    from magneto.configs import config_path
    from magneto.devices import cpu_has_native_bf16
    from magneto.model.architectures import build_model
    from magneto.train.buckets import LengthBuckets, padding_share, random_batches
    from magneto.train.fit_setup import build_optimizer, criterion

    torch.set_num_threads(threads)
    config = load_config(RunConfig, config_path("large-scale-cpu"), {})
    with tempfile.TemporaryDirectory() as tmp:
        cli = [sys.executable, "-m", "magneto.cli.main", "synth", "--profile", "large-scale"]
        subprocess.run([*cli, "--items", "3000", "--out", tmp], check=True, capture_output=True)
        with open(Path(tmp) / "train.csv", newline="") as handle:
            counts = [len(row["tags"].split(",")) for row in csv.DictReader(handle)]
    lengths = np.minimum(np.asarray(counts), config.max_len)
    vocab, batch = 5812, config.batch_size
    torch.manual_seed(0)
    start = build_model(config.model.model_copy(update={"vocab_size": vocab})).state_dict()
    loss = criterion(config, aux=True)
    features = torch.randn(len(lengths), 512, 4, 4).relu()
    tags = torch.randint(0, vocab, (len(lengths), config.max_len))
    targets = (torch.rand(len(lengths), config.max_len) < 0.14).float()
    buckets = LengthBuckets(lengths, batch, torch.Generator().manual_seed(0)).batches()
    bf16 = cpu_has_native_bf16()
    # name: (batches, previous model code, fused AdamW, bf16 autocast)
    modes = {
        "previous path": (random_batches(len(lengths), batch), True, False, False),
        "+ length buckets": (buckets, True, False, False),
        "+ fused AdamW, rounded packing, faster dropout and 1x1 conv": (
            buckets,
            False,
            True,
            False,
        ),
        "+ bf16 autocast (training's auto here)": (buckets, False, True, bf16),
    }
    if not bf16:
        del modes["+ bf16 autocast (training's auto here)"]
    runs: dict[str, tuple] = {}
    for name, (plan, previous, fused, amp) in modes.items():
        model = build_model(config.model.model_copy(update={"vocab_size": vocab})).train()
        model.load_state_dict(start)
        if fused:
            optimizer = build_optimizer(config, model)
        else:
            optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, foreach=True)
        runs[name] = (plan, previous, amp, model, optimizer)

    def epoch(name: str, steps: int | None = None) -> float:
        plan, previous, amp, model, optimizer = runs[name]
        restore = _previous_path(previous)
        started = time.perf_counter()
        for rows in plan[:steps]:
            width = int(lengths[rows].max())
            mask = torch.arange(width)[None] >= torch.as_tensor(lengths[rows])[:, None]
            batch_tags = tags[rows, :width].masked_fill(mask, vocab)
            precision = torch.autocast("cpu", torch.bfloat16) if amp else contextlib.nullcontext()
            with precision:
                out = model(None, batch_tags, mask, image_features=features[rows])
            value, _ = loss(out, targets[rows, :width] * ~mask, mask)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
        elapsed = time.perf_counter() - started
        restore()
        return elapsed

    runs_count = max(1, rounds // 10)
    times: dict[str, list[float]] = {name: [] for name in modes}
    for name in modes:  # warm-up: a whole epoch, so that every kernel shape is compiled once
        epoch(name)
    for _ in range(runs_count):
        for name in modes:
            times[name].append(epoch(name))
    print(
        f"configs/large-scale-cpu.yaml, cached features, {len(lengths)} items of up to "
        f"{config.max_len} tags (a generated large-scale set), batch {batch}, median of "
        f"{runs_count} interleaved epochs after one warm-up epoch each; native bf16: {bf16}"
    )
    rate = {name: len(lengths) / statistics.median(t) for name, t in times.items()}
    base = rate["previous path"]
    for name, (plan, *_rest) in modes.items():
        print(
            f"{name:<60} {rate[name]:>6.0f} items/s  {rate[name] / base:4.2f}x  padding "
            f"{100 * padding_share(lengths, plan):.0f}% of tag slots"
        )
    print(f"fastest / previous path: {max(rate.values()) / base:.2f}x (target >= 2)")


def _peak_rss(mode: str, rounds: int, threads: int) -> float:
    runs = _setup(threads)
    for _ in range(rounds):
        runs[mode]()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rss-of", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument(
        "--large-scale-cpu",
        action="store_true",
        help="configs/large-scale-cpu.yaml, cached features: the previous path vs each speed-up",
    )
    args = parser.parse_args()
    print(header("training-step throughput"), flush=True)
    if args.large_scale_cpu:
        large_scale_cpu(args.rounds, args.threads)
        return
    if args.rss_of:
        print(json.dumps({"peak_rss_mib": _peak_rss(args.rss_of, 5, args.threads)}))
        return

    runs = _setup(args.threads)
    for run in runs.values():  # warm-up
        run()
        run()
    times: dict[str, list[float]] = {m: [] for m in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            start = time.perf_counter()
            runs[mode]()
            times[mode].append(time.perf_counter() - start)
    median = {m: statistics.median(t) for m, t in times.items()}
    rss = {}
    for mode in MODES:
        out = subprocess.run(
            [sys.executable, __file__, "--rss-of", mode, "--threads", str(args.threads)],
            capture_output=True,
            text=True,
            check=True,
        )
        rss[mode] = json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mib"]

    base = median["backbone"]
    print(
        f"batch {BATCH}, 1..{L} tags, {SIZE} px, ResNet-18 frozen, {args.threads} threads, "
        f"median of {args.rounds} interleaved rounds"
    )
    print(f"{'mode':<10} {'ms/batch':>9} {'items/s':>9} {'x backbone':>11} {'peak RSS':>10}")
    for mode in MODES:
        print(
            f"{mode:<10} {1000 * median[mode]:>9.1f} {BATCH / median[mode]:>9.1f} "
            f"{median[mode] / base:>10.3f}x {rss[mode]:>6.0f} MiB"
        )
    print(f"training step / bare backbone forward: {median['step'] / base:.3f} (target <= 1.15)")
    print(f"cached / uncached throughput: {median['step'] / median['cached']:.1f}x (target >= 8)")
    print(f"reference-style step / bare backbone forward: {median['reference'] / base:.3f}")
    print(f"peak RSS, largest mode: {max(rss.values()):.0f} MiB (target < 1229 MiB = 1.2 GiB)")


if __name__ == "__main__":
    main()
