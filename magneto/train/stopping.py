"""Early stopping on validation F1: a run stops once F1 has not improved for ``patience``
epochs, so figures come from models that finished learning, not from a fixed epoch count."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

log = logging.getLogger("magneto.train.trainer")


def epochs_since_best(history: Sequence[dict[str, Any]]) -> int:
    """Epochs since validation F1 last improved (0: the last epoch was the best)."""
    f1 = [record["val_f1"] for record in history]
    return len(f1) - 1 - int(np.argmax(f1)) if f1 else 0


def should_stop(
    history: Sequence[dict[str, Any]], patience: int | None, stage: str, announce: bool
) -> bool:
    """Whether to stop before the next epoch; says why in one line when it does."""
    stale = epochs_since_best(history)
    if patience is None or stale < patience:
        return False
    if announce:
        best = len(history) - stale
        log.info(
            "%s: early stop after epoch %d: val F1 has not improved for %d epochs "
            "(best %.4f at epoch %d)",
            stage,
            len(history),
            stale,
            history[best - 1]["val_f1"],
            best,
        )
    return True
