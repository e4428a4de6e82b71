"""Early stopping on validation F1 and the warm-up + cosine schedule, in the real trainer."""

from __future__ import annotations

import itertools
import json
import math

import pytest

from magneto.train.fit_setup import cosine_factor
from magneto.train.stopping import epochs_since_best, should_stop
from tests.conftest import tiny_config


def history(*f1: float) -> list[dict]:
    return [{"val_f1": value} for value in f1]


def test_epochs_since_the_best_f1_count_ties_from_the_first():
    assert epochs_since_best([]) == 0
    assert epochs_since_best(history(0.1, 0.3, 0.2)) == 1
    assert epochs_since_best(history(0.3, 0.3, 0.3)) == 2  # a tie is no improvement
    assert not should_stop(history(0.1, 0.3, 0.2), 2, "train", announce=False)
    assert should_stop(history(0.3, 0.2, 0.2), 2, "train", announce=False)
    assert not should_stop(history(0.3, 0.2, 0.2), None, "train", announce=False)


def test_the_cosine_schedule_warms_up_then_decays_to_zero():
    factors = [cosine_factor(2, 6, epoch) for epoch in range(7)]
    assert factors[:2] == [pytest.approx(1 / 3), pytest.approx(2 / 3)]
    assert factors[2] == 1.0 and factors[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a > b for a, b in itertools.pairwise(factors[2:]))
    assert cosine_factor(0, 4, 2) == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)))


@pytest.mark.slow
def test_a_run_stops_when_f1_stalls_and_says_so(tiny_data, tmp_path, caplog):
    from magneto.training import run_training

    data, images = tiny_data
    out = tmp_path / "run"
    config = tiny_config(data, images, out, epochs=6, early_stopping=1, lr=1e-9)
    with caplog.at_level("INFO"):
        result = run_training(config)
    ran = len(result.fit.history)
    f1 = [record["val_f1"] for record in result.fit.history]
    assert ran < 6 and f1[-1] <= max(f1[:-1])  # the last epoch did not improve: stopped
    assert all(later > earlier for earlier, later in itertools.pairwise(f1[:-1]))
    final = json.loads((out / "final.json").read_text())
    assert final["stopped_early"] and final["best_epoch"] == ran - 1 and final["epochs"] == ran
    assert final["early_stopping_patience"] == 1
    assert any(f"early stop after epoch {ran}" in r.getMessage() for r in caplog.records)
    assert len((out / "metrics.jsonl").read_text().splitlines()) == ran


@pytest.mark.slow
def test_the_cosine_schedule_drives_the_learning_rate(tiny_data, tmp_path):
    from magneto.training import run_training

    data, images = tiny_data
    config = tiny_config(
        data, images, tmp_path / "run", epochs=3, scheduler="cosine", warmup_epochs=1, lr=0.05
    )
    lrs = [record["lr"] for record in run_training(config).fit.history]
    # each record holds the lr after that epoch's step: the next epoch's
    assert lrs == [pytest.approx(0.05), pytest.approx(0.025), pytest.approx(0.0, abs=1e-12)]
