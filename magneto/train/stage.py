"""One harness for every training-like stage (supervised training, pre-training).

A run does the same things whatever the stage: guard the run directory, join the process
group, seed, load the vocabulary, build the model, initialise its embeddings, resume, fit,
and leave the process group. A :class:`Stage` says only what differs: model and config
overrides, extra initialisation (e.g. fine-tuning from pre-training), its datasets, its
checkpoint names, its threshold and whether the auxiliary losses apply.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from magneto.config import ConfigError, RunConfig
from magneto.data.vocabulary import Vocabulary
from magneto.devices import (
    DistInfo,
    check_run_dir,
    init_distributed,
    seed_everything,
    shutdown_distributed,
    training_amp,
)
from magneto.embeddings.initialise import init_embeddings
from magneto.infer.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from magneto.model.architectures import TagModel, build_model, speed_up_backbone
from magneto.train.fit_setup import assemble
from magneto.train.run_data import load_vocabulary, word2vec_corpus
from magneto.train.trainer import DEFAULT_CHECKPOINTS, FitResult, Trainer

log = logging.getLogger(__name__)


@dataclass
class StageRun:
    """What a stage's hooks may use: the resolved config and the run's shared pieces."""

    config: RunConfig
    vocabulary: Vocabulary
    model: TagModel
    device: torch.device
    dist_info: DistInfo
    out: Path
    resuming: bool


class Stage:
    """Override the hooks that differ; the defaults are supervised training's."""

    name = "train"
    checkpoints: dict[str, str] = DEFAULT_CHECKPOINTS

    def configure(self, config: RunConfig) -> RunConfig:
        """The config this stage runs with (``model.vocab_size`` is already set)."""
        return config

    def initialise(self, run: StageRun) -> None:
        """Extra initialisation of a fresh (not resumed) run, after the embeddings."""

    def datasets(self, run: StageRun) -> tuple[Dataset, Dataset]:
        raise NotImplementedError

    def uses_aux_losses(self, config: RunConfig) -> bool:
        """Whether L_it + L_t join the loss."""
        return config.aux

    def threshold(self, config: RunConfig) -> float | None:
        """A fixed decision threshold, or None to choose it on validation."""
        return None if config.threshold == "auto" else float(config.threshold)


def run_stage(stage: Stage, config: RunConfig, *, resume: bool = False) -> FitResult:
    """Run ``stage`` into ``config.out``; ``resume`` continues from its ``latest`` checkpoint,
    or returns at once, writing nothing, when that run has no epoch left (``nothing_to_do``)."""
    if not config.out:
        raise ConfigError("no run directory given: pass --out DIR")
    out = Path(config.out)
    dist_info, device = init_distributed(config.device)
    try:
        if dist_info.is_main:
            check_run_dir(out, resume)
        seed_everything(config.seed)
        vocabulary = load_vocabulary(config)
        sized = config.model.model_copy(update={"vocab_size": len(vocabulary)})
        config = stage.configure(config.model_copy(update={"model": sized}))
        resume_state = _resume_state(out / "latest.ckpt", config, dist_info) if resume else None
        if resume_state is not None and _epochs_done(resume_state) >= config.epochs:
            return _finished(stage, out, resume_state)
        model = build_model(config.model)
        speed_up_backbone(model, device, config.amp)  # bf16 frozen trunk on capable CPUs
        run = StageRun(config, vocabulary, model, device, dist_info, out, resume)
        if resume_state is None:
            init_embeddings(
                model,
                config.embeddings,
                vocabulary,
                corpus=word2vec_corpus(config),
                seed=config.seed,
            )
            stage.initialise(run)
        train, val = stage.datasets(run)
        if dist_info.is_main:
            log.info(start_summary(stage.name, config, model, device, train, val))
            if random_frozen_trunk(config):
                log.warning(RANDOM_TRUNK_WARNING)
        parts = assemble(
            config,
            model,
            train,
            val,
            device=device,
            dist_info=dist_info,
            aux=stage.uses_aux_losses(config),
        )
        trainer = Trainer(
            config,
            parts,
            vocabulary,
            out=out,
            stage=stage.name,
            device=device,
            dist_info=dist_info,
            threshold=stage.threshold(config),
            checkpoint_names=stage.checkpoints,
            resume_state=resume_state,
        )
        return trainer.fit()
    finally:
        shutdown_distributed()


