"""Attention with the cheap CPU dropout: the same attention as fused attention, masked keys
never read, and dropout that keeps the expectation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from magneto.model.dropout import attention


def _inputs():
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 2, 5, 8) for _ in range(3))
    keep = (torch.arange(5)[None, :] < torch.tensor([5, 3, 1])[:, None])[:, None, None, :]
    return q, k, v, keep


def test_without_dropout_it_is_fused_attention():
    q, k, v, keep = _inputs()
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    assert torch.allclose(attention(q, k, v, keep, 0.0, True), expected, atol=1e-6)
    assert torch.allclose(attention(q, k, v, keep, 0.3, False), expected, atol=1e-6)


def test_training_dropout_never_reads_masked_keys():
    q, k, v, keep = _inputs()
    poisoned = v.clone()
    poisoned[1, :, 3:] = 1e6  # keys the mask hides for item 1
    out = attention(q, k, poisoned, keep, 0.5, True)
    assert out[1].abs().max() < 100


def test_training_dropout_keeps_the_expectation_and_the_rate():
    q, k, v, keep = _inputs()
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    torch.manual_seed(1)
    draws = torch.stack([attention(q, k, v, keep, 0.25, True) for _ in range(4000)])
    assert torch.allclose(draws.mean(0), expected, atol=0.05)
    ones = torch.eye(5).expand(3, 2, 5, 5)  # v = identity: the output rows are the weights
    weights = torch.stack([attention(q, k, ones, None, 0.25, True) for _ in range(200)])
    dropped = (weights == 0).float().mean().item()
    assert abs(dropped - 0.25) < 0.02


def test_bf16_dropout_masks_equal_the_float_ones():
    from magneto.model.dropout import fast_dropout

    x = torch.linspace(-3, 3, 40000).view(200, 200)
    torch.manual_seed(5)
    exact = fast_dropout(x, 0.3)
    torch.manual_seed(5)
    low = fast_dropout(x.to(torch.bfloat16), 0.3)
    assert low.dtype == torch.bfloat16
    assert torch.equal(low == 0, exact == 0)  # the same elements dropped, same draws
    assert torch.allclose(low.float(), exact, rtol=0.01, atol=0.02)
