"""``magneto baseline``: the simple models a user would try first, fit on ``train.csv`` and
scored with exactly ``magneto evaluate``'s metrics, so that a trained model has a figure to beat
on the same items.

- ``keep-all``: every tag kept (recall 1; the floor any model must clear);
- ``tag-prior``: a tag's rate of being important in the training items, by counting;
- ``tag-context``: a logistic regression (scikit-learn) on what the training tags say about a
  tag beside the item's other tags (:mod:`magneto.data.tag_context`);
- ``tag-context+image``: the same plus how the item's picture resembles the pictures where the
  tag was important, and those where it was not (:mod:`.baseline_images`; needs ``--images``).

Thresholds are chosen on ``val.csv`` (the per-item F1 grid training uses) and every split is
scored at them, so the val figures are optimistic and the test figures are not. Fitted
baselines are saved as arrays and JSON (no pickle) and can be scored again on other files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from magneto.data.annotation_files import read_annotations
from magneto.data.annotations import Annotation
from magneto.data.items import load_items
from magneto.data.tag_context import TagContext, TagPositions
from magneto.data.vocabulary import Vocabulary
from magneto.devices import resolve_device
from magneto.errors import MagnetoError
from magneto.train.metrics import SetMetrics, choose_threshold, metrics_at
from magneto.training.baseline_images import ImagePrototypes, pooled_features
from magneto.training.evaluate import EvaluationResult

BASELINES = ("keep-all", "tag-prior", "tag-context", "tag-context+image")
SPLITS = ("val", "test")
INSTALL_HINT = "pip install 'magneto-ets[baselines]'"
FOLDS = 5
TAG_FEATURES = 5  # the columns of TagContext.features


@dataclass
class ImageSettings:
    """The frozen backbone whose pooled features the image baseline reads."""

    images: Path
    backbone: str = "resnet18"
    backbone_weights: str | None = "imagenet"
    input_size: int = 112
    cache_dir: Path | None = None
    device: str = "auto"
    workers: int = 0


@dataclass
class Regression:
    """A fitted logistic regression, kept as its standardisation and weights."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray) -> Regression:
        try:
            from sklearn.linear_model import LogisticRegression
            from sklearn.preprocessing import StandardScaler
        except ImportError:
            raise MagnetoError(
                f"the tag-context baselines need scikit-learn: {INSTALL_HINT}"
            ) from None
        scaler = StandardScaler().fit(x)
        model = LogisticRegression(C=1.0, max_iter=2000).fit(scaler.transform(x), y)
        return cls(scaler.mean_, scaler.scale_, model.coef_[0], float(model.intercept_[0]))

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.mean) / self.scale @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-z))


@dataclass
class Baselines:
    """Everything fitted on the training split, and the thresholds chosen on val."""

    vocabulary: Vocabulary
    context: TagContext
    tag_only: Regression
    with_image: Regression | None = None
    prototypes: ImagePrototypes | None = None
    image: dict[str, Any] | None = None  # the ImageSettings the image features came from
    thresholds: dict[str, float] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [n for n in BASELINES if n != "tag-context+image" or self.with_image is not None]


@dataclass
class Split:
    """One annotation file's items as tag positions (outlier tags appended when asked)."""

    records: list[Annotation]
    positions: TagPositions
    outliers: np.ndarray  # per position: an added outlier tag
    pictures: np.ndarray | None = None


def _known(records: Sequence[Annotation], vocabulary: Vocabulary) -> list[Annotation]:
    """Items with at least one tag the vocabulary knows (``evaluate`` skips the others)."""
    return [r for r in records if any(vocabulary.get(t) is not None for t in r.tags)]


def _with_outliers(
    records: list[Annotation], vocabulary: Vocabulary, outliers: int, seed: int
) -> tuple[list[Annotation], list[set[int]]]:
    """Each item plus ``outliers`` random vocabulary tags it does not have (seeded)."""
    rng = np.random.default_rng(seed)
    words = vocabulary.words
    out, added = [], []
    for record in records:
        own = {vocabulary.get(t) for t in record.tags}
        extra: list[str] = []
        while len(extra) < outliers and len(own) + len(extra) < len(words):
            word = words[int(rng.integers(len(words)))]
            if vocabulary.get(word) not in own and word not in extra:
                extra.append(word)
        labels = (*(record.labels or (0,) * len(record.tags)), *(0,) * len(extra))
        out.append(Annotation(record.item_id, (*record.tags, *extra), labels, record.image))
        added.append(set(range(len(record.tags), len(record.tags) + len(extra))))
    return out, added


def load_split(path: Path, vocabulary: Vocabulary, outliers: int = 0, seed: int = 0) -> Split:
    records = _known(read_annotations(path), vocabulary)
    if not records:
        raise MagnetoError(f"{path} has no labelled item with a tag the vocabulary knows")
    added: list[set[int]] = [set() for _ in records]
    if outliers:
        records, added = _with_outliers(records, vocabulary, outliers, seed)
    flags = [
        i in added[n]
        for n, record in enumerate(records)
        for i, tag in enumerate(record.tags)
        if vocabulary.get(tag) is not None
    ]
    return Split(records, TagPositions(records, vocabulary), np.asarray(flags, dtype=bool))


