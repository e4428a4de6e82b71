"""Fitted baselines on disk: arrays in ``baselines.npz`` (loaded without pickle) and the rest in
``baselines.json``, so that they can be scored again later, on other files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from magneto.data.tag_context import TagContext
from magneto.data.vocabulary import Vocabulary
from magneto.errors import MagnetoError
from magneto.training.baseline_images import ImagePrototypes
from magneto.training.baselines import Baselines, Regression


def save_baselines(baselines: Baselines, out: Path) -> None:
    """``out/baselines.npz`` (arrays) and ``out/baselines.json``; refuses to overwrite."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MagnetoError(f"{out} already exists and is not an empty folder; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    arrays = dict(baselines.context.state())
    regressions = {"tag-context": baselines.tag_only, "tag-context+image": baselines.with_image}
    for name, regression in regressions.items():
        if regression is not None:
            for part in ("mean", "scale", "coef"):
                arrays[f"{name}.{part}"] = getattr(regression, part)
    if baselines.prototypes is not None:
        arrays.update(baselines.prototypes.state())
    meta = {
        "format": "magneto-baselines/1",
        "vocabulary": baselines.vocabulary.words,
        "thresholds": baselines.thresholds,
        "intercepts": {n: r.intercept for n, r in regressions.items() if r is not None},
        "image": baselines.image,
    }
    tmp = out / f".baselines.{os.getpid()}.npz"
    np.savez(tmp, **arrays)  # type: ignore[arg-type]  # numpy's stub reads **kw as its flags
    os.replace(tmp, out / "baselines.npz")
    (out / "baselines.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def load_baselines(folder: Path) -> Baselines:
    meta_path, arrays_path = folder / "baselines.json", folder / "baselines.npz"
    if not meta_path.is_file() or not arrays_path.is_file():
        raise MagnetoError(f"{folder} holds no saved baselines (magneto baseline --out DIR)")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("format") != "magneto-baselines/1":
        raise MagnetoError(f"{meta_path} is not a saved baselines file")
    with np.load(arrays_path, allow_pickle=False) as stored:
        arrays = {k: stored[k] for k in stored.files}

    def regression(name: str) -> Regression | None:
        if name not in meta["intercepts"]:
            return None
        mean, scale, coef = (arrays[f"{name}.{p}"] for p in ("mean", "scale", "coef"))
        return Regression(mean, scale, coef, float(meta["intercepts"][name]))

    tag_only = regression("tag-context")
    assert tag_only is not None  # always fitted
    return Baselines(
        vocabulary=Vocabulary(meta["vocabulary"]),
        context=TagContext.from_state(arrays),
        tag_only=tag_only,
        with_image=regression("tag-context+image"),
        prototypes=ImagePrototypes.from_state(arrays) if "image_sums" in arrays else None,
        image=meta.get("image"),
        thresholds={k: float(v) for k, v in meta["thresholds"].items()},
    )
