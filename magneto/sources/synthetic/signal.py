"""Is there signal in the tags, and in the pictures? Quick baselines on a prepared dataset.

A benchmark is only useful if neither stream alone reaches the top. These baselines, fit
on ``train.csv`` and scored on ``val.csv`` with the paper's per-item F1, check that without
a GPU: *keep-all*; *tag-only*, a logistic regression on what the tags tell (each concept's
importance rate, how often it is important beside each of the item's other tags, how
strongly it co-occurs with them, how many tags there are); and the same regression given
one *image* feature more -- either the generator's record of what is drawn (``drawn``, an
oracle for the picture) or a hue detector learned from the training pictures (``pixels``).
Training statistics are computed leaving the item itself out, so train scores are honest.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from magneto.data.annotations import Annotation
from magneto.data.tag_context import TagContext as TagModel
from magneto.data.tag_context import TagPositions as Flat
from magneto.data.vocabulary import Vocabulary, normalize_tag


def tag_statistics(
    tags: Sequence[Sequence[str]], labels: Sequence[Sequence[int] | None], vocabulary: int = 0
) -> dict[str, float]:
    """Tags per item, important ratio, concepts used and how skewed their frequency is."""
    n_tags = np.array([len(t) for t in tags])
    n_imp = np.array([sum(y or ()) for y in labels])
    counts = np.sort(np.bincount(np.unique([normalize_tag(t) for ts in tags for t in ts],
                                           return_inverse=True)[1]))[::-1]  # fmt: skip
    size = max(vocabulary, len(counts))
    top = max(1, int(np.ceil(0.1 * size)))
    return {
        "items": len(tags),
        "mean_tags": float(n_tags.mean()),
        "min_tags": int(n_tags.min()),
        "max_tags": int(n_tags.max()),
        "items_over_64": int((n_tags > 64).sum()),
        "mean_important": float(n_imp.mean()),
        "mean_important_ratio": float((n_imp / n_tags).mean()),
        "vocabulary": size,
        "concepts_used": len(counts),
        "top10_share": float(counts[:top].sum() / counts.sum()),
    }


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, steps: int = 25):
    """Newton's method; returns a function from features to probabilities."""
    mean, std = x.mean(0), x.std(0) + 1e-9
    z = np.column_stack([(x - mean) / std, np.ones(len(x))])
    w = np.zeros(z.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-z @ w))
        grad = z.T @ (p - y) / len(y) + l2 * w
        hess = (z * (p * (1 - p))[:, None]).T @ z / len(y) + l2 * np.eye(len(w))
        w -= np.linalg.solve(hess, grad)

    def predict(features: np.ndarray) -> np.ndarray:
        zz = np.column_stack([(features - mean) / std, np.ones(len(features))])
        return 1 / (1 + np.exp(-zz @ w))

    return predict


def mean_item_f1(flat: Flat, kept: np.ndarray) -> float:
    """The paper's F1 averaged over items (edge cases as in :mod:`magneto.train.metrics`)."""
    m = flat.items
    tp = np.bincount(flat.item, kept * flat.label, minlength=m)
    n_kept = np.bincount(flat.item, kept.astype(float), minlength=m)
    n_imp = np.bincount(flat.item, flat.label, minlength=m)
    precision = np.where(n_kept > 0, tp / np.maximum(n_kept, 1), (n_imp == 0).astype(float))
    recall = np.where(n_imp > 0, tp / np.maximum(n_imp, 1), 1.0)
    total = precision + recall
    return float(np.mean(np.where(total > 0, 2 * precision * recall / np.maximum(total, 1e-9), 0)))


def keep(flat: Flat, probs: np.ndarray, threshold: float) -> np.ndarray:
    """Tags at or above the threshold, and each item's best tag if none is."""
    best = np.zeros(len(probs), dtype=bool)
    for i in range(flat.items):
        lo, hi = flat.starts[i], flat.starts[i + 1]
        if hi > lo:
            best[lo + int(np.argmax(probs[lo:hi]))] = True
    return (probs >= threshold) | best


def _fit_and_score(x_train, train: Flat, x_val, val: Flat) -> float:
    predict = fit_logistic(x_train, train.label)
    p_train, p_val = predict(x_train), predict(x_val)
    grid = np.unique(np.quantile(p_train, np.linspace(0.0, 0.98, 50)))
    best = max(grid, key=lambda t: mean_item_f1(train, keep(train, p_train, t)))
    return mean_item_f1(val, keep(val, p_val, best))


