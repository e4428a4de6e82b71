"""Packed tokens are rounded up to ROWS_MULTIPLE rows with padded positions, and the filler
rows change nothing: the same outputs and gradients as the exact packing."""

from __future__ import annotations

import pytest
import torch

from magneto.model import packing as packing_module
from magneto.model.architectures import build_model
from magneto.model.config import ModelConfig
from magneto.model.packing import ROWS_MULTIPLE, Packing


def _mask(lengths: list[int], width: int) -> torch.Tensor:
    return torch.arange(width)[None, :] >= torch.tensor(lengths)[:, None]


def test_rows_are_a_multiple_and_the_filler_is_padding():
    mask = _mask([30, 3, 17, 9, 64, 1], 64)
    packing = Packing(mask)
    real = int((~mask).sum())
    assert packing.tokens == real == 124
    assert len(packing.rows_index) == 128 and len(packing.rows_index) % ROWS_MULTIPLE == 0
    assert torch.equal(packing.rows_index[:real], packing.index)
    assert mask.reshape(-1)[packing.rows_index[real:]].all()  # filler rows are padded slots


def test_a_batch_with_less_room_than_a_multiple_packs_every_slot():
    mask = _mask([3, 1], 4)  # 8 slots, 4 real: rounding up to 64 is capped at 8
    packing = Packing(mask)
    assert len(packing.rows_index) == 8 and packing.tokens == 4
    x = torch.arange(8.0).view(2, 4, 1)
    round_trip = packing.unpack(packing.pack(x), fill=-1.0).view(-1)
    assert torch.equal(round_trip, torch.tensor([0.0, 1, 2, -1, 4, -1, -1, -1]))


def _run(model, tags, mask):
    model.zero_grad()
    out = model(None, tags, mask, image_features=torch.ones(len(tags), 512, 2, 2))
    (out.final[~mask] * torch.linspace(-1, 1, int((~mask).sum()))).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.final, grads


@pytest.mark.parametrize("architecture", ["magneto", "tf-t", "ff", "tf-it"])
def test_filler_rows_change_no_output_and_no_gradient(architecture, monkeypatch):
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=40, d_model=16, heads=2, d_ff=32, architecture=architecture)
    model = build_model(config).eval()
    mask = _mask([5, 2, 7, 1], 7)
    tags = torch.randint(0, 40, mask.shape).masked_fill(mask, 40)
    rounded, rounded_grads = _run(model, tags, mask)
    monkeypatch.setattr(packing_module, "ROWS_MULTIPLE", 1)
    assert len(Packing(mask).rows_index) == 15  # exact packing: no filler
    exact, exact_grads = _run(model, tags, mask)
    assert torch.allclose(rounded, exact, atol=1e-6)
    assert rounded_grads.keys() == exact_grads.keys()
    for name, grad in exact_grads.items():
        assert torch.allclose(rounded_grads[name], grad, atol=1e-6), name