def _pictures(split: Split, path: Path, vocabulary: Vocabulary, settings: ImageSettings):
    items, _ = load_items(path, vocabulary)
    cache = settings.cache_dir or settings.images / ".magneto-features"
    vectors = pooled_features(
        items,
        settings.images,
        backbone=settings.backbone,
        backbone_weights=settings.backbone_weights,
        input_size=settings.input_size,
        cache_dir=cache,
        device=resolve_device(settings.device),
        workers=settings.workers,
        progress=False,
    )
    found = {item.item_id: v for item, v in zip(items, vectors, strict=True)}
    zero = np.zeros(vectors.shape[1], dtype=np.float32)
    split.pictures = np.stack([found.get(r.item_id, zero) for r in split.records])


def scores_of(baselines: Baselines, name: str, split: Split) -> np.ndarray:
    """Per position, the baseline's score on items it was not fit on."""
    positions = split.positions
    if name == "keep-all":
        return np.ones(len(positions.concept))
    if name == "tag-prior":
        return baselines.context.prior(positions)
    x = baselines.context.features(positions, own=False)
    if name == "tag-context":
        return baselines.tag_only.predict(x)
    if baselines.with_image is None or baselines.prototypes is None or split.pictures is None:
        raise MagnetoError("the tag-context+image baseline needs the items' images (--images)")
    x = np.column_stack([x, baselines.prototypes.features(positions, split.pictures, False)])
    return baselines.with_image.predict(x)


def _per_item(split: Split, values: np.ndarray) -> list[np.ndarray]:
    starts = split.positions.starts
    return [values[starts[i] : starts[i + 1]] for i in range(split.positions.items)]


def out_of_fold_features(
    train: Split, vocabulary: Vocabulary, *, with_image: bool, folds: int = FOLDS, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Training features as unseen items' features are made: each fold's from statistics of
    the other folds. (Leaving only the item itself out shifts a tag's statistics by its own
    label, a leak the regression then learns backwards.)"""
    fold = np.random.default_rng(seed).permutation(len(train.records)) % folds
    xs, ys = [], []
    for k in range(folds):
        inside = [r for r, f in zip(train.records, fold, strict=True) if f == k]
        outside = [r for r, f in zip(train.records, fold, strict=True) if f != k]
        if not inside:
            continue
        held, rest = TagPositions(inside, vocabulary), TagPositions(outside, vocabulary)
        x = TagContext(rest, len(vocabulary)).features(held, own=False)
        if with_image:
            assert train.pictures is not None
            prototypes = ImagePrototypes(rest, train.pictures[fold != k], len(vocabulary))
            x = np.column_stack([x, prototypes.features(held, train.pictures[fold == k], False)])
        xs.append(x)
        ys.append(held.label)
    return np.concatenate(xs), np.concatenate(ys)


def fit_baselines(data: Path, image_settings: ImageSettings | None = None) -> Baselines:
    """Fit on ``data/train.csv``; choose each baseline's threshold on ``data/val.csv``."""
    for name in ("vocab.csv", "train.csv", "val.csv"):
        if not (data / name).is_file():
            raise MagnetoError(f"{data} has no {name}: pass a prepared dataset (magneto prepare)")
    vocabulary = Vocabulary.load(data / "vocab.csv")
    train = load_split(data / "train.csv", vocabulary)
    val = load_split(data / "val.csv", vocabulary)
    if image_settings is not None:
        for split, name in ((train, "train.csv"), (val, "val.csv")):
            _pictures(split, data / name, vocabulary, image_settings)
    x_train, y_train = out_of_fold_features(
        train, vocabulary, with_image=image_settings is not None
    )
    context = TagContext(train.positions, len(vocabulary))
    tags_only = Regression.fit(x_train[:, :TAG_FEATURES], y_train)
    baselines = Baselines(vocabulary, context, tags_only)
    if image_settings is not None:
        assert train.pictures is not None
        baselines.prototypes = ImagePrototypes(train.positions, train.pictures, len(vocabulary))
        baselines.with_image = Regression.fit(x_train, y_train)
        baselines.image = {
            k: str(v) if isinstance(v, Path) else v for k, v in vars(image_settings).items()
        }
    targets = _per_item(val, val.positions.label)
    for name in baselines.names:
        if name == "keep-all":
            baselines.thresholds[name] = 0.5  # every score is 1
            continue
        chosen, _ = choose_threshold(_per_item(val, scores_of(baselines, name, val)), targets)
        baselines.thresholds[name] = chosen
    return baselines


def score_file(
    baselines: Baselines,
    path: Path,
    *,
    images: ImageSettings | None = None,
    outliers: int = 0,
    seed: int = 0,
) -> dict[str, EvaluationResult]:
    """Every baseline on one annotation file, as ``magneto evaluate`` reports a checkpoint."""
    split = load_split(path, baselines.vocabulary)
    noisy = load_split(path, baselines.vocabulary, outliers, seed) if outliers else None
    if baselines.with_image is not None and images is not None:
        for part in (s for s in (split, noisy) if s is not None):
            _pictures(part, path, baselines.vocabulary, images)
    results = {}
    for name in baselines.names:
        if name == "tag-context+image" and split.pictures is None:
            continue  # scored only where the images are given
        threshold = baselines.thresholds[name]
        scores = _per_item(split, scores_of(baselines, name, split))
        metrics = metrics_at(threshold, scores, _per_item(split, split.positions.label))
        outlier_metrics: SetMetrics | None = None
        if noisy is not None:
            noisy_scores = _per_item(noisy, scores_of(baselines, name, noisy))
            outlier_metrics = metrics_at(
                threshold,
                noisy_scores,
                _per_item(noisy, noisy.positions.label),
                _per_item(noisy, noisy.outliers.astype(float)),
            )
        results[name] = EvaluationResult(metrics, threshold, outliers, outlier_metrics)
    return results
