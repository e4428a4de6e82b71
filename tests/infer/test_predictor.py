"""Predictor.predict_batch: bounded batches, and a bad item fails alone, named."""

from __future__ import annotations

import pytest

from magneto.infer.checkpoint import load_checkpoint
from magneto.infer.predictor import ItemFailure, Prediction, Predictor, PredictRequest
from tests.conftest import write_jpeg, write_truncated_jpeg


def test_predict_batch_chunks_and_reports_each_bad_item(checkpoint, tmp_path, monkeypatch):
    words = load_checkpoint(checkpoint).vocabulary.words
    good = write_jpeg(tmp_path / "good.jpg", (80, 60))
    requests = [
        PredictRequest(good, words[:3], item_id="a"),
        PredictRequest(good, words[3:6], item_id="b"),
        PredictRequest(write_truncated_jpeg(tmp_path / "t.jpg"), words[:2], item_id="t"),
        PredictRequest(tmp_path / "absent.jpg", words[:2], item_id="m"),
        PredictRequest(good, [], item_id="e"),
        PredictRequest(good, ["nothing-known"], item_id="u"),
        PredictRequest(good, words[:2], top_k=0, item_id="k"),
        PredictRequest(good, words[6:8], item_id="c"),
    ]
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    batches: list[int] = []
    run = predictor.run
    monkeypatch.setattr(predictor, "run", lambda batch: batches.append(len(batch)) or run(batch))
    results = predictor.predict_batch(requests, batch_size=3)
    assert batches == [2, 1]  # chunks of 3: failures and items without a known tag skip the model
    kinds = [r.kind if isinstance(r, ItemFailure) else None for r in results]
    expected = [None, None, "bad_image", "missing_image", "no_tags", None, "invalid_option", None]
    assert kinds == expected
    failure = results[2]
    assert isinstance(failure, ItemFailure) and failure.index == 2 and failure.item_id == "t"
    assert str(failure).startswith("item 2 (t): corrupt or truncated image")
    unknown = results[5]
    assert isinstance(unknown, Prediction) and unknown.unknown_tags == ["nothing-known"]
    for index in (0, 1, 7):
        alone = predictor.predict(good, requests[index].tags)
        assert [t.score for t in results[index].tags] == pytest.approx(
            [t.score for t in alone.tags], abs=1e-5
        )
    with pytest.raises(ValueError, match="batch_size"):
        predictor.predict_batch(requests, batch_size=0)
