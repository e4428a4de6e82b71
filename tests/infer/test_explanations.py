"""Explanations: every tag's reason from one decision function, and the model's stream scores
and attention over the image's region grid, computed only when asked for."""

from __future__ import annotations

import json

import pytest
import torch

from magneto.data.annotation_files import read_annotations
from magneto.infer.decisions import REASONS, decide, reason_text
from magneto.infer.predictor import Predictor
from magneto.model.architectures import build_model
from magneto.model.config import ModelConfig


@pytest.mark.parametrize(
    ("scores", "threshold", "top_k", "min_keep", "reasons"),
    [
        ([0.9, 0.2, None], 0.5, None, None, ["kept", "dropped_threshold", "unknown"]),
        ([0.9, 0.7, 0.6], 0.5, 2, None, ["kept", "kept", "dropped_top_k"]),
        ([0.6, 0.9, 0.7], 0.5, 1, None, ["dropped_top_k", "kept", "dropped_top_k"]),
        ([0.3, 0.1, 0.2], 0.5, None, 2, ["kept_min_keep", "dropped_threshold", "kept_min_keep"]),
        ([0.9, 0.4, 0.3], 0.5, None, 2, ["kept", "kept_min_keep", "dropped_threshold"]),
        ([0.9, 0.8, 0.1], 0.5, 1, 2, ["kept", "kept_min_keep", "dropped_threshold"]),
        ([None, None], 0.5, 1, 1, ["unknown", "unknown"]),
        ([0.5, 0.5], 0.5, None, None, ["kept", "kept"]),  # reaching the threshold keeps
        ([], 0.5, None, 3, []),
    ],
)
def test_each_reason_follows_threshold_top_k_and_min_keep(
    scores, threshold, top_k, min_keep, reasons
):
    assert decide(scores, threshold, top_k, min_keep) == reasons
    for reason in set(reasons):
        assert reason in REASONS and reason_text(reason, threshold, top_k, min_keep)


def test_reasons_agree_with_the_predictors_decision_and_words(checkpoint, tiny_data):
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    data, images = tiny_data
    record = read_annotations(data / "train.csv")[6]
    tags = [*record.tags, "unicorn"]
    for top_k, min_keep in ((None, None), (1, None), (None, len(tags)), (1, 2)):
        got = predictor.predict(images / record.image_path, tags, top_k=top_k, min_keep=min_keep)
        expected = decide([t.score for t in got.tags], got.threshold, top_k, min_keep)
        assert [t.reason for t in got.tags] == expected
        assert [t.kept for t in got.tags] == [r.startswith("kept") for r in expected]
    assert reason_text("dropped_top_k", 0.3, 2, None) == "dropped: only the top 2 are kept"


def test_attention_is_computed_only_when_asked_and_changes_no_score():
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=9, d_model=32, heads=4, d_ff=64, tag_layers=1, image_layers=1)
    model = build_model(config).eval()
    images = torch.randn(2, 3, 64, 64)
    tags = torch.tensor([[0, 3, 5], [2, 9, 9]])
    mask = tags == 9
    with torch.no_grad():
        plain = model(images, tags, mask)
        explained = model(images, tags, mask, explain=True)
    assert plain.attention is None
    assert torch.equal(plain.final, explained.final) and torch.equal(plain.alpha, explained.alpha)
    attention = explained.attention
    assert attention.shape == (2, 3, 2, 2)  # a 64 px image: a 2x2 ResNet-18 grid
    sums = attention.flatten(2).sum(-1)
    assert torch.allclose(sums[~mask], torch.ones(int((~mask).sum())), atol=1e-5)
    assert torch.all(sums[mask] == 0)  # padding looks nowhere
    tags_only = build_model(config.model_copy(update={"architecture": "tf-t"})).eval()
    assert tags_only(None, tags, mask, explain=True).attention is None


def test_answers_without_explain_are_unchanged_and_with_it_complete(checkpoint, tiny_data):
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    data, images = tiny_data
    record = read_annotations(data / "train.csv")[6]
    plain = predictor.predict(images / record.image_path, list(record.tags))
    rich = predictor.predict(images / record.image_path, list(record.tags), explain=True)
    assert set(plain.as_dict()) == {"kept_tags", "tags", "unknown_tags", "threshold"}
    assert set(plain.as_dict()["tags"][0]) == {"tag", "score", "kept", "alpha", "known"}
    assert json.dumps(plain.as_dict()) == json.dumps(rich.as_dict())  # the same scores
    shown = rich.as_dict(explain=True)
    rows, columns = shown["attention_grid"]
    for tag in shown["tags"]:
        assert {"reason", "tag_score", "image_score", "attention"} <= set(tag)
        assert len(tag["attention"]) == rows and len(tag["attention"][0]) == columns
        assert sum(map(sum, tag["attention"])) == pytest.approx(1.0, abs=1e-3)
    assert "attention" not in rich.as_dict(explain=True, grid=False)["tags"][0]