def _epochs_done(checkpoint: Checkpoint) -> int:
    return int((checkpoint.training_state or {})["epoch"])


def _resume_state(latest: Path, config: RunConfig, dist_info: DistInfo) -> Checkpoint:
    """``latest`` (verified against its digest, so a corrupt file stops the run before it can
    overwrite anything), and one log line saying where the run goes on."""
    checkpoint = load_checkpoint(latest)
    if not checkpoint.training_state or "epoch" not in checkpoint.training_state:
        raise CheckpointError(f"{latest} holds no training state to resume from")
    done = _epochs_done(checkpoint)
    if dist_info.is_main:
        if done >= config.epochs:
            log.info(
                "nothing to do: %s has already finished %d of %d epochs",
                latest.parent,
                done,
                config.epochs,
            )
        else:
            log.info("resuming from epoch %d of %d (%s)", done + 1, config.epochs, latest.name)
    return checkpoint


def _finished(stage: Stage, out: Path, checkpoint: Checkpoint) -> FitResult:
    """A resumed run with no epoch left: its figures, and nothing written."""
    state = checkpoint.training_state or {}
    return FitResult(
        history=list(state.get("history") or []),
        best_f1=float(state.get("best_f1", float("nan"))),
        best_loss=float(state.get("best_loss", float("nan"))),
        checkpoints={k: out / v for k, v in stage.checkpoints.items()},
        nothing_to_do=True,
    )


def with_model(config: RunConfig, **updates: Any) -> RunConfig:
    """``config`` with its model config updated."""
    return config.model_copy(update={"model": config.model.model_copy(update=updates)})


RANDOM_TRUNK_WARNING = (
    "WARNING: the image trunk is random and frozen (backbone_weights: none): its features "
    "carry colour and layout but nothing learnt, which real photos need; train with "
    "--backbone-weights imagenet (or a weights file) unless the images are synthetic"
)


def random_frozen_trunk(config: RunConfig) -> bool:
    model = config.model
    return model.uses_images and model.backbone_weights is None and model.frozen_stages is not None


def _precision(config: RunConfig, model: TagModel, device: torch.device) -> str:
    if config.amp != "off" and device.type == "cuda":
        return "bf16 autocast"
    if config.amp == "bf16":
        return "bf16 autocast (forced on a CPU)"
    if training_amp(config.amp, device) == "bf16":
        return "bf16 autocast training steps, float32 validation (native bf16 CPU)"
    if model.uses_images and getattr(model.image_extractor, "cpu_bf16", False):
        return "float32, bf16 image trunk (native bf16 CPU)"
    return "float32"


def _trunk(config: RunConfig) -> str:
    model = config.model
    if not model.uses_images:
        return "no images (tags only)"
    weights = model.backbone_weights or "random (backbone_weights: none)"
    stages = model.frozen_stages
    frozen = {None: "trainable", 0: "stem frozen", 4: "frozen"}.get(
        stages, f"stem and {stages} stages frozen"
    )
    return f"{model.backbone}, {weights} weights, {frozen}"


def start_summary(
    stage: str,
    config: RunConfig,
    model: TagModel,
    device: torch.device,
    train: Dataset,
    val: Dataset,
) -> str:
    """One line saying what a run is about to do (both stages print the same)."""
    counts = f"{len(train)} items, validating on {len(val)}"  # type: ignore[arg-type]
    cache = "on" if config.feature_cache else "off"
    return (
        f"{stage}: {config.model.architecture} on {counts}; {config.epochs} epochs; device "
        f"{device}, {_precision(config, model, device)}; image trunk: {_trunk(config)}; "
        f"feature cache {cache}"
    )