def hue_histograms(paths: Sequence[Path], bins: int = 24) -> np.ndarray:
    """Share of each picture covered by saturated, bright pixels of each hue bin."""
    out = np.zeros((len(paths), bins))
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                hsv = np.asarray(image.convert("RGB").convert("HSV"))
        except OSError:
            continue  # a defect image: no pixel evidence
        vivid = (hsv[..., 1] > 128) & (hsv[..., 2] > 128)
        out[i] = np.bincount(hsv[..., 0][vivid].astype(int) * bins // 256, minlength=bins)
        out[i] /= vivid.size
    return out


def pixel_feature(train: Flat, h_train: np.ndarray, flat: Flat, h: np.ndarray, own: bool):
    """How much of a tag's hue the picture shows, and whether its hue is known (0, 0 for
    concepts never important in train).

    A concept's hue is learned from the training pictures where it was important: the hue
    bin most over-represented there compared with the average picture."""
    v = int(max(train.concept.max(), flat.concept.max())) + 1
    pos = train.label > 0
    sums = np.zeros((v, h.shape[1]))
    np.add.at(sums, train.concept[pos], h_train[train.item[pos]])
    counts = np.bincount(train.concept[pos], minlength=v).astype(float)
    mine = h[flat.item]
    own_pos = (flat.label > 0) if own else np.zeros(len(flat.label), dtype=bool)
    n = counts[flat.concept] - own_pos
    proto = (sums[flat.concept] - own_pos[:, None] * mine) / np.maximum(n, 1)[:, None]
    peak = np.argmax(proto - h_train.mean(0), axis=1)
    bins = h.shape[1]
    rows = np.arange(len(peak))
    shown = sum(mine[rows, (peak + d) % bins] for d in (-1, 0, 1))
    return np.column_stack([np.where(n > 0, np.log(shown + 0.002), np.log(0.002)), n > 0])


def signal_report(
    train: Sequence[Annotation],
    val: Sequence[Annotation],
    vocab: Vocabulary,
    *,
    drawn: dict[tuple[str, str], int] | None = None,
    images: Path | None = None,
) -> dict[str, float]:
    """Val F1 of keep-all, tag-only and, given ``drawn`` ((item_id, tag) -> 0/1) or the
    ``images`` directory, drawn-only and the tag model with the image feature added."""
    tr, va = Flat(train, vocab), Flat(val, vocab)
    model = TagModel(tr, len(vocab))
    x_tr, x_va = model.features(tr, own=True), model.features(va, own=False)
    out = {
        "keep_all": mean_item_f1(va, np.ones(len(va.label), dtype=bool)),
        "tag_only": _fit_and_score(x_tr, tr, x_va, va),
    }
    if drawn is not None:
        keys = [normalize_tag(w) for w in vocab.words]

        def flags(records: Sequence[Annotation], flat: Flat) -> np.ndarray:
            pairs = zip(flat.item.tolist(), flat.concept.tolist(), strict=True)
            return np.array([drawn.get((records[i].item_id, keys[c]), 0) for i, c in pairs], float)

        d_tr, d_va = flags(train, tr), flags(val, va)
        out["drawn_only"] = mean_item_f1(va, d_va > 0)
        out["tag_and_drawn"] = _fit_and_score(
            np.column_stack([x_tr, d_tr]), tr, np.column_stack([x_va, d_va]), va
        )
    if images is not None:
        h_tr = hue_histograms([images / r.image_path for r in train])
        h_va = hue_histograms([images / r.image_path for r in val])
        p_tr = pixel_feature(tr, h_tr, tr, h_tr, own=True)
        p_va = pixel_feature(tr, h_tr, va, h_va, own=False)
        out["tag_and_pixels"] = _fit_and_score(
            np.column_stack([x_tr, p_tr]), tr, np.column_stack([x_va, p_va]), va
        )
    return out


def read_drawn(path: Path) -> dict[tuple[str, str], int]:
    """``tag_kinds.csv`` -> (item_id, normalised tag) -> drawn."""
    import csv

    with path.open(newline="", encoding="utf-8") as handle:
        return {
            (row["item_id"], normalize_tag(row["tag"])): int(row["drawn"])
            for row in csv.DictReader(handle)
        }
