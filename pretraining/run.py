"""``magneto pretrain``: the gate-less two-output model learns to spot added random tags.

Items come from the prepared ``unlabeled.csv`` (and, by default, ``train.csv`` with its labels
ignored); a seeded share is held out to validate. The loss is ``L_u = L_it + L_t``. The best
epoch (lowest validation loss) is written to ``RUN_DIR/pretrain.ckpt``; ``magneto train
--init-from RUN_DIR/pretrain.ckpt`` fine-tunes from it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from magneto.checkpoint import load_checkpoint
from magneto.config import ConfigError, RunConfig
from magneto.embeddings import init_embeddings
from magneto.engine import FitResult, Trainer
from magneto.model import build_model
from magneto.prepared import data_dir, feature_store, load_items, load_vocabulary, make_dataset
from magneto.runtime import (
    check_run_dir,
    init_distributed,
    seed_everything,
    shutdown_distributed,
)
from pretraining.noise import RandomTagNoise

log = logging.getLogger(__name__)
CHECKPOINTS = {"best_loss": "pretrain.ckpt", "latest": "latest.ckpt"}


@dataclass
class PretrainResult:
    out: Path
    checkpoint: Path
    fit: FitResult


def run_pretraining(config: RunConfig, *, resume: bool = False) -> PretrainResult:
    if not config.out:
        raise ConfigError("no run directory given: pass --out DIR")
    out = Path(config.out)
    dist_info, device = init_distributed(config.device)
    try:
        if dist_info.is_main:
            check_run_dir(out, resume)
        seed_everything(config.seed)
        vocabulary = load_vocabulary(config)
        model_config = config.model.model_copy(
            update={"vocab_size": len(vocabulary), "gating": False, "architecture": "magneto"}
        )
        config = config.model_copy(
            update={
                "model": model_config,
                "epochs": config.pretrain_epochs or config.epochs,
                "lr": config.pretrain_lr or config.lr,
            }
        )
        model = build_model(model_config)
        if not resume:
            init_embeddings(model, config, vocabulary)

        root = data_dir(config)
        items = []
        stores = []
        for source in config.pretrain_sources:
            path = root / f"{source}.csv"
            if not path.is_file():
                raise ConfigError(f"pre-training source {path} not found")
            loaded, _ = load_items(path, vocabulary, labelled=False)
            if config.feature_cache:  # one entry per file, shared with ``magneto train``
                stores.append(
                    feature_store(config, loaded, model, device=device, dist_info=dist_info)
                )
            seen = {it.item_id for it in items}
            items += [replace(it, targets=None) for it in loaded if it.item_id not in seen]
        if len(items) < 2:
            raise ConfigError("pre-training needs at least 2 items")
        order = np.random.default_rng(config.seed).permutation(len(items))
        n_val = max(1, round(config.pretrain_val_fraction * len(items)))
        val_items = [items[i] for i in order[:n_val]]
        train_items = [items[i] for i in order[n_val:]]
        noise = RandomTagNoise(len(vocabulary), config.noise_ratio, config.max_len)
        train = make_dataset(
            config,
            train_items,
            model,
            train=True,
            tag_transform=noise,
            device=device,
            dist_info=dist_info,
        )
        val = make_dataset(
            config,
            val_items,
            model,
            train=False,
            tag_transform=noise,
            device=device,
            dist_info=dist_info,
        )
        log.info("pre-training on %d items, validating on %d", len(train), len(val))
        resume_state = load_checkpoint(out / "latest.ckpt") if resume else None
        trainer = Trainer(
            config,
            model,
            vocabulary,
            train,
            val,
            out=out,
            stage="pretrain",
            device=device,
            dist_info=dist_info,
            aux=True,
            threshold=0.5,  # fine-tuning never uses the pre-training threshold
            checkpoint_names=CHECKPOINTS,
            resume_state=resume_state,
        )
        fit = trainer.fit()
        return PretrainResult(out=out, checkpoint=out / CHECKPOINTS["best_loss"], fit=fit)
    finally:
        shutdown_distributed()
