"""The names of the registered losses, without importing them (or torch): what a config may
name in ``loss`` and ``aux_loss``. :mod:`magneto.train.loss_registry` checks that it names
exactly the losses it registers."""

from __future__ import annotations

from typing import Literal, get_args

LossName = Literal["bce", "dice", "bce_dice", "focal", "asl", "apl", "sigmoidf1", "zlpr"]
LOSS_NAMES: tuple[str, ...] = get_args(LossName)
