"""``magneto train``: supervised training of MAGNeto or a baseline on a prepared dataset."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset

from magneto.config import ConfigError, RunConfig
from magneto.data.items import EncodedItem
from magneto.infer.checkpoint import load_checkpoint
from magneto.train.run_data import data_dir
from magneto.train.stage import Stage, StageRun, run_stage
from magneto.train.trainer import FitResult
from magneto.training.data import start_tag_bias, supervised_datasets
from magneto.training.transfer import init_from_pretrained

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    out: Path
    fit: FitResult


class SupervisedStage(Stage):
    """train.csv with TAD, val.csv as is; optionally fine-tuned from a pre-training run."""

    name = "train"

    def __init__(self) -> None:
        # train.csv as the tag bias's start read it, so that datasets() need not read it again.
        self._train_items: list[EncodedItem] | None = None

    def configure(self, config: RunConfig) -> RunConfig:
        if config.model.gating is False:
            raise ConfigError("gating: false is the pre-training model; use magneto pretrain")
        return config

    def initialise(self, run: StageRun) -> None:
        if run.config.init_from:
            self._transfer(run, run.config.init_from)
        if run.model.tag_bias is not None:
            train_file = data_dir(run.config) / "train.csv"
            self._train_items = start_tag_bias(run.model.tag_bias, train_file, run.vocabulary)

    def _transfer(self, run: StageRun, init_from: str) -> None:
        source = load_checkpoint(init_from)
        copied = init_from_pretrained(run.model, source, run.vocabulary)
        log.info(
            "initialised from %s: %s",
            init_from,
            ", ".join(f"{b.rstrip('.')} ({n} tensors)" for b, n in copied.items()),
        )

    def datasets(self, run: StageRun) -> tuple[Dataset, Dataset]:
        items, self._train_items = self._train_items, None
        return supervised_datasets(
            run.config, run.vocabulary, run.model, run.device, run.dist_info, items
        )


def run_training(config: RunConfig, *, resume: bool = False) -> TrainResult:
    """Train, validating every epoch; writes checkpoints, metrics and curves to ``config.out``."""
    fit = run_stage(SupervisedStage(), config, resume=resume)
    return TrainResult(out=Path(config.out or ""), fit=fit)
