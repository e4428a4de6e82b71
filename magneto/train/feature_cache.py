"""Building the on-disk cache of frozen-backbone feature maps.

When the whole backbone is frozen and images are not augmented, an image always yields the
same trunk feature map, so it is computed once and reused across epochs and runs. A cache
entry is keyed by the backbone's exact weights, the input size and the pipeline version, and
by the list of images with their sizes and modification times: change any of these and a new
entry is built. Entries are written to a temporary file and renamed into place. Reading an
entry is :mod:`magneto.data.feature_store`'s job (re-exported here).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from magneto.data.dataset import (
    BadImagePolicy,
    Collator,
    DataReport,
    DecodedImages,
    EncodedItem,
    TagImageDataset,
)
from magneto.data.feature_store import CombinedFeatures, FeatureStore
from magneto.devices import DistInfo, autocast, main_process_first
from magneto.model.backbone import ImageFeatureExtractor

__all__ = [
    "CombinedFeatures",
    "FeatureStore",
    "backbone_fingerprint",
    "build_feature_store",
    "images_fingerprint",
]

log = logging.getLogger(__name__)
CACHE_VERSION = "1"


def backbone_fingerprint(extractor: ImageFeatureExtractor, backbone: str, input_size: int) -> str:
    """Hash of everything that decides a trunk feature map except the image itself (the
    precision too: bf16 features on a CPU are not the float32 ones)."""
    precision = "cpu-bf16" if extractor.cpu_bf16 else "default"
    digest = hashlib.sha256(f"v{CACHE_VERSION}|{backbone}|{input_size}|eval|{precision}".encode())
    for name, tensor in sorted(extractor.trunk.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def images_fingerprint(items: list[EncodedItem], image_root: Path) -> str:
    digest = hashlib.sha256(str(image_root.resolve()).encode())
    for item in items:
        try:
            stat = (image_root / item.image).stat()
            sig = f"{item.item_id}|{item.image}|{stat.st_size}|{stat.st_mtime_ns}"
        except FileNotFoundError:
            sig = f"{item.item_id}|{item.image}|missing"
        digest.update(sig.encode())
    return digest.hexdigest()[:16]


def build_feature_store(
    items: list[EncodedItem],
    image_root: str | Path,
    extractor: ImageFeatureExtractor,
    *,
    backbone: str,
    input_size: int,
    cache_dir: str | Path,
    device: torch.device,
    amp: str = "auto",
    batch_size: int = 64,
    workers: int = 0,
    on_bad_image: BadImagePolicy = "skip",
    dist_info: DistInfo | None = None,
    progress: bool = True,
) -> FeatureStore:
    """Return the cache entry for these items and this backbone, computing it if needed."""
    if not extractor.fully_frozen:
        raise ValueError("the feature cache needs a fully frozen backbone (freeze_backbone: all)")
    image_root = Path(image_root)
    dist_info = dist_info or DistInfo()
    key = backbone_fingerprint(extractor, backbone, input_size)
    entry = Path(cache_dir) / key / f"{images_fingerprint(items, image_root)}.npy"
    with main_process_first(dist_info):
        if not entry.is_file() and dist_info.is_main:
            _compute(
                items,
                image_root,
                extractor,
                entry,
                input_size,
                device,
                amp,
                batch_size,
                workers,
                on_bad_image,
                progress,
            )
    return FeatureStore.open(entry)


def _compute(
    items: list[EncodedItem],
    image_root: Path,
    extractor: ImageFeatureExtractor,
    entry: Path,
    input_size: int,
    device: torch.device,
    amp: str,
    batch_size: int,
    workers: int,
    on_bad_image: BadImagePolicy,
    progress: bool,
) -> None:
    report = DataReport()
    dataset = TagImageDataset(
        items,
        DecodedImages(image_root, input_size=input_size, on_bad_image=on_bad_image),
        report=report,
    )
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=Collator(padding_index=0),
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(0),  # leave the global RNG to training
    )
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = entry.with_name(f".{entry.stem}.{os.getpid()}.tmp.npy")
    bad: dict[str, str] = {}
    order: list[str] = []
    chunks: list[np.ndarray] = []
    was_training = extractor.training
    extractor.eval()
    try:
        with torch.no_grad():
            bar = tqdm(
                loader,
                desc="caching backbone features",
                unit="batch",
                disable=not progress,
                leave=False,
            )
            for batch in bar:
                bad.update(dict(batch.skipped))
                if not len(batch):
                    continue
                with autocast(device, amp):
                    maps = extractor.trunk_features(batch.images.to(device, non_blocking=True))
                chunks.append(maps.float().cpu().numpy())
                order.extend(batch.item_ids)
        features = np.concatenate(chunks) if chunks else np.zeros((0, 1, 1, 1), np.float32)
        np.save(tmp, features)
        index = {
            "items": order,
            "bad": bad,
            "missing": report.missing_images,
            "shape": list(features.shape),
        }
        entry.with_suffix(".json").write_text(json.dumps(index))
        os.replace(tmp, entry)
    finally:
        tmp.unlink(missing_ok=True)
        extractor.train(was_training)
    log.info(
        "cached backbone features of %d images in %s (%d unusable)", len(order), entry, len(bad)
    )
