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
from torch.utils.data import Dataset

from magneto.config import ConfigError, RunConfig
from magneto.data.dataset import EncodedItem
from magneto.data.feature_store import CombinedFeatures
from magneto.data.items import load_items
from magneto.pretraining.noise import RandomTagNoise
from magneto.train.run_data import data_dir, feature_store, make_dataset
from magneto.train.stage import Stage, StageRun, run_stage, with_model
from magneto.train.trainer import FitResult

log = logging.getLogger(__name__)
CHECKPOINTS = {"best_loss": "pretrain.ckpt", "latest": "latest.ckpt"}


@dataclass
class PretrainResult:
    out: Path
    checkpoint: Path
    fit: FitResult


class PretrainStage(Stage):
    """Unlabeled (and train) items with random tags added; both stream losses, no gate."""

    name = "pretrain"
    checkpoints = CHECKPOINTS

    def configure(self, config: RunConfig) -> RunConfig:
        config = with_model(config, gating=False, architecture="magneto", tag_bias=False)
        return config.model_copy(
            update={
                "epochs": config.pretrain_epochs or config.epochs,
                "lr": config.pretrain_lr or config.lr,
            }
        )

    def uses_aux_losses(self, config: RunConfig) -> bool:
        return True  # L_u = L_it + L_t: the gate-less model has no final loss of its own

    def threshold(self, config: RunConfig) -> float | None:
        return 0.5  # fine-tuning never uses the pre-training threshold

    def datasets(self, run: StageRun) -> tuple[Dataset, Dataset]:
        config = run.config
        items, features = self._items(run)
        if len(items) < 2:
            raise ConfigError("pre-training needs at least 2 items")
        order = np.random.default_rng(config.seed).permutation(len(items))
        n_val = max(1, round(config.pretrain_val_fraction * len(items)))
        noise = RandomTagNoise(len(run.vocabulary), config.noise_ratio, config.max_len)
        train, val = (
            make_dataset(
                config,
                [items[i] for i in rows],
                run.model,
                train=is_train,
                tag_transform=noise,
                device=run.device,
                dist_info=run.dist_info,
                features=features,
            )
            for rows, is_train in ((order[n_val:], True), (order[:n_val], False))
        )
        return train, val

    def _items(self, run: StageRun) -> tuple[list[EncodedItem], CombinedFeatures | None]:
        """Every source's items (first occurrence of an id wins), labels dropped, and the
        sources' feature-cache entries (shared with ``magneto train``) looked up as one."""
        config, root = run.config, data_dir(run.config)
        items: list[EncodedItem] = []
        seen: set[str] = set()
        stores = []
        for source in config.pretrain_sources:
            path = root / f"{source}.csv"
            if not path.is_file():
                others = [s for s in ("unlabeled", "train") if (root / f"{s}.csv").is_file()]
                hint = f"; pass --pretrain-sources {','.join(others)}" if others else ""
                raise ConfigError(f"pre-training source {path} not found{hint}")
            loaded, _ = load_items(path, run.vocabulary, labelled=False)
            if config.feature_cache:
                stores.append(
                    feature_store(
                        config, loaded, run.model, device=run.device, dist_info=run.dist_info
                    )
                )
            items += [replace(it, targets=None) for it in loaded if it.item_id not in seen]
            seen.update(it.item_id for it in loaded)
        return items, CombinedFeatures(stores) if stores else None


def run_pretraining(config: RunConfig, *, resume: bool = False) -> PretrainResult:
    fit = run_stage(PretrainStage(), config, resume=resume)
    out = Path(config.out or "")
    return PretrainResult(out=out, checkpoint=out / CHECKPOINTS["best_loss"], fit=fit)
