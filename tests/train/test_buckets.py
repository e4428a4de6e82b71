"""Length buckets: every item once an epoch, less padding, the same batches for the same seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from magneto.train.buckets import LengthBuckets, padding_share, random_batches
from tests.conftest import tiny_config


def test_each_epoch_covers_every_item_once_with_less_padding():
    lengths = np.random.default_rng(0).integers(1, 65, 1000)
    sampler = LengthBuckets(lengths, 32, torch.Generator().manual_seed(3), span=10)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 32
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert all(len(b) <= 32 for b in batches)
    bucketed = padding_share(lengths, batches)
    plain = padding_share(lengths, random_batches(1000, 32))
    assert bucketed < 0.1 < 0.3 < plain
    again = LengthBuckets(lengths, 32, torch.Generator().manual_seed(3), span=10)
    assert list(again) == batches  # a resumed epoch draws the same batches
    assert list(sampler) != batches  # the next epoch another order
    assert padding_share([3, 3], [[0, 1]]) == 0.0


@pytest.mark.slow
def test_a_run_with_length_buckets_trains_and_reports_the_padding(tiny_data, tmp_path, caplog):
    from magneto.training import run_training

    data, images = tiny_data
    config = tiny_config(data, images, tmp_path / "run", epochs=2, length_buckets=True)
    with caplog.at_level("INFO"):
        history = run_training(config).fit.history
    assert len(history) == 2 and all(np.isfinite(r["train_loss"]) for r in history)
    assert any("length buckets: padding is" in r.getMessage() for r in caplog.records)
