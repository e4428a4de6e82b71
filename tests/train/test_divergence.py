"""A training loss that stops being finite ends the run with one clear error, before the
bad step touches the weights."""

from __future__ import annotations

import pytest
import torch

from magneto.data.dataset import Batch
from magneto.errors import MagnetoError, TrainingDiverged
from magneto.model.architectures import build_model
from magneto.model.config import ModelConfig
from magneto.train.loop import train_one_epoch
from magneto.train.loss_registry import build_loss
from magneto.train.total_loss import TotalLoss


def _batch(index: int) -> Batch:
    tags = torch.tensor([[1, 2, 3], [4, 5, 10]])
    mask = tags == 10
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    return Batch([f"a{index}", f"b{index}"], torch.empty(0), tags, mask, targets)


class PoisonedSecondBatch(TotalLoss):
    """The real objective, NaN from the second batch on."""

    calls = 0

    def __call__(self, output, targets, padding_mask):
        loss, parts = super().__call__(output, targets, padding_mask)
        self.calls += 1
        return (loss * float("nan") if self.calls >= 2 else loss), parts


def test_a_nan_loss_stops_training_before_the_step():
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(vocab_size=10, d_model=8, heads=2, d_ff=16, architecture="tf-t")
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    criterion = PoisonedSecondBatch(build_loss("bce_dice"))
    weights: dict[str, torch.Tensor] = {}

    class Snapshot(list):
        def __iter__(self):
            for batch in list.__iter__(self):
                weights.update({n: p.detach().clone() for n, p in model.named_parameters()})
                yield batch

    loader = Snapshot([_batch(0), _batch(1), _batch(2)])
    with pytest.raises(TrainingDiverged) as caught:
        train_one_epoch(
            model, loader, criterion, optimizer, device=torch.device("cpu"),
            description="train epoch 3/8", progress=False,
        )  # fmt: skip
    message = str(caught.value)
    assert isinstance(caught.value, MagnetoError) and "\n" not in message
    assert message.startswith("train epoch 3/8: the training loss became nan after 2 items")
    assert "--amp off" in message and "--lr" in message
    for name, parameter in model.named_parameters():  # the NaN batch changed nothing
        assert torch.equal(parameter, weights[name]), name
        assert torch.isfinite(parameter).all()
