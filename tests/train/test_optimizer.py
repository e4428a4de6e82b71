"""The optimizers run fused on the CPU and make the same update as the multi-tensor path."""

from __future__ import annotations

import pytest
import torch

from magneto.config import RunConfig
from magneto.model.architectures import build_model
from magneto.model.config import ModelConfig
from magneto.train.fit_setup import build_optimizer


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_fused_on_the_cpu_with_the_same_update(name):
    config = RunConfig(
        model=ModelConfig(vocab_size=30, d_model=16, heads=2, d_ff=32, architecture="tf-t"),
        optimizer=name,
        lr=0.01,
        weight_decay=1e-4,
    )
    torch.manual_seed(0)
    fused_model = build_model(config.model)
    plain_model = build_model(config.model)
    plain_model.load_state_dict(fused_model.state_dict())
    fused = build_optimizer(config, fused_model)
    assert fused.defaults["fused"] is True
    plain_kind = torch.optim.AdamW if name == "adamw" else torch.optim.SGD
    extra = {} if name == "adamw" else {"momentum": config.momentum}
    plain = plain_kind(plain_model.parameters(), lr=0.01, weight_decay=1e-4, foreach=True, **extra)
    initial = [p.detach().clone() for p in fused_model.parameters()]
    for _ in range(3):
        grads = [torch.randn_like(p) for p in fused_model.parameters()]
        for model, optimizer in ((fused_model, fused), (plain_model, plain)):
            for p, g in zip(model.parameters(), grads, strict=True):
                p.grad = g.clone()
            optimizer.step()
    for a, b in zip(fused_model.parameters(), plain_model.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    moved = [not torch.equal(a, b) for a, b in zip(fused_model.parameters(), initial, strict=True)]
    assert all(moved)
