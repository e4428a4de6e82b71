from __future__ import annotations

import pytest
import torch

from magneto.train.metrics import SetMetricAccumulator, outlier_rate, per_item_scores, set_metrics


def test_per_item_and_micro_scores_by_hand():
    kept = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    truth = torch.tensor([[1, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0]])
    mask = torch.tensor([[0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1]], dtype=torch.bool)
    p, r, f1 = per_item_scores(kept, truth, mask)
    assert p.tolist() == [0.5, 1.0, 0.0]
    assert r.tolist() == [0.5, 1.0, 0.0]
    assert f1.tolist() == [0.5, 1.0, 0.0]
    m = set_metrics(kept, truth, mask)
    assert m.items == 3
    assert m.precision == pytest.approx(0.5)
    assert m.f1 == pytest.approx(0.5)
    # micro: tp = 2, fp = 1, fn = 2 -> 4 / 7
    assert m.micro_f1 == pytest.approx(4 / 7)
    assert m.mean_kept == pytest.approx(1.0)
    assert m.mean_important == pytest.approx(4 / 3)
    assert m.outlier_rate is None


def test_edge_cases_of_empty_sets():
    kept = torch.tensor([[0, 0], [1, 0], [0, 0]], dtype=torch.bool)
    truth = torch.tensor([[0, 0], [0, 0], [1, 0]])
    p, r, f1 = per_item_scores(kept, truth)
    assert p.tolist() == [1.0, 0.0, 0.0]  # nothing kept, nothing important -> perfect
    assert r.tolist() == [1.0, 1.0, 0.0]
    assert f1.tolist() == [1.0, 0.0, 0.0]


def test_padding_never_counts():
    kept = torch.tensor([[1, 1]], dtype=torch.bool)
    truth = torch.tensor([[1, 1]])
    mask = torch.tensor([[False, True]])
    m = set_metrics(kept, truth, mask)
    assert m.micro_f1 == 1.0 and m.mean_kept == 1.0 and m.mean_important == 1.0


def test_accumulator_equals_one_shot_and_merges():
    torch.manual_seed(0)
    kept = torch.rand(10, 6) > 0.5
    truth = (torch.rand(10, 6) > 0.4).long()
    mask = torch.rand(10, 6) > 0.8
    acc = SetMetricAccumulator()
    acc.update(kept[:4], truth[:4], mask[:4])
    other = SetMetricAccumulator()
    other.update(kept[4:], truth[4:], mask[4:])
    acc.merge(other.state)
    assert acc.compute() == set_metrics(kept, truth, mask)


def test_outlier_rate():
    kept = torch.tensor([[1, 0, 1], [1, 1, 0], [1, 0, 0], [1, 0, 0]], dtype=torch.bool)
    outliers = torch.tensor([[0, 1, 1], [0, 0, 1], [0, 1, 0], [0, 0, 0]], dtype=torch.bool)
    # items 0-2 got outliers; item 0 kept one -> 1 / 3
    assert outlier_rate(kept, outliers) == pytest.approx(100 / 3)
    m = set_metrics(kept, torch.zeros_like(kept, dtype=torch.long), outliers=outliers)
    assert m.outlier_rate == pytest.approx(100 / 3)
    mask = torch.tensor([[0, 0, 1], [0, 0, 0], [0, 0, 0], [0, 0, 0]], dtype=torch.bool)
    assert outlier_rate(kept, outliers, mask) == 0.0  # the only kept outlier was padding
    with pytest.raises(ValueError):
        outlier_rate(kept, torch.zeros_like(outliers))
