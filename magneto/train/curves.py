"""The PNG of a run's curves: loss, F1 and the gate's alpha per epoch (paper Figs. 3, 4, 8)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot_curves(history: list[dict[str, Any]], path: str | Path, title: str = "") -> None:
    epochs = [r["epoch"] for r in history]  # records number epochs from 1
    has_alpha = any("val_alpha" in r for r in history)
    fig, axes = plt.subplots(1, 3 if has_alpha else 2, figsize=(13 if has_alpha else 9, 3.6))
    for key, label in (("train_loss", "train"), ("val_loss", "val")):
        axes[0].plot(epochs, [r.get(key) for r in history], marker=".", label=label)
    for part in ("final", "image", "tag"):
        if any(f"val_loss_{part}" in r for r in history):
            axes[0].plot(
                epochs, [r.get(f"val_loss_{part}") for r in history], ls="--", label=f"val L_{part}"
            )
    axes[0].set(title="loss", xlabel="epoch")
    axes[0].legend(fontsize=7)
    axes[1].plot(epochs, [r.get("val_f1") for r in history], marker=".", label="F1 (tuned t)")
    axes[1].plot(epochs, [r.get("val_f1_at_0.5") for r in history], ls="--", label="F1 at 0.5")
    axes[1].set(title="validation F1", xlabel="epoch", ylim=(0, 1))
    axes[1].legend(fontsize=7)
    if has_alpha:
        axes[2].plot(epochs, [r.get("train_alpha") for r in history], marker=".", label="train")
        axes[2].plot(epochs, [r.get("val_alpha") for r in history], marker=".", label="val")
        axes[2].set(title="mean gate alpha (image weight)", xlabel="epoch", ylim=(0, 1))
        axes[2].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    tmp = Path(path).with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)
