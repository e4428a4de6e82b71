"""``magneto train``: supervised training of MAGNeto or a baseline on a prepared dataset."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from magneto.checkpoint import load_checkpoint
from magneto.config import ConfigError, RunConfig
from magneto.embeddings import init_embeddings
from magneto.engine import FitResult, Trainer
from magneto.model import build_model
from magneto.prepared import load_vocabulary
from magneto.runtime import (
    check_run_dir,
    init_distributed,
    seed_everything,
    shutdown_distributed,
)
from training.data import supervised_datasets
from training.transfer import init_from_pretrained

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    out: Path
    fit: FitResult


def run_training(config: RunConfig, *, resume: bool = False) -> TrainResult:
    """Train, validating every epoch; writes checkpoints, metrics and curves to ``config.out``."""
    if not config.out:
        raise ConfigError("no run directory given: pass --out DIR")
    out = Path(config.out)
    dist_info, device = init_distributed(config.device)
    try:
        if dist_info.is_main:
            check_run_dir(out, resume)
        seed_everything(config.seed)
        vocabulary = load_vocabulary(config)
        model_config = config.model.model_copy(update={"vocab_size": len(vocabulary)})
        if model_config.gating is False:
            raise ConfigError("gating: false is the pre-training model; use magneto pretrain")
        config = config.model_copy(update={"model": model_config})
        resume_state = load_checkpoint(out / "latest.ckpt") if resume else None
        model = build_model(model_config)
        if resume_state is None:
            init_embeddings(model, config, vocabulary)
            if config.init_from:
                copied = init_from_pretrained(model, load_checkpoint(config.init_from), vocabulary)
                log.info(
                    "initialised from %s: %s",
                    config.init_from,
                    ", ".join(f"{b.rstrip('.')} ({n} tensors)" for b, n in copied.items()),
                )
        train, val = supervised_datasets(config, vocabulary, model, device, dist_info)
        fixed = None if config.threshold == "auto" else float(config.threshold)
        trainer = Trainer(
            config,
            model,
            vocabulary,
            train,
            val,
            out=out,
            stage="train",
            device=device,
            dist_info=dist_info,
            aux=config.aux,
            threshold=fixed,
            resume_state=resume_state,
        )
        return TrainResult(out=out, fit=trainer.fit())
    finally:
        shutdown_distributed()
